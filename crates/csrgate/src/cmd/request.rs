//! `csrgate request`: make a key and a CSR, submit it, wait for the certificate, write the files.
//!
//! The manual flow (`openssl genpkey`, `openssl req`, base64, a CertificateSigningRequest
//! manifest, `kubectl get csr` until it is issued, a kubeconfig by hand) done for the person.
//! The key never leaves this machine: it is written (mode 0600) before the CSR is submitted,
//! and a certificate is written only when it carries exactly that key's public key.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use csrgate_api::client::{
    ClientError, Impersonate, client_certificate_kubeconfig, client_from, conditions,
};
use csrgate_api::csr::{self, ConditionType};
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError, NamedCluster};
use kube::runtime::wait::{Condition as _, await_condition};
use rcgen::PublicKeyData as _;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use super::Outcome;
use crate::cli::RequestArgs;
use crate::keygen::{KeygenError, build_request, generate_key};

/// The shortest lifetime the API server accepts in `spec.expirationSeconds`.
const MIN_EXPIRATION: Duration = Duration::from_secs(600);
/// How often the progress line is refreshed while waiting.
const POLL: Duration = Duration::from_millis(500);

/// Why `csrgate request` could not get a certificate (a Denied CSR is an outcome, not an error).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// `--expiration` is below what the API server accepts.
    #[error(
        "--expiration of {0} seconds is below the 600 seconds (10 minutes) the API server accepts"
    )]
    ExpirationTooShort(u64),
    /// `--expiration` does not fit `spec.expirationSeconds` (an int32).
    #[error("--expiration of {0} seconds does not fit spec.expirationSeconds")]
    ExpirationTooLong(u64),
    /// A file of an earlier request exists and `--renew` was not given.
    #[error("{}: already exists (pass --renew to replace it, or choose another --name or --out)", .0.display())]
    AlreadyExists(PathBuf),
    /// `--renew` without the certificate of an earlier request.
    #[error("{}: nothing to renew (--renew replaces the certificate of an earlier request)", .0.display())]
    NothingToRenew(PathBuf),
    /// The kubeconfig cannot be read.
    #[error("reading kubeconfig {0}")]
    KubeconfigRead(String, #[source] KubeconfigError),
    /// The kubeconfig has no such context (`--context`, else its current context), or the
    /// context names no cluster.
    #[error(
        "kubeconfig {0}: no such context (--context, else current-context), or it names no cluster"
    )]
    NoCluster(String),
    /// The kubeconfig does not make a client.
    #[error(transparent)]
    Client(ClientError),
    /// The key or the certificate request could not be made.
    #[error(transparent)]
    Keygen(#[from] KeygenError),
    /// A file could not be read.
    #[error("reading {}", .0.display())]
    ReadFile(PathBuf, #[source] std::io::Error),
    /// A file or directory could not be written.
    #[error("writing {}", .0.display())]
    WriteFile(PathBuf, #[source] std::io::Error),
    /// The API server refused to create the CertificateSigningRequest.
    #[error("creating CertificateSigningRequest {0}")]
    Create(String, #[source] kube::Error),
    /// The CertificateSigningRequest could not be watched while waiting.
    #[error("watching CertificateSigningRequest {0}")]
    Read(String, #[source] kube::runtime::wait::Error),
    /// No decision before the timeout.
    #[error(
        "CertificateSigningRequest {name}: no decision within {seconds}s; the key is kept in {} (`kubectl describe csr {name}` says why)",
        key.display()
    )]
    NoDecision {
        /// The CSR.
        name: String,
        /// The timeout.
        seconds: u64,
        /// Where the generated key was kept.
        key: PathBuf,
    },
    /// Approved, but the signer wrote no certificate before the timeout.
    #[error(
        "CertificateSigningRequest {name}: approved, but no certificate was issued within {seconds}s (is a signer running for it?); the key is kept in {}",
        key.display()
    )]
    NotIssued {
        /// The CSR.
        name: String,
        /// The timeout.
        seconds: u64,
        /// Where the generated key was kept.
        key: PathBuf,
    },
    /// `status.certificate` is not a readable PEM certificate.
    #[error("CertificateSigningRequest {0}: status.certificate is not a readable certificate")]
    CertificateUnreadable(
        String,
        #[source] Box<dyn std::error::Error + Send + Sync + 'static>,
    ),
    /// The issued certificate is for another key than the one generated.
    #[error(
        "CertificateSigningRequest {0}: the issued certificate carries another public key than the generated one; nothing was written"
    )]
    KeyMismatch(String),
    /// The async runtime could not start.
    #[error("starting the async runtime")]
    Runtime(#[source] std::io::Error),
}

