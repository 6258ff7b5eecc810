//! The CSR side of writes: the approval write log, and the sandbox playing the standard signer.

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use super::{Call, now};
use crate::csr;
use crate::faults::WriteRecord;
use crate::registry::{self, store_key};
use crate::server::App;
use crate::signer;
use crate::status::{ApiError, ApiResult};

pub(super) fn csr_from(value: &Value) -> ApiResult<CertificateSigningRequest> {
    serde_json::from_value(value.clone()).map_err(|e| ApiError::internal(e.to_string()))
}

pub(super) fn csr_to(csr: &CertificateSigningRequest) -> ApiResult<Value> {
    serde_json::to_value(csr).map_err(|e| ApiError::internal(e.to_string()))
}

pub(super) fn record_approval(app: &App, name: &str, before: &Value, stored: &Value, call: &Call) {
    let conditions: Vec<Value> = stored
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|c| json!({"type": c["type"], "status": c["status"], "reason": c["reason"], "message": c["message"]}))
        .collect();
    let before = before
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let added = conditions
        .iter()
        .filter(|c| !before.iter().any(|b| b["type"] == c["type"]))
        .filter_map(|c| c["type"].as_str().map(str::to_string))
        .collect();
    app.faults.record_write(WriteRecord {
        csr: name.to_string(),
        added,
        conditions,
        user: call.user.username.clone(),
        user_agent: call
            .headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        time: now(),
        resource_version: stored
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    });
}

/// Play the signer for one CSR: issue a certificate, or add `Failed` where the real signer refuses.
pub fn sign(app: &App, name: &str) {
    let result = app
        .store
        .update::<ApiError>(store_key(&registry::CSR), "", name, |current| {
            let mut csr = csr_from(current)?;
            let approved = csr::has_condition(&csr, "Approved");
            let done = csr::has_condition(&csr, "Denied")
                || csr::has_condition(&csr, "Failed")
                || csr
                    .status
                    .as_ref()
                    .is_some_and(|s| s.certificate.as_ref().is_some_and(|c| !c.0.is_empty()));
            if !approved || done || !signer::signs(&csr.spec.signer_name, &app.sign_signers) {
                return Ok(None);
            }
            let refusal = signer::refusal(&csr);
            let request = String::from_utf8_lossy(&csr.spec.request.0).into_owned();
            let usages = csr.spec.usages.clone().unwrap_or_default();
            let expiration = csr.spec.expiration_seconds;
            let status = csr.status.get_or_insert_with(Default::default);
            let failed = |message: String| CertificateSigningRequestCondition {
                type_: "Failed".into(),
                status: "True".into(),
                reason: Some("SignerValidationFailure".into()),
                message: Some(message),
                last_update_time: Some(Time(crate::now())),
                last_transition_time: Some(Time(crate::now())),
            };
            match refusal {
                Some(why) => status
                    .conditions
                    .get_or_insert_with(Vec::new)
                    .push(failed(why)),
                None => match app.ca.issue(&request, &usages, expiration) {
                    Ok(pem) => status.certificate = Some(k8s_openapi::ByteString(pem.into_bytes())),
                    Err(e) => {
                        let why = match std::error::Error::source(&e) {
                            Some(cause) => format!("{e}: {cause}"),
                            None => e.to_string(),
                        };
                        status
                            .conditions
                            .get_or_insert_with(Vec::new)
                            .push(failed(why));
                    }
                },
            }
            let mut next = csr_to(&csr)?;
            if let Some(m) = next["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            Ok(Some(next))
        });
    if let Err(e) = result {
        tracing::warn!(csr = name, error = %e.message, "signing failed");
    }
}
