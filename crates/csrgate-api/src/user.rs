//! The groups the API server gives an authenticated user, as a CSR's `spec.groups` records them.
//!
//! kube-apiserver adds `system:authenticated` to every user that authenticated (also to an
//! impersonated one: k8s.io/apiserver's `WithImpersonation` filter), so a CSR's `spec.groups`
//! always carries it, and a client acting as a requestor need not send it.

/// The group of every authenticated user (k8s.io/apiserver `user.AllAuthenticated`).
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// `groups` as the API server records them in `spec.groups`: with [`AUTHENTICATED_GROUP`]
/// added at the end when it is missing.
pub fn authenticated_groups(groups: &[String]) -> Vec<String> {
    let mut groups = groups.to_vec();
    if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
        groups.push(AUTHENTICATED_GROUP.to_owned());
    }
    groups
}

/// The groups to impersonate for a requestor whose `spec.groups` are `groups`: without
/// [`AUTHENTICATED_GROUP`], which the API server adds itself.
pub fn impersonated_groups(groups: &[String]) -> Vec<String> {
    groups
        .iter()
        .filter(|g| *g != AUTHENTICATED_GROUP)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authenticated_group_is_added_once() {
        let given = vec!["platform-admins".to_owned()];
        let recorded = authenticated_groups(&given);
        assert_eq!(recorded, ["platform-admins", AUTHENTICATED_GROUP]);
        assert_eq!(authenticated_groups(&recorded), recorded);
        assert_eq!(impersonated_groups(&recorded), given);
    }
}
