//! A CertificateSigningRequest's review state, read as kube-controller-manager reads it.
//!
//! A condition counts only when its `status` is `"True"`: kube-controller-manager's
//! `certificates.GetCertApprovalCondition` and `HasTrueCondition` (pkg/controller/certificates)
//! skip the others, and so do the controller, the CLI, the bench and the tests through these
//! functions.

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};

/// The condition types of certificates/v1 that end a CSR's review.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionType {
    /// An approver allowed the request; a signer may now issue.
    Approved,
    /// An approver refused the request.
    Denied,
    /// The signer could not issue the certificate.
    Failed,
}

impl ConditionType {
    /// Every type, in the order they are looked for.
    pub const ALL: [Self; 3] = [Self::Approved, Self::Denied, Self::Failed];

    /// The `type` string of the condition (`Approved`, `Denied`, `Failed`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "Approved",
            Self::Denied => "Denied",
            Self::Failed => "Failed",
        }
    }
}

impl std::fmt::Display for ConditionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The CSR's conditions, empty when it has no status.
fn conditions(csr: &CertificateSigningRequest) -> &[CertificateSigningRequestCondition] {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
}

/// The first condition of one of `types` whose status is `"True"`.
pub fn true_condition<'a>(
    csr: &'a CertificateSigningRequest,
    types: &[ConditionType],
) -> Option<&'a CertificateSigningRequestCondition> {
    conditions(csr)
        .iter()
        .find(|c| c.status == "True" && types.iter().any(|t| c.type_ == t.as_str()))
}

/// The approver's decision: the first `Approved` or `Denied` condition that is true.
pub fn decision(csr: &CertificateSigningRequest) -> Option<&CertificateSigningRequestCondition> {
    true_condition(csr, &[ConditionType::Approved, ConditionType::Denied])
}

/// The condition that ended the review: the first true `Approved`, `Denied` or `Failed`.
pub fn final_condition(
    csr: &CertificateSigningRequest,
) -> Option<&CertificateSigningRequestCondition> {
    true_condition(csr, &ConditionType::ALL)
}

/// Whether nothing is left for an approver to decide: an `Approved`, `Denied` or `Failed`
/// condition is true (the guard of kube-controller-manager's approvers).
pub fn is_decided(csr: &CertificateSigningRequest) -> bool {
    final_condition(csr).is_some()
}

/// Whether the CSR is approved and not denied (`certificates.IsCertificateRequestApproved`).
pub fn is_approved(csr: &CertificateSigningRequest) -> bool {
    true_condition(csr, &[ConditionType::Approved]).is_some()
        && true_condition(csr, &[ConditionType::Denied]).is_none()
}

/// The issued certificate chain (`status.certificate`, PEM), when the signer wrote a non-empty one.
pub fn certificate(csr: &CertificateSigningRequest) -> Option<&[u8]> {
    csr.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .map(|c| c.0.as_slice())
        .filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::certificates::v1::CertificateSigningRequestStatus;

    fn with(conditions: &[(&str, &str)], certificate: Option<&[u8]>) -> CertificateSigningRequest {
        CertificateSigningRequest {
            status: Some(CertificateSigningRequestStatus {
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(type_, status)| CertificateSigningRequestCondition {
                            type_: (*type_).into(),
                            status: (*status).into(),
                            reason: Some(format!("{type_}Reason")),
                            ..CertificateSigningRequestCondition::default()
                        })
                        .collect(),
                ),
                certificate: certificate.map(|c| ByteString(c.to_vec())),
            }),
            ..CertificateSigningRequest::default()
        }
    }

    #[test]
    fn a_condition_counts_only_when_its_status_is_true() {
        for type_ in ConditionType::ALL {
            assert!(
                is_decided(&with(&[(type_.as_str(), "True")], None)),
                "{type_}"
            );
            assert!(
                !is_decided(&with(&[(type_.as_str(), "False")], None)),
                "{type_}"
            );
            assert!(
                !is_decided(&with(&[(type_.as_str(), "Unknown")], None)),
                "{type_}"
            );
        }
        assert!(!is_decided(&CertificateSigningRequest::default()));
        assert!(!is_decided(&with(&[("Pending", "True")], None)));
    }

    #[test]
    fn the_decision_skips_failed_and_untrue_conditions() {
        let csr = with(
            &[
                ("Denied", "False"),
                ("Failed", "True"),
                ("Approved", "True"),
            ],
            None,
        );
        assert_eq!(decision(&csr).unwrap().type_, "Approved");
        assert_eq!(final_condition(&csr).unwrap().type_, "Failed");
    }

    #[test]
    fn approved_and_denied_is_not_approved() {
        assert!(is_approved(&with(&[("Approved", "True")], None)));
        assert!(!is_approved(&with(
            &[("Approved", "True"), ("Denied", "True")],
            None
        )));
        assert!(!is_approved(&with(&[("Approved", "False")], None)));
    }

    #[test]
    fn an_empty_certificate_is_not_issued() {
        assert_eq!(certificate(&with(&[], Some(b"pem"))), Some(&b"pem"[..]));
        assert_eq!(certificate(&with(&[], Some(b""))), None);
        assert_eq!(certificate(&with(&[], None)), None);
    }
}
