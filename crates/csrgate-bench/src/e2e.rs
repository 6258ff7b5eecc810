//! Bursts of N CSRs created against a fresh sandbox and decided by either the controller or
//! the API floor client, each a separate process; latency runs from the create request to
//! the moment a watch of our own sees the condition.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

use crate::cluster::{self, Process, Sandbox, is_decided};
use crate::{Error, Result};

/// `csrgate-bench e2e`.
#[derive(clap::Args)]
pub struct Args {
    /// The `csrgate` binary (default: next to this one).
    #[arg(long)]
    csrgate: Option<PathBuf>,
    /// Burst sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "5000")]
    csrs: Vec<usize>,
    /// Which deciders to run for each size.
    #[arg(long, value_delimiter = ',', default_value = "floor,controller")]
    deciders: Vec<Decider>,
    /// Concurrent creators.
    #[arg(long, default_value_t = cluster::CREATORS)]
    creators: usize,
    /// Runs of each burst (at least 1): the deciders take turns within each repeat, and each
    /// result file keeps every run (`runs`) with the medians as its headline figures.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeats: u32,
    /// Where `e2e-<decider>-<N>.json` go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Run against this cluster (e.g. `make cluster-up`'s target/cluster/kubeconfig) instead
    /// of a fresh sandbox per burst. Its user must be allowed to impersonate jane, jane to
    /// create CSRs (examples/rbac/csr-requesters.yaml grants it), and the CsrApprovalPolicy
    /// CRD must be installed. The burst's policy and CSRs (label `csrgate.dev/bench`) are
    /// deleted before and after each burst.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
}

/// The label on every object a burst creates in a cluster it was given.
pub const BENCH_LABEL: &str = "csrgate.dev/bench";

/// Where a burst runs.
pub enum Target {
    /// A fresh sandbox, stopped when dropped.
    Sandbox(Sandbox),
    /// A cluster given by its kubeconfig: the burst's objects are deleted before and after.
    Cluster(PathBuf),
    /// A fresh control plane, by its kubeconfig, thrown away after the burst: nothing to
    /// delete (kube-apiserver's deletecollection of 50,000 CSRs outlives its 60 s request
    /// timeout here).
    FreshCluster(PathBuf),
}

impl Target {
    fn kubeconfig(&self) -> &Path {
        match self {
            Self::Sandbox(sandbox) => &sandbox.kubeconfig,
            Self::Cluster(kubeconfig) | Self::FreshCluster(kubeconfig) => kubeconfig,
        }
    }
}

/// Deletes the burst's CSRs and policy from a cluster, so that a burst starts empty and
/// leaves nothing behind.
async fn clean(admin: &kube::Client) -> Result<()> {
    let kube_error = |what: &str| {
        let what = what.to_owned();
        move |source| Error::Kube { what, source }
    };
    let csrs: Api<CertificateSigningRequest> = Api::all(admin.clone());
    // A large collection can outlive the API server's request timeout, which goes on
    // deleting meanwhile: ask again until one call ends in time.
    let mut attempts = 0;
    while let Err(error) = csrs
        .delete_collection(
            &kube::api::DeleteParams::default(),
            &kube::api::ListParams::default().labels(BENCH_LABEL),
        )
        .await
    {
        attempts += 1;
        if attempts == 5 {
            return Err(kube_error("deleting the benchmark CSRs")(error));
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let policies: Api<csrgate_api::CsrApprovalPolicy> = Api::all(admin.clone());
    if policies
        .get_opt("bench")
        .await
        .map_err(kube_error("reading the benchmark policy"))?
        .is_some()
    {
        policies
            .delete("bench", &kube::api::DeleteParams::default())
            .await
            .map_err(kube_error("deleting the benchmark policy"))?;
    }
    Ok(())
}

/// What decides the burst.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Decider {
    /// `csrgate controller`.
    Controller,
    /// `csrgate-bench floor`: the same API calls, no evaluation.
    Floor,
}

impl Decider {
    /// The name in result files and output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Controller => "controller",
            Self::Floor => "floor",
        }
    }
}

