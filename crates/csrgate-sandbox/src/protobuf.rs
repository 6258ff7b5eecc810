//! Decoding of Kubernetes protobuf bodies (`application/vnd.kubernetes.protobuf`) for CertificateSigningRequests,
//! which client-go's typed clients (kubectl `certificate approve|deny`) send.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\0";

struct Reader<'a> {
    data: &'a [u8],
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Skip,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.data.split_first()?;
            self.data = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn next(&mut self) -> Option<Option<(u64, Field<'a>)>> {
        if self.data.is_empty() {
            return Some(None);
        }
        let key = self.varint()?;
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            2 => {
                let len = usize::try_from(self.varint()?).ok()?;
                if len > self.data.len() {
                    return None;
                }
                let (bytes, rest) = self.data.split_at(len);
                self.data = rest;
                Field::Bytes(bytes)
            }
            1 => {
                self.data = self.data.get(8..)?;
                Field::Skip
            }
            5 => {
                self.data = self.data.get(4..)?;
                Field::Skip
            }
            _ => return None,
        };
        Some(Some((key >> 3, field)))
    }
}

fn fields(data: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut reader = Reader { data };
    let mut out = Vec::new();
    while let Some(f) = reader.next()? {
        out.push(f);
    }
    Some(out)
}

fn text(bytes: &[u8]) -> Option<Value> {
    std::str::from_utf8(bytes)
        .ok()
        .map(|s| Value::String(s.to_string()))
}

fn push(map: &mut Map<String, Value>, key: &str, value: Value) {
    match map.entry(key).or_insert_with(|| json!([])) {
        Value::Array(items) => items.push(value),
        other => *other = json!([value]),
    }
}

