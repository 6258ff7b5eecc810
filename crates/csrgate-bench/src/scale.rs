//! Memory at scale: the controller with 10,000 pending CSRs and 5,000 Nodes in its caches,
//! then with 1,000 policies loaded, and how long those 1,000 policies take to become Ready
//! through the API (create, watch, compile, status write), beside the same creates with no
//! controller running (the API server's own floor).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};

use crate::cluster::{self, Sandbox};
use crate::{Error, Result};

/// The signer of the pending CSRs: no policy covers it, so they stay pending and cached.
const UNMANAGED_SIGNER: &str = "example.com/unmanaged";

/// `csrgate-bench scale`.
#[derive(clap::Args)]
pub struct Args {
    /// The `csrgate` binary (default: next to this one).
    #[arg(long)]
    csrgate: Option<PathBuf>,
    /// Pending CSRs to create.
    #[arg(long, default_value_t = 10_000)]
    csrs: usize,
    /// Nodes to create.
    #[arg(long, default_value_t = 5_000)]
    nodes: usize,
    /// Policies to load after the CSRs and Nodes.
    #[arg(long, default_value_t = 1_000)]
    policies: usize,
    /// Where the result goes.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// The result file's name in `--out`.
    #[arg(long, default_value = "scale.json")]
    result: String,
    /// Runs (at least 1), each on a fresh sandbox; the result keeps every run (`runs`) with
    /// the medians as its headline figures. More than 1 needs the sandbox: a cluster given
    /// by `--kubeconfig` is not fresh after the first run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeats: u32,
    /// Run against this cluster (the real control plane) instead of a fresh sandbox. Its
    /// user must be allowed to impersonate jane and jane to create CSRs
    /// (examples/rbac/csr-requesters.yaml); the CRD must be installed; the cluster should be
    /// empty (fresh), as nothing is cleaned up.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
}

impl Args {
    /// The arguments `csrgate-bench real` runs scale with: defaults, on `kubeconfig`,
    /// writing `<out>/<result>`.
    pub fn on_cluster(csrgate: PathBuf, kubeconfig: PathBuf, out: PathBuf, result: &str) -> Self {
        Self {
            csrgate: Some(csrgate),
            csrs: 10_000,
            nodes: 5_000,
            policies: 1_000,
            out,
            result: result.to_owned(),
            repeats: 1,
            kubeconfig: Some(kubeconfig),
        }
    }
}

/// A Node the size of a real one: labels, conditions, addresses, node info and a list of
/// cached images (what most of a real Node's bytes are).
fn node(i: usize) -> Result<Node> {
    let images: Vec<serde_json::Value> = (0..25)
        .map(|j| {
            serde_json::json!({
                "names": [
                    format!("registry.example.com/team-{j}/service-{j}@sha256:{:064x}", i * 31 + j),
                    format!("registry.example.com/team-{j}/service-{j}:v1.{j}.0"),
                ],
                "sizeBytes": 50_000_000 + j * 1_000_000,
            })
        })
        .collect();
    let conditions: Vec<serde_json::Value> = [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID"),
        ("Ready", "True", "KubeletReady"),
    ]
    .iter()
    .map(|(type_, status, reason)| {
        serde_json::json!({
            "type": type_, "status": status, "reason": reason,
            "message": format!("kubelet reports {reason}"),
            "lastHeartbeatTime": "2026-11-28T12:00:00Z",
            "lastTransitionTime": "2026-11-01T08:00:00Z",
        })
    })
    .collect();
    let name = format!("worker-{i}");
    let value = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": "m6i.xlarge",
                "topology.kubernetes.io/region": "eu-west-1",
                "topology.kubernetes.io/zone": format!("eu-west-1{}", ["a", "b", "c"][i % 3]),
                "node-role.kubernetes.io/worker": "",
            },
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {
            "podCIDR": format!("10.{}.{}.0/24", 64 + i / 256, i % 256),
            "providerID": format!("aws:///eu-west-1a/i-{i:017x}"),
        },
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": format!("10.0.{}.{}", i / 256, i % 256)},
                {"type": "Hostname", "address": name},
                {"type": "InternalDNS", "address": format!("{name}.cluster.internal")},
            ],
            "capacity": {"cpu": "4", "memory": "16078328Ki", "pods": "110", "ephemeral-storage": "104845292Ki"},
            "allocatable": {"cpu": "3920m", "memory": "15061496Ki", "pods": "110", "ephemeral-storage": "96625420023"},
            "conditions": conditions,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64", "bootID": format!("{i:08x}-0000-4000-8000-000000000000"),
                "containerRuntimeVersion": "containerd://1.7.22", "kernelVersion": "6.1.112",
                "kubeProxyVersion": "v1.33.1", "kubeletVersion": "v1.33.1",
                "machineID": format!("{i:032x}"), "operatingSystem": "linux",
                "osImage": "Debian GNU/Linux 12 (bookworm)", "systemUUID": format!("ec2{i:029x}"),
            },
            "images": images,
        },
    });
    serde_json::from_value(value).map_err(|e| Error::Data {
        what: "the benchmark Node".into(),
        message: e.to_string(),
    })
}