/// Runs every size with every decider, `--repeats` times; within a repeat the deciders take
/// turns (floor, controller, floor, controller, ...) so the machine's drift hits both alike.
pub async fn run(args: Args) -> Result<()> {
    let csrgate = args.csrgate.clone().unwrap_or_else(crate::default_csrgate);
    for &n in &args.csrs {
        let mut runs = vec![Vec::new(); args.deciders.len()];
        for repeat in 1..=args.repeats {
            for (&decider, runs) in args.deciders.iter().zip(&mut runs) {
                let target = match &args.kubeconfig {
                    Some(kubeconfig) => Target::Cluster(kubeconfig.clone()),
                    None => Target::Sandbox(Sandbox::start(&csrgate).await?),
                };
                let result = burst(&csrgate, &target, decider, n, args.creators).await?;
                println!(
                    "{:>10} N={n:<6} run {repeat}/{} {:>8.0} decisions/s  p50 {:>6.0} ms  p99 {:>6.0} ms  RSS {:>5.1} MiB  CPU {:>5.2} s",
                    decider.name(),
                    args.repeats,
                    result["decisions_per_s"].as_f64().unwrap_or_default(),
                    result["p50_latency_ms"].as_f64().unwrap_or_default(),
                    result["p99_latency_ms"].as_f64().unwrap_or_default(),
                    result["peak_rss_mib"].as_f64().unwrap_or_default(),
                    result["cpu_s"].as_f64().unwrap_or_default(),
                );
                runs.push(result);
            }
        }
        for (decider, runs) in args.deciders.iter().zip(runs) {
            crate::write_json(
                &args.out.join(format!("e2e-{}-{n}.json", decider.name())),
                &crate::runs::aggregate(runs, crate::runs::BURST_KEYS),
            )?;
        }
    }
    Ok(())
}

pub async fn burst(
    csrgate: &Path,
    target: &Target,
    decider: Decider,
    n: usize,
    creators: usize,
) -> Result<serde_json::Value> {
    let kubeconfig = target.kubeconfig().to_owned();
    let admin = cluster::client(&kubeconfig, None).await?;
    if matches!(target, Target::Cluster(_)) {
        clean(&admin).await?;
    }
    let policy: csrgate_api::CsrApprovalPolicy =
        serde_saphyr::from_str(cluster::POLICY).map_err(|e| Error::Data {
            what: "the benchmark policy".into(),
            message: e.to_string(),
        })?;
    Api::<csrgate_api::CsrApprovalPolicy>::all(admin.clone())
        .create(&PostParams::default(), &policy)
        .await
        .map_err(|source| Error::Kube {
            what: "creating the benchmark policy".into(),
            source,
        })?;

    let process = match decider {
        Decider::Controller => {
            let metrics = format!("127.0.0.1:{}", cluster::free_port()?);
            let process = cluster::start_controller(csrgate, &kubeconfig, &metrics, false)?;
            cluster::wait_ready(&metrics, Duration::from_secs(30)).await?;
            process
        }
        Decider::Floor => {
            let exe = std::env::current_exe().map_err(|source| Error::Io {
                what: "finding csrgate-bench itself".into(),
                source,
            })?;
            let kubeconfig = kubeconfig.display().to_string();
            let process = Process::spawn(
                &exe,
                &["floor", "--kubeconfig", &kubeconfig],
                "the floor client",
            )?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            process
        }
    };
    let before = process.usage();
    let mut template = cluster::jane_csr()?;
    template
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(BENCH_LABEL.to_owned(), "true".to_owned());
    let jane: Api<CertificateSigningRequest> =
        Api::all(cluster::client(&kubeconfig, Some("jane")).await?);
    let timing = measure(&admin, n, creators, |i| {
        let api = jane.clone();
        let mut csr = template.clone();
        let name = format!("bench-{i}");
        csr.metadata.name = Some(name.clone());
        async move {
            let sent = Instant::now();
            api.create(&PostParams::default(), &csr)
                .await
                .map(|_| (name, sent))
                .map_err(|source| Error::Kube {
                    what: "creating a CSR".into(),
                    source,
                })
        }
    })
    .await;
    let after = process.usage();
    drop(process);
    if matches!(target, Target::Cluster(_)) {
        clean(&admin).await?;
    }
    let timing = timing?.complete(decider.name(), n)?;
    let mut result = timing.json(decider.name(), n, creators);
    result["peak_rss_mib"] = after.peak_rss_mib.into();
    result["cpu_s"] = (after.cpu_s - before.cpu_s).into();
    Ok(result)
}

/// When each CSR of a burst was decided, from the first create request on.
pub struct Timing {
    /// Create-to-decided latency of each CSR that was decided, sorted.
    latencies: Vec<Duration>,
    /// How long creating all N took.
    created_in: Duration,
    /// From the first create to the last decision.
    total: Duration,
}

