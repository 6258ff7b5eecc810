//! The control plane's certificates and keys, and kubeconfigs that use them.
//!
//! One CA signs everything, as kubeadm's cluster CA does: the API server's serving
//! certificate, the client certificates of the admin and of kube-controller-manager, and
//! (through kube-controller-manager's `csrsigning`) every CSR the tests get approved, so a
//! certificate issued to a test user authenticates to the same API server.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use kube::config::{
    AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::{Error, Result};

/// The service IP range of the API server; its first address is the `kubernetes` Service,
/// which the serving certificate names, as kube-apiserver expects.
pub(crate) const SERVICE_CLUSTER_IP_RANGE: &str = "10.0.0.0/24";

/// Paths of the files [`Pki::generate`] writes into the state folder.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The cluster CA certificate (PEM): client CA of the API server, signer of
    /// kube-controller-manager's `csrsigning`.
    pub ca_cert: PathBuf,
    /// The cluster CA key (PEM, PKCS#8).
    pub ca_key: PathBuf,
    /// The API server's serving certificate.
    pub apiserver_cert: PathBuf,
    /// The API server's serving key.
    pub apiserver_key: PathBuf,
    /// The service-account signing key (PEM, PKCS#8, ECDSA P-256).
    pub service_account_key: PathBuf,
    /// Its public key (PEM, SubjectPublicKeyInfo).
    pub service_account_pub: PathBuf,
    /// The admin client certificate (`kubernetes-admin`, group `system:masters`).
    pub admin_cert: PathBuf,
    /// The admin client key.
    pub admin_key: PathBuf,
    /// kube-controller-manager's client certificate (`system:kube-controller-manager`, the
    /// user the bootstrap RBAC policy grants its rights to).
    pub controller_manager_cert: PathBuf,
    /// kube-controller-manager's client key.
    pub controller_manager_key: PathBuf,
}

impl Pki {
    /// Generates a new CA and every certificate and key into `dir` (created if missing).
    ///
    /// # Errors
    /// [`Error::Pki`] when a key or certificate cannot be generated, [`Error::Io`] when a file
    /// cannot be written.
    pub fn generate(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            action: "create",
            path: dir.to_owned(),
            source,
        })?;
        let pki = Self::at(dir);
        let ca_key = key("CA key")?;
        let mut ca = CertificateParams::default();
        ca.distinguished_name = dn("csrgate-test-ca", None);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca
            .self_signed(&ca_key)
            .map_err(pki_error("CA certificate"))?;
        write(&pki.ca_cert, &ca_cert.pem())?;
        write(&pki.ca_key, &ca_key.serialize_pem())?;
        let issuer = Issuer::new(ca, ca_key);

        let serving = leaf(
            "kube-apiserver",
            None,
            ExtendedKeyUsagePurpose::ServerAuth,
            vec![
                SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                SanType::IpAddress(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
                dns("localhost")?,
                dns("kubernetes")?,
                dns("kubernetes.default")?,
                dns("kubernetes.default.svc")?,
                dns("kubernetes.default.svc.cluster.local")?,
            ],
        );
        sign(&serving, &issuer, &pki.apiserver_cert, &pki.apiserver_key)?;
        let admin = leaf(
            "kubernetes-admin",
            Some("system:masters"),
            ExtendedKeyUsagePurpose::ClientAuth,
            Vec::new(),
        );
        sign(&admin, &issuer, &pki.admin_cert, &pki.admin_key)?;
        let controller_manager = leaf(
            "system:kube-controller-manager",
            None,
            ExtendedKeyUsagePurpose::ClientAuth,
            Vec::new(),
        );
        sign(
            &controller_manager,
            &issuer,
            &pki.controller_manager_cert,
            &pki.controller_manager_key,
        )?;

        let service_account = key("service-account key")?;
        write(&pki.service_account_key, &service_account.serialize_pem())?;
        write(&pki.service_account_pub, &service_account.public_key_pem())?;
        Ok(pki)
    }

    /// The paths under `dir`, whether or not the files exist yet.
    #[must_use]
    pub fn at(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            apiserver_cert: dir.join("apiserver.crt"),
            apiserver_key: dir.join("apiserver.key"),
            service_account_key: dir.join("sa.key"),
            service_account_pub: dir.join("sa.pub"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            controller_manager_cert: dir.join("controller-manager.crt"),
            controller_manager_key: dir.join("controller-manager.key"),
        }
    }
}

