//! The `authorizer` variable online: each check of a CSR's requestor is a SubjectAccessReview.
//!
//! One [`AccessReviews`] serves one decision. The engine calls it from the evaluating thread
//! (tokio's blocking pool, in an evaluation slot; `csrgate explain` calls it from its main
//! thread), never from an async task, so it waits for the API server there with
//! [`tokio::runtime::Handle::block_on`] and no runtime worker is held. The runtime must be a
//! multi-thread one, whose workers drive the I/O meanwhile. In the controller the decision's
//! evaluation slot is given back for the wait ([`AccessReviews::releasing`]), so other CSRs
//! evaluate meanwhile and reviews of several CSRs are in flight at once. The engine caches answers within the decision and asks at most
//! `csrgate_policy::MAX_AUTHORIZATION_CHECKS` distinct checks; each review here is bounded
//! by [`REVIEW_TIMEOUT`].
//!
//! A review that fails (API error, timeout, or an `evaluationError` without `allowed`) answers as errored (`errored()` is true,
//! `allowed()` an evaluation error), is counted in
//! `csrgate_api_errors_total{verb="create_subjectaccessreview"}`, and is remembered: the
//! reconciler then writes nothing for this decision and retries the CSR with backoff
//! (`csrgate_reconcile_errors_total{error="AccessReviewFailed"}`), so a transient failure
//! neither approves nor denies.
//!
//! RBAC: `create` on `subjectaccessreviews.authorization.k8s.io` (deploy/ grants it).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use csrgate_policy::{Authorizer, review_error};
use k8s_openapi::api::authorization::v1::{
    SubjectAccessReview, SubjectAccessReviewSpec, SubjectAccessReviewStatus,
};
use kube::api::{Api, PostParams};

use crate::Metrics;
use crate::evaluations::HeldSlot;

/// Longest wait for one SubjectAccessReview.
pub const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// SubjectAccessReviews for one decision.
pub struct AccessReviews {
    client: kube::Client,
    runtime: tokio::runtime::Handle,
    metrics: Arc<Metrics>,
    /// The evaluation slot given back while a review is waited for.
    slot: Option<Arc<HeldSlot>>,
    /// The first failed review's error, if any.
    failure: Mutex<Option<String>>,
}

impl AccessReviews {
    /// Reviews through `client`, waited for on `runtime` (the controller's).
    pub fn new(
        client: kube::Client,
        runtime: tokio::runtime::Handle,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            runtime,
            metrics,
            slot: None,
            failure: Mutex::default(),
        }
    }

    /// Gives `slot` back while each review is waited for (see `crate::evaluations`).
    pub(crate) fn releasing(self, slot: Arc<HeldSlot>) -> Self {
        Self {
            slot: Some(slot),
            ..self
        }
    }

    /// Why a review of this decision failed, if one did.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn failed(&self, message: String) -> SubjectAccessReviewStatus {
        self.metrics
            .api_error(crate::metrics::ApiCall::CreateSubjectAccessReview);
        self.failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert_with(|| message.clone());
        review_error(&message)
    }
}