/// Makes a key and CSR, submits it, waits for the decision and the certificate, writes the files.
///
/// Needs `create`, `list` and `watch` on `certificatesigningrequests` for the kubeconfig's
/// user (the wait watches the one CSR, as `kubectl wait` does).
///
/// # Errors
/// See [`RequestError`]; a Denied or Failed CSR is `Ok(Outcome::Mismatch)` (exit 1).
pub fn run(args: &RequestArgs) -> Result<Outcome, super::Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(RequestError::Runtime)?;
    Ok(runtime.block_on(request(args))?)
}

/// The files of one request, and the temporary names used until the certificate is verified.
#[derive(Debug)]
struct Files {
    key: PathBuf,
    crt: PathBuf,
    kubeconfig: PathBuf,
    pending_key: PathBuf,
    pending_crt: PathBuf,
    pending_kubeconfig: PathBuf,
}

impl Files {
    fn new(dir: &Path, name: &str) -> Self {
        let file = |suffix: &str| dir.join(format!("{name}{suffix}"));
        Self {
            key: file(".key"),
            crt: file(".crt"),
            kubeconfig: file(".kubeconfig"),
            pending_key: file(".key.pending"),
            pending_crt: file(".crt.pending"),
            pending_kubeconfig: file(".kubeconfig.pending"),
        }
    }

    /// Refuses to replace an earlier request's files, unless renewing one, which must exist.
    fn check(&self, renew: bool) -> Result<(), RequestError> {
        if renew {
            if !self.crt.exists() {
                return Err(RequestError::NothingToRenew(self.crt.clone()));
            }
        } else if let Some(existing) = [&self.key, &self.crt, &self.kubeconfig]
            .into_iter()
            .find(|p| p.exists())
        {
            return Err(RequestError::AlreadyExists(existing.clone()));
        }
        Ok(())
    }

    /// Writes the certificate and the kubeconfig (YAML, mode 0600: it holds the key) beside
    /// the pending key, then moves all three into place.
    fn write(&self, certificate: &[u8], kubeconfig: &Kubeconfig) -> Result<(), RequestError> {
        std::fs::write(&self.pending_crt, certificate)
            .map_err(|e| RequestError::WriteFile(self.pending_crt.clone(), e))?;
        // YAML, as kubectl writes kubeconfigs; the cluster and user are kube's own types.
        let kubeconfig = serde_saphyr::to_string(kubeconfig).map_err(|e| {
            RequestError::WriteFile(self.pending_kubeconfig.clone(), std::io::Error::other(e))
        })?;
        write_private(&self.pending_kubeconfig, kubeconfig.as_bytes())?;
        self.commit()
    }

    /// Moves the pending files into place, the key first: each rename is atomic.
    fn commit(&self) -> Result<(), RequestError> {
        for (from, to) in [
            (&self.pending_key, &self.key),
            (&self.pending_crt, &self.crt),
            (&self.pending_kubeconfig, &self.kubeconfig),
        ] {
            std::fs::rename(from, to).map_err(|e| RequestError::WriteFile(to.clone(), e))?;
        }
        Ok(())
    }
}

async fn request(args: &RequestArgs) -> Result<Outcome, RequestError> {
    let expiration_seconds = expiration_seconds(args.expiration)?;
    let files = Files::new(&args.out, &args.name);
    files.check(args.renew)?;
    let (client, cluster, namespace) = connect(args).await?;

    let key = generate_key(args.key_type)?;
    let request_pem = build_request(args, &key)?;
    std::fs::create_dir_all(&args.out).map_err(|e| RequestError::WriteFile(args.out.clone(), e))?;
    // The key is on disk before anyone can approve its CSR: a certificate is never issued
    // for a key that was lost.
    write_private(&files.pending_key, key.serialize_pem().as_bytes())?;

    let csr_name = csr_name(args);
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(csr_name.clone()),
            ..ObjectMeta::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request_pem.into_bytes()),
            signer_name: args.signer.clone(),
            usages: Some(args.usages.clone()),
            expiration_seconds: Some(expiration_seconds),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    };
    let api: Api<CertificateSigningRequest> = Api::all(client);
    if let Err(error) = api.create(&PostParams::default(), &csr).await {
        let _ = std::fs::remove_file(&files.pending_key);
        return Err(RequestError::Create(csr_name, error));
    }
    eprintln!(
        "created CertificateSigningRequest {csr_name} for signer {}; waiting up to {}s for a decision",
        args.signer,
        args.timeout.as_secs()
    );

    let certificate = match wait(&api, &csr_name, args.timeout, &files.pending_key).await? {
        Waited::Issued(pem) => pem,
        Waited::Refused {
            type_,
            reason,
            message,
        } => {
            eprintln!("CertificateSigningRequest {csr_name} {type_}: {reason}: {message}");
            let _ = std::fs::remove_file(&files.pending_key);
            return Ok(Outcome::Mismatch);
        }
    };
    let not_after = match verify(&csr_name, &certificate, &key.subject_public_key_info()) {
        Ok(not_after) => not_after,
        Err(error) => {
            let _ = std::fs::remove_file(&files.pending_key);
            return Err(error);
        }
    };
    let kubeconfig = client_certificate_kubeconfig(
        cluster,
        &args.name,
        namespace.as_deref(),
        &certificate,
        key.serialize_pem().as_bytes(),
    );
    files.write(&certificate, &kubeconfig)?;
    println!(
        "wrote {}, {} and {} (CertificateSigningRequest {csr_name}; valid until {not_after})",
        files.key.display(),
        files.crt.display(),
        files.kubeconfig.display()
    );
    Ok(Outcome::Success)
}

