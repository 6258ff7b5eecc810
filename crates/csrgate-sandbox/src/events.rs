//! One Event store, two API shapes: core `v1` Events and `events.k8s.io/v1` Events are the same objects,
//! converted on the way out as the real server does (`involvedObject` ↔ `regarding`, `message` ↔ `note`, ...).

use serde_json::{Map, Value, json};

use crate::registry::ResourceDef;

/// (core v1 field, events.k8s.io/v1 field) pairs that are renamed between the two shapes.
const RENAMES: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

fn rename(obj: &Value, to_core: bool, api_version: &str) -> Value {
    let Some(map) = obj.as_object() else {
        return obj.clone();
    };
    let mut out = Map::new();
    for (k, v) in map {
        let renamed = RENAMES.iter().find_map(|(core, events)| match to_core {
            true if k == events => Some(*core),
            false if k == core => Some(*events),
            _ => None,
        });
        out.insert(renamed.unwrap_or(k).to_string(), v.clone());
    }
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!("Event"));
    Value::Object(out)
}

/// The object as clients of `def` see it: Events stored through one API are converted for the other.
pub fn present(def: &ResourceDef, obj: &Value) -> Value {
    let want = def.api_version();
    if def.kind != "Event" || obj.get("apiVersion").and_then(Value::as_str) == Some(want.as_str()) {
        return obj.clone();
    }
    rename(obj, def.group.is_empty(), &want)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{CORE_EVENT, EVENT};

    #[test]
    fn an_events_k8s_io_event_reads_as_a_core_event_and_back() {
        let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "CertificateSigningRequest", "name": "a"}, "note": "approved",
            "reason": "PolicyApproved", "reportingController": "example.com/controller"});
        let core = present(&CORE_EVENT, &ev);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "a");
        assert_eq!(core["message"], "approved");
        assert_eq!(core["reportingComponent"], "example.com/controller");
        assert_eq!(present(&EVENT, &core), ev);
    }
}
