//! Wiring: health server, leader election, the policy controller, the Node reflector and the
//! CSR controller, and a graceful shutdown that lets in-flight writes finish.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use csrgate_api::CsrApprovalPolicy;
use futures::future::{BoxFuture, Shared};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::Client;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::cache::PolicyCache;
use crate::cached_node::CachedNode;
use crate::csr::{self, CsrContext};
use crate::due;
use crate::events::Publisher;
use crate::health::{self, Readiness};
pub use crate::leader::LeaseSettings;
use crate::nodes::PendingByNode;
use crate::pending::PendingCap;
use crate::policy::{self, PolicyContext};
use crate::queue::{self, WorkQueue};
use crate::watches::{self, WatchHealth};
use crate::{Error, Metrics, Result, leader};

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub metrics_addr: SocketAddr,
    /// Leader election settings; `None` runs as the only replica.
    pub leader_election: Option<LeaseSettings>,
    /// Treat every policy as Audit: decide and record, never write a condition.
    pub dry_run: bool,
    /// Watch Nodes for the `node` variable (off: `node` is always null).
    pub watch_nodes: bool,
    /// How many CSRs are decided at once (the work queue's workers; 0 counts as 1, above
    /// [`MAX_CONCURRENCY`] as that); the others wait their turn in the order they came due
    /// (see `crate::queue`).
    pub concurrency: u16,
    /// The per-signer cap on pending CSRs above which approvals are held (`None`: no cap).
    pub max_pending_per_signer: Option<std::num::NonZeroUsize>,
    /// The name events are reported under (the deployment's name).
    pub reporter: String,
    /// The instance events are reported as (`reportingInstance`): the pod's name, which the
    /// binary reads from `POD_NAME`; `None` reports as [`Config::reporter`].
    pub instance: Option<String>,
}

type ShutdownSignal = Shared<BoxFuture<'static, ()>>;

/// Runs the operator until `shutdown` completes (then lets in-flight work finish) or, under
/// leader election, until the lease is lost.
///
/// # Errors
/// The metrics address cannot be bound, leader election fails, or the lease is lost.
pub async fn run(
    client: Client,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(SocketAddr) + Send,
) -> Result<()> {
    let shutdown: ShutdownSignal = shutdown.boxed().shared();
    let metrics = Arc::new(Metrics::default());
    let readiness = Arc::new(Readiness::default());
    let (metrics_addr, server) = health::serve(
        config.metrics_addr,
        Arc::clone(&metrics),
        Arc::clone(&readiness),
    )
    .await?;
    on_listening(metrics_addr);
    info!(%metrics_addr, dry_run = config.dry_run, "csrgate controller starting");
    let server = tokio::spawn(server);

    let result = match &config.leader_election {
        None => {
            readiness.role_known.store(true, Ordering::Relaxed);
            readiness.leader.store(true, Ordering::Relaxed);
            run_controllers(
                client,
                &config,
                metrics,
                Arc::clone(&readiness),
                shutdown,
                None,
            )
            .await
        }
        Some(settings) => {
            run_as_leader(client, &config, settings, metrics, readiness, shutdown).await
        }
    };
    server.abort();
    result
}

/// Stands by until this replica holds the Lease (or shutdown), then runs the controllers
/// until shutdown or until the Lease is lost.
///
/// # Errors
/// Leader election fails, or the Lease is lost.
async fn run_as_leader(
    client: Client,
    config: &Config,
    settings: &LeaseSettings,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: ShutdownSignal,
) -> Result<()> {
    let mut leading = leader::elect(client.clone(), settings, Arc::clone(&readiness)).await?;
    // Stand by until this replica holds the lease, or shutdown.
    loop {
        if *leading.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = leading.changed() => if changed.is_err() { return Err(Error::LostLeadership) },
            () = shutdown.clone() => return Ok(()),
        }
    }
    readiness.leader.store(true, Ordering::Relaxed);
    info!("became the leader");
    let lease = Arc::new(leader::LeaseCheck::new(
        client.clone(),
        settings.clone(),
        leading.clone(),
    ));
    let checked = Arc::clone(&lease);
    // Lost when the election says so, or when a check before a write finds it so
    // (which can be first: see `LeaseCheck`). Either drops the controllers at once.
    let lost = async move {
        let told = async {
            loop {
                if leading.changed().await.is_err() || !*leading.borrow() {
                    return;
                }
            }
        };
        tokio::select! {
            () = told => {},
            () = checked.lost() => {},
        }
    };
    tokio::select! {
        result = run_controllers(client, config, metrics, Arc::clone(&readiness), shutdown, Some(lease)) => result,
        () = lost => {
            readiness.leader.store(false, Ordering::Relaxed);
            Err(Error::LostLeadership)
        }
    }
}

