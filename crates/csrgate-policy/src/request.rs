//! Parsing `spec.request`: the only code that touches PEM and DER, bounded, exact, fail closed.
//!
//! A CSR is approved on what this parser says it asks for, so the parser refuses anything it
//! cannot read completely: a second PEM block or trailing bytes, a SAN type it does not model,
//! two SAN extensions, a signature it cannot verify. Partial answers are never returned.
//!
//! # Bounds
//!
//! The input is bounded so that the cost of evaluating a policy over it is bounded too:
//!
//! | what | at most |
//! | --- | --- |
//! | `spec.request` (PEM bytes) | [`MAX_REQUEST_BYTES`] (64 KiB) |
//! | SAN entries of each type (DNS, IP, email, URI) | [`MAX_SANS_PER_TYPE`] (256) |
//! | any one string (CN, O, OU, a SAN) | [`MAX_STRING_BYTES`] (1 KiB) |
//! | subject attributes, requested extensions | [`MAX_SUBJECT_ATTRIBUTES`], [`MAX_EXTENSIONS`] (64 each) |

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_PKCS1_SHA1WITHRSA, OID_SHA1_WITH_RSA, OID_SIG_ED25519,
    OID_X509_COMMON_NAME, OID_X509_EXT_SUBJECT_ALT_NAME, OID_X509_ORGANIZATION_NAME,
    OID_X509_ORGANIZATIONAL_UNIT,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

/// Largest `spec.request` accepted, in bytes of PEM.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Most SAN entries accepted of each type (DNS, IP, email, URI).
pub const MAX_SANS_PER_TYPE: usize = 256;
/// Longest string accepted in the subject or a SAN, in bytes.
pub const MAX_STRING_BYTES: usize = 1024;
/// Most attributes accepted in the subject.
pub const MAX_SUBJECT_ATTRIBUTES: usize = 64;
/// Most requested extensions accepted.
pub const MAX_EXTENSIONS: usize = 64;

/// The PEM label Kubernetes requires for `spec.request`.
const PEM_LABEL: &str = "CERTIFICATE REQUEST";

/// What a certificate request asks for, as the `x509` CEL variable exposes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ParsedRequest {
    /// The subject's common name, or empty when there is none.
    pub common_name: String,
    /// The subject's organizations (O), in order.
    pub organizations: Vec<String>,
    /// The subject's organizational units (OU), in order.
    pub organizational_units: Vec<String>,
    /// DNS names from the SAN extension.
    pub dns_names: Vec<String>,
    /// IP addresses from the SAN extension, in canonical text (`10.0.0.1`, `2001:db8::1`).
    pub ip_addresses: Vec<String>,
    /// Email addresses from the SAN extension.
    pub email_addresses: Vec<String>,
    /// URIs from the SAN extension (e.g. SPIFFE IDs).
    pub uris: Vec<String>,
    /// The public key the certificate would carry.
    pub public_key: PublicKeyInfo,
    /// The OIDs of every requested extension, dotted (`2.5.29.17`).
    pub extensions: Vec<String>,
}

/// The request's public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct PublicKeyInfo {
    /// `RSA`, `ECDSA` or `Ed25519`.
    pub algorithm: String,
    /// Key size in bits: the modulus for RSA, the curve for ECDSA, 256 for Ed25519.
    pub size: i64,
    /// `P-256`, `P-384` or `P-521` for ECDSA; empty otherwise.
    pub curve: String,
}

