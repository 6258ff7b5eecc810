//! `csrgate request` against `csrgate sandbox` and the controller: a person gets a key,
//! a certificate for exactly that key, and a kubeconfig; or a denial with its reason.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{
    Cluster, csrgate, kubeconfig_with_unreachable_current_context, run, write_kubeconfig_as,
};

/// A copy of the sandbox's admin kubeconfig whose user acts as jane in platform-admins
/// (kube-rs sends the kubeconfig's `as`/`as-groups` as impersonation headers, as kubectl does).
fn jane_kubeconfig(cluster: &Cluster) -> PathBuf {
    let path = cluster.dir.path().join("jane.kubeconfig");
    write_kubeconfig_as(&cluster.kubeconfig, &path, "jane", &["platform-admins"]);
    path
}

/// A cluster with the administrators policy and a controller deciding.
fn cluster_with_administrators() -> Cluster {
    let mut cluster = Cluster::start();
    cluster.kubectl_ok(&["apply", "-f", "examples/policies/administrators.yaml"]);
    cluster.start_controller(&[]);
    cluster
}

/// `csrgate request` as jane into `out`, with `extra` arguments; (code, stdout, stderr).
fn request(kubeconfig: &Path, out: &Path, extra: &[&str]) -> (i32, String, String) {
    run(csrgate()
        .args([
            "request",
            "--name",
            "jane",
            "--org",
            "dev-team",
            "--signer",
            "kubernetes.io/kube-apiserver-client",
            "--usages",
            "client auth",
            "--expiration",
            "24h",
            "--timeout",
            "60s",
            "--kubeconfig",
        ])
        .arg(kubeconfig)
        .arg("--out")
        .arg(out)
        .args(extra))
}

fn openssl(args: &[&str]) -> String {
    let (code, stdout, stderr) = run(Command::new("openssl").args(args));
    assert_eq!(code, 0, "openssl {args:?}: {stderr}");
    stdout
}