// About 90 lines, kept whole: it is the wiring read top to bottom (each step one call), and
// most of its length is the two context literals, which name every shared handle in one place.
async fn run_controllers(
    client: Client,
    config: &Config,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: ShutdownSignal,
    lease: Option<Arc<leader::LeaseCheck>>,
) -> Result<()> {
    let events = Publisher::new(
        client.clone(),
        config.reporter.clone(),
        config.instance.clone(),
    );
    let cache = PolicyCache::default();
    let (changed_tx, changed_rx) = mpsc::channel::<()>(1);
    let health = Healths::register(&readiness, config.watch_nodes);
    let mut probes = health.spawn_probes(&client);

    let policy_context = Arc::new(PolicyContext {
        client: client.clone(),
        cache: cache.clone(),
        events: events.clone(),
        metrics: Arc::clone(&metrics),
        changed: changed_tx.clone(),
        reviews: crate::authorization::SignerReviews::default(),
        watch_nodes: config.watch_nodes,
    });
    let (policies, policy_task) =
        spawn_policy_controller(&health.policies, policy_context, changed_tx, &shutdown);

    let (csrs, csr_writer) = reflector::store::<CertificateSigningRequest>();
    let pending_by_node = PendingByNode::new(Arc::clone(cache.engine()));
    // Node events re-queue the pending CSRs their Node requested (see `crate::nodes`).
    let (node_triggers_tx, node_triggers) = futures::channel::mpsc::unbounded();
    let nodes = config.watch_nodes.then(|| {
        probes.push(health.spawn_node_probe(&client));
        spawn_node_reflector(
            &client,
            &health.nodes,
            pending_by_node.clone(),
            csrs.clone(),
            node_triggers_tx,
        )
    });

    if !sync(
        &policies,
        nodes.as_ref(),
        &cache,
        config.watch_nodes,
        &shutdown,
    )
    .await
    {
        return Ok(());
    }

    // Held approvals are re-queued when their signer falls back under the cap.
    let (cap, resumed) = PendingCap::new(config.max_pending_per_signer, Arc::clone(&metrics));
    let csr_context = Arc::new(CsrContext {
        client: client.clone(),
        events,
        metrics: Arc::clone(&metrics),
        cache: cache.clone(),
        policies: policies.clone(),
        nodes,
        dry_run: config.dry_run,
        lease,
        evaluations: Arc::new(crate::evaluations::EvaluationSlots::per_cpu()),
        cap: cap.clone(),
        seen: Mutex::new(HashMap::new()),
    });
    let csr_events = csr_events(&client, &health.csrs, csr_writer, pending_by_node, cap);
    let due = due::due_csrs(
        csr_events,
        tokio_stream_from(changed_rx),
        node_triggers,
        resumed,
        &csrs,
        {
            let (cache, policies, dry_run) = (cache.clone(), policies.clone(), config.dry_run);
            move || cache.snapshot(&policies, dry_run)
        },
    );

    let gauges = spawn_gauges(Arc::clone(&metrics), csrs.clone(), cache, policies);
    readiness.synced.store(true, Ordering::Relaxed);
    run_csr_workers(due, csr_context, csrs, config.concurrency, &shutdown).await;
    gauges.abort();
    for probe in probes {
        probe.abort();
    }
    // The policy controller stops on the same signal; wait so its last status write lands.
    if let Err(error) = policy_task.await {
        warn!(%error, "policy controller task failed");
    }
    info!("csrgate controller stopped");
    Ok(())
}

/// The health of each watch, reported on `/readyz`; a watch that stops progressing is
/// relisted (see `crate::watches`).
struct Healths {
    policies: Arc<WatchHealth>,
    csrs: Arc<WatchHealth>,
    nodes: Arc<WatchHealth>,
}

