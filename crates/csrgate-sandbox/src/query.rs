//! Query strings and the label and field selectors of list and watch requests.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::registry::{self, ResourceDef};
use crate::status::ApiError;

/// Decoded query parameters (last value wins).
#[derive(Debug, Default, Clone)]
pub struct Query(BTreeMap<String, String>);

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                match s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Query {
    /// Parse `a=b&c=d`.
    pub fn parse(raw: Option<&str>) -> Self {
        let mut map = BTreeMap::new();
        for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(decode(k), decode(v));
        }
        Self(map)
    }

    /// One parameter.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A boolean parameter (`true`/`1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label or field selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(Vec<Req>);

fn split_top(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn set(values: &str) -> Option<Vec<String>> {
    let inner = values.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

impl Selector {
    /// Parse a label selector (`a=b,c!=d,e in (x,y),!f`).
    ///
    /// # Errors
    /// 400 BadRequest naming the selector when it does not parse.
    pub fn labels(raw: &str) -> Result<Self, ApiError> {
        let bad = || {
            ApiError::bad_request(format!(
                "unable to parse requirement: found '{raw}', expected: valid label selector"
            ))
        };
        let mut reqs = Vec::new();
        for part in split_top(raw) {
            let req = if let Some((k, v)) = part.split_once("!=") {
                Req::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once(" notin ") {
                Req::NotIn(k.trim().into(), set(v).ok_or_else(bad)?)
            } else if let Some((k, v)) = part.split_once(" in ") {
                Req::In(k.trim().into(), set(v).ok_or_else(bad)?)
            } else if let Some(k) = part.strip_prefix('!') {
                Req::NotExists(k.trim().into())
            } else if part.contains(' ') || part.contains('(') {
                return Err(bad());
            } else {
                Req::Exists(part.into())
            };
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    /// Parse a field selector and check every field is one `def` supports.
    ///
    /// # Errors
    /// 400 BadRequest `field label not supported: X` for other fields.
    pub fn fields(raw: &str, def: &ResourceDef) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in split_top(raw) {
            let req = if let Some((k, v)) = part.split_once("!=") {
                Req::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Req::Eq(k.trim().into(), v.trim().into())
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{raw}'; can't understand '{part}'"
                )));
            };
            let (Req::Eq(field, _) | Req::NotEq(field, _)) = &req else {
                continue;
            };
            if field_value(def, &Value::Null, field).is_none() {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    fn matches_with(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.0.iter().all(|req| match req {
            Req::Eq(k, v) => lookup(k).as_deref() == Some(v.as_str()),
            Req::NotEq(k, v) => lookup(k).as_deref() != Some(v.as_str()),
            Req::In(k, vs) => lookup(k).is_some_and(|x| vs.contains(&x)),
            Req::NotIn(k, vs) => lookup(k).is_none_or(|x| !vs.contains(&x)),
            Req::Exists(k) => lookup(k).is_some(),
            Req::NotExists(k) => lookup(k).is_none(),
        })
    }

    /// Whether the object's labels match.
    pub fn matches_labels(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        self.matches_with(|k| {
            labels
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
    }

    /// Whether the object's selectable fields match.
    pub fn matches_fields(&self, def: &ResourceDef, obj: &Value) -> bool {
        self.matches_with(|k| field_value(def, obj, k))
    }
}

/// The value of a selectable field, or `None` when `def` does not support that field.
/// A missing value reads as the empty string, as in the real server.
fn field_value(def: &ResourceDef, obj: &Value, field: &str) -> Option<String> {
    // Built-in resources by group and plural: a custom resource that shares a plural with
    // one has only the metadata fields, as on a real server.
    let resource = [
        &registry::CSR,
        &registry::CORE_EVENT,
        &registry::NAMESPACE,
        &registry::NODE,
    ]
    .into_iter()
    .find(|builtin| def.is(builtin))
    .map(|builtin| builtin.plural.as_str());
    let pointer = match (resource, field) {
        (_, "metadata.name") => "/metadata/name",
        (_, "metadata.namespace") => "/metadata/namespace",
        (Some("certificatesigningrequests"), "spec.signerName") => "/spec/signerName",
        (Some("events"), "involvedObject.kind") => "/involvedObject/kind",
        (Some("events"), "involvedObject.name") => "/involvedObject/name",
        (Some("events"), "involvedObject.namespace") => "/involvedObject/namespace",
        (Some("events"), "involvedObject.uid") => "/involvedObject/uid",
        (Some("events"), "reason") => "/reason",
        (Some("events"), "type") => "/type",
        (Some("events"), "regarding.kind") => "/regarding/kind",
        (Some("events"), "regarding.name") => "/regarding/name",
        (Some("namespaces"), "status.phase") => "/status/phase",
        (Some("nodes"), "spec.unschedulable") => "/spec/unschedulable",
        _ => return None,
    };
    Some(match obj.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::CSR;
    use serde_json::json;

    #[test]
    fn set_based_label_selectors_match() {
        let obj = json!({"metadata": {"labels": {"team": "a", "env": "prod"}}});
        let ok = |s: &str| {
            Selector::labels(s)
                .map(|sel| sel.matches_labels(&obj))
                .unwrap_or(false)
        };
        assert!(ok("team in (a,b),env"));
        assert!(ok("team notin (c),!missing"));
        assert!(!ok("env!=prod"));
        assert!(ok("team==a"));
    }

    #[test]
    fn an_unknown_field_selector_is_refused() {
        let err = Selector::fields("spec.bogus=x", &CSR)
            .err()
            .map(|e| e.message);
        assert_eq!(
            err.as_deref(),
            Some("field label not supported: spec.bogus")
        );
    }

    #[test]
    fn percent_encoded_query_values_are_decoded() {
        let q = Query::parse(Some("labelSelector=a%3Db%2Cc&watch=1"));
        assert_eq!(q.get("labelSelector"), Some("a=b,c"));
        assert!(q.flag("watch"));
    }
}