/// Why a request could not be read exactly. Each message says what was wrong, for the
/// `InvalidRequest` denial an auditor reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// `spec.request` is larger than [`MAX_REQUEST_BYTES`].
    #[error("request is {0} bytes, more than the {MAX_REQUEST_BYTES}-byte limit")]
    TooLarge(usize),
    /// No PEM block, or text before the first one.
    #[error("request is not a PEM block: {0}")]
    NotPem(String),
    /// The PEM block is labelled something else.
    #[error("PEM block is {0:?}, not \"CERTIFICATE REQUEST\"")]
    WrongPemLabel(String),
    /// Something other than whitespace follows the PEM block.
    #[error("unexpected data after the PEM block")]
    TrailingPem,
    /// The DER inside the PEM block does not parse as PKCS#10.
    #[error("request DER does not parse: {0}")]
    Der(String),
    /// Bytes follow the DER structure inside the PEM block.
    #[error("unexpected {0} bytes after the DER certificate request")]
    TrailingDer(usize),
    /// The signature does not verify with the request's own key.
    #[error("self-signature does not verify: {0}")]
    Signature(String),
    /// The public key is not RSA, ECDSA (P-256/P-384/P-521) or Ed25519.
    #[error("unsupported public key: {0}")]
    UnsupportedKey(String),
    /// A subject attribute is not a readable string, or there are two common names.
    #[error("subject: {0}")]
    Subject(String),
    /// More than one extensionRequest attribute, or an extension that does not parse.
    #[error("requested extensions: {0}")]
    Extensions(String),
    /// Two subjectAltName extensions.
    #[error("more than one subjectAltName extension")]
    DuplicateSan,
    /// A SAN of a type csrgate does not model (otherName, directoryName, ...).
    #[error("subjectAltName has an entry of unsupported type {0}")]
    UnsupportedSan(&'static str),
    /// A SAN entry that is not valid (bad IP length, non-UTF-8 name, ...).
    #[error("subjectAltName entry is invalid: {0}")]
    InvalidSan(String),
    /// A count or length bound was exceeded.
    #[error("{what} exceeds the limit of {limit}")]
    Limit {
        /// What was counted or measured.
        what: String,
        /// The bound.
        limit: usize,
    },
}

/// Most verified requests remembered by [`parse_request_cached`]; past that the cache starts
/// over. A request is at most 64 KiB, usually about 1 KiB.
pub const REQUEST_CACHE_ENTRIES: usize = 1024;

type RequestCache =
    std::collections::HashMap<Vec<u8>, std::sync::Arc<Result<ParsedRequest, RequestError>>>;

fn request_cache() -> &'static std::sync::Mutex<RequestCache> {
    static CACHE: std::sync::OnceLock<std::sync::Mutex<RequestCache>> = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// [`parse_request`], remembering the outcome per exact request bytes.
