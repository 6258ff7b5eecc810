//! Parsing `spec.request`: the only code that touches PEM and DER, bounded, exact, fail closed.
//!
//! A CSR is approved on what this parser says it asks for, so the parser refuses anything it
//! cannot read completely: a second PEM block or trailing bytes, a SAN type it does not model,
//! two SAN extensions, a signature it cannot verify. Partial answers are never returned.
//!
//! It reads every request at least as strictly as kube-apiserver does at create (Go's
//! `x509.ParseCertificateRequest` and `CheckSignature`, crypto/x509/x509.go and parser.go),
//! field by field, and stricter where Go is lax (see [`parse_der`]): DER only (`request/der.rs`),
//! names in the form TLS matches them (`request/names.rs`), the signature algorithms Go
//! verifies less SHA-1 (`request/verify.rs`).
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
//! | subject attributes, requested extensions, request attributes | [`MAX_SUBJECT_ATTRIBUTES`], [`MAX_EXTENSIONS`] (64 each) |

mod der;
mod fast;
mod names;
mod verify;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

use self::der::{Reader, tag};
use self::names::SanKind;

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

pub use self::verify::Curve;

/// What a certificate request asks for, as the `x509` CEL variable exposes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParsedRequest {
    /// The subject's common name, or empty when there is none.
    pub common_name: String,
    /// The subject's organizations (O), in order.
    pub organizations: Vec<String>,
    /// The subject's organizational units (OU), in order.
    pub organizational_units: Vec<String>,
    /// DNS names from the SAN extension, lower-cased as TLS clients compare them
    /// (`kubernetes.default.svc`); a name with a trailing dot or an empty label is refused.
    pub dns_names: Vec<String>,
    /// IP addresses from the SAN extension, in Go's `net.IP.String()` text (`10.0.0.1`,
    /// `fd00::b`), IPv4-mapped IPv6 addresses as IPv4 (`10.96.0.1`).
    pub ip_addresses: Vec<String>,
    /// Email addresses from the SAN extension, as written (ASCII, no spaces or controls).
    pub email_addresses: Vec<String>,
    /// URIs from the SAN extension (e.g. SPIFFE IDs), as written (ASCII, with a scheme).
    pub uris: Vec<String>,
    /// The public key the certificate would carry.
    pub public_key: PublicKeyInfo,
    /// The OIDs of every requested extension, dotted (`2.5.29.17`).
    pub extensions: Vec<String>,
}

/// The request's public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicKeyInfo {
    /// The key algorithm; policies read `RSA`, `ECDSA` or `Ed25519`.
    pub algorithm: KeyAlgorithm,
    /// Key size in bits: the exact bit length of the modulus for RSA (a 3071-bit key is
    /// 3071), the curve's for ECDSA (224, 256, 384, 521), 256 for Ed25519.
    pub size: i64,
    /// The curve of an ECDSA key; policies read `P-224`, `P-256`, `P-384` or `P-521`, and
    /// an empty string for other keys.
    #[serde(serialize_with = "curve_text")]
    pub curve: Option<Curve>,
}

impl PublicKeyInfo {
    /// The curve as policies read it: its name, or empty for a key without one.
    pub fn curve_name(&self) -> &'static str {
        self.curve.map_or("", Curve::name)
    }
}

/// Writes a curve as policies read it (see [`PublicKeyInfo::curve_name`]).
fn curve_text<S: serde::Serializer>(
    curve: &Option<Curve>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(curve.map_or("", Curve::name))
}

/// A public key algorithm csrgate verifies (the ones Go's crypto/x509 reads from a request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// rsaEncryption (RFC 3279 §2.3.1), 1024 to 16384 bits.
    Rsa,
    /// id-ecPublicKey on a named NIST curve (RFC 5480).
    Ecdsa,
    /// id-Ed25519 (RFC 8410).
    Ed25519,
}

impl KeyAlgorithm {
    /// The name policies read as `x509.publicKey.algorithm`: `RSA`, `ECDSA` or `Ed25519`
    /// (Go's `x509.PublicKeyAlgorithm` names).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa => "RSA",
            KeyAlgorithm::Ecdsa => "ECDSA",
            KeyAlgorithm::Ed25519 => "Ed25519",
        }
    }
}

