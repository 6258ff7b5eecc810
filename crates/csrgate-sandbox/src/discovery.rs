//! Discovery documents: `/version`, `/api`, `/apis`, `/apis/<group>` and the group-version resource lists.

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

fn group(name: &str) -> Value {
    let versions: Vec<Value> = registry::group_versions()
        .into_iter()
        .filter(|(g, _)| *g == name)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"name": name, "versions": versions, "preferredVersion": preferred})
}

/// `/apis`.
pub fn groups() -> Value {
    let mut names: Vec<&str> = Vec::new();
    for (g, _) in registry::group_versions() {
        if !g.is_empty() && !names.contains(&g) {
            names.push(g);
        }
    }
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": names.into_iter().map(group).collect::<Vec<_>>()})
}

/// `/apis/<group>`, if served.
pub fn api_group(name: &str) -> Option<Value> {
    registry::ALL.iter().any(|d| d.group == name).then(|| {
        let mut g = group(name);
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

/// The APIResourceList of a group/version, if served.
pub fn resources(group: &str, version: &str) -> Option<Value> {
    let defs: Vec<&ResourceDef> = registry::ALL
        .iter()
        .copied()
        .filter(|d| d.group == group && d.version == version)
        .collect();
    if defs.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    for d in defs {
        list.push(resource_entry(d));
        for sub in d.subresources {
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

    #[test]
    fn the_policy_resource_is_discoverable_by_its_short_name() {
        let list = resources("csrgate.dev", "v1alpha1").unwrap_or_default();
        assert_eq!(list["resources"][0]["shortNames"][0], "csrpolicy");
        assert_eq!(list["resources"][1]["name"], "csrapprovalpolicies/status");
    }

    #[test]
    fn the_group_list_leaves_out_the_core_group() {
        let names: Vec<Value> = groups()["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| g["name"].clone())
            .collect();
        assert!(!names.contains(&json!("")));
        assert!(names.contains(&json!("certificates.k8s.io")));
    }
}
