//! `csrgate-bench real`: the end-to-end benchmarks on the real control plane (etcd,
//! kube-apiserver, kube-controller-manager built by `make kube`), a fresh one per burst.
//!
//! Two comparisons, each decider alone on its own fresh control plane:
//! - **the API floor** (`real-e2e-{floor,controller}-<N>.json`): jane's client CSRs, decided
//!   by `csrgate controller` and by the floor client (the same watch, `/approval` write and
//!   Event, no evaluation), as `csrgate-bench e2e` does on the sandbox;
//! - **kube-controller-manager's approver** (`kcm-{kcm,csrgate}-<N>.json`): N kubelet client
//!   CSRs (`kubernetes.io/kube-apiserver-client-kubelet`), each created by its own node
//!   identity (`system:node:bench-<i>` in `system:nodes`, CN and O as a kubelet sends them),
//!   decided once by KCM's `csrapproving` (a SubjectAccessReview for `selfnodeclient` per
//!   CSR, then the approval) and once by csrgate with KCM's approver off. KCM's `csrsigning`
//!   runs in both, so the API server's load is the same; KCM's CPU time in the csrgate run
//!   is the signer's share of its CPU time in the KCM run.
//!
//! And `csrgate-bench scale` on a fresh control plane (`scale-real.json`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use csrgate_kube::{Binaries, Component, ControlPlane, ControllerManagerOptions, Lifetime};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::cluster::{self, Process, Usage};
use crate::e2e::{self, Decider, Target};
use crate::{Error, Result};

/// `csrgate-bench real`.
#[derive(clap::Args)]
pub struct Args {
    /// The `csrgate` binary (default: next to this one).
    #[arg(long)]
    csrgate: Option<PathBuf>,
    /// Burst sizes of jane's CSRs for controller against floor; `--csrs` alone skips them.
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "1000,10000")]
    csrs: Vec<usize>,
    /// Burst sizes of kubelet client CSRs for csrgate against kube-controller-manager's
    /// approver; `--kcm-csrs` alone skips them.
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "1000,10000")]
    kcm_csrs: Vec<usize>,
    /// kube-controller-manager's `--kube-api-qps` (its burst is twice that) in the KCM
    /// comparison; without it KCM keeps its defaults (20 requests/s per controller).
    #[arg(long, value_name = "QPS")]
    kcm_qps: Option<u32>,
    /// The policy csrgate decides kubelet client CSRs with: KCM's rule, including its
    /// SubjectAccessReview (`selfnodeclient`, else `nodeclient`) per CSR through `authorizer`,
    /// so both deciders do the same work.
    #[arg(long, default_value = "examples/cookbook/kubelet-client-kcm.yaml")]
    kubelet_policy: PathBuf,
    /// Skip `csrgate-bench scale` on a fresh control plane (`scale-real.json`: RSS with 10,000
    /// pending CSRs and 5,000 Nodes cached, then 1,000 policies and how long they take to be
    /// Ready).
    #[arg(long)]
    no_scale: bool,
    /// The image's static musl build of `csrgate` (`make bench` builds it as the Dockerfile
    /// does): `scale` runs with it too, on its own fresh control plane
    /// (`scale-real-musl.json`), so the memory of the binary that ships sits beside the glibc
    /// build's.
    #[arg(long, value_name = "FILE")]
    csrgate_musl: Option<PathBuf>,
    /// Concurrent creators.
    #[arg(long, default_value_t = cluster::CREATORS)]
    creators: usize,
    /// Runs of each measurement (at least 1), each on a fresh control plane; within a repeat
    /// the sides take turns (floor, controller / glibc, musl / kcm, csrgate), so the
    /// machine's drift hits both alike. Each result file keeps every run (`runs`) with the
    /// medians as its headline figures.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeats: u32,
    /// Where the result files go; the control planes' state goes to `<out>/kube`.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

/// The signer of kubelet client certificates.
const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// What kubeadm binds so that nodes may renew their own client certificate, which is what
/// KCM's approver asks a SubjectAccessReview about.
const SELFNODECLIENT: &str = r#"{
  "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
  "metadata": {"name": "bench:node-autoapprove-certificate-rotation"},
  "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
              "name": "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"},
  "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}]
}"#;