impl Serialize for KeyAlgorithm {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Why a request could not be read exactly. Each message says what was wrong, for the
/// `InvalidRequest` denial an auditor reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// `spec.request` is larger than [`MAX_REQUEST_BYTES`].
    #[error("request is {0} bytes, more than the {MAX_REQUEST_BYTES}-byte limit")]
    TooLarge(usize),
    /// No PEM block, text before it, a header, a bad BEGIN/END line or non-canonical base64.
    #[error("request is not a PEM block: {0}")]
    NotPem(String),
    /// The PEM block is labelled something else.
    #[error("PEM block is {0:?}, not \"CERTIFICATE REQUEST\"")]
    WrongPemLabel(String),
    /// Something other than whitespace follows the PEM block.
    #[error("unexpected data after the PEM block")]
    TrailingPem,
    /// The DER inside the PEM block is not exactly a DER PKCS#10 request.
    #[error("request DER does not parse: {0}")]
    Der(String),
    /// Bytes follow the DER structure inside the PEM block.
    #[error("unexpected {0} bytes after the DER certificate request")]
    TrailingDer(usize),
    /// The self-signature does not verify with the request's own key.
    #[error("self-signature does not verify: {0}")]
    Signature(String),
    /// The signature algorithm is one csrgate does not verify (SHA-1, MD5, unknown), or does
    /// not fit the key.
    #[error("unsupported signature algorithm: {0}")]
    UnsupportedSignature(String),
    /// The public key is not one csrgate verifies: RSA of 1024 to 16384 bits, ECDSA
    /// P-224/P-256/P-384/P-521, or Ed25519.
    #[error("unsupported public key: {0}")]
    UnsupportedKey(String),
    /// A subject attribute is not a valid string of its type, or there are two common names.
    #[error("subject: {0}")]
    Subject(String),
    /// A request attribute is malformed (no value, a challengePassword that is not a string).
    #[error("attributes: {0}")]
    Attributes(String),
    /// The extensionRequest attribute or one of its extensions is malformed or repeated.
    #[error("requested extensions: {0}")]
    Extensions(String),
    /// Two subjectAltName extensions.
    #[error("more than one subjectAltName extension")]
    DuplicateSan,
    /// A SAN of a type csrgate does not model (otherName, directoryName, ...).
    #[error("subjectAltName has an entry of unsupported type {0}")]
    UnsupportedSan(&'static str),
    /// A SAN entry that is not a valid name: bytes an IA5String name cannot hold (non-ASCII,
    /// control characters, NUL, spaces), a DNS name with a trailing dot or an empty label, a
    /// URI without a scheme, an IP address that is not 4 or 16 bytes.
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

/// Most verified requests an [`crate::Engine`] remembers; past that its cache starts over. A
/// request is at most 64 KiB, usually about 1 KiB.
pub const REQUEST_CACHE_ENTRIES: usize = 1024;
/// Most bytes of request text an [`crate::Engine`] remembers (the keys; the parsed forms are
/// about as large); past that its cache starts over.
pub const REQUEST_CACHE_BYTES: usize = 8 * 1024 * 1024;

/// The outcome of parsing one request, shared by every decision that reads it.
pub type SharedRequest = Arc<Result<ParsedRequest, RequestError>>;

/// [`parse_request`] outcomes by exact request bytes, bounded by [`REQUEST_CACHE_ENTRIES`]
/// and [`REQUEST_CACHE_BYTES`]; owned by an [`crate::Engine`].
///
/// Why: verifying the self-signature (an ECDSA verification is about 70 µs here) costs more
/// than evaluating ten policies, and the controller decides the same pending CSR again on
/// every policy change, conflict retry and resync. Parsing is deterministic, and the cache is
/// keyed by the whole request (compared byte for byte, not by a hash), so a cached answer is
/// the answer parsing would give.
#[derive(Debug, Default)]
pub(crate) struct RequestCache {
    cache: Mutex<Requests>,
}

#[derive(Debug, Default)]
struct Requests {
    parsed: HashMap<Vec<u8>, SharedRequest>,
    bytes: usize,
}

impl RequestCache {
    /// [`parse_request`] of `pem`, remembered.
    pub(crate) fn parse(&self, pem: &[u8]) -> SharedRequest {
        // A poisoned lock only means a panic elsewhere mid-insert; the map is still consistent.
        let lock = || self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(hit) = lock().parsed.get(pem) {
            return Arc::clone(hit);
        }
        let parsed = Arc::new(parse_request(pem));
        if pem.len() > MAX_REQUEST_BYTES {
            // Refused on its length alone, before any parsing: nothing to save.
            return parsed;
        }
        let mut cache = lock();
        if cache.parsed.len() >= REQUEST_CACHE_ENTRIES
            || cache.bytes + pem.len() > REQUEST_CACHE_BYTES
        {
            *cache = Requests::default();
        }
        cache.bytes += pem.len();
        cache.parsed.insert(pem.to_vec(), Arc::clone(&parsed));
        parsed
    }

    /// Forgets every request, so the next decision sees each for the first time.
    pub(crate) fn clear(&self) {
        *self.cache.lock().unwrap_or_else(PoisonError::into_inner) = Requests::default();
    }
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
    parse_der(&der)
}

/// Parses and verifies one DER-encoded PKCS#10 request (RFC 2986 §4), field by field:
///
/// ```text
/// CertificationRequest ::= SEQUENCE {
///      certificationRequestInfo CertificationRequestInfo,
///      signatureAlgorithm       AlgorithmIdentifier,
///      signature                BIT STRING }
/// CertificationRequestInfo ::= SEQUENCE {
///      version       INTEGER { v1(0) },
///      subject       Name,
///      subjectPKInfo SubjectPublicKeyInfo,
///      attributes    [0] IMPLICIT SET OF Attribute }
/// ```
///
/// Go's `ParseCertificateRequest` (crypto/x509/x509.go) reads the same structure; each check
/// below says where csrgate is stricter.
///
/// # Errors
/// See [`parse_request`].
pub fn parse_der(der: &[u8]) -> Result<ParsedRequest, RequestError> {
    let bad = |e: der::DerError| RequestError::Der(e.to_string());
    let mut input = Reader::new(der);
    let mut request = input
        .read_nested(tag::SEQUENCE, "CertificationRequest")
        .map_err(bad)?;
    if !input.is_empty() {
        let rest = der.len() - request_len(der);
        return Err(RequestError::TrailingDer(rest));
    }
    let info = request
        .read(tag::SEQUENCE, "certificationRequestInfo")
        .map_err(bad)?;
    let algorithm = request
        .read(tag::SEQUENCE, "signatureAlgorithm")
        .map_err(bad)?;
    let signature = request.read_octet_aligned_bits("signature").map_err(bad)?;
    request.finish("the signature").map_err(bad)?;

    let mut fields = Reader::new(info.contents);
    // RFC 2986 §4.1: version is 0 (v1); Go refuses nothing here, csrgate refuses the rest.
    let version = fields.read_integer("version").map_err(bad)?;
    if version != [0] {
        return Err(RequestError::Der(format!(
            "request version {} is not 0 (RFC 2986 §4.1 defines only v1 = 0)",
            der::small_unsigned(version).map_or_else(|| "(large)".to_owned(), |v| v.to_string())
        )));
    }
    let subject = fields.read(tag::SEQUENCE, "subject").map_err(bad)?;
    let spki = fields.read(tag::SEQUENCE, "subjectPKInfo").map_err(bad)?;
    // RFC 2986 §4.1: attributes is not OPTIONAL; an empty set is written `a0 00`.
    let attributes = fields.read(0xa0, "attributes").map_err(bad)?;
    fields.finish("the attributes").map_err(bad)?;

    let (public_key, key) = verify::read_public_key(spki)?;
    let algorithm = verify::read_signature_algorithm(algorithm)?;
    verify::verify(algorithm, &key, info.encoding, signature)?;

    let mut parsed = ParsedRequest {
        common_name: String::new(),
        organizations: Vec::new(),
        organizational_units: Vec::new(),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        email_addresses: Vec::new(),
        uris: Vec::new(),
        public_key,
        extensions: Vec::new(),
    };
    read_subject(subject.contents, &mut parsed)?;
    read_attributes(attributes.contents, &mut parsed)?;
    Ok(parsed)
}

/// The length of the first DER element of `der`, for the trailing-bytes message.
fn request_len(der: &[u8]) -> usize {
    Reader::new(der)
        .read_any()
        .map_or(der.len(), |element| element.encoding.len())
}

/// Exactly one PEM block labelled `CERTIFICATE REQUEST` (RFC 7468 §7), with only whitespace
/// around it, and nothing else in it.
///
/// Go's `pem.Decode` (encoding/pem), which kube-apiserver uses, skips text before the block,
/// ignores text after it and accepts `Key: value` headers; csrgate refuses all three, and
/// requires the BEGIN and END lines to be exactly RFC 7468's, so what an auditor sees in the
/// manifest is all there is. The base64 must be canonical (RFC 4648 §3.5 padding bits zero).
fn decode_pem(pem: &[u8]) -> Result<Vec<u8>, RequestError> {
    use base64::Engine as _;
    let text = std::str::from_utf8(pem)
        .map_err(|_| RequestError::NotPem("request is not UTF-8 text".into()))?;
    let begin = format!("-----BEGIN {PEM_LABEL}-----");
    let end = format!("-----END {PEM_LABEL}-----");
    let trimmed = text.trim_matches(|c: char| c.is_ascii_whitespace());
    // Lines end in LF or CRLF; Go trims trailing spaces and tabs from each, and so does this.
    let mut lines = trimmed
        .split('\n')
        .map(|line| line.trim_end_matches(['\r', ' ', '\t']));
    let first = lines.next().unwrap_or_default();
    if !first.starts_with("-----BEGIN ") {
        return Err(RequestError::NotPem(
            "no \"-----BEGIN\" line at the start".into(),
        ));
    }
    if first != begin {
        let label = first
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
            .unwrap_or(first);
        return Err(RequestError::WrongPemLabel(label.to_owned()));
    }
    let mut body = String::with_capacity(trimmed.len());
    let mut ended = false;
    for line in lines.by_ref() {
        if line == end {
            ended = true;
            break;
        }
        if line.starts_with("-----") {
            return Err(RequestError::NotPem(format!(
                "{line:?} where \"{end}\" was expected"
            )));
        }
        if let Some(b) = line
            .bytes()
            .find(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')))
        {
            return Err(RequestError::NotPem(format!(
                "byte {b:#04x} in the PEM body is not base64 (PEM headers are not accepted)"
            )));
        }
        body.push_str(line);
    }
    if !ended {
        return Err(RequestError::NotPem(format!("no \"{end}\" line")));
    }
    if lines.next().is_some() {
        return Err(RequestError::TrailingPem);
    }
    base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|e| RequestError::NotPem(format!("PEM body is not canonical base64: {e}")))
}

/// DER contents of the OIDs the parser looks for.
mod oid {
    /// id-at-commonName (X.520).
    pub(super) const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
    /// id-at-organizationName.
    pub(super) const ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];
    /// id-at-organizationalUnitName.
    pub(super) const ORGANIZATIONAL_UNIT: &[u8] = &[0x55, 0x04, 0x0b];
    /// id-ce-subjectAltName (RFC 5280 §4.2.1.6).
    pub(super) const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
    /// pkcs-9-at-extensionRequest (RFC 2985 §5.4.2).
    pub(super) const EXTENSION_REQUEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 9, 14];
    /// pkcs-9-at-challengePassword (RFC 2985 §5.4.1).
    pub(super) const CHALLENGE_PASSWORD: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 9, 7];
    /// pkcs-9-at-unstructuredName (RFC 2985, a PKCS9String: IA5String or DirectoryString).
    pub(super) const UNSTRUCTURED_NAME: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 9, 2];
}

