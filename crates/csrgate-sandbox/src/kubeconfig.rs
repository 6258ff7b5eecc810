//! The kubeconfig the sandbox writes: its address and an admin token.

use std::net::SocketAddr;

/// Name used for the cluster, user and context entries.
pub const CONTEXT: &str = "csrgate-sandbox";

/// The kubeconfig text for a sandbox at `addr` with the admin `token`.
pub fn render(addr: SocketAddr, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CONTEXT}
  cluster:
    server: http://{addr}
contexts:
- name: {CONTEXT}
  context:
    cluster: {CONTEXT}
    user: admin
current-context: {CONTEXT}
preferences: {{}}
users:
- name: admin
  user:
    token: {token}
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubeconfig_names_the_real_address() {
        let text = render(SocketAddr::from(([127, 0, 0, 1], 4321)), "tok");
        assert!(text.contains("server: http://127.0.0.1:4321\n"), "{text}");
        assert!(text.contains("token: tok\n"), "{text}");
    }
}
