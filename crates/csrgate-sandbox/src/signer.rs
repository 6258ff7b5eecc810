//! The sandbox CA and the standard signer: which CSRs it signs, which it fails, and the issued certificate.

use std::time::Duration;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509CertificationRequest};

/// Why the CA could not be made or a certificate not issued.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// Generating the CA key or certificate failed.
    #[error("generating the sandbox CA")]
    CaGeneration(#[source] rcgen::Error),
    /// The request could not be turned into a certificate.
    #[error("issuing the certificate")]
    Issue(#[source] rcgen::Error),
}

/// Default certificate lifetime when the CSR asks for none (`--cluster-signing-duration`, one year).
pub const DEFAULT_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// Backdating of notBefore, as the real signer does against clock skew.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// The sandbox's certificate authority.
pub struct Ca {
    key: KeyPair,
    params: CertificateParams,
    pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

impl Ca {
    /// A fresh self-signed CA valid for ten years.
    ///
    /// # Errors
    /// When rcgen cannot make the key or the certificate.
    pub fn generate() -> Result<Self, SignerError> {
        let key = KeyPair::generate().map_err(SignerError::CaGeneration)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "csrgate-sandbox-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(3650);
        let cert = params
            .self_signed(&key)
            .map_err(SignerError::CaGeneration)?;
        Ok(Self {
            key,
            params,
            pem: cert.pem(),
        })
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Issue a certificate for `csr` (already approved and checked): the request's subject, SANs and public
    /// key, usages from `spec.usages`, lifetime from `spec.expirationSeconds` (at least 10 minutes).
    ///
    /// # Errors
    /// When the request cannot be read back or signed.
    pub fn issue(
        &self,
        request_pem: &str,
        usages: &[String],
        expiration_seconds: Option<i32>,
    ) -> Result<String, SignerError> {
        let parsed =
            CertificateSigningRequestParams::from_pem(request_pem).map_err(SignerError::Issue)?;
        let mut params = parsed.params;
        let duration = match expiration_seconds {
            Some(s) => Duration::from_secs(u64::try_from(s.max(600)).unwrap_or(600)),
            None => DEFAULT_DURATION,
        };
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = (now + duration).min(self.params.not_after);
        params.is_ca = IsCa::ExplicitNoCa;
        params.serial_number = Some(SerialNumber::from_slice(&serial()));
        params.use_authority_key_identifier_extension = true;
        params.key_usages = usages.iter().filter_map(|u| key_usage(u)).collect();
        params.extended_key_usages = usages
            .iter()
            .filter_map(|u| extended_key_usage(u))
            .collect();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params
            .signed_by(&parsed.public_key, &issuer)
            .map_err(SignerError::Issue)?;
        Ok(cert.pem())
    }
}

fn serial() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 16];
    for chunk in out.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            OffsetDateTime::now_utc()
                .unix_timestamp_nanos()
                .unsigned_abs(),
        );
        chunk.copy_from_slice(&h.finish().to_be_bytes());
    }
    out[0] &= 0x7f;
    out
}

fn key_usage(u: &str) -> Option<KeyUsagePurpose> {
    Some(match u {
        "signing" | "digital signature" => KeyUsagePurpose::DigitalSignature,
        "content commitment" => KeyUsagePurpose::ContentCommitment,
        "key encipherment" => KeyUsagePurpose::KeyEncipherment,
        "key agreement" => KeyUsagePurpose::KeyAgreement,
        "data encipherment" => KeyUsagePurpose::DataEncipherment,
        "cert sign" => KeyUsagePurpose::KeyCertSign,
        "crl sign" => KeyUsagePurpose::CrlSign,
        "encipher only" => KeyUsagePurpose::EncipherOnly,
        "decipher only" => KeyUsagePurpose::DecipherOnly,
        _ => return None,
    })
}

fn extended_key_usage(u: &str) -> Option<ExtendedKeyUsagePurpose> {
    Some(match u {
        "any" => ExtendedKeyUsagePurpose::Any,
        "server auth" => ExtendedKeyUsagePurpose::ServerAuth,
        "client auth" => ExtendedKeyUsagePurpose::ClientAuth,
        "code signing" => ExtendedKeyUsagePurpose::CodeSigning,
        "email protection" | "s/mime" => ExtendedKeyUsagePurpose::EmailProtection,
        "timestamping" => ExtendedKeyUsagePurpose::TimeStamping,
        "ocsp signing" => ExtendedKeyUsagePurpose::OcspSigning,
        _ => return None,
    })
}

/// Whether the sandbox plays the signer for `signer_name`: every `kubernetes.io/*` signer but legacy-unknown,
/// plus the extra signers configured.
pub fn signs(signer_name: &str, extra: &[String]) -> bool {
    (signer_name.starts_with("kubernetes.io/") && signer_name != crate::csr::LEGACY_UNKNOWN_SIGNER)
        || extra.iter().any(|s| s == signer_name)
}