/// The text of an ASN.1 character string, checked against what its type allows, as Go's
/// `parseASN1String` (crypto/x509/parser.go) reads it: a string whose bytes its type forbids
/// makes Go refuse the whole request, so it makes csrgate refuse it too.
///
/// Returns `None` for a tag that is not one of the string types Go reads.
///
/// # Errors
/// The bytes are not valid for the type: PrintableString outside its set (X.680 §41.4; Go
/// also allows `*` and `&`, and so does csrgate, to read names as Kubernetes does), UTF8String
/// not UTF-8, IA5String not ASCII, NumericString not digits and space, BMPString of odd
/// length or holding surrogates or non-characters. TeletexString is read as Latin-1, as Go
/// reads it, so the policy sees the text Kubernetes puts in the certificate.
fn decode_string(tag_byte: u8, bytes: &[u8]) -> Option<Result<String, String>> {
    let result = match tag_byte {
        tag::UTF8_STRING => std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| "UTF8String is not valid UTF-8".to_owned()),
        tag::PRINTABLE_STRING => {
            let printable = |b: u8| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b' ' | b'\''
                            | b'('
                            | b')'
                            | b'+'
                            | b','
                            | b'-'
                            | b'.'
                            | b'/'
                            | b':'
                            | b'='
                            | b'?'
                            | b'*'
                            | b'&'
                    )
            };
            match bytes.iter().find(|b| !printable(**b)) {
                Some(b) => Err(format!("PrintableString has forbidden byte {b:#04x}")),
                None => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
            }
        }
        tag::IA5_STRING => match bytes.iter().find(|b| !b.is_ascii()) {
            Some(b) => Err(format!("IA5String has non-ASCII byte {b:#04x}")),
            None => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
        },
        tag::NUMERIC_STRING => match bytes.iter().find(|b| !(b.is_ascii_digit() || **b == b' ')) {
            Some(b) => Err(format!("NumericString has forbidden byte {b:#04x}")),
            None => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
        },
        tag::TELETEX_STRING => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
        tag::BMP_STRING => decode_bmp(bytes),
        _ => return None,
    };
    Some(result)
}