/// Runs both comparisons and the scale runs, each `--repeats` times.
pub async fn run(args: Args) -> Result<()> {
    let csrgate = args.csrgate.clone().unwrap_or_else(crate::default_csrgate);
    let binaries = Binaries::locate().map_err(kube_error("locating the control plane"))?;
    let state = args.out.join("kube");
    for &n in &args.csrs {
        let mut runs = [Vec::new(), Vec::new()];
        for repeat in 1..=args.repeats {
            for (decider, runs) in [Decider::Floor, Decider::Controller]
                .into_iter()
                .zip(&mut runs)
            {
                let plane = start(&state, &binaries, ControllerManagerOptions::default())?;
                let target = Target::FreshCluster(plane.kubeconfig().to_owned());
                let result = e2e::burst(&csrgate, &target, decider, n, args.creators).await?;
                report_line(
                    &format!("real {}", decider.name()),
                    n,
                    repeat,
                    args.repeats,
                    &result,
                );
                runs.push(result);
            }
        }
        for (decider, runs) in [Decider::Floor, Decider::Controller].into_iter().zip(runs) {
            crate::write_json(
                &args
                    .out
                    .join(format!("real-e2e-{}-{n}.json", decider.name())),
                &crate::runs::aggregate(runs, crate::runs::BURST_KEYS),
            )?;
        }
    }
    if !args.no_scale {
        scale_runs(&args, &csrgate, &binaries, &state).await?;
    }
    for &n in &args.kcm_csrs {
        let mut runs = [Vec::new(), Vec::new()];
        for repeat in 1..=args.repeats {
            for (kcm_decides, runs) in [true, false].into_iter().zip(&mut runs) {
                let result =
                    kubelet_burst(&args, &csrgate, &binaries, &state, n, kcm_decides).await?;
                let decider = result["decider"].as_str().unwrap_or_default().to_owned();
                report_line(
                    &format!("kubelet {decider}"),
                    n,
                    repeat,
                    args.repeats,
                    &result,
                );
                runs.push(result);
            }
        }
        for (decider, runs) in ["kcm", "csrgate"].into_iter().zip(runs) {
            crate::write_json(
                &args.out.join(format!("kcm-{decider}-{n}.json")),
                &crate::runs::aggregate(runs, crate::runs::BURST_KEYS),
            )?;
        }
    }
    Ok(())
}

/// `csrgate-bench scale` on a fresh control plane per run, for the glibc build and (with
/// `--csrgate-musl`) the musl build, taking turns within each repeat.
async fn scale_runs(args: &Args, csrgate: &Path, binaries: &Binaries, state: &Path) -> Result<()> {
    let builds: Vec<(&Path, &str)> = std::iter::once((csrgate, "scale-real.json"))
        .chain(
            args.csrgate_musl
                .iter()
                .map(|musl| (musl.as_path(), "scale-real-musl.json")),
        )
        .collect();
    let mut runs = vec![Vec::new(); builds.len()];
    for repeat in 1..=args.repeats {
        for ((binary, result), runs) in builds.iter().zip(&mut runs) {
            println!(
                "scale on kube-apiserver, {result}: run {repeat}/{}",
                args.repeats
            );
            let plane = start(state, binaries, ControllerManagerOptions::default())?;
            let scale = crate::scale::Args::on_cluster(
                binary.to_path_buf(),
                plane.kubeconfig().to_owned(),
                args.out.clone(),
                result,
            );
            runs.push(crate::scale::measure(&scale).await?);
        }
    }
    for ((_, result), runs) in builds.iter().zip(runs) {
        crate::write_json(
            &args.out.join(result),
            &crate::runs::aggregate(runs, crate::runs::SCALE_KEYS),
        )?;
    }
    Ok(())
}

fn report_line(what: &str, n: usize, repeat: u32, repeats: u32, result: &serde_json::Value) {
    let get = |key: &str| result[key].as_f64().unwrap_or_default();
    println!(
        "{what:>18} N={n:<6} run {repeat}/{repeats} {:>8.0} decisions/s  p50 {:>6.0} ms  p99 {:>6.0} ms  max {:>6.0} ms  CPU {:>6.2} s",
        get("decisions_per_s"),
        get("p50_latency_ms"),
        get("p99_latency_ms"),
        get("max_latency_ms"),
        get("cpu_s"),
    );
}

fn kube_error(what: &str) -> impl FnOnce(csrgate_kube::Error) -> Error {
    let what = what.to_owned();
    move |error| Error::Incomplete(format!("{what}: {}", csrgate_kube::chain(&error)))
}

/// A fresh control plane with the CRD, the CSR creators' RBAC and `extra` manifests applied.
fn start(
    state: &Path,
    binaries: &Binaries,
    options: ControllerManagerOptions,
) -> Result<ControlPlane> {
    let plane = ControlPlane::start_with(state, binaries.clone(), Lifetime::Attached, options)
        .map_err(kube_error("starting the control plane"))?;
    let root = csrgate_kube::repository_root();
    for file in [
        "crds/csrapprovalpolicies.csrgate.dev.yaml",
        "examples/rbac/csr-requesters.yaml",
    ] {
        kubectl(
            &plane,
            &["apply", "-f", &root.join(file).display().to_string()],
            None,
        )?;
    }
    kubectl(&plane, &["apply", "-f", "-"], Some(SELFNODECLIENT))?;
    kubectl(
        &plane,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/csrapprovalpolicies.csrgate.dev",
        ],
        None,
    )?;
    Ok(plane)
}

