//! The API floor: what deciding costs when deciding costs nothing.
//!
//! A plain kube-rs client that does, per CSR, exactly the API work the controller does for
//! an approval — it learns of the CSR from a watch, PUTs the `/approval` subresource with
//! the resourceVersion it saw, and creates the same events.k8s.io Event — with the same
//! number of writes in flight and no evaluation, no reflector and no scheduler. The controller's throughput divided by this one's is the share of the
//! API server's capacity the controller turns into decisions.

use std::path::PathBuf;

use futures::StreamExt;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};

use crate::cluster::is_decided;
use crate::{Error, Result};

/// Writes in flight, for the floor and (through `--concurrency`) the controller.
pub const CONCURRENCY: usize = 32;
/// [`CONCURRENCY`] as the controller's command-line argument.
pub const CONCURRENCY_ARG: &str = "32";

/// `csrgate-bench floor`: run until killed.
#[derive(clap::Args)]
pub struct Args {
    /// The kubeconfig of the sandbox or cluster.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Approval writes in flight.
    #[arg(long, default_value_t = CONCURRENCY)]
    concurrency: usize,
}

/// Approves every pending benchmark CSR (label `csrgate.dev/bench`) it sees, forever; the
/// label keeps it off other CSRs of a real cluster.
pub async fn run(args: Args) -> Result<()> {
    let client = crate::cluster::client(&args.kubeconfig, None).await?;
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let events: Api<Event> = Api::namespaced(client, "default");
    // Watch errors are retried with backoff (as the controller's watches are) and skipped.
    watcher(
        csrs.clone(),
        watcher::Config::default().labels(crate::e2e::BENCH_LABEL),
    )
    .default_backoff()
    .applied_objects()
    .filter_map(|event| futures::future::ready(event.ok()))
    .filter(|csr| futures::future::ready(!is_decided(csr)))
    .map(|csr| approve(&csrs, &events, csr))
    .buffer_unordered(args.concurrency)
    .for_each(|()| futures::future::ready(()))
    .await;
    Err(Error::Incomplete("the floor client's watch ended".into()))
}

/// The controller's write for an approval, with its message format, then its event. A
/// failed write is left alone: the benchmark counts decisions, and a retry would be work
/// the controller does not do either.
async fn approve(
    csrs: &Api<CertificateSigningRequest>,
    events: &Api<Event>,
    csr: CertificateSigningRequest,
) {
    let name = csr.name_any();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let message = "csrgate: approved by CsrApprovalPolicy \"bench\" (generation 1)";
    let mut body = csr;
    body.status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            reason: Some("PolicyApproved".into()),
            message: Some(message.into()),
            last_update_time: Some(now.clone()),
            last_transition_time: Some(now),
        });
    if csrs
        .replace_subresource("approval", &name, &PostParams::default(), &body)
        .await
        .is_ok()
    {
        let now = k8s_openapi::jiff::Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{name}.{:x}", now.as_nanosecond())),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            regarding: Some(body.object_ref(&())),
            type_: Some("Normal".into()),
            reason: Some("PolicyApproved".into()),
            action: Some("Approved".into()),
            note: Some(message.into()),
            reporting_controller: Some("csrgate".into()),
            reporting_instance: Some("csrgate".into()),
            ..Event::default()
        };
        let _ = events.create(&PostParams::default(), &event).await;
    }
}