/// BMPString (UCS-2) as Go reads it: even length, one trailing NUL terminator dropped, no
/// surrogates (D800–DFFF) or non-characters (FFFE, FFFF, FDD0–FDEF).
fn decode_bmp(bytes: &[u8]) -> Result<String, String> {
    if !bytes.len().is_multiple_of(2) {
        return Err("BMPString of odd length".into());
    }
    let bytes = bytes.strip_suffix(&[0, 0]).unwrap_or(bytes);
    let mut text = String::with_capacity(bytes.len() / 2);
    for pair in bytes.chunks_exact(2) {
        let unit = u16::from_be_bytes([pair[0], pair[1]]);
        let forbidden = (0xd800..=0xdfff).contains(&unit)
            || (0xfdd0..=0xfdef).contains(&unit)
            || unit >= 0xfffe;
        match char::from_u32(u32::from(unit)) {
            Some(c) if !forbidden => text.push(c),
            _ => return Err(format!("BMPString has forbidden code unit {unit:#06x}")),
        }
    }
    Ok(text)
}

/// UniversalString (UCS-4): valid for a challengePassword (RFC 2985 DirectoryString), but not
/// read by Go in a name.
fn decode_universal(bytes: &[u8]) -> Result<String, String> {
    if !bytes.len().is_multiple_of(4) {
        return Err("UniversalString length is not a multiple of 4".into());
    }
    bytes
        .chunks_exact(4)
        .map(|q| {
            char::from_u32(u32::from_be_bytes([q[0], q[1], q[2], q[3]]))
                .ok_or_else(|| "UniversalString has an invalid code point".to_owned())
        })
        .collect()
}