/// The public key of a certificate and of a private key, as openssl prints them.
fn public_keys(crt: &Path, key: &Path) -> (String, String) {
    (
        openssl(&["x509", "-in", crt.to_str().unwrap(), "-noout", "-pubkey"]),
        openssl(&["pkey", "-in", key.to_str().unwrap(), "-pubout"]),
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn jane_gets_a_certificate_for_her_own_key_and_a_kubeconfig() {
    let cluster = cluster_with_administrators();
    let kubeconfig = jane_kubeconfig(&cluster);
    let out = cluster.dir.path().join("jane");

    let (code, stdout, stderr) = request(&kubeconfig, &out, &["--cn", "jane"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("approved (PolicyApproved"), "{stderr}");

    let (key, crt, config) = (
        out.join("jane.key"),
        out.join("jane.crt"),
        out.join("jane.kubeconfig"),
    );
    assert_eq!(
        mode(&key),
        0o600,
        "the key must be readable by its owner only"
    );
    assert_eq!(mode(&config), 0o600, "the kubeconfig holds the key");
    assert!(!out.join("jane.key.pending").exists());
    let (cert_key, own_key) = public_keys(&crt, &key);
    assert!(cert_key.contains("BEGIN PUBLIC KEY"), "{cert_key}");
    assert_eq!(
        cert_key, own_key,
        "the certificate must carry the generated key"
    );
    let subject = openssl(&["x509", "-in", crt.to_str().unwrap(), "-noout", "-subject"]);
    assert!(subject.contains("CN = jane"), "{subject}");
    assert!(subject.contains("O = dev-team"), "{subject}");

    // The kubeconfig names the sandbox and authenticates with the new certificate and key.
    let written: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(written["clusters"][0]["cluster"]["server"], cluster.url);
    let user = &written["users"][0]["user"];
    use base64::Engine as _;
    let decode = |field: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(user[field].as_str().unwrap())
            .unwrap()
    };
    assert_eq!(
        decode("client-certificate-data"),
        std::fs::read(&crt).unwrap()
    );
    assert_eq!(decode("client-key-data"), std::fs::read(&key).unwrap());

    // The CSR records jane as the requestor and the requested lifetime.
    let csr = cluster.csr("jane");
    assert_eq!(csr["spec"]["username"], "jane");
    assert_eq!(csr["spec"]["expirationSeconds"], 86_400);

    // A second request does not overwrite the first one's files.
    let (code, _, stderr) = request(&kubeconfig, &out, &["--cn", "jane"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("jane.key: already exists"), "{stderr}");
}

#[test]
fn a_denied_request_exits_1_with_the_reason_and_writes_no_certificate() {
    let cluster = cluster_with_administrators();
    let kubeconfig = jane_kubeconfig(&cluster);
    let out = cluster.dir.path().join("jane");

    let (code, stdout, stderr) = request(&kubeconfig, &out, &["--cn", "admin"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("CertificateSigningRequest jane Denied: PolicyDenied: csrgate: denied by CsrApprovalPolicy \"administrators\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("cn-is-requestor: CN admin does not match the requestor jane"),
        "{stderr}"
    );
    for file in [
        "jane.crt",
        "jane.kubeconfig",
        "jane.key",
        "jane.key.pending",
    ] {
        assert!(!out.join(file).exists(), "{file} was written");
    }
}

#[test]
fn renew_replaces_the_certificate_with_one_for_a_new_key() {
    let cluster = cluster_with_administrators();
    let kubeconfig = jane_kubeconfig(&cluster);
    let out = cluster.dir.path().join("jane");
    let (key, crt) = (out.join("jane.key"), out.join("jane.crt"));

    let (code, _, stderr) = request(&kubeconfig, &out, &["--renew", "--cn", "jane"]);
    assert_eq!(code, 2, "nothing to renew yet: {stderr}");
    assert!(stderr.contains("jane.crt: nothing to renew"), "{stderr}");

    let (code, stdout, stderr) = request(&kubeconfig, &out, &["--cn", "jane"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (old_key, old_crt) = (
        std::fs::read_to_string(&key).unwrap(),
        std::fs::read_to_string(&crt).unwrap(),
    );

    let (code, stdout, stderr) = request(
        &kubeconfig,
        &out,
        &["--renew", "--cn", "jane", "--key-type", "ed25519"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (new_key, new_crt) = (
        std::fs::read_to_string(&key).unwrap(),
        std::fs::read_to_string(&crt).unwrap(),
    );
    assert_ne!(old_key, new_key, "renewal makes a new key");
    assert_ne!(old_crt, new_crt, "renewal replaces the certificate");
    assert_eq!(mode(&key), 0o600);
    let (cert_key, own_key) = public_keys(&crt, &key);
    assert_eq!(cert_key, own_key, "the new certificate carries the new key");
    assert!(own_key.contains("BEGIN PUBLIC KEY"));
    let algorithm = openssl(&["pkey", "-in", key.to_str().unwrap(), "-noout", "-text"]);
    assert!(algorithm.contains("ED25519"), "{algorithm}");

    // The renewal is a second CSR, named after the first.
    let names = cluster.kubectl_ok(&["get", "csr", "-o", "name"]);
    let renewals: Vec<&str> = names
        .lines()
        .filter(|l| l.starts_with("certificatesigningrequest.certificates.k8s.io/jane-"))
        .collect();
    assert_eq!(renewals.len(), 1, "{names}");

    // A denied renewal leaves the working files alone.
    let (code, _, stderr) = request(&kubeconfig, &out, &["--renew", "--cn", "admin"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), new_key);
    assert_eq!(std::fs::read_to_string(&crt).unwrap(), new_crt);
}

#[test]
fn context_and_as_pick_the_cluster_and_the_requestor_as_kubectl_does() {
    let cluster = cluster_with_administrators();
    // The admin kubeconfig with a second context, made current, that leads nowhere.
    let (kubeconfig, sandbox_context) = kubeconfig_with_unreachable_current_context(&cluster);
    let out = cluster.dir.path().join("out");

    let nowhere = cluster.dir.path().join("nowhere");
    let (code, _, stderr) = request(&kubeconfig, &nowhere, &["--cn", "jane"]);
    assert_eq!(code, 2, "the current context leads nowhere: {stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");

    let (code, _, stderr) = request(
        &kubeconfig,
        &out,
        &[
            "--cn",
            "jane",
            "--context",
            &sandbox_context,
            "--as",
            "jane",
            "--as-group",
            "platform-admins",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    // The admin impersonated jane: she is the requestor the policy approved.
    let csr = cluster.csr("jane");
    assert_eq!(csr["spec"]["username"], "jane", "{csr:#}");
    assert!(
        csr["spec"]["groups"]
            .as_array()
            .unwrap()
            .contains(&"platform-admins".into())
    );
    let written: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(out.join("jane.kubeconfig")).unwrap())
            .unwrap();
    assert_eq!(written["clusters"][0]["cluster"]["server"], cluster.url);

    let (code, _, stderr) = request(&kubeconfig, &nowhere, &["--cn", "x", "--context", "nosuch"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no such context"), "{stderr}");
}
