//! Server-side printing: `meta.k8s.io/v1` Table responses, as `kubectl get` asks for them.

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::registry::{self, ResourceDef};

/// Whether the Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

/// `duration.HumanDuration`, shortened as kubectl prints ages.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    if s < 120 {
        format!("{s}s")
    } else if s < 600 {
        let (m, r) = (s / 60, s % 60);
        if r == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{r}s")
        }
    } else if s < 3 * 3600 {
        format!("{}m", s / 60)
    } else if s < 8 * 3600 {
        let (h, m) = (s / 3600, (s % 3600) / 60);
        if m == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{m}m")
        }
    } else if s < 48 * 3600 {
        format!("{}h", s / 3600)
    } else if s < 8 * 86400 {
        let (d, h) = (s / 86400, (s % 86400) / 3600);
        if h == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{h}h")
        }
    } else if s < 365 * 86400 * 2 {
        format!("{}d", s / 86400)
    } else {
        format!("{}y", s / (365 * 86400))
    }
}

fn age(obj: &Value) -> String {
    let created = obj
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Timestamp>().ok());
    match created {
        Some(t) => human_duration(crate::now().as_second() - t.as_second()),
        None => "<unknown>".into(),
    }
}

fn column(name: &str, type_: &str, format: &str, description: &str, priority: i32) -> Value {
    json!({"name": name, "type": type_, "format": format, "description": description, "priority": priority})
}

fn csr_condition(obj: &Value) -> String {
    let mut parts: Vec<String> = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("type").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if obj
        .pointer("/status/certificate")
        .and_then(Value::as_str)
        .is_some_and(|c| !c.is_empty())
    {
        parts.push("Issued".into());
    }
    if parts.is_empty() {
        "Pending".into()
    } else {
        parts.join(",")
    }
}

fn columns(def: &ResourceDef) -> Vec<Value> {
    let name = column(
        "Name",
        "string",
        "name",
        "Name must be unique within a namespace.",
        0,
    );
    let age = column(
        "Age",
        "string",
        "",
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
        0,
    );
    if !def.is(&registry::CSR) {
        return vec![name, age];
    }
    vec![
        name,
        age,
        column("SignerName", "string", "", "Requested signer name", 0),
        column(
            "Requestor",
            "string",
            "",
            "Information about the requesting user.",
            0,
        ),
        column(
            "RequestedDuration",
            "string",
            "",
            "Requested certificate duration",
            0,
        ),
        column("Condition", "string", "", "Condition of the request", 0),
    ]
}

fn cells(def: &ResourceDef, obj: &Value) -> Vec<Value> {
    let name = obj
        .pointer("/metadata/name")
        .cloned()
        .unwrap_or(Value::Null);
    if !def.is(&registry::CSR) {
        return vec![name, json!(age(obj))];
    }
    let text = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let duration = obj
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .map_or_else(|| "<none>".to_string(), human_duration);
    vec![
        name,
        json!(age(obj)),
        json!(text("/spec/signerName")),
        json!(text("/spec/username")),
        json!(duration),
        json!(csr_condition(obj)),
    ]
}

/// Evaluate the simple JSONPath forms CRD printer columns use: `.a.b`, `[N]`, `[*]`, `[?(@.k=="v")]`.
fn json_path(obj: &Value, path: &str) -> Vec<Value> {
    let mut current = vec![obj.clone()];
    let mut rest = path.trim();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let key = &after[..end];
            current = current.iter().filter_map(|v| v.get(key).cloned()).collect();
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let Some(end) = after.find(']') else {
                return Vec::new();
            };
            let inner = &after[..end];
            rest = &after[end + 1..];
            let items = current.iter().filter_map(Value::as_array).flatten();
            current = if let Some(filter) =
                inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')'))
            {
                let Some((key, want)) = filter.split_once("==") else {
                    return Vec::new();
                };
                let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
                items
                    .filter(|i| i.get(key.trim()).and_then(Value::as_str) == Some(want))
                    .cloned()
                    .collect()
            } else if inner == "*" {
                items.cloned().collect()
            } else {
                let Ok(index) = inner.parse::<usize>() else {
                    return Vec::new();
                };
                current
                    .iter()
                    .filter_map(|v| v.get(index).cloned())
                    .collect()
            };
        } else {
            return Vec::new();
        }
    }
    current
}