/// Creates `n` CSRs, `creators` at a time, with `create(i)` (which returns the CSR's name and
/// when its create request was sent), while a watch of its own notes when each gets an
/// Approved, Denied or Failed condition; stops when all are decided or nothing happened for
/// 30 s (then [`Timing::complete`] says how many were missing).
pub async fn measure<F, Fut>(
    admin: &kube::Client,
    n: usize,
    creators: usize,
    create: F,
) -> Result<Timing>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(String, Instant)>>,
{
    let csrs: Api<CertificateSigningRequest> = Api::all(admin.clone());
    let (decided_tx, mut decided_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let watch = tokio::spawn(async move {
        let mut stream = watcher(csrs, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        // Watch errors (a closed watch, a 410 and relist) are retried by the watcher;
        // a relist sends decided CSRs again, which the receiver counts once.
        while let Some(event) = stream.next().await {
            if let Ok(csr) = event
                && is_decided(&csr)
            {
                let _ = decided_tx.send((csr.name_any(), Instant::now()));
            }
        }
    });
    // Watch for decisions from before the burst starts.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let start = Instant::now();
    let created: Result<HashMap<String, Instant>> = futures::stream::iter(0..n)
        .map(create)
        .buffer_unordered(creators)
        .try_collect()
        .await;
    let created = match created {
        Ok(created) => created,
        Err(error) => {
            watch.abort();
            return Err(error);
        }
    };
    let created_in = start.elapsed();

    let mut latencies = Vec::with_capacity(n);
    let mut trace = Vec::new();
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(120 + n as u64 / 100);
    let mut last = start;
    while seen.len() < n && Instant::now() < deadline {
        let Ok(Some((name, at))) =
            tokio::time::timeout(Duration::from_secs(30), decided_rx.recv()).await
        else {
            break;
        };
        if let Some(sent) = created.get(&name)
            && seen.insert(name.clone())
        {
            latencies.push(at.duration_since(*sent));
            trace.push((name, *sent, at));
            last = at;
        }
    }
    watch.abort();
    write_trace(start, &trace)?;
    latencies.sort();
    Ok(Timing {
        latencies,
        created_in,
        total: last.duration_since(start),
    })
}

/// With `CSRGATE_BENCH_TRACE=<dir>`, appends one line per decided CSR to
/// `<dir>/csrs.tsv`: its name, when its create request was sent and when the bench's watch
/// saw its condition, both as Unix time in microseconds (to set beside the controller's
/// log, whose timestamps are UTC), and the latency in milliseconds.
fn write_trace(start: Instant, trace: &[(String, Instant, Instant)]) -> Result<()> {
    use std::io::Write;
    let Some(dir) = cluster::trace_dir() else {
        return Ok(());
    };
    let io_error = |source| Error::Io {
        what: "writing csrs.tsv".into(),
        source,
    };
    let wall_start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(start.elapsed());
    let unix_us = |at: &Instant| (wall_start + at.saturating_duration_since(start)).as_micros();
    let mut out = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("csrs.tsv"))
            .map_err(io_error)?,
    );
    for (name, sent, decided) in trace {
        writeln!(
            out,
            "{name}\t{}\t{}\t{:.1}",
            unix_us(sent),
            unix_us(decided),
            decided.duration_since(*sent).as_secs_f64() * 1000.0
        )
        .map_err(io_error)?;
    }
    out.flush().map_err(io_error)
}

impl Timing {
    /// The timing, or [`Error::Incomplete`] naming `decider` when fewer than `n` were decided.
    pub fn complete(self, decider: &str, n: usize) -> Result<Self> {
        if self.latencies.len() < n {
            return Err(Error::Incomplete(format!(
                "{decider}: only {} of {n} CSRs were decided",
                self.latencies.len()
            )));
        }
        Ok(self)
    }

    /// The latency at quantile `q` (0..=1), in milliseconds.
    fn percentile_ms(&self, q: f64) -> f64 {
        self.latencies
            .get(((self.latencies.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0
    }

    /// The result file's fields: throughput and latency quantiles.
    pub fn json(&self, decider: &str, n: usize, creators: usize) -> serde_json::Value {
        let total = self.total.as_secs_f64();
        serde_json::json!({
            "decider": decider,
            "csrs": n,
            "decided": self.latencies.len(),
            "concurrency": crate::floor::CONCURRENCY,
            "creators": creators,
            "created_in_s": self.created_in.as_secs_f64(),
            "all_decided_in_s": total,
            "decisions_per_s": n as f64 / total,
            "p50_latency_ms": self.percentile_ms(0.50),
            "p99_latency_ms": self.percentile_ms(0.99),
            "max_latency_ms": self.percentile_ms(1.0),
        })
    }
}