/// Reads the subject Name (RFC 5280 §4.1.2.4): `SEQUENCE OF SET SIZE (1..MAX) OF
/// AttributeTypeAndValue`.
///
/// Every string value is checked against its type, as Go checks them. CN, O and OU, which
/// the `x509` variable shows, must be one of the string types Go reads: a CN Go cannot read
/// is dropped from the certificate Kubernetes issues, so a policy must not approve it.
/// csrgate also refuses a second CN (Go keeps the last; a policy would see the first) and
/// empty RDN sets (X.501 requires at least one value).
fn read_subject(contents: &[u8], parsed: &mut ParsedRequest) -> Result<(), RequestError> {
    let bad = |e: der::DerError| RequestError::Subject(e.to_string());
    let mut rdns = Reader::new(contents);
    let mut count = 0usize;
    while !rdns.is_empty() {
        let mut set = rdns
            .read_nested(tag::SET, "RelativeDistinguishedName")
            .map_err(bad)?;
        if set.is_empty() {
            return Err(RequestError::Subject(
                "empty RelativeDistinguishedName set".into(),
            ));
        }
        while !set.is_empty() {
            count += 1;
            check_limit("subject attributes", count, MAX_SUBJECT_ATTRIBUTES)?;
            let mut attribute = set
                .read_nested(tag::SEQUENCE, "AttributeTypeAndValue")
                .map_err(bad)?;
            let oid = attribute.read_oid("attribute type").map_err(bad)?;
            let value = attribute.read_any().map_err(bad)?;
            attribute.finish("the attribute value").map_err(bad)?;
            let text = match decode_string(value.tag, value.contents) {
                Some(Ok(text)) => Some(text),
                Some(Err(why)) => {
                    return Err(RequestError::Subject(format!("attribute {oid}: {why}")));
                }
                None => None,
            };
            let target = match oid.contents() {
                oid::COMMON_NAME => None,
                oid::ORGANIZATION => Some(&mut parsed.organizations),
                oid::ORGANIZATIONAL_UNIT => Some(&mut parsed.organizational_units),
                _ => continue,
            };
            let Some(text) = text else {
                return Err(RequestError::Subject(format!(
                    "attribute {oid} is not a string of a type Kubernetes reads (tag {:#04x})",
                    value.tag
                )));
            };
            check_string(&format!("subject attribute {oid}"), &text)?;
            match target {
                Some(list) => list.push(text),
                None if parsed.common_name.is_empty() => parsed.common_name = text,
                None => return Err(RequestError::Subject("more than one common name".into())),
            }
        }
    }
    Ok(())
}