fn printer_cell(obj: &Value, column: &Value) -> Value {
    let path = column
        .get("jsonPath")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let values = json_path(obj, path);
    let Some(first) = values.first() else {
        return Value::Null;
    };
    if column.get("type").and_then(Value::as_str) == Some("date") {
        let age = first
            .as_str()
            .and_then(|s| s.parse::<k8s_openapi::jiff::Timestamp>().ok());
        return age.map_or(Value::Null, |t| {
            json!(human_duration(crate::now().as_second() - t.as_second()))
        });
    }
    match first {
        Value::String(s) => json!(s),
        other => json!(other.to_string()),
    }
}

fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A Table of `objects`; `headers` adds the column definitions (left out after a watch's first event);
/// `include_object` puts whole objects in the rows instead of their metadata; `printer` holds a CRD's
/// `additionalPrinterColumns` (empty for the built-in columns).
pub fn table(
    def: &ResourceDef,
    printer: &[Value],
    objects: &[Value],
    resource_version: Option<String>,
    headers: bool,
    include_object: bool,
) -> Value {
    let row_cells = |o: &Value| -> Vec<Value> {
        if printer.is_empty() {
            return cells(def, o);
        }
        let mut cells = vec![o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)];
        cells.extend(printer.iter().map(|c| printer_cell(o, c)));
        cells
    };
    let column_list = if printer.is_empty() {
        columns(def)
    } else {
        let mut list = vec![column(
            "Name",
            "string",
            "name",
            "Name must be unique within a namespace.",
            0,
        )];
        list.extend(printer.iter().map(|c| {
            let text = |k: &str| {
                c.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let type_ = if text("type") == "date" {
                "string".to_string()
            } else {
                text("type")
            };
            let priority = c.get("priority").and_then(Value::as_i64).unwrap_or(0);
            column(
                &text("name"),
                &type_,
                &text("format"),
                &text("description"),
                i32::try_from(priority).unwrap_or(0),
            )
        }));
        list
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            json!({
                "cells": row_cells(o),
                "object": if include_object { o.clone() } else { partial_metadata(o) },
            })
        })
        .collect();
    let mut metadata = json!({});
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = json!(rv);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": if headers { Value::Array(column_list) } else { Value::Null },
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::CSR;

    #[test]
    fn a_csr_without_conditions_is_pending_and_an_issued_one_says_so() {
        let pending =
            json!({"metadata": {"name": "a"}, "spec": {"signerName": "x/y", "username": "jane"}});
        let row = &table(&CSR, &[], &[pending], None, true, false)["rows"][0]["cells"];
        assert_eq!(row[5], "Pending");
        assert_eq!(row[4], "<none>");
        let issued = json!({"metadata": {"name": "a"}, "spec": {"expirationSeconds": 3600},
            "status": {"conditions": [{"type": "Approved"}], "certificate": "QQ=="}});
        let row = &table(&CSR, &[], &[issued], None, true, false)["rows"][0]["cells"];
        assert_eq!(row[5], "Approved,Issued");
        assert_eq!(row[4], "60m");
    }

    #[test]
    fn printer_column_paths_with_filters_are_evaluated() {
        let obj = json!({"status": {"conditions": [{"type": "Other", "status": "False"}, {"type": "Ready", "status": "True"}]},
            "spec": {"signerNames": ["a/b"]}});
        assert_eq!(
            json_path(&obj, ".status.conditions[?(@.type==\"Ready\")].status"),
            vec![json!("True")]
        );
        assert_eq!(
            printer_cell(
                &obj,
                &json!({"jsonPath": ".spec.signerNames", "type": "string"})
            ),
            json!("[\"a/b\"]")
        );
        assert_eq!(
            printer_cell(&obj, &json!({"jsonPath": ".spec.mode", "type": "string"})),
            Value::Null
        );
    }

    #[test]
    fn human_durations_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(86400 * 3), "3d");
    }
}
