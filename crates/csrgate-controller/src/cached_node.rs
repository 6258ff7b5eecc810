//! The Node as the controller reads and caches it: k8s-openapi's `Node` read without the
//! fields policies cannot see ([`csrgate_policy::UNCACHED_NODE_FIELDS`]).
//!
//! A real Node's bytes are mostly its image list. Read as `Node` and trimmed afterwards (as
//! the cache once did), every list page of Nodes allocated those lists before dropping them,
//! and the allocator kept each page's peak. Read through this type, they are skipped in the
//! JSON and never allocated. It is its own API resource type (the Node's group, version,
//! kind and path), so kube-rs's `Api`, watcher and reflector take it as they take `Node`.

use std::ops::Deref;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};

/// A Node without [`csrgate_policy::UNCACHED_NODE_FIELDS`]; derefs to the `Node` the engine
/// takes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CachedNode(pub Node);

impl Deref for CachedNode {
    type Target = Node;

    fn deref(&self) -> &Node {
        &self.0
    }
}

impl<'de> Deserialize<'de> for CachedNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        csrgate_policy::deserialize_node_for_policies(deserializer).map(Self)
    }
}

impl k8s_openapi::Resource for CachedNode {
    const API_VERSION: &'static str = <Node as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <Node as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <Node as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <Node as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <Node as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = <Node as k8s_openapi::Resource>::Scope;
}

impl k8s_openapi::Metadata for CachedNode {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.0.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.0.metadata
    }
}

#[cfg(test)]
mod tests {
    use kube::Resource;

    use super::*;

    #[test]
    fn it_is_the_node_resource_for_the_api() {
        assert_eq!(CachedNode::url_path(&(), None), Node::url_path(&(), None));
        assert_eq!(CachedNode::kind(&()), "Node");
        assert_eq!(CachedNode::api_version(&()), "v1");
    }

    #[test]
    fn a_watch_event_reads_without_the_image_list() {
        // As kube-rs reads a watch line: the event's object through this type.
        let line = serde_json::json!({
            "type": "ADDED",
            "object": {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "worker-1", "resourceVersion": "7",
                             "managedFields": [{"manager": "kubelet", "operation": "Update"}]},
                "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                           "images": [{"names": ["registry.example.com/a:v1"], "sizeBytes": 1}]},
            },
        })
        .to_string();
        let event: kube::core::WatchEvent<CachedNode> =
            serde_json::from_str(&line).expect("a watch event");
        let kube::core::WatchEvent::Added(node) = event else {
            panic!("an ADDED event")
        };
        assert_eq!(node.metadata.name.as_deref(), Some("worker-1"));
        assert!(node.metadata.managed_fields.is_none());
        let status = node.status.as_ref().expect("status");
        assert!(status.images.is_none());
        assert_eq!(status.addresses.as_ref().map(Vec::len), Some(1));
    }
}
