//! Field ownership for server-side apply: which field manager last set each field, and the conflicts an
//! apply without `force` gets when it would change a field another manager owns (as kube-lease-manager
//! relies on to settle races). Lists are owned as a whole; ownership is not shown in `managedFields`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::registry::ResourceDef;
use crate::status::ApiError;

/// Owners per object (by uid), per field path (`.spec.holderIdentity`).
#[derive(Default)]
pub struct Managed(Mutex<HashMap<String, BTreeMap<String, String>>>);

/// The field manager of a request: `fieldManager`, else the user agent's program name, as the real server does.
pub fn manager_name(field_manager: Option<&str>, user_agent: Option<&str>) -> String {
    match field_manager.filter(|m| !m.is_empty()) {
        Some(m) => m.to_string(),
        None => user_agent
            .and_then(|ua| ua.split('/').next())
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_string(),
    }
}

fn leaves(value: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if prefix.is_empty() && matches!(k.as_str(), "apiVersion" | "kind") {
                    continue;
                }
                let path = format!("{prefix}.{k}");
                if prefix == ".metadata"
                    && !matches!(k.as_str(), "labels" | "annotations" | "finalizers")
                {
                    continue;
                }
                if v.is_object() && !v.as_object().is_some_and(serde_json::Map::is_empty) {
                    leaves(v, &path, out);
                } else {
                    out.insert(path, v.clone());
                }
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

fn uid(obj: &Value) -> String {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Managed {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, BTreeMap<String, String>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The 409 an apply of `body` by `manager` over `current` gets, if it would change fields others own.
    pub fn apply_conflicts(
        &self,
        def: &ResourceDef,
        name: &str,
        current: &Value,
        body: &Value,
        manager: &str,
    ) -> Option<ApiError> {
        let owners = self.lock();
        let owners = owners.get(&uid(current))?;
        let mut wanted = BTreeMap::new();
        leaves(body, "", &mut wanted);
        let mut have = BTreeMap::new();
        leaves(current, "", &mut have);
        let conflicts: Vec<(String, String)> = wanted
            .iter()
            .filter_map(|(path, value)| {
                let owner = owners.get(path)?;
                (owner != manager && have.get(path) != Some(value))
                    .then(|| (owner.clone(), path.clone()))
            })
            .collect();
        if conflicts.is_empty() {
            return None;
        }
        let listed: Vec<String> = conflicts
            .iter()
            .map(|(o, p)| format!("conflict with {o:?}: {p}"))
            .collect();
        let noun = if conflicts.len() == 1 {
            "conflict"
        } else {
            "conflicts"
        };
        let message = if conflicts.len() == 1 {
            format!("Apply failed with 1 conflict: {}", listed[0])
        } else {
            format!(
                "Apply failed with {} {noun}: {}",
                conflicts.len(),
                listed.join("\n")
            )
        };
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(o, p)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {o:?}"), "field": p}))
            .collect();
        let mut err = ApiError::new(409, "Conflict", message);
        err.details =
            Some(json!({"name": name, "group": def.group, "kind": def.plural, "causes": causes}));
        Some(err)
    }

    /// Record a successful write: an apply takes every field it names; other writes take the fields they changed.
    pub fn record(
        &self,
        before: Option<&Value>,
        after: &Value,
        manager: &str,
        applied: Option<&Value>,
    ) {
        let mut all = self.lock();
        let owners = all.entry(uid(after)).or_default();
        let mut now = BTreeMap::new();
        leaves(after, "", &mut now);
        let mut then = BTreeMap::new();
        if let Some(before) = before {
            leaves(before, "", &mut then);
        }
        owners.retain(|path, _| now.contains_key(path));
        let taken: Vec<String> = match applied {
            Some(body) => {
                let mut named = BTreeMap::new();
                leaves(body, "", &mut named);
                named.into_keys().collect()
            }
            None => now
                .iter()
                .filter(|(p, v)| then.get(*p) != Some(*v))
                .map(|(p, _)| p.clone())
                .collect(),
        };
        for path in taken {
            if now.contains_key(&path) {
                owners.insert(path, manager.to_string());
            }
        }
    }

    /// Forget a deleted object.
    pub fn forget(&self, obj: &Value) {
        self.lock().remove(&uid(obj));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::LEASE;

    #[test]
    fn an_apply_that_changes_a_field_another_manager_set_conflicts() {
        let managed = Managed::default();
        let lease = json!({"metadata": {"uid": "u"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}});
        managed.record(
            None,
            &lease,
            "mgr-a",
            Some(&json!({"spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}})),
        );
        let same = json!({"spec": {"holderIdentity": "a"}});
        assert!(
            managed
                .apply_conflicts(&LEASE, "l", &lease, &same, "mgr-b")
                .is_none(),
            "same value, no conflict"
        );
        let take = json!({"spec": {"holderIdentity": "b"}});
        let err = managed.apply_conflicts(&LEASE, "l", &lease, &take, "mgr-b");
        assert_eq!(
            err.map(|e| (e.code, e.message)),
            Some((
                409,
                "Apply failed with 1 conflict: conflict with \"mgr-a\": .spec.holderIdentity"
                    .to_string()
            ))
        );
        assert!(
            managed
                .apply_conflicts(&LEASE, "l", &lease, &take, "mgr-a")
                .is_none(),
            "the owner may change it"
        );
    }

    #[test]
    fn an_update_that_removes_a_field_releases_it() {
        let managed = Managed::default();
        let held = json!({"metadata": {"uid": "u"}, "spec": {"holderIdentity": "a"}});
        managed.record(None, &held, "mgr-a", Some(&held));
        let released = json!({"metadata": {"uid": "u"}, "spec": {}});
        managed.record(Some(&held), &released, "mgr-a", None);
        let take = json!({"spec": {"holderIdentity": "b"}});
        assert!(
            managed
                .apply_conflicts(&LEASE, "l", &released, &take, "mgr-b")
                .is_none()
        );
    }

    #[test]
    fn the_manager_defaults_to_the_user_agent_program() {
        assert_eq!(
            manager_name(None, Some("kubectl/v1.33.1 (linux/amd64)")),
            "kubectl"
        );
        assert_eq!(manager_name(Some("csrgate"), Some("kubectl/v1")), "csrgate");
        assert_eq!(manager_name(None, None), "unknown");
    }
}
