//! What policies see of a Node: the Node as the API serves it without the fields csrgate
//! does not keep, and a reader that skips those fields while it parses, so they are never
//! allocated.
//!
//! Image and volume lists are most of a real Node's bytes (a kubelet reports up to 50 images,
//! each with its digests and tags) and say nothing about the Node's identity; managed fields
//! are bookkeeping. A controller that caches thousands of Nodes holds only the rest.

use k8s_openapi::api::core::v1::Node;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

/// The Node fields policies cannot read, as `(parent, field)` under `node` and
/// `subjectNode`: what csrgate does not keep of a Node.
///
/// Reading one is a compile error rather than a silent absence, in every form that names the
/// field in the expression itself: a selection (`node.status.images`, also inside `has()`),
/// an index with a string literal (`node.status["images"]`, `node["status"]["images"]`), and
/// a string literal `in` the parent (`"images" in node.status`). A key known only at
/// evaluation time cannot be checked (a variable or a comprehension's variable as the index
/// or as the operand of `in`, a walk over the parent's keys, the parent reached through
/// `variables`): such a read finds the field absent, as on a Node that never had it.
pub const UNCACHED_NODE_FIELDS: [(&str, &str); 4] = [
    ("metadata", "managedFields"),
    ("status", "images"),
    ("status", "volumesInUse"),
    ("status", "volumesAttached"),
];

/// The Node as policies see it: without [`UNCACHED_NODE_FIELDS`]. `csrgate check --node` and
/// `csrgate explain` apply it to a Node they have read whole; the controller reads Nodes with
/// [`deserialize_node_for_policies`], which gives the same value.
pub fn node_for_policies(node: &mut Node) {
    node.metadata.managed_fields = None;
    if let Some(status) = node.status.as_mut() {
        status.images = None;
        status.volumes_in_use = None;
        status.volumes_attached = None;
    }
}

/// Reads a Node (a JSON or YAML object, as the API serves it) without
/// [`UNCACHED_NODE_FIELDS`]: those fields are skipped in the input, not parsed and then
/// dropped, so reading a page of Nodes never allocates their image lists. The result equals
/// reading the whole Node and applying [`node_for_policies`].
///
/// The rest of the Node is read through a `serde_json::Value` first, then as k8s-openapi's
/// `Node`, so every field k8s-openapi knows is kept with its own validation.
///
/// # Errors
/// The input is not an object, or what remains is not a valid `Node` (the error is the
/// deserializer's, naming the field).
pub fn deserialize_node_for_policies<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Node, D::Error> {
    let object = deserializer.deserialize_map(Without {
        skip: &[],
        nested: true,
    })?;
    serde::Deserialize::deserialize(Value::Object(object)).map_err(de::Error::custom)
}

/// Reads an object into a JSON map without the fields in `skip`; when `nested`, each
/// member named as a parent in [`UNCACHED_NODE_FIELDS`] is read without its listed fields.
#[derive(Clone, Copy)]
struct Without<'a> {
    skip: &'a [&'a str],
    nested: bool,
}

impl<'de> Visitor<'de> for Without<'_> {
    type Value = Map<String, Value>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if self.skip.contains(&key.as_str()) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let skip: Vec<&str> = if self.nested {
                UNCACHED_NODE_FIELDS
                    .iter()
                    .filter(|(parent, _)| *parent == key)
                    .map(|(_, field)| *field)
                    .collect()
            } else {
                Vec::new()
            };
            let value = if skip.is_empty() {
                map.next_value::<Value>()?
            } else {
                map.next_value_seed(Member(Without {
                    skip: &skip,
                    nested: false,
                }))?
            };
            object.insert(key, value);
        }
        Ok(object)
    }
}

/// A member read [`Without`] some of its fields; `null` stays `null` (`status: null` is a
/// Node without status, which k8s-openapi accepts).
struct Member<'a>(Without<'a>);