impl Healths {
    /// New healths, listed on `readiness` (the Node watch only when it runs).
    fn register(readiness: &Readiness, watch_nodes: bool) -> Self {
        let healths = Self {
            policies: WatchHealth::new("csrapprovalpolicies"),
            csrs: WatchHealth::new("certificatesigningrequests"),
            nodes: WatchHealth::new("nodes"),
        };
        if let Ok(mut watches) = readiness.watches.write() {
            watches.clear();
            watches.extend([Arc::clone(&healths.policies), Arc::clone(&healths.csrs)]);
            if watch_nodes {
                watches.push(Arc::clone(&healths.nodes));
            }
        }
        healths
    }

    /// The probe of the Node watch, started with it.
    fn spawn_node_probe(&self, client: &Client) -> tokio::task::JoinHandle<()> {
        tokio::spawn(watches::probe(
            Api::<CachedNode>::all(client.clone()),
            Arc::clone(&self.nodes),
        ))
    }

    /// The probes of the policy and CSR watches (the Node one is started with its watch).
    fn spawn_probes(&self, client: &Client) -> Vec<tokio::task::JoinHandle<()>> {
        vec![
            tokio::spawn(watches::probe(
                Api::<CsrApprovalPolicy>::all(client.clone()),
                Arc::clone(&self.policies),
            )),
            tokio::spawn(watches::probe(
                Api::<CertificateSigningRequest>::all(client.clone()),
                Arc::clone(&self.csrs),
            )),
        ]
    }
}

/// Starts the policy controller; returns its store and its task, which ends on `shutdown`.
/// `deleted` is woken when a policy is deleted.
fn spawn_policy_controller(
    health: &Arc<WatchHealth>,
    context: Arc<PolicyContext>,
    deleted: mpsc::Sender<()>,
    shutdown: &ShutdownSignal,
) -> (Store<CsrApprovalPolicy>, tokio::task::JoinHandle<()>) {
    let (policies, writer) = reflector::store::<CsrApprovalPolicy>();
    let api = Api::<CsrApprovalPolicy>::all(context.client.clone());
    let observed = Arc::clone(health);
    let events = health
        .restartable(move || watcher(api.clone(), watcher::Config::default()).default_backoff())
        .inspect(move |item| observed.observe(item))
        .modify(trim_policy)
        .reflect(writer)
        // After the store dropped it: a deleted policy reaches no reconciler (only applied
        // objects do), yet the CSRs it held (not Ready) must be decided again without it.
        .inspect(move |item| {
            if let Ok(watcher::Event::Delete(_)) = item {
                // Ignore a full channel: a wake-up is already queued.
                let _ = deleted.try_send(());
            }
        })
        .applied_objects();
    let controller =
        Controller::for_stream(events, policies.clone()).graceful_shutdown_on(shutdown.clone());
    let task = tokio::spawn(
        controller
            .run(policy::reconcile, policy::error_policy, context)
            .for_each(|result| async move {
                if let Err(error) = result {
                    debug!(%error, "policy controller event");
                }
            }),
    );
    (policies, task)
}

/// Starts the Node reflector (Nodes trimmed as policies read them); sends to `triggers` the
/// pending CSRs of each Node that changes, once the store holds the change (see
/// [`crate::nodes::node_triggers`]).
fn spawn_node_reflector(
    client: &Client,
    health: &Arc<WatchHealth>,
    index: PendingByNode,
    csr_store: Store<CertificateSigningRequest>,
    triggers: futures::channel::mpsc::UnboundedSender<
        reflector::ObjectRef<CertificateSigningRequest>,
    >,
) -> Store<CachedNode> {
    let (store, writer) = reflector::store::<CachedNode>();
    let api = Api::<CachedNode>::all(client.clone());
    let observed = Arc::clone(health);
    let events = health
        .restartable(move || watcher(api.clone(), cache_watch_config()).default_backoff())
        .inspect(move |item| observed.observe(item))
        .reflect(writer);
    let stream =
        crate::nodes::node_triggers(events, store.clone(), index, csr_store).for_each(move |csr| {
            // Closed only when the CSR controller has stopped; nothing left to do.
            let _ = triggers.unbounded_send(csr);
            futures::future::ready(())
        });
    tokio::spawn(stream);
    store
}