fn time(bytes: &[u8]) -> Option<Value> {
    let mut seconds = 0i64;
    for (n, f) in fields(bytes)? {
        if let (1, Field::Varint(v)) = (n, f) {
            seconds = i64::try_from(v).ok()?;
        }
    }
    let ts = k8s_openapi::jiff::Timestamp::from_second(seconds).ok()?;
    Some(json!(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

fn string_map_entry(bytes: &[u8]) -> Option<(String, Value)> {
    let (mut key, mut value) = (String::new(), Value::Null);
    for (n, f) in fields(bytes)? {
        match (n, f) {
            (1, Field::Bytes(b)) => key = std::str::from_utf8(b).ok()?.to_string(),
            (2, Field::Bytes(b)) => value = text(b)?,
            _ => {}
        }
    }
    Some((key, value))
}

fn object_meta(bytes: &[u8]) -> Option<Value> {
    let mut m = Map::new();
    for (n, f) in fields(bytes)? {
        match (n, f) {
            (1, Field::Bytes(b)) => _ = m.insert("name".into(), text(b)?),
            (2, Field::Bytes(b)) => _ = m.insert("generateName".into(), text(b)?),
            (3, Field::Bytes(b)) => _ = m.insert("namespace".into(), text(b)?),
            (5, Field::Bytes(b)) => _ = m.insert("uid".into(), text(b)?),
            (6, Field::Bytes(b)) => _ = m.insert("resourceVersion".into(), text(b)?),
            (7, Field::Varint(v)) => _ = m.insert("generation".into(), json!(v)),
            (8, Field::Bytes(b)) => _ = m.insert("creationTimestamp".into(), time(b)?),
            (11 | 12, Field::Bytes(b)) => {
                let (k, v) = string_map_entry(b)?;
                let key = if n == 11 { "labels" } else { "annotations" };
                if let Some(map) = m.entry(key).or_insert_with(|| json!({})).as_object_mut() {
                    map.insert(k, v);
                }
            }
            (14, Field::Bytes(b)) => push(&mut m, "finalizers", text(b)?),
            _ => {}
        }
    }
    Some(Value::Object(m))
}

fn spec(bytes: &[u8]) -> Option<Value> {
    let mut m = Map::new();
    for (n, f) in fields(bytes)? {
        match (n, f) {
            (1, Field::Bytes(b)) => _ = m.insert("request".into(), json!(STANDARD.encode(b))),
            (2, Field::Bytes(b)) => _ = m.insert("username".into(), text(b)?),
            (3, Field::Bytes(b)) => _ = m.insert("uid".into(), text(b)?),
            (4, Field::Bytes(b)) => push(&mut m, "groups", text(b)?),
            (5, Field::Bytes(b)) => push(&mut m, "usages", text(b)?),
            (6, Field::Bytes(b)) => {
                let mut key = String::new();
                let mut values = Vec::new();
                for (en, ef) in fields(b)? {
                    match (en, ef) {
                        (1, Field::Bytes(k)) => key = std::str::from_utf8(k).ok()?.to_string(),
                        (2, Field::Bytes(list)) => {
                            for (_, item) in fields(list)? {
                                if let Field::Bytes(s) = item {
                                    values.push(text(s)?);
                                }
                            }
                        }
                        _ => {}
                    }
                }
                if let Some(map) = m
                    .entry("extra")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                {
                    map.insert(key, Value::Array(values));
                }
            }
            (7, Field::Bytes(b)) => _ = m.insert("signerName".into(), text(b)?),
            (8, Field::Varint(v)) => {
                _ = m.insert("expirationSeconds".into(), json!(i32::try_from(v).ok()?))
            }
            _ => {}
        }
    }
    Some(Value::Object(m))
}

fn condition(bytes: &[u8]) -> Option<Value> {
    let mut m = Map::new();
    for (n, f) in fields(bytes)? {
        match (n, f) {
            (1, Field::Bytes(b)) => _ = m.insert("type".into(), text(b)?),
            (2, Field::Bytes(b)) => _ = m.insert("reason".into(), text(b)?),
            (3, Field::Bytes(b)) => _ = m.insert("message".into(), text(b)?),
            (4, Field::Bytes(b)) => _ = m.insert("lastUpdateTime".into(), time(b)?),
            (5, Field::Bytes(b)) => _ = m.insert("lastTransitionTime".into(), time(b)?),
            (6, Field::Bytes(b)) => _ = m.insert("status".into(), text(b)?),
            _ => {}
        }
    }
    Some(Value::Object(m))
}

fn status(bytes: &[u8]) -> Option<Value> {
    let mut m = Map::new();
    for (n, f) in fields(bytes)? {
        match (n, f) {
            (1, Field::Bytes(b)) => push(&mut m, "conditions", condition(b)?),
            (2, Field::Bytes(b)) => _ = m.insert("certificate".into(), json!(STANDARD.encode(b))),
            _ => {}
        }
    }
    Some(Value::Object(m))
}

/// Decode a protobuf-encoded `certificates.k8s.io/v1` CertificateSigningRequest into its JSON form.
pub fn decode_csr(body: &[u8]) -> Option<Value> {
    let envelope = body.strip_prefix(MAGIC)?;
    let (mut api_version, mut kind, mut raw) = (Value::Null, Value::Null, None);
    for (n, f) in fields(envelope)? {
        match (n, f) {
            (1, Field::Bytes(b)) => {
                for (tn, tf) in fields(b)? {
                    match (tn, tf) {
                        (1, Field::Bytes(s)) => api_version = text(s)?,
                        (2, Field::Bytes(s)) => kind = text(s)?,
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(b)) => raw = Some(b),
            _ => {}
        }
    }
    let mut obj = json!({"apiVersion": api_version, "kind": kind});
    for (n, f) in fields(raw?)? {
        match (n, f) {
            (1, Field::Bytes(b)) => obj["metadata"] = object_meta(b)?,
            (2, Field::Bytes(b)) => obj["spec"] = spec(b)?,
            (3, Field::Bytes(b)) => obj["status"] = status(b)?,
            _ => {}
        }
    }
    Some(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(n << 3) | 2, u8::try_from(bytes.len()).unwrap_or(0)];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn a_protobuf_csr_with_an_approved_condition_decodes() {
        let type_meta = [
            field(1, b"certificates.k8s.io/v1"),
            field(2, b"CertificateSigningRequest"),
        ]
        .concat();
        let meta = [field(1, b"jane"), field(6, b"42")].concat();
        let cond = [
            field(1, b"Approved"),
            field(6, b"True"),
            field(2, b"KubectlApprove"),
        ]
        .concat();
        let raw = [field(1, &meta), field(3, &field(1, &cond))].concat();
        let body = [MAGIC.to_vec(), field(1, &type_meta), field(2, &raw)].concat();
        let obj = decode_csr(&body).unwrap_or_default();
        assert_eq!(obj["metadata"]["name"], "jane");
        assert_eq!(obj["metadata"]["resourceVersion"], "42");
        assert_eq!(obj["status"]["conditions"][0]["type"], "Approved");
        assert_eq!(obj["status"]["conditions"][0]["reason"], "KubectlApprove");
        assert_eq!(obj["kind"], "CertificateSigningRequest");
    }
}