/// Policy `i`: one matchCondition and three validations, over a signer no CSR here uses.
fn policy(i: usize) -> Result<csrgate_api::CsrApprovalPolicy> {
    named_policy("scale", i)
}

/// Policy `i` named `<prefix>-<i>`.
fn named_policy(prefix: &str, i: usize) -> Result<csrgate_api::CsrApprovalPolicy> {
    let yaml = format!(
        r#"
apiVersion: csrgate.dev/v1alpha1
kind: CsrApprovalPolicy
metadata: {{name: {prefix}-{i:04}}}
spec:
  signerNames: ["example.com/team-{i}"]
  matchConditions:
    - name: in-team
      expression: '"team-{i}" in object.spec.groups'
  validations:
    - name: cn-is-requestor
      expression: 'x509.commonName == object.spec.username'
    - name: no-system-groups
      expression: '!x509.organizations.exists(o, o.startsWith("system:"))'
    - name: service-names
      expression: 'x509.dnsNames.all(n, n.endsWith(".team-{i}.svc.cluster.local"))'
"#
    );
    serde_saphyr::from_str(&yaml).map_err(|e| Error::Data {
        what: "a scale policy".into(),
        message: e.to_string(),
    })
}

/// Measures `--repeats` times, writes `scale.json` (or `--result`).
///
/// # Errors
/// `--repeats` above 1 with `--kubeconfig`, or any failed run.
pub async fn run(args: Args) -> Result<()> {
    if args.repeats > 1 && args.kubeconfig.is_some() {
        return Err(Error::Incomplete(
            "--repeats above 1 needs a fresh sandbox per run: leave out --kubeconfig, or run once"
                .into(),
        ));
    }
    let mut runs = Vec::new();
    for repeat in 1..=args.repeats {
        println!("scale: run {repeat}/{}", args.repeats);
        runs.push(measure(&args).await?);
    }
    crate::write_json(
        &args.out.join(&args.result),
        &crate::runs::aggregate(runs, crate::runs::SCALE_KEYS),
    )
}

