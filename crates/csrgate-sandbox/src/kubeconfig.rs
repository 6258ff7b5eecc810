//! The kubeconfig the sandbox writes: its address and an admin token.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use kube::config::{
    AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};

/// Name used for the cluster, user and context entries.
pub const CONTEXT: &str = "csrgate-sandbox";

/// The admin user's name in the kubeconfig.
const USER: &str = "admin";

/// The kubeconfig for a sandbox at `addr` with the admin `token`, as kube-rs's own type.
pub fn kubeconfig(addr: SocketAddr, token: &str) -> Kubeconfig {
    Kubeconfig {
        clusters: vec![NamedCluster {
            name: CONTEXT.to_owned(),
            cluster: Some(Cluster {
                server: Some(format!("http://{addr}")),
                ..Cluster::default()
            }),
            other: Default::default(),
        }],
        auth_infos: vec![NamedAuthInfo {
            name: USER.to_owned(),
            auth_info: Some(AuthInfo {
                token: Some(token.to_owned().into()),
                ..AuthInfo::default()
            }),
            other: Default::default(),
        }],
        contexts: vec![NamedContext {
            name: CONTEXT.to_owned(),
            context: Some(Context {
                cluster: CONTEXT.to_owned(),
                user: Some(USER.to_owned()),
                ..Context::default()
            }),
            other: Default::default(),
        }],
        current_context: Some(CONTEXT.to_owned()),
        api_version: Some("v1".to_owned()),
        kind: Some("Config".to_owned()),
        ..Kubeconfig::default()
    }
}

/// The kubeconfig text (YAML) for a sandbox at `addr` with the admin `token`.
///
/// # Errors
/// The kubeconfig cannot be serialized (not expected of kube-rs's type).
pub fn render(addr: SocketAddr, token: &str) -> Result<String, String> {
    serde_saphyr::to_string(&kubeconfig(addr, token)).map_err(|e| e.to_string())
}

/// Writes the kubeconfig to `path`, readable by its owner only (it holds the admin token),
/// replacing any file there.
///
/// # Errors
/// The file cannot be written.
pub fn write(path: &Path, addr: SocketAddr, token: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let text = render(addr, token).map_err(std::io::Error::other)?;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubeconfig_names_the_real_address() {
        let text = render(SocketAddr::from(([127, 0, 0, 1], 4321)), "tok").unwrap();
        assert!(text.contains("server: http://127.0.0.1:4321\n"), "{text}");
        assert!(text.contains("token: tok\n"), "{text}");
    }

    #[test]
    fn the_written_kubeconfig_is_read_back_by_kube_and_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, "old").unwrap();
        write(&path, SocketAddr::from(([127, 0, 0, 1], 4321)), "tok").unwrap();
        let read = Kubeconfig::read_from(&path).unwrap();
        assert_eq!(read.current_context.as_deref(), Some(CONTEXT));
        assert_eq!(
            read.clusters[0].cluster.as_ref().unwrap().server.as_deref(),
            Some("http://127.0.0.1:4321")
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