struct Request {
    cn: String,
    orgs: Vec<String>,
    dns: usize,
    ips: usize,
    emails: usize,
    uris: usize,
}

fn read_request(pem_bytes: &[u8]) -> Option<Request> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_bytes).ok()?;
    let (_, csr) = X509CertificationRequest::from_der(&pem.contents).ok()?;
    let info = &csr.certification_request_info;
    let mut req = Request {
        cn: info
            .subject
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .unwrap_or_default()
            .to_string(),
        orgs: info
            .subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_string))
            .collect(),
        dns: 0,
        ips: 0,
        emails: 0,
        uris: 0,
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(_) => req.dns += 1,
                    GeneralName::IPAddress(_) => req.ips += 1,
                    GeneralName::RFC822Name(_) => req.emails += 1,
                    GeneralName::URI(_) => req.uris += 1,
                    _ => {}
                }
            }
        }
    }
    Some(req)
}

fn usages_equal(usages: &[String], want: &[&str]) -> bool {
    usages.len() == want.len() && want.iter().all(|w| usages.iter().any(|u| u == w))
}

/// The real signer's refusal for this CSR (the `Failed` condition's message), if it refuses.
pub fn refusal(csr: &CertificateSigningRequest) -> Option<String> {
    let usages = csr.spec.usages.clone().unwrap_or_default();
    let Some(req) = read_request(&csr.spec.request.0) else {
        return Some("unable to parse csr".into());
    };
    match csr.spec.signer_name.as_str() {
        "kubernetes.io/kube-apiserver-client" => usages
            .iter()
            .find(|u| {
                !["digital signature", "key encipherment", "client auth"].contains(&u.as_str())
            })
            .map(|u| format!("invalid usage for client certificate: {u}")),
        "kubernetes.io/kube-apiserver-client-kubelet" => {
            if req.orgs != ["system:nodes"] {
                Some("subject organization is not system:nodes".into())
            } else if req.dns > 0 {
                Some("DNS subjectAltNames are not allowed".into())
            } else if req.emails > 0 {
                Some("Email subjectAltNames are not allowed".into())
            } else if req.ips > 0 {
                Some("IP subjectAltNames are not allowed".into())
            } else if req.uris > 0 {
                Some("URI subjectAltNames are not allowed".into())
            } else if !req.cn.starts_with("system:node:") {
                Some("subject common name does not begin with system:node:".into())
            } else if !usages_equal(
                &usages,
                &["key encipherment", "digital signature", "client auth"],
            ) && !usages_equal(&usages, &["digital signature", "client auth"])
            {
                Some("usages did not match [client auth digital signature key encipherment]".into())
            } else {
                None
            }
        }
        "kubernetes.io/kubelet-serving" => {
            if req.orgs != ["system:nodes"] {
                Some("subject organization is not system:nodes".into())
            } else if req.dns == 0 && req.ips == 0 {
                Some("DNS or IP subjectAltName is required".into())
            } else if req.emails > 0 {
                Some("Email subjectAltNames are not allowed".into())
            } else if req.uris > 0 {
                Some("URI subjectAltNames are not allowed".into())
            } else if !usages_equal(
                &usages,
                &["key encipherment", "digital signature", "server auth"],
            ) && !usages_equal(&usages, &["digital signature", "server auth"])
            {
                Some("usages did not match [digital signature key encipherment server auth]".into())
            } else if !req.cn.starts_with("system:node:") {
                Some("subject common name does not begin with system:node:".into())
            } else {
                None
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legacy_signer_is_never_played() {
        assert!(!signs("kubernetes.io/legacy-unknown", &[]));
        assert!(signs("kubernetes.io/kubelet-serving", &[]));
        assert!(!signs("example.com/x", &[]));
        assert!(signs("example.com/x", &["example.com/x".to_string()]));
    }

    #[test]
    fn an_issued_certificate_carries_the_request_subject_and_is_signed_by_the_ca() {
        let key = KeyPair::generate().ok();
        let mut params = CertificateParams::new(vec!["node1.example".to_string()]).ok();
        let (Some(key), Some(params)) = (key.as_ref(), params.as_mut()) else {
            panic!("rcgen setup")
        };
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "jane");
        let csr_pem = params
            .serialize_request(key)
            .ok()
            .and_then(|c| c.pem().ok())
            .unwrap_or_default();
        let ca = Ca::generate().ok();
        let cert = ca
            .as_ref()
            .and_then(|ca| ca.issue(&csr_pem, &["client auth".into()], Some(600)).ok());
        let cert = cert.unwrap_or_default();
        let (_, pem) =
            x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let x509 = pem.parse_x509().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(x509.subject().to_string(), "CN=jane");
        assert_eq!(x509.issuer().to_string(), "CN=csrgate-sandbox-ca");
        let lifetime =
            x509.validity().not_after.timestamp() - x509.validity().not_before.timestamp();
        assert_eq!(lifetime, 600 + 300);
    }
}
