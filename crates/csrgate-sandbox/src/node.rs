//! What kube-apiserver does to a Node on create beyond storing it.
//!
//! The `TaintNodesByCondition` admission plugin (on by default; kubernetes
//! `plugin/pkg/admission/nodetaint/admission.go`) adds the `node.kubernetes.io/not-ready`
//! NoSchedule taint to every new Node, until the node lifecycle controller sees it Ready.
//! Policies that read `node.spec.taints` see it on a real server, so the sandbox adds it too.

use serde_json::{Value, json};

/// The taint key the admission plugin adds.
const NOT_READY: &str = "node.kubernetes.io/not-ready";

/// Adds the not-ready NoSchedule taint to a Node being created, unless it has one.
pub fn taint_new_node(node: &mut Value) {
    let Some(object) = node.as_object_mut() else {
        return;
    };
    let spec = object.entry("spec").or_insert_with(|| json!({}));
    let Some(spec) = spec.as_object_mut() else {
        return;
    };
    let taints = spec.entry("taints").or_insert_with(|| json!([]));
    let Some(taints) = taints.as_array_mut() else {
        return;
    };
    let present = taints
        .iter()
        .any(|t| t["key"] == NOT_READY && t["effect"] == "NoSchedule");
    if !present {
        taints.push(json!({"key": NOT_READY, "effect": "NoSchedule"}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_node_gets_the_not_ready_taint_once() {
        let mut node = json!({"metadata": {"name": "n"}});
        taint_new_node(&mut node);
        taint_new_node(&mut node);
        assert_eq!(
            node["spec"]["taints"],
            json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}])
        );
        let mut tainted = json!({"spec": {"taints": [{"key": "other", "effect": "NoExecute"}]}});
        taint_new_node(&mut tainted);
        assert_eq!(tainted["spec"]["taints"].as_array().map(Vec::len), Some(2));
    }
}
