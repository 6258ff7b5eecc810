//! The Nodes a CSR speaks for, found the same way by the controller, `check` and `explain`.
//!
//! A requestor `system:node:<name>` is that Node (`node`, as kube-controller-manager's
//! `isSelfNodeClientCert` reads the username); a CN `system:node:<name>` names the Node the
//! certificate is for (`subjectNode`, for bootstrap requests whose requestor is not yet a node).

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;

use crate::{Engine, Nodes, node_name};

/// The Node names of one CSR: its requestor's and its subject's, each when it is a node's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeNames {
    /// The Node a `system:node:<name>` requestor is (`node`).
    pub requestor: Option<String>,
    /// The Node a `system:node:<name>` CN names (`subjectNode`); `None` also when the request
    /// cannot be read.
    pub subject: Option<String>,
}

impl NodeNames {
    /// The Node names of `csr`; the CN is read through `engine`'s request cache.
    pub fn of(engine: &Engine, csr: &CertificateSigningRequest) -> Self {
        Self {
            requestor: csr
                .spec
                .username
                .as_deref()
                .and_then(node_name)
                .map(str::to_owned),
            subject: engine.subject_node_name(csr),
        }
    }

    /// Each name once, the requestor's first.
    pub fn distinct(&self) -> impl Iterator<Item = &str> {
        let requestor = self.requestor.as_deref();
        let subject = self.subject.as_deref().filter(|s| Some(*s) != requestor);
        requestor.into_iter().chain(subject)
    }

    /// The Nodes of both names, looked up with `get` (a map of Nodes by name, a cache).
    pub fn find<'a>(&self, get: impl Fn(&str) -> Option<&'a Node>) -> Nodes<'a> {
        Nodes {
            requestor: self.requestor.as_deref().and_then(&get),
            subject: self.subject.as_deref().and_then(&get),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn csr(username: &str) -> CertificateSigningRequest {
        let mut csr = CertificateSigningRequest::default();
        csr.spec.username = Some(username.to_owned());
        csr
    }

    #[test]
    fn a_node_requestor_names_its_node_and_others_name_none() {
        let names = NodeNames::of(&Engine::default(), &csr("system:node:worker-1"));
        assert_eq!(names.requestor.as_deref(), Some("worker-1"));
        assert_eq!(
            names.subject, None,
            "an unreadable request names no subject"
        );
        assert_eq!(names.distinct().collect::<Vec<_>>(), ["worker-1"]);
        assert_eq!(
            NodeNames::of(&Engine::default(), &csr("jane")),
            NodeNames::default()
        );
        assert_eq!(
            NodeNames::of(&Engine::default(), &csr("system:node:")),
            NodeNames::default()
        );
    }

    #[test]
    fn the_same_name_is_listed_once_and_found_for_both() {
        let names = NodeNames {
            requestor: Some("a".into()),
            subject: Some("a".into()),
        };
        assert_eq!(names.distinct().collect::<Vec<_>>(), ["a"]);
        let node = Node::default();
        let found = names.find(|name| (name == "a").then_some(&node));
        assert!(found.requestor.is_some() && found.subject.is_some());
        let other = NodeNames {
            requestor: None,
            subject: Some("b".into()),
        };
        assert_eq!(other.distinct().collect::<Vec<_>>(), ["b"]);
        assert!(other.find(|_| Some(&node)).requestor.is_none());
    }
}