/// Creates everything on a fresh sandbox (or the cluster of `--kubeconfig`) and measures
/// once: the result's fields.
pub async fn measure(args: &Args) -> Result<serde_json::Value> {
    let csrgate = args.csrgate.clone().unwrap_or_else(crate::default_csrgate);
    // The sandbox, when there is one, lives until the end of the run.
    let (_sandbox, kubeconfig) = match &args.kubeconfig {
        Some(kubeconfig) => (None, kubeconfig.clone()),
        None => {
            let sandbox = Sandbox::start(&csrgate).await?;
            let kubeconfig = sandbox.kubeconfig.clone();
            (Some(sandbox), kubeconfig)
        }
    };
    let admin = cluster::client(&kubeconfig, None).await?;

    cluster::create_all(&Api::<Node>::all(admin.clone()), args.nodes, "a Node", node).await?;
    let mut template = cluster::jane_csr()?;
    template.spec.signer_name = UNMANAGED_SIGNER.into();
    let jane: Api<CertificateSigningRequest> =
        Api::all(cluster::client(&kubeconfig, Some("jane")).await?);
    cluster::create_all(&jane, args.csrs, "a CSR", |i| {
        let mut csr = template.clone();
        csr.metadata.name = Some(format!("pending-{i}"));
        Ok(csr)
    })
    .await?;

    let created_floor = policies_created_floor(&admin, args.policies).await?;
    println!(
        "{} policies created with no controller running in {:.0} ms",
        args.policies,
        created_floor.as_secs_f64() * 1000.0
    );

    let metrics = format!("127.0.0.1:{}", cluster::free_port()?);
    let controller = cluster::start_controller(&csrgate, &kubeconfig, &metrics, true)?;
    cluster::wait_ready(&metrics, Duration::from_secs(60)).await?;
    // Ready means the policy and Node stores synced; the pending gauge (refreshed every 5 s
    // from the CSR store) says when all CSRs are cached too.
    if args.csrs > 0 {
        wait_for_pending(&metrics, args.csrs).await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cached = controller.usage();
    println!(
        "{} pending CSRs + {} Nodes cached: RSS {:.1} MiB (peak {:.1} MiB)",
        args.csrs, args.nodes, cached.rss_mib, cached.peak_rss_mib
    );

    let (created_in, ready_in) = policies_ready(&admin, args.policies).await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let loaded = controller.usage();
    println!(
        "{} policies Ready in {:.0} ms (created in {:.0} ms); RSS {:.1} MiB (peak {:.1} MiB)",
        args.policies,
        ready_in.as_secs_f64() * 1000.0,
        created_in.as_secs_f64() * 1000.0,
        loaded.rss_mib,
        loaded.peak_rss_mib
    );
    Ok(serde_json::json!({
        "csrs": args.csrs,
        "nodes": args.nodes,
        "policies": args.policies,
        "rss_mib_cached": cached.rss_mib,
        "peak_rss_mib_cached": cached.peak_rss_mib,
        "policies_created_floor_ms": created_floor.as_secs_f64() * 1000.0,
        "policies_created_ms": created_in.as_secs_f64() * 1000.0,
        "policies_ready_ms": ready_in.as_secs_f64() * 1000.0,
        "rss_mib_policies": loaded.rss_mib,
        "peak_rss_mib_policies": loaded.peak_rss_mib,
    }))
}

/// The API server's own floor for the policies' Ready time: how long the same `count`
/// creates take with no controller running (nothing watches, compiles or writes status).
/// The policies are deleted again before the controller starts, so it never sees them.
async fn policies_created_floor(admin: &kube::Client, count: usize) -> Result<Duration> {
    let policies: Api<csrgate_api::CsrApprovalPolicy> = Api::all(admin.clone());
    let start = Instant::now();
    cluster::create_all(&policies, count, "a floor policy", |i| {
        named_policy("floor", i)
    })
    .await?;
    let created_in = start.elapsed();
    futures::stream::iter(0..count)
        .map(|i| {
            let policies = policies.clone();
            async move {
                policies
                    .delete(
                        &format!("floor-{i:04}"),
                        &kube::api::DeleteParams::default(),
                    )
                    .await
                    .map_err(|source| Error::Kube {
                        what: "deleting a floor policy".into(),
                        source,
                    })
            }
        })
        .buffer_unordered(cluster::CREATORS)
        .try_for_each(|_| futures::future::ready(Ok(())))
        .await?;
    Ok(created_in)
}

/// Creates `count` policies (16 concurrent clients); returns how long the creates took and
/// how long from the first create until a watch saw every one `Ready=True`.
async fn policies_ready(admin: &kube::Client, count: usize) -> Result<(Duration, Duration)> {
    let policies: Api<csrgate_api::CsrApprovalPolicy> = Api::all(admin.clone());
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let watched = policies.clone();
    let watch = tokio::spawn(async move {
        let mut stream = watcher(watched, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Ok(Some(policy)) = stream.try_next().await {
            let ready = policy.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == csrgate_api::CONDITION_READY && c.status == "True")
            });
            if ready {
                let _ = ready_tx.send(policy.name_any());
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    cluster::create_all(&policies, count, "a policy", policy).await?;
    let created_in = start.elapsed();
    let mut ready = HashSet::new();
    while ready.len() < count {
        match tokio::time::timeout(Duration::from_secs(60), ready_rx.recv()).await {
            Ok(Some(name)) => {
                ready.insert(name);
            }
            _ => break,
        }
    }
    let ready_in = start.elapsed();
    watch.abort();
    if ready.len() < count {
        return Err(Error::Incomplete(format!(
            "only {} of {} policies became Ready",
            ready.len(),
            count
        )));
    }
    Ok((created_in, ready_in))
}

/// Waits until the controller's pending gauge (refreshed every 5 s from its CSR cache)
/// counts `csrs` CSRs of the unmanaged signer: then every CSR is cached.
async fn wait_for_pending(metrics: &str, csrs: usize) -> Result<()> {
    let expected = format!("signer=\"{UNMANAGED_SIGNER}\"}} {csrs}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, body)) = cluster::http_get(metrics, "/metrics").await
            && body.contains(&expected)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Incomplete(format!(
                "the controller never counted {csrs} pending CSRs"
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
