//! Creates: the metadata the server sets (name or generateName, uid, creation time, generation,
//! namespace), name rules per resource, and each resource's own create rules.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::{Value, json};

use super::decode::{decode, parse_body};
use super::meta::{object_meta, set_object_meta};
use super::signing::{csr_from, csr_to};
use super::{Call, Target, check_verb, json_response, manager, store_error, warning_headers};
use crate::csr::{self, UpdatePath};
use crate::identity::UserInfo;
use crate::registry::{self, Behavior, Generation, ResourceDef, store_key};
use crate::server::App;
use crate::status::{ApiError, ApiResult, Cause};

/// A random RFC 4122 version 4 UUID, as `metadata.uid`.
pub(crate) fn new_uid() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut bytes = [0u8; 16];
    for chunk in bytes.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_i128(crate::now().as_nanosecond());
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let uid = new_uid();
    uid.bytes()
        .filter(u8::is_ascii_hexdigit)
        .take(5)
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn validate_name(def: &ResourceDef, name: &str, obj: &Value) -> Vec<Cause> {
    let field = "metadata.name";
    let value = json!(name);
    match def.behavior {
        Behavior::Csr => {
            if name == "." || name == ".." {
                vec![Cause::invalid(
                    field,
                    &value,
                    &format!("may not be '{name}'"),
                )]
            } else if name.contains('/') || name.contains('%') {
                let bad = if name.contains('/') { "/" } else { "%" };
                vec![Cause::invalid(
                    field,
                    &value,
                    &format!("may not contain '{bad}'"),
                )]
            } else {
                vec![]
            }
        }
        Behavior::Namespace if name.contains('.') || !is_dns_subdomain(name) || name.len() > 63 => {
            vec![Cause::invalid(
                field,
                &value,
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            )]
        }
        Behavior::Crd => crate::crd::name_causes(
            name,
            obj.pointer("/spec/names/plural")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            obj.pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        ),
        _ if !is_dns_subdomain(name) => vec![Cause::invalid(
            field,
            &value,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        )],
        _ => vec![],
    }
}

/// `POST` on a collection: decode, set the server's metadata, apply the resource's rules, store
/// (or, under `dryRun=All`, answer without storing). SubjectAccessReviews are answered, not stored.
pub(super) fn create(app: &Arc<App>, target: &Target, call: &Call) -> ApiResult<Response> {
    let def = &target.def;
    check_verb(def, "create")?;
    if def.namespaced && target.namespace.is_none() {
        return Err(ApiError::method_not_allowed());
    }
    let (mut obj, unknown) = decode(def, parse_body(call)?, &call.query)?;
    if def.behavior == Behavior::Sar {
        let answer = crate::sar::review(obj, &app.sar_rules);
        return Ok(json_response(StatusCode::CREATED, &answer));
    }
    let ns = target.namespace.clone().unwrap_or_default();
    if def.namespaced
        && app
            .store
            .get(store_key(&registry::NAMESPACE), "", &ns)
            .is_none()
    {
        return Err(ApiError::not_found(&registry::NAMESPACE, &ns));
    }
    let mut meta = object_meta(&obj)?;
    let name = prepare_meta(def, &mut meta, &ns)?;
    set_object_meta(&mut obj, &meta)?;
    let obj = apply_create_rules(def, obj, &name, &call.user)?;
    if call.query.get("dryRun") == Some("All") {
        return Ok(warning_headers(
            json_response(StatusCode::CREATED, &obj),
            &unknown,
        ));
    }
    let stored = app
        .store
        .create(store_key(def), &ns, &name, obj)
        .map_err(|e| store_error(def, &name, e))?;
    app.managed.record(None, &stored, &manager(call), None);
    Ok(warning_headers(
        json_response(StatusCode::CREATED, &stored),
        &unknown,
    ))
}

/// Set what the server owns in a new object's metadata (namespace, name from `generateName`, uid,
/// creation time, generation; no deletion time or managed fields) and return the name.
///
/// # Errors
/// 400 for a namespace other than the URL's or a resourceVersion; 422 without name or generateName.
fn prepare_meta(def: &ResourceDef, meta: &mut ObjectMeta, ns: &str) -> ApiResult<String> {
    if def.namespaced {
        if meta
            .namespace
            .as_deref()
            .is_some_and(|n| !n.is_empty() && n != ns)
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        meta.namespace = Some(ns.to_string());
    } else {
        meta.namespace = None;
    }
    if meta
        .resource_version
        .as_deref()
        .is_some_and(|rv| !rv.is_empty())
    {
        return Err(ApiError::bad_request(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    let name = match (meta.name.as_deref(), meta.generate_name.as_deref()) {
        (Some(n), _) if !n.is_empty() => n.to_string(),
        (_, Some(prefix)) if !prefix.is_empty() => format!("{prefix}{}", random_suffix()),
        _ => {
            return Err(ApiError::invalid(
                def,
                "",
                &[Cause::required(
                    "metadata.name",
                    "name or generateName is required",
                )],
            ));
        }
    };
    meta.name = Some(name.clone());
    meta.uid = Some(new_uid());
    meta.creation_timestamp = Some(Time(crate::now()));
    meta.deletion_timestamp = None;
    meta.managed_fields = None;
    if def.generation != Generation::Absent {
        meta.generation = Some(1);
    }
    Ok(name)
}

/// The name rules, then each resource's create rules: status dropped where it is a subresource of a
/// CRD-served resource or a CRD, a CRD established, a CSR's strategy, validation and admission, a
/// Node's not-ready taint.
///
/// # Errors
/// 422 with every cause found, 403 from the CSR subject restriction.
fn apply_create_rules(
    def: &ResourceDef,
    mut obj: Value,
    name: &str,
    user: &UserInfo,
) -> ApiResult<Value> {
    let mut causes = validate_name(def, name, &obj);
    if matches!(def.behavior, Behavior::Custom | Behavior::Crd)
        && def.has_subresource("status")
        && let Some(map) = obj.as_object_mut()
    {
        map.remove("status");
    }
    match def.behavior {
        Behavior::Crd if causes.is_empty() => obj = crate::crd::prepare_new(obj)?,
        Behavior::Csr => {
            let mut csr = csr_from(&obj)?;
            csr::prepare_for_create(&mut csr, user);
            causes.extend(csr::validate(&csr, None, UpdatePath::Main));
            if causes.is_empty()
                && let Some(why) = csr::subject_restriction(&csr)
            {
                return Err(ApiError::forbidden(def, name, &why));
            }
            obj = csr_to(&csr)?;
        }
        Behavior::Node => crate::node::taint_new_node(&mut obj),
        _ => {}
    }
    if causes.is_empty() {
        Ok(obj)
    } else {
        Err(ApiError::invalid(def, name, &causes))
    }
}