///
/// Why: verifying the self-signature (an ECDSA verification is about 70 µs here) costs more
/// than evaluating ten policies, and the controller decides the same pending CSR again on
/// every policy change, conflict retry and resync. Parsing is deterministic, and the cache is
/// keyed by the whole request (compared byte for byte, not by a hash), so a cached answer is
/// the answer parsing would give.
pub fn parse_request_cached(pem: &[u8]) -> std::sync::Arc<Result<ParsedRequest, RequestError>> {
    // A poisoned lock only means a panic elsewhere mid-insert; the map is still consistent.
    let lock = || {
        request_cache()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    if let Some(hit) = lock().get(pem) {
        return std::sync::Arc::clone(hit);
    }
    let parsed = std::sync::Arc::new(parse_request(pem));
    let mut cache = lock();
    if cache.len() >= REQUEST_CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert(pem.to_vec(), std::sync::Arc::clone(&parsed));
    parsed
}

/// Forgets every cached request; benchmarks use it to measure a first sighting.
pub fn clear_request_cache() {
    *request_cache()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = RequestCache::default();
}

/// Parses and verifies the PEM `spec.request` of a CertificateSigningRequest.
///
/// # Errors
/// Any deviation from exactly one verified PKCS#10 request within the bounds above; the
/// error names what was wrong.
pub fn parse_request(pem: &[u8]) -> Result<ParsedRequest, RequestError> {
    if pem.len() > MAX_REQUEST_BYTES {
        return Err(RequestError::TooLarge(pem.len()));
    }
    let der = decode_pem(pem)?;
    let (rest, csr) =
        X509CertificationRequest::from_der(&der).map_err(|e| RequestError::Der(e.to_string()))?;
    if !rest.is_empty() {
        return Err(RequestError::TrailingDer(rest.len()));
    }
    let public_key = public_key_info(&csr)?;
    verify_signature(&csr, &public_key)?;

    let mut parsed = ParsedRequest {
        public_key,
        ..ParsedRequest::default()
    };
    read_subject(&csr, &mut parsed)?;
    read_extensions(&csr, &mut parsed)?;
    Ok(parsed)
}

/// Exactly one PEM block labelled `CERTIFICATE REQUEST`, with only whitespace around it.
fn decode_pem(pem: &[u8]) -> Result<Vec<u8>, RequestError> {
    let text = std::str::from_utf8(pem)
        .map_err(|_| RequestError::NotPem("request is not UTF-8 text".into()))?;
    let trimmed = text.trim_start();
    if !trimmed.starts_with("-----BEGIN ") {
        return Err(RequestError::NotPem(
            "no \"-----BEGIN\" line at the start".into(),
        ));
    }
    let (rest, block) = x509_parser::pem::parse_x509_pem(trimmed.as_bytes())
        .map_err(|e| RequestError::NotPem(e.to_string()))?;
    if block.label != PEM_LABEL {
        return Err(RequestError::WrongPemLabel(block.label));
    }
    if !rest.iter().all(u8::is_ascii_whitespace) {
        return Err(RequestError::TrailingPem);
    }
    Ok(block.contents)
}

fn public_key_info(csr: &X509CertificationRequest<'_>) -> Result<PublicKeyInfo, RequestError> {
    let spki = &csr.certification_request_info.subject_pki;
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
            return Err(RequestError::UnsupportedKey(
                "RSA key does not parse".into(),
            ));
        };
        return Ok(PublicKeyInfo {
            algorithm: "RSA".into(),
            size: i64::try_from(rsa.key_size()).unwrap_or(i64::MAX),
            curve: String::new(),
        });
    }
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or_else(|| {
                RequestError::UnsupportedKey("ECDSA key without a named curve".into())
            })?;
        let (name, size) = if curve == OID_EC_P256 {
            ("P-256", 256)
        } else if curve == OID_NIST_EC_P384 {
            ("P-384", 384)
        } else if curve == OID_NIST_EC_P521 {
            ("P-521", 521)
        } else {
            return Err(RequestError::UnsupportedKey(format!("ECDSA curve {curve}")));
        };
        return Ok(PublicKeyInfo {
            algorithm: "ECDSA".into(),
            size,
            curve: name.into(),
        });
    }
    if *algorithm == OID_SIG_ED25519 {
        return Ok(PublicKeyInfo {
            algorithm: "Ed25519".into(),
            size: 256,
            curve: String::new(),
        });
    }
    Err(RequestError::UnsupportedKey(format!(
        "algorithm {algorithm}"
    )))
}

fn verify_signature(
    csr: &X509CertificationRequest<'_>,
    key: &PublicKeyInfo,
) -> Result<(), RequestError> {
    let signature_algorithm = &csr.signature_algorithm.algorithm;
    if *signature_algorithm == OID_PKCS1_SHA1WITHRSA || *signature_algorithm == OID_SHA1_WITH_RSA {
        return Err(RequestError::Signature(
            "SHA-1 signatures are not accepted".into(),
        ));
    }
    if key.algorithm == "RSA" && key.size < 2048 {
        return Err(RequestError::Signature(format!(
            "RSA key of {} bits is below the 2048-bit minimum csrgate verifies",
            key.size
        )));
    }
    if key.curve == "P-521" {
        return Err(RequestError::Signature(
            "ECDSA P-521 signatures cannot be verified".into(),
        ));
    }
    csr.verify_signature().map_err(|e| {
        RequestError::Signature(match e {
            x509_parser::error::X509Error::SignatureUnsupportedAlgorithm => {
                format!("unsupported signature algorithm {signature_algorithm}")
            }
            other => other.to_string(),
        })
    })
}

