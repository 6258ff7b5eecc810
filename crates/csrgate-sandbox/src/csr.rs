//! CertificateSigningRequest rules: validation (validation.go), the create/update/approval/status strategies
//! (strategy.go) and the CertificateSubjectRestriction admission plugin.

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use x509_parser::prelude::{FromDer, X509CertificationRequest};

use crate::identity::UserInfo;
use crate::status::Cause;

/// The signer the real API server refuses for new v1 CSRs.
pub const LEGACY_UNKNOWN_SIGNER: &str = "kubernetes.io/legacy-unknown";
/// The client-certificate signer the subject restriction guards.
pub const KUBE_APISERVER_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";

/// Every key usage `certificates.k8s.io/v1` accepts, sorted as the real error message lists them.
pub const VALID_USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

const TRUE_ONLY: &[&str] = &["Approved", "Denied", "Failed"];

/// Which update path a write came through; each may change different parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdatePath {
    /// PUT/PATCH on the object: metadata only.
    Main,
    /// `/status`: conditions other than Approved/Denied, and the certificate.
    Status,
    /// `/approval`: conditions only.
    Approval,
}

/// Parse and check the PEM CSR as `validateCSR` does; the error text is what the API server reports.
pub fn check_request(pem_bytes: &[u8]) -> Result<(), String> {
    let wrong_type = || "PEM block type must be CERTIFICATE REQUEST".to_string();
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_bytes).map_err(|_| wrong_type())?;
    if pem.label != "CERTIFICATE REQUEST" {
        return Err(wrong_type());
    }
    let (_, csr) = X509CertificationRequest::from_der(&pem.contents)
        .map_err(|e| format!("x509: malformed certificate request: {e}"))?;
    check_san_strings(&csr)?;
    csr.verify_signature().map_err(|_| {
        match csr
            .certification_request_info
            .subject_pki
            .algorithm
            .algorithm
            .to_id_string()
            .as_str()
        {
            "1.2.840.113549.1.1.1" => "crypto/rsa: verification error",
            "1.3.101.112" => "x509: Ed25519 verification failure",
            _ => "x509: ECDSA verification failure",
        }
        .to_string()
    })
}

/// Refuses a dNSName, rfc822Name or URI SAN holding non-ASCII bytes, as Go's
/// `parseSANExtension` (crypto/x509/parser.go) does when kube-apiserver parses the request at
/// create: the three are IA5Strings (RFC 5280 §4.2.1.6). The error text is Go's. Only that:
/// Go accepts control characters and spaces here, so the sandbox stores such requests too.
fn check_san_strings(csr: &X509CertificationRequest<'_>) -> Result<(), String> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    let Some(extensions) = csr.requested_extensions() else {
        return Ok(());
    };
    for extension in extensions {
        let ParsedExtension::SubjectAlternativeName(san) = extension else {
            continue;
        };
        for name in &san.general_names {
            let (text, what) = match name {
                GeneralName::DNSName(text) => (text, "dNSName"),
                GeneralName::RFC822Name(text) => (text, "rfc822Name"),
                GeneralName::URI(text) => (text, "uniformResourceIdentifier"),
                _ => continue,
            };
            if !text.is_ascii() {
                return Err(format!("x509: SAN {what} is malformed"));
            }
        }
    }
    Ok(())
}

