//! Clients, kubeconfigs and waits that every csrgate command, benchmark and test makes the
//! same way (feature `client`).
//!
//! A client acting as another user sets the kubeconfig's `as`/`as-groups` (kube's
//! `AuthInfo::impersonate`), which kube-rs sends as `Impersonate-User`/`Impersonate-Group`
//! headers, as `kubectl --as` does. Kubeconfigs are written by serializing kube's
//! [`Kubeconfig`], never by hand. Waits on one object use kube-runtime's
//! [`await_condition`](kube::runtime::wait::await_condition) with the conditions below.

use std::path::{Path, PathBuf};

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::config::{
    AuthInfo, Context, KubeConfigOptions, Kubeconfig, KubeconfigError, NamedAuthInfo, NamedCluster,
    NamedContext,
};
use kube::runtime::wait::Condition;

use crate::csr;

/// Why a client or a kubeconfig could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig file cannot be read or parsed.
    #[error("reading kubeconfig {}", .0.display())]
    ReadKubeconfig(PathBuf, #[source] KubeconfigError),
    /// The kubeconfig does not make a client configuration (no such context, bad data).
    #[error("kubeconfig {}", .0.display())]
    Config(PathBuf, #[source] KubeconfigError),
    /// The client cannot be built from the configuration.
    #[error("building a client")]
    Build(#[source] kube::Error),
    /// A kubeconfig cannot be serialized.
    #[error("serializing a kubeconfig")]
    Serialize(#[source] serde_json::Error),
    /// A kubeconfig cannot be written.
    #[error("writing kubeconfig {}", .0.display())]
    Write(PathBuf, #[source] std::io::Error),
}

/// A user to act as: the name and its groups, without `system:authenticated`, which the API
/// server adds (see [`crate::user`]).
#[derive(Clone, Copy, Debug)]
pub struct Impersonate<'a> {
    /// `Impersonate-User`.
    pub user: &'a str,
    /// `Impersonate-Group`, one per group; none when empty.
    pub groups: &'a [String],
}

impl<'a> Impersonate<'a> {
    /// Acting as `user` in `groups`.
    pub const fn new(user: &'a str, groups: &'a [String]) -> Self {
        Self { user, groups }
    }

    /// Sets the impersonation on a kubeconfig user (`as`, `as-groups`), replacing any.
    pub fn apply(self, auth: &mut AuthInfo) {
        auth.impersonate = Some(self.user.to_owned());
        auth.impersonate_groups = (!self.groups.is_empty()).then(|| self.groups.to_vec());
    }
}

/// A client from a parsed kubeconfig (its current context unless `options` names one),
/// acting as `impersonate` when given.
///
/// # Errors
/// [`ClientError::Config`] when the kubeconfig makes no configuration, [`ClientError::Build`]
/// when the client cannot be built; `source` names the kubeconfig in the error.
pub async fn client_from(
    kubeconfig: Kubeconfig,
    options: &KubeConfigOptions,
    impersonate: Option<Impersonate<'_>>,
    source: &Path,
) -> Result<kube::Client, ClientError> {
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, options)
        .await
        .map_err(|e| ClientError::Config(source.to_owned(), e))?;
    if let Some(impersonate) = impersonate {
        impersonate.apply(&mut config.auth_info);
    }
    kube::Client::try_from(config).map_err(ClientError::Build)
}

/// A client from the kubeconfig file `path` (its current context), acting as `impersonate`
/// when given. Needs `impersonate` on users and groups for the kubeconfig's user when acting.
///
/// # Errors
/// See [`ClientError`].
pub async fn client(
    path: &Path,
    impersonate: Option<Impersonate<'_>>,
) -> Result<kube::Client, ClientError> {
    let kubeconfig = read(path)?;
    client_from(kubeconfig, &KubeConfigOptions::default(), impersonate, path).await
}

/// Reads and parses a kubeconfig file (file paths in it made absolute).
///
/// # Errors
/// [`ClientError::ReadKubeconfig`].
pub fn read(path: &Path) -> Result<Kubeconfig, ClientError> {
    Kubeconfig::read_from(path).map_err(|e| ClientError::ReadKubeconfig(path.to_owned(), e))
}

/// Writes `kubeconfig` to `path` as JSON (which kubectl and kube-rs read as YAML), replacing
/// any file there.
///
/// # Errors
/// [`ClientError::Serialize`] or [`ClientError::Write`].
pub fn write(path: &Path, kubeconfig: &Kubeconfig) -> Result<(), ClientError> {
    let text = serde_json::to_string_pretty(kubeconfig).map_err(ClientError::Serialize)?;
    std::fs::write(path, text).map_err(|e| ClientError::Write(path.to_owned(), e))
}

/// A copy of `kubeconfig` whose every user acts as `impersonate` (`as`, `as-groups`).
pub fn impersonating(mut kubeconfig: Kubeconfig, impersonate: Impersonate<'_>) -> Kubeconfig {
    for named in &mut kubeconfig.auth_infos {
        impersonate.apply(named.auth_info.get_or_insert_with(AuthInfo::default));
    }
    kubeconfig
}

/// A kubeconfig with `cluster`, a user `user` authenticating with a client certificate and
/// key (PEM), and one context `<user>@<cluster>` (with `namespace` when given), current.
pub fn client_certificate_kubeconfig(
    cluster: NamedCluster,
    user: &str,
    namespace: Option<&str>,
    certificate_pem: &[u8],
    key_pem: &[u8],
) -> Kubeconfig {
    use base64::Engine as _;
    let base64 = &base64::engine::general_purpose::STANDARD;
    let context = format!("{user}@{}", cluster.name);
    Kubeconfig {
        contexts: vec![NamedContext {
            name: context.clone(),
            context: Some(Context {
                cluster: cluster.name.clone(),
                user: Some(user.to_owned()),
                namespace: namespace.map(str::to_owned),
                ..Context::default()
            }),
            other: Default::default(),
        }],
        clusters: vec![cluster],
        auth_infos: vec![NamedAuthInfo {
            name: user.to_owned(),
            auth_info: Some(AuthInfo {
                client_certificate_data: Some(base64.encode(certificate_pem)),
                client_key_data: Some(base64.encode(key_pem).into()),
                ..AuthInfo::default()
            }),
            other: Default::default(),
        }],
        current_context: Some(context),
        kind: Some("Config".to_owned()),
        api_version: Some("v1".to_owned()),
        ..Kubeconfig::default()
    }
}

/// Conditions on a CertificateSigningRequest for
/// [`await_condition`](kube::runtime::wait::await_condition); combine them with
/// [`Condition::and`], [`Condition::or`], [`Condition::not`].
pub mod conditions {
    use super::{CertificateSigningRequest, Condition, csr};

    /// The CSR is approved, denied or failed ([`csr::is_decided`]).
    pub fn is_csr_decided() -> impl Condition<CertificateSigningRequest> {
        |obj: Option<&CertificateSigningRequest>| obj.is_some_and(csr::is_decided)
    }

    /// The CSR has a true `Approved` or `Denied` condition ([`csr::decision`]).
    pub fn has_csr_decision() -> impl Condition<CertificateSigningRequest> {
        |obj: Option<&CertificateSigningRequest>| obj.is_some_and(|c| csr::decision(c).is_some())
    }

    /// The CSR has a true condition of `type_`.
    pub fn has_csr_condition(
        type_: csr::ConditionType,
    ) -> impl Condition<CertificateSigningRequest> {
        move |obj: Option<&CertificateSigningRequest>| {
            obj.is_some_and(|c| csr::true_condition(c, &[type_]).is_some())
        }
    }

    /// The signer wrote a certificate ([`csr::certificate`]).
    pub fn is_csr_issued() -> impl Condition<CertificateSigningRequest> {
        |obj: Option<&CertificateSigningRequest>| obj.is_some_and(|c| csr::certificate(c).is_some())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use kube::config::Cluster;

    fn cluster() -> NamedCluster {
        NamedCluster {
            name: "c".into(),
            cluster: Some(Cluster {
                server: Some("https://127.0.0.1:6443".into()),
                ..Cluster::default()
            }),
            other: Default::default(),
        }
    }

    #[test]
    fn a_written_kubeconfig_reads_back_with_its_user_and_context() {
        let dir = std::env::temp_dir().join(format!("csrgate-api-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kubeconfig");
        let written = client_certificate_kubeconfig(cluster(), "jane", Some("ns"), b"crt", b"key");
        write(&path, &written).unwrap();
        let read_back = read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(read_back.current_context.as_deref(), Some("jane@c"));
        let context = read_back.contexts[0].context.as_ref().unwrap();
        assert_eq!(context.namespace.as_deref(), Some("ns"));
        assert_eq!(context.user.as_deref(), Some("jane"));
        let auth = read_back.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(auth.client_certificate_data.as_deref(), Some("Y3J0"));
    }

    #[test]
    fn impersonating_sets_as_and_as_groups_on_every_user() {
        let groups = vec!["platform-admins".to_owned()];
        let base = client_certificate_kubeconfig(cluster(), "admin", None, b"c", b"k");
        let acting = impersonating(base, Impersonate::new("jane", &groups));
        let json = serde_json::to_value(&acting).unwrap();
        assert_eq!(json["users"][0]["user"]["as"], "jane");
        assert_eq!(json["users"][0]["user"]["as-groups"][0], "platform-admins");
        let none = impersonating(acting, Impersonate::new("bob", &[]));
        let json = serde_json::to_value(&none).unwrap();
        assert_eq!(json["users"][0]["user"]["as"], "bob");
        assert!(json["users"][0]["user"].get("as-groups").is_none());
    }

    #[test]
    fn the_csr_conditions_compose() {
        let mut csr = CertificateSigningRequest::default();
        let decided_and_issued = conditions::is_csr_decided().and(conditions::is_csr_issued());
        assert!(!decided_and_issued.matches_object(Some(&csr)));
        assert!(!conditions::is_csr_decided().matches_object(None));
        let status = csr.status.get_or_insert_with(Default::default);
        status.conditions = Some(vec![
            k8s_openapi::api::certificates::v1::CertificateSigningRequestCondition {
                type_: "Approved".into(),
                status: "True".into(),
                ..Default::default()
            },
        ]);
        status.certificate = Some(k8s_openapi::ByteString(b"pem".to_vec()));
        assert!(decided_and_issued.matches_object(Some(&csr)));
        assert!(conditions::has_csr_decision().matches_object(Some(&csr)));
        assert!(
            !conditions::has_csr_condition(csr::ConditionType::Denied).matches_object(Some(&csr))
        );
    }
}