fn read_subject(
    csr: &X509CertificationRequest<'_>,
    parsed: &mut ParsedRequest,
) -> Result<(), RequestError> {
    let subject = &csr.certification_request_info.subject;
    let count = subject.iter_attributes().count();
    check_limit("subject attributes", count, MAX_SUBJECT_ATTRIBUTES)?;
    for attribute in subject.iter_attributes() {
        let oid = attribute.attr_type();
        let target = if *oid == OID_X509_COMMON_NAME {
            None
        } else if *oid == OID_X509_ORGANIZATION_NAME {
            Some(&mut parsed.organizations)
        } else if *oid == OID_X509_ORGANIZATIONAL_UNIT {
            Some(&mut parsed.organizational_units)
        } else {
            continue;
        };
        let value = attribute
            .as_str()
            .map_err(|_| RequestError::Subject(format!("attribute {oid} is not a string")))?;
        check_string(&format!("subject attribute {oid}"), value)?;
        match target {
            Some(list) => list.push(value.to_owned()),
            None if parsed.common_name.is_empty() => value.clone_into(&mut parsed.common_name),
            None => return Err(RequestError::Subject("more than one common name".into())),
        }
    }
    Ok(())
}

fn read_extensions(
    csr: &X509CertificationRequest<'_>,
    parsed: &mut ParsedRequest,
) -> Result<(), RequestError> {
    let mut requests = csr
        .certification_request_info
        .iter_attributes()
        .filter_map(|attribute| match attribute.parsed_attribute() {
            ParsedCriAttribute::ExtensionRequest(request) => Some(request),
            _ => None,
        });
    let Some(request) = requests.next() else {
        return Ok(());
    };
    if requests.next().is_some() {
        return Err(RequestError::Extensions(
            "more than one extensionRequest attribute".into(),
        ));
    }
    check_limit(
        "requested extensions",
        request.extensions.len(),
        MAX_EXTENSIONS,
    )?;
    let mut seen_san = false;
    for extension in &request.extensions {
        parsed.extensions.push(extension.oid.to_id_string());
        if extension.oid != OID_X509_EXT_SUBJECT_ALT_NAME {
            continue;
        }
        if seen_san {
            return Err(RequestError::DuplicateSan);
        }
        seen_san = true;
        match extension.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    read_general_name(name, parsed)?;
                }
            }
            ParsedExtension::ParseError { error } => {
                return Err(RequestError::InvalidSan(error.to_string()));
            }
            other => {
                return Err(RequestError::InvalidSan(format!(
                    "unexpected content {other:?}"
                )));
            }
        }
    }
    Ok(())
}

fn read_general_name(
    name: &GeneralName<'_>,
    parsed: &mut ParsedRequest,
) -> Result<(), RequestError> {
    let (kind, list, value) = match name {
        GeneralName::DNSName(dns) => ("DNS names", &mut parsed.dns_names, (*dns).to_owned()),
        GeneralName::RFC822Name(email) => (
            "email addresses",
            &mut parsed.email_addresses,
            (*email).to_owned(),
        ),
        GeneralName::URI(uri) => ("URIs", &mut parsed.uris, (*uri).to_owned()),
        GeneralName::IPAddress(bytes) => {
            ("IP addresses", &mut parsed.ip_addresses, ip_text(bytes)?)
        }
        GeneralName::OtherName(..) => return Err(RequestError::UnsupportedSan("otherName")),
        GeneralName::X400Address(_) => return Err(RequestError::UnsupportedSan("x400Address")),
        GeneralName::DirectoryName(_) => return Err(RequestError::UnsupportedSan("directoryName")),
        GeneralName::EDIPartyName(_) => return Err(RequestError::UnsupportedSan("ediPartyName")),
        GeneralName::RegisteredID(_) => return Err(RequestError::UnsupportedSan("registeredID")),
        GeneralName::Invalid(tag, _) => {
            return Err(RequestError::InvalidSan(format!(
                "entry with tag {tag} does not parse"
            )));
        }
    };
    check_string(kind, &value)?;
    list.push(value);
    check_limit(kind, list.len(), MAX_SANS_PER_TYPE)
}

