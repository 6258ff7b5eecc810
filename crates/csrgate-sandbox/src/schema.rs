//! Unknown-field detection: against the typed model (round trip) or a CRD's structural schema (pruning).

use serde_json::{Map, Value};

use crate::status::Cause;

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Fields present in `input` but dropped by the typed round trip that produced `normalised`.
pub fn dropped_fields(input: &Value, normalised: &Value, prefix: &str, out: &mut Vec<String>) {
    match (input, normalised) {
        (Value::Object(i), Value::Object(n)) => {
            for (k, v) in i {
                match n.get(k) {
                    Some(nv) => dropped_fields(v, nv, &join(prefix, k), out),
                    None if is_empty(v) => {}
                    None => out.push(join(prefix, k)),
                }
            }
        }
        (Value::Array(i), Value::Array(n)) => {
            for (idx, (v, nv)) in i.iter().zip(n).enumerate() {
                dropped_fields(v, nv, &format!("{prefix}[{idx}]"), out);
            }
        }
        _ => {}
    }
}

/// Remove the fields a structural schema does not declare; returns their paths. At the root,
/// `apiVersion`, `kind` and `metadata` are always kept.
pub fn prune(value: &mut Value, schema: &Value, prefix: &str, out: &mut Vec<String>) {
    if schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return;
    }
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let mut remove = Vec::new();
            for (k, v) in map.iter_mut() {
                if prefix.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(sub) = props.and_then(|p| p.get(k)) {
                    prune(v, sub, &join(prefix, k), out);
                } else if let Some(add) = additional {
                    match add {
                        Value::Bool(true) => {}
                        Value::Object(_) => prune(v, add, &join(prefix, k), out),
                        _ => remove.push(k.clone()),
                    }
                } else {
                    remove.push(k.clone());
                }
            }
            for k in remove {
                map.remove(&k);
                out.push(join(prefix, &k));
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, v) in items.iter_mut().enumerate() {
                    prune(v, sub, &format!("{prefix}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Fill in the `default`s a structural schema declares for absent properties, as the API server does
/// for custom resources.
pub fn apply_defaults(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, sub) in props {
                    match map.get_mut(k) {
                        Some(v) => apply_defaults(v, sub),
                        None => {
                            if let Some(default) = sub.get("default") {
                                map.insert(k.clone(), default.clone());
                            }
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                items.iter_mut().for_each(|v| apply_defaults(v, sub));
            }
        }
        _ => {}
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Check a custom resource against the structural schema's `type`, `required`, `enum`, `minItems`,
/// `maxItems`, `minLength` and `maxLength`, as the API server does before storing it (CEL rules are not run).
pub fn validate(value: &Value, schema: &Value, path: &str, out: &mut Vec<Cause>) {
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) && !path.is_empty() {
            out.push(Cause::invalid(path, value, "must not be null"));
        }
        return;
    }
    if let Some(want) = schema.get("type").and_then(Value::as_str) {
        let got = type_name(value);
        let ok = got == want || (want == "number" && got == "integer");
        if !ok
            && schema
                .get("x-kubernetes-int-or-string")
                .and_then(Value::as_bool)
                != Some(true)
        {
            out.push(Cause {
                reason: "FieldValueTypeInvalid",
                field: path.to_string(),
                message: format!(
                    "Invalid value: {value:?}: {path} in body must be of type {want}: {got:?}",
                    value = short(value)
                ),
            });
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        let list: Vec<&str> = options.iter().filter_map(Value::as_str).collect();
        out.push(Cause::not_supported(
            path,
            value.as_str().unwrap_or_default(),
            &list,
        ));
    }
    match value {
        Value::Object(map) => validate_object(map, schema, path, out),
        Value::Array(items) => validate_array(items, schema, path, out),
        Value::String(text) => validate_string(text, schema, path, out),
        _ => {}
    }
}

/// A schema bound (`maxItems`, `minLength`, ...) as a count.
fn bound(schema: &Value, key: &str) -> Option<usize> {
    schema
        .get(key)
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
}

/// `required`, then each declared property (at the root, not `apiVersion`, `kind`, `metadata`).
fn validate_object(map: &Map<String, Value>, schema: &Value, path: &str, out: &mut Vec<Cause>) {
    for req in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !map.contains_key(req) {
            out.push(Cause::required(join(path, req), ""));
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, v) in map {
            if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(sub) = props.get(k) {
                validate(v, sub, &join(path, k), out);
            }
        }
    }
}

/// `maxItems`, `minItems`, then each item against `items`.
fn validate_array(items: &[Value], schema: &Value, path: &str, out: &mut Vec<Cause>) {
    if let Some(max) = bound(schema, "maxItems").filter(|m| items.len() > *m) {
        out.push(Cause::too_many(path, items.len(), max));
    }
    if let Some(min) = bound(schema, "minItems").filter(|m| items.len() < *m) {
        out.push(Cause::invalid(
            path,
            &Value::Array(items.to_vec()),
            &format!("{path} in body should have at least {min} items"),
        ));
    }
    if let Some(sub) = schema.get("items") {
        for (i, v) in items.iter().enumerate() {
            validate(v, sub, &format!("{path}[{i}]"), out);
        }
    }
}

/// `maxLength` and `minLength`, in characters.
fn validate_string(text: &str, schema: &Value, path: &str, out: &mut Vec<Cause>) {
    let chars = text.chars().count();
    if let Some(max) = bound(schema, "maxLength").filter(|m| chars > *m) {
        out.push(Cause::too_long(path, max));
    }
    if let Some(min) = bound(schema, "minLength").filter(|m| chars < *m) {
        out.push(Cause::invalid(
            path,
            &Value::String(text.to_string()),
            &format!("{path} in body should be at least {min} chars long"),
        ));
    }
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 64 {
        format!("{}...", text.chars().take(64).collect::<String>())
    } else {
        text
    }
}

/// The `strict decoding error` message for unknown fields.
pub fn strict_message(fields: &[String]) -> String {
    let list: Vec<String> = fields
        .iter()
        .map(|f| format!("unknown field {f:?}"))
        .collect();
    format!("strict decoding error: {}", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_field_the_round_trip_dropped_is_reported_with_its_path() {
        let mut out = Vec::new();
        dropped_fields(
            &json!({"spec": {"a": 1, "bogus": 2, "list": [{"x": 1, "y": 2}]}, "status": null}),
            &json!({"spec": {"a": 1, "list": [{"x": 1}]}}),
            "",
            &mut out,
        );
        assert_eq!(
            out,
            vec!["spec.bogus".to_string(), "spec.list[0].y".to_string()]
        );
    }

    #[test]
    fn required_fields_types_and_enums_are_checked() {
        let schema = json!({"type": "object", "required": ["spec"], "properties": {"spec": {"type": "object",
            "required": ["names"], "properties": {
                "names": {"type": "array", "maxItems": 1, "items": {"type": "string"}},
                "mode": {"type": "string", "enum": ["Enforce", "Audit"]}}}}});
        let mut out = Vec::new();
        validate(
            &json!({"spec": {"names": ["a", 2], "mode": "Loud"}}),
            &schema,
            "",
            &mut out,
        );
        let fields: Vec<&str> = out.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            vec!["spec.mode", "spec.names", "spec.names[1]"],
            "{out:?}"
        );
        let mut out = Vec::new();
        validate(&json!({"kind": "X"}), &schema, "", &mut out);
        assert_eq!(out, vec![Cause::required("spec", "")]);
    }

    #[test]
    fn absent_properties_get_their_schema_default() {
        let schema = json!({"properties": {"spec": {"properties": {
            "mode": {"type": "string", "default": "Enforce"},
            "rules": {"type": "array", "items": {"properties": {"action": {"default": "Deny"}}}}}}}});
        let mut v = json!({"spec": {"rules": [{}, {"action": "Ignore"}]}});
        apply_defaults(&mut v, &schema);
        assert_eq!(
            v,
            json!({"spec": {"mode": "Enforce", "rules": [{"action": "Deny"}, {"action": "Ignore"}]}})
        );
    }

    #[test]
    fn pruning_keeps_declared_and_preserved_fields() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {"a": {"type": "string"}}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
        }});
        let mut v = json!({"kind": "X", "spec": {"a": "1", "b": 2}, "free": {"z": 1}, "top": 1});
        let mut out = Vec::new();
        prune(&mut v, &schema, "", &mut out);
        assert_eq!(out, vec!["spec.b".to_string(), "top".to_string()]);
        assert_eq!(
            v,
            json!({"kind": "X", "spec": {"a": "1"}, "free": {"z": 1}})
        );
    }
}