/// A client for the kubeconfig's cluster (`--kubeconfig`, `--context`, `--as`), the cluster
/// itself and the context's namespace, for the kubeconfig written at the end.
async fn connect(
    args: &RequestArgs,
) -> Result<(kube::Client, NamedCluster, Option<String>), RequestError> {
    let (kubeconfig, source) = read_kubeconfig(args.kubeconfig.as_deref())?;
    let (cluster, namespace) = current_cluster(&kubeconfig, &source, args.context.as_deref())?;
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let acting = args
        .as_user
        .as_deref()
        .map(|user| Impersonate::new(user, &args.as_groups));
    let client = client_from(kubeconfig, &options, acting, Path::new(&source))
        .await
        .map_err(RequestError::Client)?;
    Ok((client, cluster, namespace))
}

/// The CSR's name: `--name`, or for a renewal `--name` with the time and a random tag, since
/// CSR names are unique and kept after issuance.
fn csr_name(args: &RequestArgs) -> String {
    if !args.renew {
        return args.name.clone();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut tag = [0u8; 2];
    let _ = getrandom::fill(&mut tag);
    format!("{}-{now}-{:02x}{:02x}", args.name, tag[0], tag[1])
}

fn expiration_seconds(expiration: Duration) -> Result<i32, RequestError> {
    let seconds = expiration.as_secs();
    if expiration < MIN_EXPIRATION {
        return Err(RequestError::ExpirationTooShort(seconds));
    }
    i32::try_from(seconds).map_err(|_| RequestError::ExpirationTooLong(seconds))
}

/// The kubeconfig from `--kubeconfig`, else KUBECONFIG, else ~/.kube/config; and how to name it.
fn read_kubeconfig(path: Option<&Path>) -> Result<(Kubeconfig, String), RequestError> {
    match path {
        Some(path) => {
            let source = path.display().to_string();
            Kubeconfig::read_from(path)
                .map(|k| (k, source.clone()))
                .map_err(|e| RequestError::KubeconfigRead(source, e))
        }
        None => {
            let source = "(KUBECONFIG or ~/.kube/config)".to_owned();
            Kubeconfig::read()
                .map(|k| (k, source.clone()))
                .map_err(|e| RequestError::KubeconfigRead(source, e))
        }
    }
}

/// The cluster of `context` (else of the current context), with a certificate-authority file
/// embedded as data so that the written kubeconfig works from anywhere, and its namespace.
fn current_cluster(
    kubeconfig: &Kubeconfig,
    source: &str,
    context: Option<&str>,
) -> Result<(NamedCluster, Option<String>), RequestError> {
    let no_cluster = || RequestError::NoCluster(source.to_owned());
    let context = context
        .or(kubeconfig.current_context.as_deref())
        .and_then(|name| kubeconfig.contexts.iter().find(|c| c.name == name))
        .and_then(|c| c.context.as_ref())
        .ok_or_else(no_cluster)?;
    let mut cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .cloned()
        .ok_or_else(no_cluster)?;
    if let Some(info) = cluster.cluster.as_mut()
        && info.certificate_authority_data.is_none()
        && let Some(path) = info.certificate_authority.take()
    {
        let pem = std::fs::read(&path).map_err(|e| RequestError::ReadFile(path.into(), e))?;
        info.certificate_authority_data =
            Some(base64::engine::general_purpose::STANDARD.encode(pem));
    }
    Ok((cluster, context.namespace.clone()))
}

/// How waiting ended, short of an error.
enum Waited {
    /// Approved and issued: `status.certificate`, PEM.
    Issued(Vec<u8>),
    /// A `Denied` or `Failed` condition.
    Refused {
        type_: String,
        reason: String,
        message: String,
    },
}

/// Watches the CSR until it is Denied or Failed, or Approved with a certificate, printing a
/// progress line on stderr. The sandbox and real signers write the certificate in a second
/// write after the approval, so `Approved` alone is not the end.
async fn wait(
    api: &Api<CertificateSigningRequest>,
    name: &str,
    timeout: Duration,
    key: &Path,
) -> Result<Waited, RequestError> {
    let mut progress = Progress::new(name, tokio::time::Instant::now() + timeout);
    let failed = |approved, error| {
        let (name, seconds, key) = (name.to_owned(), timeout.as_secs(), key.to_owned());
        match error {
            Some(error) => RequestError::Read(name, error),
            None if approved => RequestError::NotIssued { name, seconds, key },
            None => RequestError::NoDecision { name, seconds, key },
        }
    };
    let decided = await_condition(api.clone(), name, conditions::is_csr_decided());
    let csr = match progress.during("pending", decided).await {
        Some(Ok(Some(csr))) => csr,
        Some(Ok(None)) | None => return Err(failed(false, None)),
        Some(Err(error)) => return Err(failed(false, Some(error))),
    };
    if let Some(refused) = Waited::refused(&csr) {
        return Ok(refused);
    }
    if let Some(approval) = csr::true_condition(&csr, &[ConditionType::Approved]) {
        progress.note(&format!(
            "approved ({}: {})",
            approval.reason.as_deref().unwrap_or(""),
            approval.message.as_deref().unwrap_or("")
        ));
    }
    let issued =
        conditions::is_csr_issued().or(conditions::has_csr_condition(ConditionType::Failed));
    let issued = await_condition(api.clone(), name, issued);
    let csr = match progress
        .during("approved, waiting for the certificate", issued)
        .await
    {
        Some(Ok(Some(csr))) => csr,
        Some(Ok(None)) | None => return Err(failed(true, None)),
        Some(Err(error)) => return Err(failed(true, Some(error))),
    };
    match csr::certificate(&csr) {
        Some(certificate) => Ok(Waited::Issued(certificate.to_vec())),
        None => Waited::refused(&csr).ok_or_else(|| failed(true, None)),
    }
}

impl Waited {
    /// The CSR's true `Denied` condition, else its true `Failed` one.
    fn refused(csr: &CertificateSigningRequest) -> Option<Self> {
        let refused = csr::true_condition(csr, &[ConditionType::Denied])
            .or_else(|| csr::true_condition(csr, &[ConditionType::Failed]))?;
        Some(Self::Refused {
            type_: refused.type_.clone(),
            reason: refused.reason.clone().unwrap_or_default(),
            message: refused.message.clone().unwrap_or_default(),
        })
    }
}

/// The progress line: rewritten in place on a terminal, one line per change otherwise.
struct Progress {
    name: String,
    terminal: bool,
    last: String,
    open: bool,
    start: Instant,
    deadline: tokio::time::Instant,
}

impl Progress {
    fn new(name: &str, deadline: tokio::time::Instant) -> Self {
        Self {
            name: name.to_owned(),
            terminal: std::io::stderr().is_terminal(),
            last: String::new(),
            open: false,
            start: Instant::now(),
            deadline,
        }
    }

    /// Shows `state` every [`POLL`] until `wait` ends (its output) or the deadline passes
    /// (`None`); the line is closed either way.
    async fn during<F: std::future::Future>(&mut self, state: &str, wait: F) -> Option<F::Output> {
        let mut wait = std::pin::pin!(wait);
        let expired = tokio::time::sleep_until(self.deadline);
        let mut expired = std::pin::pin!(expired);
        let mut ticks = tokio::time::interval(POLL);
        let output = loop {
            tokio::select! {
                output = &mut wait => break Some(output),
                () = &mut expired => break None,
                _ = ticks.tick() => self.tick(state),
            }
        };
        self.done();
        output
    }

    fn tick(&mut self, state: &str) {
        let elapsed = self.start.elapsed();
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(
                stderr,
                "\r\x1b[2KCertificateSigningRequest {}: {state} ({}s)",
                self.name,
                elapsed.as_secs()
            );
            let _ = stderr.flush();
            self.open = true;
        } else if state != self.last {
            let _ = writeln!(stderr, "CertificateSigningRequest {}: {state}", self.name);
        }
        state.clone_into(&mut self.last);
    }

    fn note(&mut self, text: &str) {
        self.done();
        eprintln!("CertificateSigningRequest {}: {text}", self.name);
    }

    fn done(&mut self) {
        if self.open {
            eprintln!();
            self.open = false;
        }
    }
}