/// Canonical text of a 4- or 16-byte SAN IP address; anything else (e.g. a CIDR-style
/// 8-byte value, which belongs in name constraints, not a SAN) is refused.
fn ip_text(bytes: &[u8]) -> Result<String, RequestError> {
    let address = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).map_err(|_| invalid_ip(bytes))?),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes).map_err(|_| invalid_ip(bytes))?),
        _ => return Err(invalid_ip(bytes)),
    };
    Ok(address.to_string())
}

fn invalid_ip(bytes: &[u8]) -> RequestError {
    RequestError::InvalidSan(format!("IP address of {} bytes", bytes.len()))
}

fn check_string(what: &str, value: &str) -> Result<(), RequestError> {
    check_limit(
        &format!("length of one of {what}"),
        value.len(),
        MAX_STRING_BYTES,
    )
}

fn check_limit(what: &str, count: usize, limit: usize) -> Result<(), RequestError> {
    if count > limit {
        return Err(RequestError::Limit {
            what: format!("{what} ({count})"),
            limit,
        });
    }
    Ok(())
}

impl fmt::Display for PublicKeyInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.curve.is_empty() {
            write!(f, "{} {}", self.algorithm, self.size)
        } else {
            write!(f, "{} {}", self.algorithm, self.curve)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, CustomExtension, DnType, KeyPair, SanType};

    fn testdata(name: &str) -> Vec<u8> {
        let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// A CSR builder whose default is a valid request; each setter changes one thing.
    struct CsrBuilder {
        params: CertificateParams,
    }

    impl CsrBuilder {
        fn new() -> Self {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, "jane");
            params
                .distinguished_name
                .push(DnType::OrganizationName, "dev-team");
            Self { params }
        }
        fn san(mut self, san: SanType) -> Self {
            self.params.subject_alt_names.push(san);
            self
        }
        fn extension(mut self, extension: CustomExtension) -> Self {
            self.params.custom_extensions.push(extension);
            self
        }
        fn der(self) -> Vec<u8> {
            let key = KeyPair::generate().unwrap();
            self.params.serialize_request(&key).unwrap().der().to_vec()
        }
        fn pem(self) -> Vec<u8> {
            pem_of(&self.der()).into_bytes()
        }
    }

    fn pem_of(der: &[u8]) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            lines.join("\n")
        )
    }

    fn dns(name: &str) -> SanType {
        SanType::DnsName(name.try_into().unwrap())
    }

    #[test]
    fn reads_subject_and_key_of_an_openssl_ecdsa_request() {
        let parsed = parse_request(&testdata("jane.csr")).unwrap();
        assert_eq!(parsed.common_name, "jane");
        assert_eq!(parsed.organizations, ["dev-team"]);
        assert!(parsed.organizational_units.is_empty());
        assert_eq!(
            parsed.public_key,
            PublicKeyInfo {
                algorithm: "ECDSA".into(),
                size: 256,
                curve: "P-256".into()
            }
        );
    }

    #[test]
    fn reads_rsa_ed25519_and_p384_keys() {
        let rsa = parse_request(&testdata("jane-rsa2048.csr")).unwrap();
        assert_eq!(
            (rsa.public_key.algorithm.as_str(), rsa.public_key.size),
            ("RSA", 2048)
        );
        let ed = parse_request(&testdata("jane-ed25519.csr")).unwrap();
        assert_eq!(
            (ed.public_key.algorithm.as_str(), ed.public_key.size),
            ("Ed25519", 256)
        );
        let p384 = parse_request(&testdata("jane-p384.csr")).unwrap();
        assert_eq!(p384.public_key.curve, "P-384");
        assert_eq!(p384.organizational_units, ["platform"]);
    }

    #[test]
    fn reads_sans_with_canonical_ip_text() {
        let parsed = parse_request(&testdata("worker-1-serving.csr")).unwrap();
        assert_eq!(parsed.dns_names, ["worker-1", "worker-1.cluster.internal"]);
        assert_eq!(parsed.ip_addresses, ["10.0.0.11", "fd00::b"]);
        assert_eq!(parsed.extensions, ["2.5.29.17"]);
        let spiffe = parse_request(&testdata("payments-spiffe.csr")).unwrap();
        assert_eq!(spiffe.uris, ["spiffe://cluster.local/ns/payments/sa/api"]);
        let email = parse_request(&testdata("email-san.csr")).unwrap();
        assert_eq!(email.email_addresses, ["jane@example.com"]);
    }

    #[test]
    fn refuses_a_forged_signature() {
        let err = parse_request(&testdata("jane-forged.csr")).unwrap_err();
        assert!(matches!(err, RequestError::Signature(_)), "{err}");
    }

    #[test]
    fn refuses_rsa_keys_below_2048_bits_with_a_clear_message() {
        let err = parse_request(&testdata("jane-rsa1024.csr")).unwrap_err();
        assert!(err.to_string().contains("RSA key of 1024 bits"), "{err}");
    }

    #[test]
    fn refuses_text_that_is_not_pem() {
        let err = parse_request(b"hello").unwrap_err();
        assert!(matches!(err, RequestError::NotPem(_)), "{err}");
        let err = parse_request(&[0xff, 0xfe]).unwrap_err();
        assert!(matches!(err, RequestError::NotPem(_)), "{err}");
    }

    #[test]
    fn refuses_a_pem_block_that_is_not_a_certificate_request() {
        let pem = String::from_utf8(testdata("jane.csr"))
            .unwrap()
            .replace("CERTIFICATE REQUEST", "CERTIFICATE");
        assert_eq!(
            parse_request(pem.as_bytes()).unwrap_err(),
            RequestError::WrongPemLabel("CERTIFICATE".into())
        );
    }

    #[test]
    fn refuses_a_second_pem_block_or_trailing_text() {
        let one = String::from_utf8(testdata("jane.csr")).unwrap();
        let two = format!("{one}{one}");
        assert_eq!(
            parse_request(two.as_bytes()).unwrap_err(),
            RequestError::TrailingPem
        );
        let trailing = format!("{one}garbage");
        assert_eq!(
            parse_request(trailing.as_bytes()).unwrap_err(),
            RequestError::TrailingPem
        );
        let leading = format!("garbage\n{one}");
        assert!(matches!(
            parse_request(leading.as_bytes()).unwrap_err(),
            RequestError::NotPem(_)
        ));
        // Surrounding whitespace is fine.
        assert!(parse_request(format!("\n  {one}\n\n").as_bytes()).is_ok());
    }

    #[test]
    fn refuses_trailing_bytes_after_the_der() {
        let mut der = CsrBuilder::new().der();
        der.extend_from_slice(&[0x05, 0x00]);
        assert_eq!(
            parse_request(pem_of(&der).as_bytes()).unwrap_err(),
            RequestError::TrailingDer(2)
        );
    }

    #[test]
    fn refuses_der_that_is_not_a_request() {
        let err = parse_request(pem_of(&[0x30, 0x03, 0x02, 0x01, 0x01]).as_bytes()).unwrap_err();
        assert!(matches!(err, RequestError::Der(_)), "{err}");
    }

    #[test]
    fn refuses_two_san_extensions() {
        // A second SAN extension carrying DNS:evil.example.com ([2] IA5String in a SEQUENCE).
        let mut content = vec![0x30, 18, 0x82, 16];
        content.extend_from_slice(b"evil.example.com");
        let pem = CsrBuilder::new()
            .san(dns("good.example.com"))
            .extension(CustomExtension::from_oid_content(&[2, 5, 29, 17], content))
            .pem();
        assert_eq!(parse_request(&pem).unwrap_err(), RequestError::DuplicateSan);
    }

    #[test]
    fn refuses_san_types_it_does_not_model() {
        let pem = CsrBuilder::new()
            .san(SanType::OtherName((
                vec![1, 3, 6, 1, 4, 1, 311, 20, 2, 3],
                rcgen::OtherNameValue::Utf8String("jane@corp".into()),
            )))
            .pem();
        assert_eq!(
            parse_request(&pem).unwrap_err(),
            RequestError::UnsupportedSan("otherName")
        );
    }

    #[test]
    fn refuses_an_ip_san_of_the_wrong_length() {
        // [7] OCTET STRING of 8 bytes: an address with a mask, which is not a SAN.
        let content = vec![0x30, 10, 0x87, 8, 10, 0, 0, 1, 255, 255, 255, 0];
        let pem = CsrBuilder::new()
            .extension(CustomExtension::from_oid_content(&[2, 5, 29, 17], content))
            .pem();
        assert!(matches!(
            parse_request(&pem).unwrap_err(),
            RequestError::InvalidSan(_)
        ));
    }

    #[test]
    fn refuses_more_than_256_sans_of_one_type() {
        let mut builder = CsrBuilder::new();
        for i in 0..=MAX_SANS_PER_TYPE {
            builder = builder.san(dns(&format!("h{i}.example.com")));
        }
        let err = parse_request(&builder.pem()).unwrap_err();
        assert!(
            matches!(
                err,
                RequestError::Limit {
                    limit: MAX_SANS_PER_TYPE,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn refuses_strings_longer_than_1_kib() {
        let long = "a".repeat(MAX_STRING_BYTES + 1);
        let err = parse_request(&CsrBuilder::new().san(dns(&long)).pem()).unwrap_err();
        assert!(
            matches!(
                err,
                RequestError::Limit {
                    limit: MAX_STRING_BYTES,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn refuses_requests_larger_than_64_kib() {
        let big = vec![b' '; MAX_REQUEST_BYTES + 1];
        assert_eq!(
            parse_request(&big).unwrap_err(),
            RequestError::TooLarge(MAX_REQUEST_BYTES + 1)
        );
    }

    #[test]
    fn the_cache_answers_exactly_what_parsing_answers() {
        for file in ["jane.csr", "jane-forged.csr", "worker-1-serving.csr"] {
            let bytes = testdata(file);
            let first = parse_request_cached(&bytes);
            let second = parse_request_cached(&bytes);
            assert!(
                std::sync::Arc::ptr_eq(&first, &second),
                "{file}: second call is a hit"
            );
            assert_eq!(*first, parse_request(&bytes), "{file}");
        }
        // One byte more is another request.
        let mut longer = testdata("jane.csr");
        longer.extend_from_slice(b"x");
        assert_eq!(
            *parse_request_cached(&longer),
            Err(RequestError::TrailingPem)
        );
    }

    #[test]
    fn refuses_two_common_names() {
        let mut builder = CsrBuilder::new();
        builder.params.distinguished_name = rcgen::DistinguishedName::new();
        // rcgen keeps one value per type, so build the second CN through a custom type.
        builder
            .params
            .distinguished_name
            .push(DnType::CommonName, "jane");
        builder
            .params
            .distinguished_name
            .push(DnType::CustomDnType(vec![2, 5, 4, 3]), "root");
        let err = parse_request(&builder.pem()).unwrap_err();
        assert!(matches!(err, RequestError::Subject(_)), "{err}");
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    const JANE: &str = include_str!("../testdata/jane.csr");

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The parser never panics on arbitrary bytes.
        #[test]
        fn never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_request(&bytes);
        }

        /// A request with any single byte of its DER changed either fails to parse or
        /// still verifies (the change hit unsigned framing that re-encodes the same); it
        /// never yields a subject other than what was signed.
        #[test]
        fn a_mutated_request_never_parses_into_something_else(index in 0usize..400, xor in 1u8..=255) {
            use base64::Engine;
            let body: String = JANE.lines().filter(|l| !l.starts_with("-----")).collect();
            let mut der = base64::engine::general_purpose::STANDARD.decode(body).unwrap();
            let i = index % der.len();
            der[i] ^= xor;
            let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
            let pem = format!("-----BEGIN CERTIFICATE REQUEST-----\n{b64}\n-----END CERTIFICATE REQUEST-----\n");
            if let Ok(parsed) = parse_request(pem.as_bytes()) {
                prop_assert_eq!(parsed.common_name, "jane");
                prop_assert_eq!(parsed.organizations, vec!["dev-team".to_owned()]);
            }
        }
    }
}
