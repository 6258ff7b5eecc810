//! End-to-end benchmark (`make bench-e2e`): N CSRs created in a burst against `csrgate
//! sandbox`, decided by a `csrgate controller` process; reports time until all are decided,
//! decisions per second, p50/p99/max latency from creation to condition as seen by a watch,
//! and the controller's peak RSS and CPU seconds (from /proc).
//!
//! `cargo bench -p csrgate --bench e2e -- [N]` (default 5000). Writes `target/bench/e2e.json`.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};

type Error = Box<dyn std::error::Error + Send + Sync>;

const POLICY: &str = r#"
apiVersion: csrgate.dev/v1alpha1
kind: CsrApprovalPolicy
metadata: {name: bench}
spec:
  signerNames: [kubernetes.io/kube-apiserver-client]
  validations:
    - {name: cn-is-requestor, expression: 'x509.commonName == object.spec.username'}
    - {name: no-system-groups, expression: '!x509.organizations.exists(o, o.startsWith("system:"))'}
    - {name: bounded, expression: 'has(object.spec.expirationSeconds) && object.spec.expirationSeconds <= 86400'}
"#;
const JANE: &str = include_str!("../../../examples/csrs/jane.yaml");

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> Result<(), Error> {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5000);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(n))
}

async fn run(n: usize) -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    let binary = env!("CARGO_BIN_EXE_csrgate");
    let _sandbox = Killed(
        Command::new(binary)
            .args([
                "sandbox",
                "--listen",
                "127.0.0.1:0",
                "--history",
                "1000000",
                "--kubeconfig-out",
            ])
            .arg(&kubeconfig)
            .stderr(Stdio::null())
            .spawn()?,
    );
    while !kubeconfig.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let admin = client(&kubeconfig, None).await?;
    let policy: csrgate_api::CsrApprovalPolicy = serde_saphyr::from_str(POLICY)?;
    Api::<csrgate_api::CsrApprovalPolicy>::all(admin.clone())
        .create(&PostParams::default(), &policy)
        .await?;

    let controller = Killed(
        Command::new(binary)
            .args([
                "controller",
                "--metrics-addr",
                "127.0.0.1:0",
                "--no-node-watch",
                "--concurrency",
                "32",
                "--kubeconfig",
            ])
            .arg(&kubeconfig)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()?,
    );
    let pid = controller.0.id();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Watch for decisions from before the burst starts.
    let csrs: Api<CertificateSigningRequest> = Api::all(admin.clone());
    let (decided_tx, mut decided_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let watch = tokio::spawn(async move {
        let mut stream = watcher(csrs, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Ok(Some(csr)) = stream.try_next().await {
            let decided = csr
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.type_ == "Approved" || c.type_ == "Denied")
                });
            if decided {
                let _ = decided_tx.send((csr.metadata.name.unwrap_or_default(), Instant::now()));
            }
        }
    });

    let template: CertificateSigningRequest = serde_saphyr::from_str(JANE)?;
    let jane = client(&kubeconfig, Some("jane")).await?;
    let jane_csrs: Api<CertificateSigningRequest> = Api::all(jane);
    let start = Instant::now();
    let created: HashMap<String, Instant> = futures::stream::iter(0..n)
        .map(|i| {
            let api = jane_csrs.clone();
            let mut csr = template.clone();
            csr.metadata.name = Some(format!("bench-{i}"));
            async move {
                let sent = Instant::now();
                api.create(&PostParams::default(), &csr)
                    .await
                    .map(|_| (format!("bench-{i}"), sent))
            }
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;
    let created_in = start.elapsed();

    let mut latencies = Vec::with_capacity(n);
    let mut seen = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut last = start;
    while seen.len() < n && Instant::now() < deadline {
        let Ok(Some((name, at))) =
            tokio::time::timeout(Duration::from_secs(30), decided_rx.recv()).await
        else {
            break;
        };
        if let Some(sent) = created.get(&name)
            && seen.insert(name)
        {
            latencies.push(at.duration_since(*sent));
            last = at;
        }
    }
    watch.abort();
    let total = last.duration_since(start);
    let (rss_kib, cpu_seconds) = process_usage(pid);
    drop(controller);

    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    let summary = serde_json::json!({
        "csrs": n,
        "decided": seen.len(),
        "created_in_s": created_in.as_secs_f64(),
        "all_decided_in_s": total.as_secs_f64(),
        "decisions_per_s": seen.len() as f64 / total.as_secs_f64(),
        "p50_latency_ms": pct(0.50).as_secs_f64() * 1000.0,
        "p99_latency_ms": pct(0.99).as_secs_f64() * 1000.0,
        "max_latency_ms": latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        "controller_peak_rss_mib": rss_kib as f64 / 1024.0,
        "controller_cpu_s": cpu_seconds,
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    std::fs::create_dir_all("../../target/bench")?;
    std::fs::write(
        "../../target/bench/e2e.json",
        serde_json::to_string_pretty(&summary)?,
    )?;
    if seen.len() < n {
        return Err(format!("only {} of {n} CSRs were decided", seen.len()).into());
    }
    Ok(())
}

/// Peak RSS (KiB, VmHWM) and user+system CPU seconds of a process, from /proc.
fn process_usage(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is 14th, stime 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    (rss, ticks / 100.0)
}

async fn client(kubeconfig: &std::path::Path, user: Option<&str>) -> Result<kube::Client, Error> {
    let mut config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(kubeconfig)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    if let Some(user) = user {
        config.auth_info.impersonate = Some(user.to_owned());
        config.auth_info.impersonate_groups = Some(vec!["platform-admins".into()]);
    }
    Ok(kube::Client::try_from(config)?)
}