/// A kubeconfig (JSON, which kubectl and kube-rs read as YAML) with one cluster, one user
/// authenticated by a client certificate, and one context, current.
///
/// # Errors
/// [`Error::Io`] when a PEM file cannot be read, [`Error::Kubeconfig`] when it cannot be
/// serialized.
pub fn kubeconfig(
    server: &str,
    ca_cert: &Path,
    user: &str,
    cert: &Path,
    key: &Path,
) -> Result<String> {
    let data = |path: &Path| {
        std::fs::read(path)
            .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes))
            .map_err(|source| Error::Io {
                action: "read",
                path: path.to_owned(),
                source,
            })
    };
    let config = Kubeconfig {
        clusters: vec![NamedCluster {
            name: "csrgate-test".to_owned(),
            cluster: Some(Cluster {
                server: Some(server.to_owned()),
                certificate_authority_data: Some(data(ca_cert)?),
                ..Cluster::default()
            }),
            other: Default::default(),
        }],
        auth_infos: vec![NamedAuthInfo {
            name: user.to_owned(),
            auth_info: Some(AuthInfo {
                client_certificate_data: Some(data(cert)?),
                client_key_data: Some(data(key)?.into()),
                ..AuthInfo::default()
            }),
            other: Default::default(),
        }],
        contexts: vec![NamedContext {
            name: "csrgate-test".to_owned(),
            context: Some(Context {
                cluster: "csrgate-test".to_owned(),
                user: Some(user.to_owned()),
                ..Context::default()
            }),
            other: Default::default(),
        }],
        current_context: Some("csrgate-test".to_owned()),
        kind: Some("Config".to_owned()),
        api_version: Some("v1".to_owned()),
        ..Kubeconfig::default()
    };
    serde_json::to_string_pretty(&config).map_err(Error::Kubeconfig)
}

fn key(what: &'static str) -> Result<KeyPair> {
    KeyPair::generate().map_err(pki_error(what))
}

fn pki_error(what: &'static str) -> impl FnOnce(rcgen::Error) -> Error {
    move |source| Error::Pki { what, source }
}

fn dn(common_name: &str, organization: Option<&str>) -> rcgen::DistinguishedName {
    let mut name = rcgen::DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    if let Some(organization) = organization {
        name.push(DnType::OrganizationName, organization);
    }
    name
}

fn dns(name: &str) -> Result<SanType> {
    Ok(SanType::DnsName(
        name.try_into()
            .map_err(pki_error("serving certificate name"))?,
    ))
}

fn leaf(
    common_name: &str,
    organization: Option<&str>,
    usage: ExtendedKeyUsagePurpose,
    subject_alt_names: Vec<SanType>,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(common_name, organization);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.subject_alt_names = subject_alt_names;
    params.use_authority_key_identifier_extension = true;
    params
}

fn sign(
    params: &CertificateParams,
    issuer: &Issuer<'_, KeyPair>,
    cert: &Path,
    key_path: &Path,
) -> Result<()> {
    let key_pair = key("leaf key")?;
    let certificate = params
        .signed_by(&key_pair, issuer)
        .map_err(pki_error("leaf certificate"))?;
    write(cert, &certificate.pem())?;
    write(key_path, &key_pair.serialize_pem())
}

/// Writes a file of the state folder.
pub(crate) fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|source| Error::Io {
        action: "write",
        path: path.to_owned(),
        source,
    })
}
