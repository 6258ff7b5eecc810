//! The sandbox held against the real server: the same requests to both, compared on status
//! code, `Status` reason and causes, and the stored object (ignoring uid, timestamps and
//! resourceVersion values). Every difference is either fixed in the sandbox or listed in
//! [`KNOWN`] (and in docs/development.md) with its reason; a listed difference that has gone
//! away fails too, so the list stays true.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use base64::Engine as _;
use csrgate_api::client::{Impersonate, client};
use serde_json::{Value, json};

use crate::harness::{
    kubectl_ok, manifest, openssl_request, openssl_request_with_key, plane, serial,
};
use crate::util::{Cluster, repo};

/// Differences kept on purpose: (case, why).
const KNOWN: &[(&str, &str)] = &[(
    "status write by a requestor who may not sign",
    "the sandbox authorizes every request (no RBAC, no approve or sign checks): least privilege is proved on the real server (rbac.rs)",
)];

/// What one server answered.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    code: u16,
    /// `Status.reason`, for failures.
    reason: String,
    /// `(field, reason)` of `Status.details.causes`.
    causes: BTreeSet<(String, String)>,
    body: Value,
}

struct Server {
    client: kube::Client,
    as_jane: kube::Client,
}

impl Server {
    async fn connect(kubeconfig: &Path) -> Self {
        let groups = ["platform-admins".to_owned()];
        let jane = Impersonate::new("jane", &groups);
        let config = |acting| async move { client(kubeconfig, acting).await.unwrap() };
        Self {
            client: config(None).await,
            as_jane: config(Some(jane)).await,
        }
    }

    async fn call(
        &self,
        jane: bool,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> Answer {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("Content-Type", content_type)
            .header("Accept", "application/json")
            .body(kube::client::Body::from(body))
            .unwrap();
        let client = if jane { &self.as_jane } else { &self.client };
        let response = client.send(request).await.unwrap();
        let code = response.status().as_u16();
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        // A watch answers with one JSON event per line: read them as an array.
        let mut documents: Vec<Value> = serde_json::Deserializer::from_slice(&bytes)
            .into_iter::<Value>()
            .map_while(Result::ok)
            .collect();
        let body = if documents.len() == 1 {
            documents.remove(0)
        } else if documents.is_empty() {
            Value::Null
        } else {
            Value::Array(documents)
        };
        let causes = body["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["field"].as_str().unwrap_or_default().to_owned(),
                    c["reason"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        Answer {
            code,
            reason: if body["kind"] == "Status" {
                body["reason"].as_str().unwrap_or_default().to_owned()
            } else {
                String::new()
            },
            causes,
            body,
        }
    }
}

/// The stored object without what differs by nature between servers.
fn normalized(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "generation",
        ] {
            meta.remove(key);
        }
    }
    // Go serializes structs that are not pointers even when empty; the typed Rust objects
    // of the sandbox leave them out. Both mean "nothing set".
    if let Some(status) = object.get_mut("status").and_then(Value::as_object_mut) {
        let zero = |v: &Value| match v {
            Value::Object(map) => map.values().all(|v| {
                v.as_str() == Some("")
                    || v.as_i64() == Some(0)
                    || v.as_object()
                        .is_some_and(|m| m.values().all(|x| x.as_i64() == Some(0)))
            }),
            _ => false,
        };
        status.retain(|_, v| !zero(v));
    }
    let empty_status = object
        .get("status")
        .is_some_and(|s| s.as_object().is_some_and(serde_json::Map::is_empty));
    if empty_status && let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
        // The API server records the requestor's uid and credential id, which differ.
        spec.remove("uid");
        spec.remove("extra");
    }
    for condition in object
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(c) = condition.as_object_mut() {
            c.remove("lastUpdateTime");
            c.remove("lastTransitionTime");
        }
    }
    object
}

/// A CSR manifest with `expirationSeconds` as given (absent for `None`).
fn csr(name: &str, pem: &str, signer: &str, usages: &[&str], expiration: Option<i64>) -> Value {
    let mut csr = manifest(name, pem, signer, usages);
    match expiration {
        Some(seconds) => csr["spec"]["expirationSeconds"] = seconds.into(),
        None => {
            if let Some(spec) = csr["spec"].as_object_mut() {
                spec.remove("expirationSeconds");
            }
        }
    }
    csr
}