/// The organizations (O) of the request's subject, or empty when it does not parse.
pub fn request_organizations(pem_bytes: &[u8]) -> Vec<String> {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(pem_bytes) else {
        return Vec::new();
    };
    let Ok((_, csr)) = X509CertificationRequest::from_der(&pem.contents) else {
        return Vec::new();
    };
    csr.certification_request_info
        .subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect()
}

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `ValidateSignerName`: `domain/path`, the domain at least two DNS labels.
pub fn validate_signer_name(signer: &str) -> Vec<Cause> {
    let field = "spec.signerName";
    let value = serde_json::Value::String(signer.to_string());
    if signer.is_empty() {
        return vec![Cause::required(field, "")];
    }
    let Some((domain, path)) = signer.split_once('/') else {
        return vec![Cause::invalid(
            field,
            &value,
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        )];
    };
    let mut causes = Vec::new();
    if domain.len() > 253 {
        causes.push(Cause::too_long(field, 253));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    for label in &labels {
        if !is_dns1123_label(label) {
            causes.push(Cause::invalid(
                field,
                &value,
                &format!(
                    "validating label {label:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
                ),
            ));
        }
    }
    if labels.len() < 2 {
        causes.push(Cause::invalid(
            field,
            &value,
            "should be a domain with at least two segments separated by dots",
        ));
    }
    if path.is_empty() || path.split('/').any(str::is_empty) {
        causes.push(Cause::invalid(
            field,
            &value,
            "validating path: path segments must not be empty",
        ));
    } else if path.len() > 253 + 63 {
        causes.push(Cause::too_long(field, 253 + 63));
    }
    causes
}

fn conditions(
    csr: &CertificateSigningRequest,
) -> &[k8s_openapi::api::certificates::v1::CertificateSigningRequestCondition] {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[])
}

fn count(csr: &CertificateSigningRequest, type_: &str) -> usize {
    conditions(csr).iter().filter(|c| c.type_ == type_).count()
}

/// Whether the CSR carries a condition of this type (with any status).
pub fn has_condition(csr: &CertificateSigningRequest, type_: &str) -> bool {
    count(csr, type_) > 0
}

fn certificate(csr: &CertificateSigningRequest) -> &[u8] {
    csr.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .map_or(&[], |c| &c.0)
}

fn check_certificate(pem_data: &[u8]) -> Result<(), String> {
    if pem_data.is_empty() {
        return Ok(());
    }
    let mut blocks = 0;
    for pem in x509_parser::pem::Pem::iter_from_buffer(pem_data) {
        let Ok(pem) = pem else { break };
        if pem.label != "CERTIFICATE" {
            return Err(format!(
                "only CERTIFICATE PEM blocks are allowed, found {:?}",
                pem.label
            ));
        }
        blocks += 1;
        x509_parser::parse_x509_certificate(&pem.contents)
            .map_err(|e| format!("x509: malformed certificate: {e}"))?;
    }
    if blocks == 0 {
        return Err("must contain at least one CERTIFICATE PEM block".into());
    }
    Ok(())
}