impl<'de> DeserializeSeed<'de> for Member<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Member<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("an object or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        self.0.visit_map(map).map(Value::Object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Node with every kind of field: kept ones (labels, spec, addresses, conditions, node
    /// info, capacity) and every uncached one.
    fn whole() -> Value {
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": "worker-1",
                "uid": "6c1d6f5a-0d1e-4d2a-9d55-2f0e0c7b1a11",
                "resourceVersion": "42",
                "labels": {"kubernetes.io/hostname": "worker-1"},
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
                "managedFields": [{
                    "manager": "kubelet", "operation": "Update", "apiVersion": "v1",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:images": {}}},
                }],
            },
            "spec": {"podCIDR": "10.64.1.0/24", "providerID": "aws:///eu-west-1a/i-1",
                     "taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"},
                              {"type": "Hostname", "address": "worker-1"}],
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                "capacity": {"cpu": "4", "memory": "16Gi"},
                "nodeInfo": {"architecture": "amd64", "bootID": "b", "containerRuntimeVersion": "c",
                             "kernelVersion": "k", "kubeProxyVersion": "", "kubeletVersion": "v1.35.0",
                             "machineID": "m", "operatingSystem": "linux", "osImage": "o",
                             "systemUUID": "s"},
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "images": [{"names": ["registry.example.com/a@sha256:00", "registry.example.com/a:v1"],
                            "sizeBytes": 1000}],
                "volumesInUse": ["kubernetes.io/csi/ebs^vol-1"],
                "volumesAttached": [{"name": "kubernetes.io/csi/ebs^vol-1", "devicePath": ""}],
            },
        })
    }

    fn trimmed(value: &Value) -> Node {
        let mut node: Node = serde_json::from_value(value.clone()).expect("a valid Node");
        node_for_policies(&mut node);
        node
    }

    #[test]
    fn reading_without_the_uncached_fields_equals_trimming_the_whole_node() {
        let whole = whole();
        let text = serde_json::to_string(&whole).expect("serializes");
        let read = deserialize_node_for_policies(&mut serde_json::Deserializer::from_str(&text))
            .expect("reads");
        assert_eq!(read, trimmed(&whole));
        let status = read.status.as_ref().expect("status kept");
        assert!(status.images.is_none() && status.volumes_in_use.is_none());
        assert!(read.metadata.managed_fields.is_none());
        assert_eq!(status.addresses.as_ref().map(Vec::len), Some(2));
        assert_eq!(read.metadata.labels.as_ref().map(|l| l.len()), Some(1));
    }

    #[test]
    fn a_node_without_status_or_with_null_status_reads() {
        for status in [None, Some(Value::Null)] {
            let mut whole = whole();
            let object = whole.as_object_mut().expect("object");
            object.remove("status");
            if let Some(status) = status {
                object.insert("status".into(), status);
            }
            let read = deserialize_node_for_policies(whole.clone()).expect("reads");
            assert_eq!(read, trimmed(&whole));
            assert!(read.status.is_none());
        }
    }

    #[test]
    fn an_invalid_node_is_an_error_naming_what_is_wrong() {
        let mut node = whole();
        node["spec"]["unschedulable"] = Value::from("yes");
        let error = deserialize_node_for_policies(node).expect_err("unschedulable is a bool");
        assert!(error.to_string().contains("invalid type"), "{error}");

        let error =
            deserialize_node_for_policies(Value::from("worker-1")).expect_err("not an object");
        assert!(error.to_string().contains("an object"), "{error}");

        let mut node = whole();
        node["status"] = Value::from(3);
        let error = deserialize_node_for_policies(node).expect_err("status is an object");
        assert!(error.to_string().contains("an object or null"), "{error}");
    }

    #[test]
    fn an_uncached_field_of_another_parent_is_kept() {
        // `images` is dropped under `status` only; the same name elsewhere is data.
        let mut whole = whole();
        whole["metadata"]["labels"]["images"] = Value::from("3");
        let read = deserialize_node_for_policies(whole).expect("reads");
        let labels = read.metadata.labels.expect("labels");
        assert_eq!(labels.get("images").map(String::as_str), Some("3"));
    }
}