const CSRS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
const JSON: &str = "application/json";

#[test]
fn the_sandbox_answers_as_kube_apiserver_does() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Cluster::start();
    for kubeconfig in [sandbox.kubeconfig.as_path(), plane().kubeconfig()] {
        let ok = kubectl_ok(&[
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "apply",
            "-f",
            "crds/csrapprovalpolicies.csrgate.dev.yaml",
        ]);
        assert!(ok.contains("csrapprovalpolicies"), "{ok}");
    }
    let (_, p256) = openssl_request(dir.path(), "p256", "/CN=jane/O=platform-admins");
    let rsa1024 = openssl_request_with_key(
        dir.path(),
        "rsa1024",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
        "/CN=jane",
    );
    let p521 = openssl_request_with_key(
        dir.path(),
        "p521",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"],
        "/CN=jane",
    );
    let ed25519 = openssl_request_with_key(
        dir.path(),
        "ed25519",
        &["-algorithm", "ED25519"],
        "/CN=jane",
    );
    let masters = openssl_request_with_key(
        dir.path(),
        "masters",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "/CN=jane/O=system:masters",
    );
    let utf8 = std::fs::read_to_string(repo("tests/real/fixtures/utf8-dnsname.csr")).unwrap();
    let forged = {
        // One bit of the signature flipped: the PEM and DER still parse.
        let der = base64::engine::general_purpose::STANDARD
            .decode(
                p256.lines()
                    .filter(|l| !l.starts_with("-----"))
                    .collect::<String>(),
            )
            .unwrap();
        let mut der = der;
        let last = der.len() - 1;
        der[last] ^= 1;
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN CERTIFICATE REQUEST-----\n{body}\n-----END CERTIFICATE REQUEST-----\n")
    };
    let client = "kubernetes.io/kube-apiserver-client";
    let long_domain = format!("{}.example.com", "a".repeat(63));
    let label = "a".repeat(63);
    let longest_signer = format!(
        "{label}.{label}.{label}.{}/{}.{}",
        "b".repeat(61),
        "c".repeat(253),
        "d".repeat(63)
    );
    let too_long_signer = format!("{longest_signer}e");
    let creates: Vec<(&str, Value)> = vec![
        (
            "valid P-256 client request",
            csr("diff-p256", &p256, client, &["client auth"], Some(86_400)),
        ),
        (
            "RSA 1024",
            csr(
                "diff-rsa1024",
                &rsa1024,
                "example.com/x",
                &["client auth"],
                None,
            ),
        ),
        (
            "P-521",
            csr("diff-p521", &p521, "example.com/x", &["client auth"], None),
        ),
        (
            "Ed25519",
            csr(
                "diff-ed25519",
                &ed25519,
                "example.com/x",
                &["client auth"],
                None,
            ),
        ),
        (
            "raw UTF-8 dNSName",
            csr("diff-utf8", &utf8, "example.com/x", &["server auth"], None),
        ),
        (
            "forged signature",
            csr(
                "diff-forged",
                &forged,
                "example.com/x",
                &["client auth"],
                None,
            ),
        ),
        (
            "not PEM",
            csr(
                "diff-not-pem",
                "hello",
                "example.com/x",
                &["client auth"],
                None,
            ),
        ),
        (
            "system:masters client",
            csr("diff-masters", &masters, client, &["client auth"], None),
        ),
        (
            "signerName without path",
            csr(
                "diff-signer-1",
                &p256,
                "example.com",
                &["client auth"],
                None,
            ),
        ),
        (
            "signerName with two slashes",
            csr(
                "diff-signer-2",
                &p256,
                "example.com/a/b",
                &["client auth"],
                None,
            ),
        ),
        (
            "signerName with a long domain",
            csr(
                "diff-signer-3",
                &p256,
                &format!("{long_domain}/x"),
                &["client auth"],
                None,
            ),
        ),
        (
            "the longest signerName",
            csr(
                "diff-signer-5",
                &p256,
                &longest_signer,
                &["client auth"],
                None,
            ),
        ),
        (
            "a signerName one byte too long",
            csr(
                "diff-signer-6",
                &p256,
                &too_long_signer,
                &["client auth"],
                None,
            ),
        ),
        (
            "signerName of the legacy unknown signer",
            csr(
                "diff-signer-4",
                &p256,
                "kubernetes.io/legacy-unknown",
                &["client auth"],
                None,
            ),
        ),
        (
            "unknown usage",
            csr("diff-usage-1", &p256, "example.com/x", &["bogus"], None),
        ),
        (
            "duplicate usage",
            csr(
                "diff-usage-2",
                &p256,
                "example.com/x",
                &["client auth", "client auth"],
                None,
            ),
        ),
        (
            "kubelet-serving without server auth",
            csr(
                "diff-usage-3",
                &p256,
                "kubernetes.io/kubelet-serving",
                &["client auth"],
                None,
            ),
        ),
        (
            "expirationSeconds below 600",
            csr(
                "diff-expiry-1",
                &p256,
                "example.com/x",
                &["client auth"],
                Some(599),
            ),
        ),
        (
            "expirationSeconds 600",
            csr(
                "diff-expiry-2",
                &p256,
                "example.com/x",
                &["client auth"],
                Some(600),
            ),
        ),
        (
            "the same name twice",
            csr("diff-p256", &p256, client, &["client auth"], Some(86_400)),
        ),
    ];

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let differences = runtime.block_on(async {
        let servers = [
            Server::connect(&sandbox.kubeconfig).await,
            Server::connect(plane().kubeconfig()).await,
        ];
        let mut differences: BTreeMap<String, String> = BTreeMap::new();
        let mut compare = |case: &str, answers: [Answer; 2], body_too: bool| {
            let [sandbox, real] = answers;
            let same = sandbox.code == real.code
                && sandbox.reason == real.reason
                && sandbox.causes == real.causes
                && (!body_too || normalized(&sandbox.body) == normalized(&real.body));
            if !same {
                differences.insert(
                    case.to_owned(),
                    format!(
                        "sandbox {} {} {:?}\n    real {} {} {:?}\n    sandbox body {}\n    real body {}",
                        sandbox.code,
                        sandbox.reason,
                        sandbox.causes,
                        real.code,
                        real.reason,
                        real.causes,
                        normalized(&sandbox.body),
                        normalized(&real.body)
                    ),
                );
            }
        };
        for (case, body) in &creates {
            let mut answers = Vec::new();
            for server in &servers {
                answers.push(server.call(true, "POST", CSRS, JSON, Some(body)).await);
            }
            let answers: [Answer; 2] = answers.try_into().unwrap();
            let created = answers[1].code == 201;
            compare(&format!("create: {case}"), answers, created);
        }

        // Approval: a condition added with the resourceVersion read, then again with the
        // same (now stale) resourceVersion.
        let mut stale = Vec::new();
        for (i, server) in servers.iter().enumerate() {
            let read = server.call(false, "GET", &format!("{CSRS}/diff-p256"), JSON, None).await;
            let mut body = read.body.clone();
            body["status"]["conditions"] = json!([{"type": "Approved", "status": "True",
                "reason": "DiffTest", "message": "approved by the differential test"}]);
            let written = server
                .call(false, "PUT", &format!("{CSRS}/diff-p256/approval"), JSON, Some(&body))
                .await;
            stale.push((i, body, written));
        }
        let mut first = Vec::new();
        let mut again = Vec::new();
        for (i, mut body, written) in stale {
            first.push(written);
            body["status"]["conditions"] = json!([{"type": "Denied", "status": "True",
                "reason": "DiffTest", "message": "a stale write"}]);
            again.push(
                servers[i]
                    .call(false, "PUT", &format!("{CSRS}/diff-p256/approval"), JSON, Some(&body))
                    .await,
            );
        }
        compare("approval write", first.try_into().unwrap(), true);
        compare("approval write with a stale resourceVersion", again.try_into().unwrap(), false);

        // The status subresource as a requestor who may not sign: the CertificateSigning
        // admission plugin refuses a certificate from anyone without `sign` on the signer.
        let mut signed = Vec::new();
        for server in &servers {
            let mut body = server
                .call(false, "GET", &format!("{CSRS}/diff-ed25519"), JSON, None)
                .await
                .body;
            body["status"]["certificate"] =
                base64::engine::general_purpose::STANDARD.encode("not a certificate").into();
            signed.push(
                server
                    .call(true, "PUT", &format!("{CSRS}/diff-ed25519/status"), JSON, Some(&body))
                    .await,
            );
        }
        compare("status write by a requestor who may not sign", signed.try_into().unwrap(), false);

        // List paging.
        let mut pages = Vec::new();
        for server in &servers {
            let mut page = server.call(false, "GET", &format!("{CSRS}?limit=1"), JSON, None).await;
            let has_continue = page.body["metadata"]["continue"]
                .as_str()
                .is_some_and(|c| !c.is_empty());
            let items = page.body["items"].as_array().map_or(0, Vec::len);
            page.body = json!({"continue": has_continue, "items": items});
            pages.push(page);
        }
        compare("list with limit=1", pages.try_into().unwrap(), true);

        // Discovery of the CSR resource and its subresources.
        let mut discovery = Vec::new();
        for server in &servers {
            let mut answer = server
                .call(false, "GET", "/apis/certificates.k8s.io/v1", JSON, None)
                .await;
            // The sandbox serves CSRs only, not the group's other resources.
            let resources: BTreeMap<String, Value> = answer.body["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| {
                    r["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("certificatesigningrequests"))
                })
                .map(|r| {
                    let mut verbs: Vec<String> = r["verbs"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect();
                    verbs.sort();
                    (
                        r["name"].as_str().unwrap_or_default().to_owned(),
                        json!({"kind": r["kind"], "namespaced": r["namespaced"], "verbs": verbs}),
                    )
                })
                .collect();
            answer.body = json!(resources);
            discovery.push(answer);
        }
        compare("discovery /apis/certificates.k8s.io/v1", discovery.try_into().unwrap(), true);

        // Node CRUD.
        let node = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "diff-node", "labels": {"a": "b"}},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.9"}]}});
        for (case, method, path, body) in [
            ("node create", "POST", "/api/v1/nodes", Some(&node)),
            ("node get", "GET", "/api/v1/nodes/diff-node", None),
            ("node delete", "DELETE", "/api/v1/nodes/diff-node", None),
            ("node get after delete", "GET", "/api/v1/nodes/diff-node", None),
        ] {
            let mut answers = Vec::new();
            for server in &servers {
                answers.push(server.call(false, method, path, JSON, body).await);
            }
            let body_too = method != "DELETE" && answers[1].code < 300;
            compare(case, answers.try_into().unwrap(), body_too);
        }

        // Watches: from a resourceVersion read before a create, and from one in the future.
        // (A watch from an old resourceVersion such as 1 gets 410 from kube-apiserver only
        // once its watch cache has moved past it, which depends on the cluster's history:
        // not compared.) Each ends after two seconds; compared are the
        // events' types and objects' names, or the Status an ERROR event carries.
        let mut from_list = Vec::new();
        for server in &servers {
            let list = server.call(false, "GET", &format!("{CSRS}?limit=1"), JSON, None).await;
            let rv = list.body["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let watched = csr("diff-watched", &p256, "example.com/x", &["client auth"], None);
            server.call(true, "POST", CSRS, JSON, Some(&watched)).await;
            from_list.push(rv);
        }
        for (case, rv_of) in [
            ("watch from a resourceVersion before a create", 0),
            ("watch from a resourceVersion in the future", 1),
        ] {
            // kube-apiserver waits up to 3 s for a future resourceVersion before it answers.
            let timeout = if rv_of == 1 { 6 } else { 2 };
            let mut answers = Vec::new();
            for (i, server) in servers.iter().enumerate() {
                let rv = match rv_of {
                    0 => from_list[i].clone(),
                    _ => (from_list[i].parse::<u64>().unwrap_or(0) + 1_000_000).to_string(),
                };
                let mut answer = server
                    .call(
                        false,
                        "GET",
                        &format!(
                            "{CSRS}?watch=true&resourceVersion={rv}&timeoutSeconds={timeout}&fieldSelector=metadata.name%3Ddiff-watched"
                        ),
                        JSON,
                        None,
                    )
                    .await;
                let events: Vec<Value> = match &answer.body {
                    Value::Array(events) => events.clone(),
                    Value::Null => Vec::new(),
                    one => vec![one.clone()],
                };
                answer.body = events
                    .iter()
                    .map(|e| {
                        if e["type"] == "ERROR" {
                            json!(["ERROR", e["object"]["code"], e["object"]["reason"]])
                        } else {
                            json!([e["type"], e["object"]["metadata"]["name"]])
                        }
                    })
                    .collect();
                answers.push(answer);
            }
            eprintln!(
                "{case}: sandbox {} {}, real {} {}",
                answers[0].code, answers[0].body, answers[1].code, answers[1].body
            );
            compare(case, answers.try_into().unwrap(), true);
        }

        // The CRD's printer columns, as `kubectl get csrpolicy` asks for them.
        let policy: Value = serde_saphyr::from_str(
            &std::fs::read_to_string(repo("examples/policies/administrators.yaml")).unwrap(),
        )
        .unwrap();
        let mut tables = Vec::new();
        for server in &servers {
            server
                .call(false, "POST", "/apis/csrgate.dev/v1alpha1/csrapprovalpolicies", JSON, Some(&policy))
                .await;
            let request = http::Request::builder()
                .method("GET")
                .uri("/apis/csrgate.dev/v1alpha1/csrapprovalpolicies")
                .header(
                    "Accept",
                    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
                )
                .body(kube::client::Body::empty())
                .unwrap();
            let response = server.client.send(request).await.unwrap();
            let code = response.status().as_u16();
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            let table: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let columns: Vec<&Value> = table["columnDefinitions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| &c["name"])
                .collect();
            tables.push(Answer {
                code,
                reason: String::new(),
                causes: BTreeSet::new(),
                body: json!({"kind": table["kind"], "columns": columns,
                             "rows": table["rows"].as_array().map_or(0, Vec::len)}),
            });
        }
        compare("table of csrapprovalpolicies", tables.try_into().unwrap(), true);

        // The OpenAPI v3 documents kubectl reads before create and apply: the group-version
        // paths, and `fieldValidation` on the CSR's patch operation (kubectl then sends
        // `?fieldValidation=Strict` and leaves unknown fields to the server).
        let mut openapi = Vec::new();
        for server in &servers {
            let mut index = server.call(false, "GET", "/openapi/v3", JSON, None).await;
            let has = |path: &str| index.body["paths"][path]["serverRelativeURL"].is_string();
            let paths = json!({
                "certificates": has("apis/certificates.k8s.io/v1"),
                "csrgate": has("apis/csrgate.dev/v1alpha1"),
            });
            let url = index.body["paths"]["apis/certificates.k8s.io/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap_or("/openapi/v3/apis/certificates.k8s.io/v1")
                .to_owned();
            let document = server.call(false, "GET", &url, JSON, None).await;
            let parameters: Vec<String> = document.body["paths"]
                ["/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}"]["patch"]
                ["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    p["name"]
                        .as_str()
                        .or_else(|| p["$ref"].as_str().and_then(|r| r.rsplit('/').next()))
                        .map(str::to_owned)
                })
                .collect();
            let field_validation = parameters.iter().any(|p| p.contains("fieldValidation"));
            index.body = json!({"paths": paths, "patch has fieldValidation": field_validation,
                                "document": document.code});
            openapi.push(index);
        }
        compare("openapi v3 documents kubectl reads", openapi.try_into().unwrap(), true);

        // Server-side apply of a Lease, as leader election writes it.
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "diff-lease", "namespace": "default"},
            "spec": {"holderIdentity": "diff", "leaseDurationSeconds": 15}});
        let mut applied = Vec::new();
        for server in &servers {
            applied.push(
                server
                    .call(
                        false,
                        "PATCH",
                        "/apis/coordination.k8s.io/v1/namespaces/default/leases/diff-lease?fieldManager=diff",
                        "application/apply-patch+yaml",
                        Some(&lease),
                    )
                    .await,
            );
        }
        compare("lease server-side apply", applied.try_into().unwrap(), true);
        for server in &servers {
            server
                .call(false, "DELETE", "/apis/coordination.k8s.io/v1/namespaces/default/leases/diff-lease", JSON, None)
                .await;
        }
        differences
    });

    let known: BTreeMap<&str, &str> = KNOWN.iter().copied().collect();
    let unexpected: Vec<String> = differences
        .iter()
        .filter(|(case, _)| !known.contains_key(case.as_str()))
        .map(|(case, detail)| format!("{case}:\n    {detail}"))
        .collect();
    let gone: Vec<&&str> = known
        .keys()
        .filter(|case| !differences.contains_key(**case))
        .collect();
    assert!(
        unexpected.is_empty() && gone.is_empty(),
        "{} unexpected differences:\n{}\nlisted differences no longer seen: {gone:?}",
        unexpected.len(),
        unexpected.join("\n")
    );
}
