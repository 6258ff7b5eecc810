//! Discovery documents: `/version`, `/api`, `/apis`, `/apis/<group>` and the group-version resource lists.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::registry::{self, ResourceDef};

/// The Kubernetes version the sandbox claims to be.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-csrgate-sandbox",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`.
pub fn core_versions(server: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}],
    })
}

fn group(defs: &[Arc<ResourceDef>], name: &str) -> Value {
    let versions: Vec<Value> = registry::group_versions(defs)
        .into_iter()
        .filter(|(g, _)| *g == name)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"name": name, "versions": versions, "preferredVersion": preferred})
}

/// `/apis`, for the served resources `defs`.
pub fn groups(defs: &[Arc<ResourceDef>]) -> Value {
    let mut names: Vec<&str> = Vec::new();
    for (g, _) in registry::group_versions(defs) {
        if !g.is_empty() && !names.contains(&g) {
            names.push(g);
        }
    }
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": names.into_iter().map(|n| group(defs, n)).collect::<Vec<_>>()})
}

/// `/apis/<group>`, if one of `defs` is in it.
pub fn api_group(defs: &[Arc<ResourceDef>], name: &str) -> Option<Value> {
    defs.iter().any(|d| d.group == name).then(|| {
        let mut g = group(defs, name);
        g["kind"] = json!("APIGroup");
        g["apiVersion"] = json!("v1");
        g
    })
}

fn resource_entry(d: &ResourceDef) -> Value {
    let mut entry = json!({
        "name": d.plural,
        "singularName": d.singular,
        "namespaced": d.namespaced,
        "kind": d.kind,
        "verbs": d.verbs,
    });
    if !d.short_names.is_empty() {
        entry["shortNames"] = json!(d.short_names);
    }
    entry
}

/// The APIResourceList of a group/version, if one of `defs` is in it.
pub fn resources(defs: &[Arc<ResourceDef>], group: &str, version: &str) -> Option<Value> {
    let defs = registry::in_group_version(defs, group, version);
    if defs.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    for d in defs {
        list.push(resource_entry(d));
        for sub in d.subresources.iter() {
            list.push(json!({
                "name": format!("{}/{sub}", d.plural),
                "singularName": "",
                "namespaced": d.namespaced,
                "kind": d.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn with_widgets() -> Vec<Arc<ResourceDef>> {
        let crd = serde_json::from_value(json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Cluster",
                "names": {"kind": "Widget", "plural": "widgets", "shortNames": ["wd"]},
                "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {"type": "object"}}}]}
        }))
        .unwrap();
        let mut defs = registry::served(&Store::new(10));
        defs.extend(crate::crd::resources(&crd).into_iter().map(Arc::new));
        defs
    }

    #[test]
    fn a_custom_resource_is_discoverable_by_its_short_name() {
        let list = resources(&with_widgets(), "example.com", "v1").unwrap_or_default();
        assert_eq!(list["resources"][0]["shortNames"][0], "wd");
        assert_eq!(list["resources"][1]["name"], "widgets/status");
        let group = api_group(&with_widgets(), "example.com").unwrap_or_default();
        assert_eq!(group["preferredVersion"]["groupVersion"], "example.com/v1");
    }

    #[test]
    fn the_group_list_leaves_out_the_core_group() {
        let names: Vec<Value> = groups(&with_widgets())["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| g["name"].clone())
            .collect();
        assert!(!names.contains(&json!("")));
        assert!(names.contains(&json!("certificates.k8s.io")));
        assert!(names.contains(&json!("example.com")));
    }
}