impl Authorizer for AccessReviews {
    fn review(&self, spec: &SubjectAccessReviewSpec) -> SubjectAccessReviewStatus {
        // After one failure this decision is not written anyway: do not wait on more.
        if let Some(first) = self.failure() {
            return review_error(&format!("not asked after an earlier failure: {first}"));
        }
        let review = SubjectAccessReview {
            spec: spec.clone(),
            ..SubjectAccessReview::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        // The timer is made inside the runtime's context: a thread outside it (`csrgate
        // explain`'s main thread) has none of its own.
        let create = async {
            tokio::time::timeout(REVIEW_TIMEOUT, api.create(&PostParams::default(), &review)).await
        };
        let created = match &self.slot {
            Some(slot) => slot.released_while(&self.runtime, create),
            None => self.runtime.block_on(create),
        };
        match created {
            Ok(Ok(answer)) => match answer.status {
                // An authorizer of the API server failed (a webhook, say): also worth a retry.
                Some(status) if !status.allowed && status.evaluation_error.is_some() => {
                    let error = status.evaluation_error.unwrap_or_default();
                    self.failed(format!("SubjectAccessReview evaluation error: {error}"))
                }
                Some(status) => status,
                None => self.failed("the SubjectAccessReview came back without a status".into()),
            },
            Ok(Err(error)) => self.failed(format!("SubjectAccessReview failed: {error}")),
            Err(_) => self.failed(format!(
                "SubjectAccessReview timed out after {} s",
                REVIEW_TIMEOUT.as_secs()
            )),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An API server answering SubjectAccessReviews with `status` (and `allowed` in the body
    /// when 201); returns the client and the bodies it received.
    pub(crate) async fn api_server(
        status: u16,
        allowed: bool,
    ) -> (kube::Client, Arc<Mutex<Vec<String>>>) {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&bodies);
        let app = axum::Router::new().route(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            axum::routing::post(move |body: String| {
                seen.lock().unwrap().push(body.clone());
                let mut review: serde_json::Value = serde_json::from_str(&body).unwrap();
                review["status"] = serde_json::json!({"allowed": allowed, "reason": "because"});
                async move {
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        review.to_string(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = kube::Config::new(url.parse().unwrap());
        (kube::Client::try_from(config).unwrap(), bodies)
    }

    fn spec() -> SubjectAccessReviewSpec {
        serde_json::from_value(serde_json::json!({
            "user": "system:bootstrap:abcdef",
            "groups": ["system:bootstrappers", "system:authenticated"],
            "resourceAttributes": {"group": "certificates.k8s.io", "version": "*",
                "resource": "certificatesigningrequests", "subresource": "nodeclient", "verb": "create"},
        }))
        .unwrap()
    }

    /// Asks as the engine does: from a blocking thread.
    async fn ask(reviews: Arc<AccessReviews>) -> SubjectAccessReviewStatus {
        tokio::task::spawn_blocking(move || reviews.review(&spec()))
            .await
            .unwrap()
    }

    #[test]
    fn a_thread_outside_the_runtime_can_ask_as_csrgate_explain_does() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (client, _) = runtime.block_on(api_server(201, true));
        let reviews = AccessReviews::new(
            client,
            runtime.handle().clone(),
            Arc::new(Metrics::default()),
        );
        let answer = reviews.review(&spec());
        assert!(answer.allowed, "{answer:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_check_is_a_subject_access_review_of_the_requestor() {
        let (client, bodies) = api_server(201, true).await;
        let metrics = Arc::new(Metrics::default());
        let reviews = Arc::new(AccessReviews::new(
            client,
            tokio::runtime::Handle::current(),
            Arc::clone(&metrics),
        ));
        let answer = ask(Arc::clone(&reviews)).await;
        assert!(answer.allowed);
        assert_eq!(answer.reason.as_deref(), Some("because"));
        assert_eq!(reviews.failure(), None);
        let sent: serde_json::Value = serde_json::from_str(&bodies.lock().unwrap()[0]).unwrap();
        assert_eq!(sent["spec"]["user"], "system:bootstrap:abcdef");
        assert_eq!(
            sent["spec"]["resourceAttributes"]["subresource"],
            "nodeclient"
        );
        assert!(!metrics.encode().contains("create_subjectaccessreview"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_failed_review_answers_errored_is_counted_and_remembered() {
        let (client, _) = api_server(500, true).await;
        let metrics = Arc::new(Metrics::default());
        let reviews = Arc::new(AccessReviews::new(
            client,
            tokio::runtime::Handle::current(),
            Arc::clone(&metrics),
        ));
        let answer = ask(Arc::clone(&reviews)).await;
        assert!(!answer.allowed);
        let error = answer.evaluation_error.unwrap();
        assert!(error.starts_with("SubjectAccessReview failed"), "{error}");
        assert_eq!(reviews.failure(), Some(error.clone()));
        // The next check of the same decision is not asked.
        let next = ask(Arc::clone(&reviews)).await;
        assert_eq!(
            next.evaluation_error,
            Some(format!("not asked after an earlier failure: {error}"))
        );
        assert!(
            metrics
                .encode()
                .contains("csrgate_api_errors_total{verb=\"create_subjectaccessreview\"} 1"),
            "{}",
            metrics.encode()
        );
    }

    /// An API server that allows every SubjectAccessReview, but answers only once two
    /// are waiting: a test of reviews asked at once.
    pub(crate) async fn api_server_answering_pairs() -> kube::Client {
        let arrived = Arc::new(tokio::sync::Barrier::new(2));
        let app = axum::Router::new().route(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            axum::routing::post(move |body: String| {
                let arrived = Arc::clone(&arrived);
                async move {
                    arrived.wait().await;
                    let mut review: serde_json::Value = serde_json::from_str(&body).unwrap();
                    review["status"] = serde_json::json!({"allowed": true});
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        review.to_string(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reviews_of_one_signer_are_in_flight_at_once_without_their_slots() {
        // With two slots one signer holds at most one, so the second review is only asked
        // if the first, waiting, gave its slot back.
        let client = api_server_answering_pairs().await;
        let slots = Arc::new(crate::evaluations::EvaluationSlots::new(2));
        let both = async {
            let mut evaluations = Vec::new();
            for _ in 0..2 {
                // The second waits here for the first's slot.
                let slot = Arc::new(HeldSlot::acquire(Arc::clone(&slots), "kubelet").await);
                let reviews = AccessReviews::new(
                    client.clone(),
                    tokio::runtime::Handle::current(),
                    Arc::new(Metrics::default()),
                )
                .releasing(slot);
                evaluations.push(tokio::spawn(ask(Arc::new(reviews))));
            }
            futures::future::join_all(evaluations).await
        };
        let answers = tokio::time::timeout(Duration::from_secs(10), both)
            .await
            .expect("both reviews were asked at once");
        for answer in answers {
            let answer = answer.unwrap();
            assert!(answer.allowed, "{answer:?}");
        }
    }
}