/// The CSR watch: trimmed, cached in `writer`'s store, followed by the per-Node index and the
/// pending cap, and reported to `health`.
fn csr_events(
    client: &Client,
    health: &Arc<WatchHealth>,
    writer: reflector::store::Writer<CertificateSigningRequest>,
    pending_by_node: PendingByNode,
    cap: PendingCap,
) -> impl futures::Stream<
    Item = std::result::Result<watcher::Event<CertificateSigningRequest>, watcher::Error>,
> + Send
+ use<> {
    let api = Api::<CertificateSigningRequest>::all(client.clone());
    let observed = Arc::clone(health);
    health
        .restartable(move || watcher(api.clone(), cache_watch_config()).default_backoff())
        .modify(trim_csr)
        .reflect(writer)
        .inspect(move |item| {
            observed.observe(item);
            if let Ok(event) = item {
                if let watcher::Event::Apply(csr) = event {
                    // With the reconcile's own debug lines, a per-CSR trace of the wait.
                    debug!(csr = %csr.metadata.name.as_deref().unwrap_or(""), "CSR watch event");
                }
                pending_by_node.observe(event);
                cap.observe(event);
            }
        })
}

/// Waits for the policy store (and the Node store) to sync; `false` on shutdown.
///
/// Nothing is decided before the policy store has synced; what it holds is compiled now, so
/// CSRs are not held (and reported held) while the policy controller catches up.
async fn sync(
    policies: &Store<CsrApprovalPolicy>,
    nodes: Option<&Store<CachedNode>>,
    cache: &PolicyCache,
    watch_nodes: bool,
    shutdown: &ShutdownSignal,
) -> bool {
    if !wait_until_ready(policies, shutdown).await {
        return false;
    }
    for policy in policies.state() {
        if cache.get(&policy).is_none() {
            let compiled = policy::compile_blocking(
                Arc::clone(cache.engine()),
                Arc::clone(&policy),
                watch_nodes,
            )
            .await;
            cache.insert(&policy, compiled);
        }
    }
    if let Some(nodes) = nodes
        && !wait_until_ready(nodes, shutdown).await
    {
        return false;
    }
    info!(
        policies = policies.state().len(),
        "policy store synced; deciding CSRs"
    );
    true
}

/// Refreshes the pending and Ready gauges, and drops compiled policies that are gone,
/// every 5 seconds until aborted.
fn spawn_gauges(
    metrics: Arc<Metrics>,
    csrs: Store<CertificateSigningRequest>,
    cache: PolicyCache,
    policies: Store<CsrApprovalPolicy>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            csr::count_pending(&metrics, &csrs);
            cache.retain(&policies);
            policy::set_ready_gauges(&metrics, &cache, &policies);
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    })
}

/// Queues each `due` CSR on the work queue (see `crate::queue`), and runs `workers` workers
/// that decide from it once the CSR store has its first full list (until then a CSR named
/// by the watch may not be in the store yet). Returns on `shutdown`, once every worker has
/// finished the CSR in hand.
///
/// kube-runtime's `Controller` is not used for CSRs: it would only stand between the watch
/// and the queue, and its scheduler and runner kept their tables at the size of the largest
/// burst they saw (16 MB of heap at 10,000 pending CSRs, measured with heaptrack).
/// The most CSRs decided at once. A decision waiting for a SubjectAccessReview holds a
/// thread of tokio's blocking pool (512 threads by default) but no evaluation slot, and takes
/// a slot back after the answer; with as many decisions in flight as the pool has threads,
/// those waiting for a slot could hold every thread while the slots' holders wait for one.
/// Half the pool leaves room for them and for the pool's other users (name resolution).
pub const MAX_CONCURRENCY: u16 = 256;