/// Checks that the first certificate in `pem` carries exactly `spki` (the generated key's
/// SubjectPublicKeyInfo, DER); returns its notAfter.
fn verify(name: &str, pem: &[u8], spki: &[u8]) -> Result<String, RequestError> {
    let unreadable = |e: Box<dyn std::error::Error + Send + Sync>| {
        RequestError::CertificateUnreadable(name.to_owned(), e)
    };
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| unreadable(Box::new(e)))?;
    if block.label != "CERTIFICATE" {
        return Err(unreadable(
            format!("a PEM block {:?}, not CERTIFICATE", block.label).into(),
        ));
    }
    let (_, certificate) =
        X509Certificate::from_der(&block.contents).map_err(|e| unreadable(Box::new(e)))?;
    if certificate.public_key().raw != spki {
        return Err(RequestError::KeyMismatch(name.to_owned()));
    }
    Ok(certificate.validity().not_after.to_string())
}

/// Writes a file only its owner can read (mode 0600), replacing any earlier one.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), RequestError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let failed = |e| RequestError::WriteFile(path.to_owned(), e);
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(failed)?;
    file.write_all(contents).map_err(failed)?;
    file.sync_all().map_err(failed)
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::cli::{KeyType, parse_duration};

    /// jane's request with a DNS, an IP and a URI SAN.
    pub(crate) fn args(key_type: KeyType) -> RequestArgs {
        RequestArgs {
            name: "jane".into(),
            cn: "jane".into(),
            org: Some("dev-team".into()),
            signer: "kubernetes.io/kube-apiserver-client".into(),
            usages: vec!["client auth".into()],
            expiration: Duration::from_secs(86_400),
            out: PathBuf::from("."),
            kubeconfig: None,
            context: None,
            as_user: None,
            as_groups: Vec::new(),
            key_type,
            dns_names: vec!["jane.example.com".into()],
            ip_addresses: vec!["10.0.0.1".parse().unwrap()],
            uris: vec!["spiffe://cluster.local/ns/a/sa/b".into()],
            timeout: Duration::from_secs(1),
            renew: false,
        }
    }

    /// A certificate for `key`, self-signed, PEM.
    fn certificate_for(key: &rcgen::KeyPair) -> String {
        rcgen::CertificateParams::new(vec!["x".to_owned()])
            .unwrap()
            .self_signed(key)
            .unwrap()
            .pem()
    }

    #[test]
    fn durations_read_as_people_type_them() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("600"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_duration("24").is_ok());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("3w").is_err());
        assert!(parse_duration("10m5").is_err());
    }

    #[test]
    fn expiration_below_ten_minutes_is_refused() {
        assert!(matches!(
            expiration_seconds(Duration::from_secs(599)),
            Err(RequestError::ExpirationTooShort(599))
        ));
        assert_eq!(expiration_seconds(Duration::from_secs(600)).unwrap(), 600);
    }

    #[test]
    fn a_certificate_for_the_generated_key_is_accepted() {
        let key = generate_key(KeyType::EcdsaP256).unwrap();
        let pem = certificate_for(&key);
        assert!(verify("jane", pem.as_bytes(), &key.subject_public_key_info()).is_ok());
    }

    #[test]
    fn a_certificate_for_another_key_is_refused() {
        let key = generate_key(KeyType::EcdsaP256).unwrap();
        let other = generate_key(KeyType::EcdsaP256).unwrap();
        let pem = certificate_for(&other);
        assert!(matches!(
            verify("jane", pem.as_bytes(), &key.subject_public_key_info()),
            Err(RequestError::KeyMismatch(name)) if name == "jane"
        ));
    }

    #[test]
    fn a_request_pem_is_not_a_certificate() {
        let key = generate_key(KeyType::EcdsaP256).unwrap();
        let pem = build_request(&args(KeyType::EcdsaP256), &key).unwrap();
        assert!(matches!(
            verify("jane", pem.as_bytes(), &key.subject_public_key_info()),
            Err(RequestError::CertificateUnreadable(..))
        ));
    }
}