fn kubectl(plane: &ControlPlane, args: &[&str], stdin: Option<&str>) -> Result<()> {
    use std::io::Write as _;
    let io = |source| Error::Io {
        what: format!("kubectl {args:?}"),
        source,
    };
    let mut child = plane
        .kubectl()
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(io)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(io)?;
    }
    let output = child.wait_with_output().map_err(io)?;
    if !output.status.success() {
        return Err(Error::Incomplete(format!(
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// One burst of N kubelet client CSRs, decided by KCM's approver (`kcm_decides`) or by
/// csrgate with KCM's approver off.
async fn kubelet_burst(
    args: &Args,
    csrgate: &Path,
    binaries: &Binaries,
    state: &Path,
    n: usize,
    kcm_decides: bool,
) -> Result<serde_json::Value> {
    let mut controllers = vec!["csrsigning", "csrcleaner"];
    if kcm_decides {
        controllers.push("csrapproving");
    }
    let options = ControllerManagerOptions {
        controllers: controllers.into_iter().map(str::to_owned).collect(),
        api_qps_burst: args.kcm_qps.map(|qps| (qps, qps.saturating_mul(2))),
    };
    let plane = start(state, binaries, options)?;
    // The requests are made before the clock starts: a kubelet has its key already.
    let requests = node_requests(n)?;
    let admin = cluster::client(plane.kubeconfig(), None).await?;
    let controller = if kcm_decides {
        None
    } else {
        let policy = args.kubelet_policy.display().to_string();
        kubectl(&plane, &["apply", "-f", &policy], None)?;
        let metrics = format!("127.0.0.1:{}", cluster::free_port()?);
        let process = cluster::start_controller(csrgate, plane.kubeconfig(), &metrics, false)?;
        cluster::wait_ready(&metrics, Duration::from_secs(30)).await?;
        Some(process)
    };
    let kcm_pid = plane
        .pid(Component::KubeControllerManager)
        .ok_or_else(|| Error::Incomplete("kube-controller-manager is not running".into()))?;
    let usage = |controller: &Option<Process>| {
        (
            Usage::of(kcm_pid),
            controller.as_ref().map(Process::usage).unwrap_or_default(),
        )
    };
    let before = usage(&controller);
    let timing = e2e::measure(&admin, n, args.creators, |i| {
        create_as_node(admin.clone(), i, requests[i].clone())
    })
    .await;
    let after = usage(&controller);
    drop(controller);
    let decider = if kcm_decides { "kcm" } else { "csrgate" };
    let timing = timing?.complete(decider, n)?;
    let mut result = timing.json(decider, n, args.creators);
    let kcm_cpu_s = after.0.cpu_s - before.0.cpu_s;
    let csrgate_cpu_s = after.1.cpu_s - before.1.cpu_s;
    result["kcm_cpu_s"] = kcm_cpu_s.into();
    if !kcm_decides {
        result["policy"] = args.kubelet_policy.display().to_string().into();
    }
    result["cpu_s"] = if kcm_decides {
        kcm_cpu_s
    } else {
        csrgate_cpu_s
    }
    .into();
    result["peak_rss_mib"] = if kcm_decides { after.0 } else { after.1 }
        .peak_rss_mib
        .into();
    result["kcm_api_qps"] = args
        .kcm_qps
        .map_or(serde_json::json!("default"), Into::into);
    Ok(result)
}

/// N PEM requests as kubelets make them: a P-256 key, CN `system:node:bench-<i>`,
/// O `system:nodes`, no SANs.
fn node_requests(n: usize) -> Result<Vec<String>> {
    (0..n)
        .map(|i| {
            let key = rcgen::KeyPair::generate().map_err(rcgen_error)?;
            let mut params = rcgen::CertificateParams::default();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, format!("system:node:bench-{i}"));
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, "system:nodes");
            let request = params.serialize_request(&key).map_err(rcgen_error)?;
            request.pem().map_err(rcgen_error)
        })
        .collect()
}

fn rcgen_error(error: rcgen::Error) -> Error {
    Error::Data {
        what: "a kubelet client request".into(),
        message: error.to_string(),
    }
}

/// Creates node `i`'s CSR as that node (impersonation headers on one shared client, as
/// kubectl's `--as` sends them); returns its name and when the create was sent.
async fn create_as_node(admin: kube::Client, i: usize, pem: String) -> Result<(String, Instant)> {
    let name = format!("bench-node-{i}");
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        spec: CertificateSigningRequestSpec {
            request: k8s_openapi::ByteString(pem.into_bytes()),
            signer_name: KUBELET_CLIENT.to_owned(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    };
    let body = serde_json::to_vec(&csr).map_err(|e| Error::Data {
        what: name.clone(),
        message: e.to_string(),
    })?;
    let request = http::Request::post("/apis/certificates.k8s.io/v1/certificatesigningrequests")
        .header("Content-Type", "application/json")
        .header("Impersonate-User", format!("system:node:bench-{i}"))
        .header("Impersonate-Group", "system:nodes")
        .body(body)
        .map_err(|e| Error::Data {
            what: name.clone(),
            message: e.to_string(),
        })?;
    let sent = Instant::now();
    admin
        .request::<CertificateSigningRequest>(request)
        .await
        .map_err(|source| Error::Kube {
            what: format!("creating {name} as its node"),
            source,
        })?;
    Ok((name, sent))
}