/// `validateCertificateSigningRequest` for a create (`old = None`) or an update through `path`.
pub fn validate(
    csr: &CertificateSigningRequest,
    old: Option<&CertificateSigningRequest>,
    path: UpdatePath,
) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = &csr.spec;
    if let Err(e) = check_request(&spec.request.0) {
        let shown = String::from_utf8_lossy(&spec.request.0).into_owned();
        causes.push(Cause::invalid(
            "spec.request",
            &serde_json::Value::String(shown),
            &e,
        ));
    }
    let usages = spec.usages.as_deref().unwrap_or(&[]);
    if usages.is_empty() {
        causes.push(Cause::required("spec.usages", ""));
    }
    let old_usages = old.and_then(|o| o.spec.usages.as_deref()).unwrap_or(&[]);
    if !old_usages
        .iter()
        .any(|u| !VALID_USAGES.contains(&u.as_str()))
    {
        for (i, u) in usages.iter().enumerate() {
            if !VALID_USAGES.contains(&u.as_str()) {
                causes.push(Cause::not_supported(
                    format!("spec.usages[{i}]"),
                    u,
                    VALID_USAGES,
                ));
            }
        }
    }
    for (i, u) in usages.iter().enumerate() {
        if usages[..i].contains(u) {
            causes.push(Cause::duplicate(format!("spec.usages[{i}]"), u));
        }
    }
    let legacy_allowed = old.is_some_and(|o| o.spec.signer_name == LEGACY_UNKNOWN_SIGNER);
    if spec.signer_name == LEGACY_UNKNOWN_SIGNER && !legacy_allowed {
        causes.push(Cause::invalid(
            "spec.signerName",
            &serde_json::Value::String(spec.signer_name.clone()),
            "the legacy signerName is not allowed via this API version",
        ));
    } else if !legacy_allowed {
        causes.extend(validate_signer_name(&spec.signer_name));
    }
    if let Some(secs) = spec.expiration_seconds
        && secs < 600
    {
        causes.push(Cause::invalid(
            "spec.expirationSeconds",
            &serde_json::Value::from(secs),
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
    let mut seen: Vec<&str> = Vec::new();
    let (mut approved, mut denied) = (false, false);
    for (i, c) in conditions(csr).iter().enumerate() {
        let field = format!("status.conditions[{i}]");
        if c.type_.is_empty() {
            causes.push(Cause::required(format!("{field}.type"), ""));
        }
        let allowed: &[&str] = if TRUE_ONLY.contains(&c.type_.as_str()) {
            &["True"]
        } else {
            &["False", "True", "Unknown"]
        };
        if c.status.is_empty() {
            causes.push(Cause::required(format!("{field}.status"), ""));
        } else if !allowed.contains(&c.status.as_str()) {
            causes.push(Cause::not_supported(
                format!("{field}.status"),
                &c.status,
                allowed,
            ));
        }
        let both_tolerated =
            old.is_some_and(|o| has_condition(o, "Approved") && has_condition(o, "Denied"));
        match c.type_.as_str() {
            "Approved" => {
                approved = true;
                if denied && !both_tolerated {
                    causes.push(Cause::invalid(
                        format!("{field}.type"),
                        &serde_json::Value::String(c.type_.clone()),
                        "Approved and Denied conditions are mutually exclusive",
                    ));
                }
            }
            "Denied" => {
                denied = true;
                if approved && !both_tolerated {
                    causes.push(Cause::invalid(
                        format!("{field}.type"),
                        &serde_json::Value::String(c.type_.clone()),
                        "Approved and Denied conditions are mutually exclusive",
                    ));
                }
            }
            _ => {}
        }
        if seen.contains(&c.type_.as_str()) {
            causes.push(Cause::duplicate(format!("{field}.type"), &c.type_));
        }
        seen.push(&c.type_);
    }
    let unchanged_cert = old.is_some_and(|o| certificate(o) == certificate(csr));
    if !unchanged_cert && let Err(e) = check_certificate(certificate(csr)) {
        causes.push(Cause::invalid(
            "status.certificate",
            &serde_json::Value::String("<certificate data>".into()),
            &e,
        ));
    }
    if let Some(old) = old {
        for t in ["Approved", "Denied", "Failed"] {
            if count(csr, t) < count(old, t) {
                causes.push(Cause::forbidden(
                    "status.conditions",
                    &format!("updates may not remove a condition of type {t:?}"),
                ));
            }
        }
        if path != UpdatePath::Approval {
            for t in ["Approved", "Denied"] {
                let (o, n) = (count(old, t), count(csr, t));
                let pick = |x: &CertificateSigningRequest| {
                    conditions(x)
                        .iter()
                        .filter(|c| c.type_ == t)
                        .cloned()
                        .collect::<Vec<_>>()
                };
                if n > o {
                    causes.push(Cause::forbidden(
                        "status.conditions",
                        &format!("updates may not add a condition of type {t:?}"),
                    ));
                } else if n == o && pick(old) != pick(csr) {
                    causes.push(Cause::forbidden(
                        "status.conditions",
                        &format!("updates may not modify a condition of type {t:?}"),
                    ));
                }
            }
        }
        if certificate(csr) != certificate(old) {
            if path != UpdatePath::Status {
                causes.push(Cause::forbidden(
                    "status.certificate",
                    "updates may not set certificate content",
                ));
            } else if !certificate(old).is_empty() {
                causes.push(Cause::forbidden(
                    "status.certificate",
                    "updates may not modify existing certificate content",
                ));
            }
        }
    }
    causes
}

/// `PrepareForCreate`: requester identity from the caller, status emptied.
pub fn prepare_for_create(csr: &mut CertificateSigningRequest, user: &UserInfo) {
    csr.spec.username = Some(user.username.clone());
    csr.spec.uid = user.uid.clone();
    csr.spec.groups = Some(user.groups.clone());
    csr.spec.extra = if user.extra.is_empty() {
        None
    } else {
        Some(user.extra.clone())
    };
    csr.status = None;
}

/// `PrepareForUpdate` of each path: keep what that path may not change from `old`, fill in condition times.
pub fn prepare_for_update(
    csr: &mut CertificateSigningRequest,
    old: &CertificateSigningRequest,
    path: UpdatePath,
) {
    csr.spec = old.spec.clone();
    match path {
        UpdatePath::Main => csr.status = old.status.clone(),
        UpdatePath::Status => populate_condition_timestamps(csr, old),
        UpdatePath::Approval => {
            let conditions = csr.status.as_ref().and_then(|s| s.conditions.clone());
            let mut status = old.status.clone().unwrap_or_default();
            status.conditions = conditions;
            csr.status = Some(status);
            populate_condition_timestamps(csr, old);
        }
    }
    if csr
        .status
        .as_ref()
        .is_some_and(|s| *s == CertificateSigningRequestStatus::default())
    {
        csr.status = None;
    }
}

fn populate_condition_timestamps(
    csr: &mut CertificateSigningRequest,
    old: &CertificateSigningRequest,
) {
    let now = Time(crate::now());
    let old_conditions = conditions(old).to_vec();
    let Some(list) = csr.status.as_mut().and_then(|s| s.conditions.as_mut()) else {
        return;
    };
    for c in list.iter_mut() {
        if c.last_update_time.is_none() {
            c.last_update_time = Some(now.clone());
        }
        if c.last_transition_time.is_none() {
            let kept = old_conditions
                .iter()
                .find(|o| {
                    o.type_ == c.type_ && o.status == c.status && o.last_transition_time.is_some()
                })
                .and_then(|o| o.last_transition_time.clone());
            c.last_transition_time = Some(kept.unwrap_or_else(|| now.clone()));
        }
    }
}

/// CertificateSubjectRestriction: the reason a create is forbidden, if it is.
pub fn subject_restriction(csr: &CertificateSigningRequest) -> Option<String> {
    if csr.spec.signer_name != KUBE_APISERVER_CLIENT_SIGNER {
        return None;
    }
    request_organizations(&csr.spec.request.0)
        .iter()
        .any(|o| o == "system:masters")
        .then(|| format!("use of {KUBE_APISERVER_CLIENT_SIGNER} signer with system:masters group is not allowed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signer_name_without_a_path_is_invalid() {
        let causes = validate_signer_name("example.com");
        assert_eq!(causes.len(), 1);
        assert!(
            causes[0].message.contains("example.com/signer-name"),
            "{causes:?}"
        );
    }

    #[test]
    fn a_single_label_domain_is_invalid() {
        let causes = validate_signer_name("example/x");
        assert!(
            causes
                .iter()
                .any(|c| c.message.contains("at least two segments")),
            "{causes:?}"
        );
    }

    #[test]
    fn a_good_signer_name_passes() {
        assert!(validate_signer_name("example.com/my-signer").is_empty());
        assert!(validate_signer_name("kubernetes.io/kube-apiserver-client").is_empty());
    }

    /// Issue #11: kube-apiserver refuses raw UTF-8 in a dNSName at create; so does the sandbox.
    #[test]
    fn a_request_with_a_raw_utf8_dns_name_is_refused_as_kube_apiserver_refuses_it() {
        let manifest = include_str!("../../../tests/cases/utf8-dnsname/web-idn-utf8.yaml");
        let request = manifest
            .lines()
            .find_map(|l| l.trim().strip_prefix("request: "))
            .unwrap();
        use base64::Engine as _;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(request)
            .unwrap();
        assert_eq!(
            check_request(&pem),
            Err("x509: SAN dNSName is malformed".to_string())
        );
        let manifest = include_str!("../../../tests/cases/utf8-dnsname/web-idn-alabel.yaml");
        let request = manifest
            .lines()
            .find_map(|l| l.trim().strip_prefix("request: "))
            .unwrap();
        let pem = base64::engine::general_purpose::STANDARD
            .decode(request)
            .unwrap();
        assert_eq!(check_request(&pem), Ok(()));
    }

    #[test]
    fn a_certificate_block_is_not_a_request() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(
            check_request(pem),
            Err("PEM block type must be CERTIFICATE REQUEST".to_string())
        );
    }
}
