//! Whether this controller may record decisions for a policy's signers, asked of the API
//! server's authorizer with a SelfSubjectAccessReview.
//!
//! The API server accepts an Approved or Denied condition only from a user allowed to
//! `approve` the `signers` resource of `certificates.k8s.io` named by the CSR's signerName
//! or by `<domain>/*` (kubernetes `plugin/pkg/admission/certificates/approval`). A policy
//! for a signer csrgate may not approve for would evaluate but every write would be refused
//! with 403, so the policy's status says so before the first CSR arrives.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

/// The policy condition type reporting whether csrgate may approve for every signer the
/// policy names.
pub const CONDITION_AUTHORIZED: &str = "Authorized";
/// Reason of `Authorized=True`.
pub const REASON_APPROVE_PERMITTED: &str = "ApprovePermitted";
/// Reason of `Authorized=False`.
pub const REASON_APPROVE_FORBIDDEN: &str = "ApproveForbidden";

/// What the authorizer answered for a policy's signers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// csrgate may approve for every signer the policy names.
    Permitted,
    /// It may not approve for these signers (each with the authorizer's reason, often empty).
    Forbidden(Vec<(String, String)>),
}

impl Authorization {
    /// The condition's status, reason and message.
    pub fn condition(&self) -> (&'static str, &'static str, String) {
        match self {
            Self::Permitted => (
                "True",
                REASON_APPROVE_PERMITTED,
                "csrgate may approve and deny CSRs of every signer this policy names".to_owned(),
            ),
            Self::Forbidden(signers) => (
                "False",
                REASON_APPROVE_FORBIDDEN,
                format!(
                    "csrgate may not approve for {}: the API server will refuse its decisions (403) \
                     and those CSRs stay pending; grant \"approve\" on certificates.k8s.io signers \
                     with these resourceNames",
                    signers
                        .iter()
                        .map(|(signer, reason)| if reason.is_empty() {
                            format!("{signer:?}")
                        } else {
                            format!("{signer:?} ({reason})")
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }
    }
}

/// How long an answer of the authorizer is reused: RBAC changes are seen within this time,
/// and a thousand policies of a few signers cost a few reviews, not thousands.
const REVIEW_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Answers of the authorizer per signer name, reused for [`REVIEW_TTL`].
#[derive(Default)]
pub struct SignerReviews {
    answers:
        std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Option<String>)>>,
}

impl SignerReviews {
    /// Whether this client may `approve` `signers` of each name: one SelfSubjectAccessReview
    /// per signer not asked about in the last [`REVIEW_TTL`].
    ///
    /// # Errors
    /// A review could not be made (an API server without the authorization API, a network
    /// error); the caller then reports nothing rather than guess.
    pub async fn review(
        &self,
        client: &kube::Client,
        signer_names: &[String],
    ) -> Result<Authorization, kube::Error> {
        let mut forbidden = Vec::new();
        for signer in signer_names {
            let cached = self.answers.lock().ok().and_then(|answers| {
                answers
                    .get(signer)
                    .filter(|(at, _)| at.elapsed() < REVIEW_TTL)
                    .map(|(_, denial)| denial.clone())
            });
            let denial = match cached {
                Some(denial) => denial,
                None => {
                    let denial = ask(client, signer).await?;
                    if let Ok(mut answers) = self.answers.lock() {
                        answers.insert(signer.clone(), (std::time::Instant::now(), denial.clone()));
                    }
                    denial
                }
            };
            if let Some(reason) = denial {
                forbidden.push((signer.clone(), reason));
            }
        }
        Ok(if forbidden.is_empty() {
            Authorization::Permitted
        } else {
            Authorization::Forbidden(forbidden)
        })
    }
}

/// One SelfSubjectAccessReview: `None` when allowed, else the authorizer's reason.
async fn ask(client: &kube::Client, signer: &str) -> Result<Option<String>, kube::Error> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some("certificates.k8s.io".to_owned()),
                resource: Some("signers".to_owned()),
                verb: Some("approve".to_owned()),
                name: Some(signer.to_owned()),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let status = api
        .create(&PostParams::default(), &review)
        .await?
        .status
        .unwrap_or_default();
    Ok((!status.allowed).then(|| status.reason.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forbidden_signer_is_named_with_the_grant_that_fixes_it() {
        let (status, reason, message) =
            Authorization::Forbidden(vec![("example.com/x".into(), String::new())]).condition();
        assert_eq!((status, reason), ("False", "ApproveForbidden"));
        assert!(message.contains("\"example.com/x\""), "{message}");
        assert!(message.contains("grant \"approve\""), "{message}");
        assert_eq!(Authorization::Permitted.condition().0, "True");
    }
}