/// Reads the request's attributes (RFC 2986 §4.1): `SET OF SEQUENCE { type OID, values SET
/// SIZE (1..MAX) OF ANY }`.
///
/// Go's `parseCSRExtensions` skips attributes that do not parse, reads the first value of
/// every extensionRequest and ignores the rest. csrgate refuses instead: an attribute that is
/// not well-formed, an extensionRequest with more or fewer than one value (RFC 2985 §5.4.2:
/// SINGLE VALUE), a second extensionRequest, and a challengePassword that is not one
/// DirectoryString (RFC 2985 §5.4.1; PrintableString, UTF8String, BMPString, TeletexString or
/// UniversalString are all valid). Other attributes are kept out of the `x509` variable;
/// Kubernetes ignores them when it signs.
fn read_attributes(contents: &[u8], parsed: &mut ParsedRequest) -> Result<(), RequestError> {
    let bad = |e: der::DerError| RequestError::Attributes(e.to_string());
    let mut attributes = Reader::new(contents);
    let mut seen_extension_request = false;
    let mut count = 0usize;
    while !attributes.is_empty() {
        count += 1;
        check_limit("attributes", count, MAX_EXTENSIONS)?;
        let mut attribute = attributes
            .read_nested(tag::SEQUENCE, "Attribute")
            .map_err(bad)?;
        let oid = attribute.read_oid("attribute type").map_err(bad)?;
        let mut values_reader = attribute
            .read_nested(tag::SET, "attribute values")
            .map_err(bad)?;
        attribute.finish("the attribute values").map_err(bad)?;
        let mut values = Vec::new();
        while !values_reader.is_empty() {
            values.push(values_reader.read_any().map_err(bad)?);
        }
        if values.is_empty() {
            return Err(RequestError::Attributes(format!(
                "attribute {oid} has no value (RFC 2986 §4.1 requires at least one)"
            )));
        }
        match oid.contents() {
            oid::EXTENSION_REQUEST => {
                if seen_extension_request {
                    return Err(RequestError::Extensions(
                        "more than one extensionRequest attribute".into(),
                    ));
                }
                seen_extension_request = true;
                let [value] = values.as_slice() else {
                    return Err(RequestError::Extensions(format!(
                        "the extensionRequest attribute has {} values; it is single-valued (RFC 2985 §5.4.2)",
                        values.len()
                    )));
                };
                if value.tag != tag::SEQUENCE {
                    return Err(RequestError::Extensions(format!(
                        "extensionRequest value has tag {:#04x}, not a SEQUENCE of extensions",
                        value.tag
                    )));
                }
                read_extensions(value.contents, parsed)?;
            }
            oid::CHALLENGE_PASSWORD | oid::UNSTRUCTURED_NAME => {
                check_string_attribute(&oid, &values)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// A challengePassword or unstructuredName attribute (RFC 2985 §5.4.1, §5.2.2): values that
/// are valid strings of their type, one value for challengePassword.
///
/// # Errors
/// A value of the wrong type or encoding, or several challengePasswords.
fn check_string_attribute(
    oid: &der::Oid<'_>,
    values: &[der::Element<'_>],
) -> Result<(), RequestError> {
    let name = if oid.is(oid::CHALLENGE_PASSWORD) {
        "challengePassword"
    } else {
        "unstructuredName"
    };
    if oid.is(oid::CHALLENGE_PASSWORD) && values.len() != 1 {
        return Err(RequestError::Attributes(format!(
            "{name} has {} values; it is single-valued (RFC 2985 §5.4.1)",
            values.len()
        )));
    }
    for value in values {
        let text = match value.tag {
            tag::UNIVERSAL_STRING => Some(decode_universal(value.contents)),
            // IA5String is a PKCS9String for unstructuredName, not a DirectoryString.
            tag::IA5_STRING if oid.is(oid::CHALLENGE_PASSWORD) => None,
            tag::NUMERIC_STRING => None,
            other => decode_string(other, value.contents),
        };
        match text {
            Some(Ok(_)) => {}
            Some(Err(why)) => {
                return Err(RequestError::Attributes(format!("{name}: {why}")));
            }
            None => {
                return Err(RequestError::Attributes(format!(
                    "{name} value has tag {:#04x}, not a DirectoryString",
                    value.tag
                )));
            }
        }
    }
    Ok(())
}

/// Reads `Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension` (RFC 5280 §4.1).
///
/// Refused beyond Go (whose CSR parser keeps duplicates and reads each SAN extension, the
/// last winning): an empty list, two extensions with one OID (RFC 5280 §4.2: "MUST NOT
/// include more than one instance of a particular extension"), `critical` written as FALSE
/// (DER omits a DEFAULT), bytes after the value inside an Extension, and an extnValue that
/// is not exactly one DER element.
fn read_extensions(contents: &[u8], parsed: &mut ParsedRequest) -> Result<(), RequestError> {
    let bad = |e: der::DerError| RequestError::Extensions(e.to_string());
    let mut extensions = Reader::new(contents);
    if extensions.is_empty() {
        return Err(RequestError::Extensions(
            "empty list of requested extensions".into(),
        ));
    }
    let mut seen: Vec<Vec<u8>> = Vec::new();
    while !extensions.is_empty() {
        let mut extension = extensions
            .read_nested(tag::SEQUENCE, "Extension")
            .map_err(bad)?;
        let oid = extension.read_oid("extnID").map_err(bad)?;
        if extension.peek_tag() == Some(tag::BOOLEAN)
            && !extension.read_boolean("critical").map_err(bad)?
        {
            return Err(RequestError::Extensions(format!(
                "extension {oid}: critical written as FALSE, its default (not DER)"
            )));
        }
        let value = extension
            .read(tag::OCTET_STRING, "extnValue")
            .map_err(|e| RequestError::Extensions(format!("extension {oid}: {e}")))?;
        extension
            .finish("extnValue")
            .map_err(|e| RequestError::Extensions(format!("extension {oid}: {e}")))?;
        let is_san = oid.is(oid::SUBJECT_ALT_NAME);
        if seen.iter().any(|s| s == oid.contents()) {
            return Err(if is_san {
                RequestError::DuplicateSan
            } else {
                RequestError::Extensions(format!("extension {oid} appears twice"))
            });
        }
        seen.push(oid.contents().to_vec());
        check_limit("requested extensions", seen.len(), MAX_EXTENSIONS)?;
        let mut inner = Reader::new(value.contents);
        let element = inner
            .read_any()
            .map_err(|e| RequestError::Extensions(format!("extension {oid} value: {e}")))?;
        inner
            .finish("the extension value")
            .map_err(|e| RequestError::Extensions(format!("extension {oid} value: {e}")))?;
        if is_san {
            if element.tag != tag::SEQUENCE {
                return Err(RequestError::InvalidSan(
                    "subjectAltName value is not a SEQUENCE of GeneralName".into(),
                ));
            }
            read_general_names(element.contents, parsed)?;
        }
        parsed.extensions.push(oid.to_string());
    }
    Ok(())
}

/// Reads `GeneralNames ::= SEQUENCE SIZE (1..MAX) OF GeneralName` (RFC 5280 §4.2.1.6) into
/// the canonical forms of [`names`].
fn read_general_names(contents: &[u8], parsed: &mut ParsedRequest) -> Result<(), RequestError> {
    let mut names_reader = Reader::new(contents);
    if names_reader.is_empty() {
        return Err(RequestError::InvalidSan(
            "subjectAltName has no names (RFC 5280 §4.2.1.6: SIZE (1..MAX))".into(),
        ));
    }
    while !names_reader.is_empty() {
        let name = names_reader
            .read_any()
            .map_err(|e| RequestError::InvalidSan(e.to_string()))?;
        let (kind, list, value) = match name.tag {
            // [1] rfc822Name, [2] dNSName, [6] uniformResourceIdentifier: IA5String, primitive.
            0x81 | 0x82 | 0x86 => {
                let kind = match name.tag {
                    0x81 => SanKind::Email,
                    0x82 => SanKind::Dns,
                    _ => SanKind::Uri,
                };
                let text =
                    names::check_ia5_name(kind, name.contents).map_err(RequestError::InvalidSan)?;
                check_string(kind.name(), text)?;
                match kind {
                    SanKind::Dns => (
                        "DNS names",
                        &mut parsed.dns_names,
                        names::canonical_dns_name(text).map_err(RequestError::InvalidSan)?,
                    ),
                    SanKind::Email => (
                        "email addresses",
                        &mut parsed.email_addresses,
                        text.to_owned(),
                    ),
                    SanKind::Uri => {
                        names::check_uri(text).map_err(RequestError::InvalidSan)?;
                        ("URIs", &mut parsed.uris, text.to_owned())
                    }
                }
            }
            // [7] iPAddress OCTET STRING.
            0x87 => (
                "IP addresses",
                &mut parsed.ip_addresses,
                names::canonical_ip(name.contents).map_err(RequestError::InvalidSan)?,
            ),
            0xa0 => return Err(RequestError::UnsupportedSan("otherName")),
            0xa3 => return Err(RequestError::UnsupportedSan("x400Address")),
            0xa4 => return Err(RequestError::UnsupportedSan("directoryName")),
            0xa5 => return Err(RequestError::UnsupportedSan("ediPartyName")),
            0x88 => return Err(RequestError::UnsupportedSan("registeredID")),
            other => {
                return Err(RequestError::InvalidSan(format!(
                    "entry with tag {other:#04x} is not a GeneralName"
                )));
            }
        };
        list.push(value);
        check_limit(kind, list.len(), MAX_SANS_PER_TYPE)?;
    }
    Ok(())
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
        let algorithm = self.algorithm.as_str();
        match self.curve {
            None => write!(f, "{algorithm} {}", self.size),
            Some(curve) => write!(f, "{algorithm} {}", curve.name()),
        }
    }
}

#[cfg(test)]
mod tests;