async fn run_csr_workers(
    due: BoxStream<'static, String>,
    context: Arc<CsrContext>,
    csrs: Store<CertificateSigningRequest>,
    workers: u16,
    shutdown: &ShutdownSignal,
) {
    let queue = Arc::new(WorkQueue::default());
    let intake = async {
        let mut due = due.take_until(shutdown.clone());
        while let Some(name) = due.next().await {
            queue.add(&name);
        }
        queue.close();
    };
    let decide = async {
        if wait_until_ready(&csrs, shutdown).await {
            let work = move |name: String| decide_queued(csrs.clone(), Arc::clone(&context), name);
            let workers = usize::from(workers.clamp(1, MAX_CONCURRENCY));
            queue::serve(Arc::clone(&queue), workers, work).await;
        }
    };
    futures::join!(intake, decide);
}

/// Decides the CSR `name` as the store holds it now; on failure, the delay before it is
/// tried again (see [`csr::retry_after`]). A CSR deleted meanwhile is skipped.
async fn decide_queued(
    csrs: Store<CertificateSigningRequest>,
    context: Arc<CsrContext>,
    name: String,
) -> Option<Duration> {
    let csr = csrs.get(&reflector::ObjectRef::new(&name))?;
    match csr::reconcile(Arc::clone(&csr), Arc::clone(&context)).await {
        Ok(_) => None,
        Err(error) => Some(csr::retry_after(&csr, &error, &context)),
    }
}

/// Waits for a store's first full list; `false` on shutdown or when its writer is gone.
///
/// `Store::wait_until_ready` wakes only the last task that polled it (it is a oneshot
/// underneath), and the policy `Controller` polls the same store, so poll it again on a
/// short timer.
async fn wait_until_ready<K>(store: &Store<K>, shutdown: &ShutdownSignal) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        tokio::select! {
            ready = tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready()) => match ready {
                Ok(Ok(())) => return true,
                Ok(Err(_)) => return false,
                Err(_) => continue,
            },
            () = shutdown.clone() => return false,
        }
    }
}

/// How the large caches (CSRs, Nodes) list: in pages of 100 rather than kube-runtime's 500.
///
/// A page is read whole and parsed before its objects are trimmed and cached, and the
/// allocator keeps that peak resident: at 500, the list of 5,000 real-sized Nodes held the
/// controller at 64 MiB, most of it freed page buffers. Smaller pages cost more list
/// requests only at startup and after a watch expires.
fn cache_watch_config() -> watcher::Config {
    watcher::Config::default().page_size(CACHE_LIST_PAGE_SIZE)
}

/// Objects per list page for the CSR and Node caches; see [`cache_watch_config`].
const CACHE_LIST_PAGE_SIZE: u32 = 100;

/// Drops what the CSR controller never reads before the object is cached: managed fields,
/// and the issued certificate (only approved CSRs have one, and they are never decided
/// again). `managedFields` becomes absent, not empty, because the cached object is also the
/// body of the approval PUT, and an empty list there would ask the API server to clear it.
fn trim_csr(csr: &mut CertificateSigningRequest) {
    csr.metadata.managed_fields = None;
    if let Some(status) = csr.status.as_mut() {
        status.certificate = None;
    }
}

/// Drops the managed fields of a policy before it is cached: nothing reads them, and the
/// API server writes an entry per field manager (kubectl, csrgate's own status writes) into
/// every policy. Status writes are merge patches, so the cached object is never sent back.
fn trim_policy(policy: &mut CsrApprovalPolicy) {
    policy.metadata.managed_fields = None;
}

/// A stream of `()` from the channel.
fn tokio_stream_from(mut receiver: mpsc::Receiver<()>) -> impl futures::Stream<Item = ()> + Send {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_15_a_cached_policy_keeps_no_managed_fields() {
        let mut policy: CsrApprovalPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "csrgate.dev/v1alpha1",
            "kind": "CsrApprovalPolicy",
            "metadata": {"name": "p", "generation": 2, "managedFields": [
                {"manager": "kubectl", "operation": "Apply", "apiVersion": "csrgate.dev/v1alpha1",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}
            ]},
            "spec": {"signerNames": ["example.com/x"],
                     "validations": [{"name": "v", "expression": "true"}]},
        }))
        .unwrap();
        let spec = serde_json::to_value(&policy.spec).unwrap();
        trim_policy(&mut policy);
        assert_eq!(policy.metadata.managed_fields, None);
        assert_eq!(policy.metadata.generation, Some(2));
        assert_eq!(serde_json::to_value(&policy.spec).unwrap(), spec);
    }
}
