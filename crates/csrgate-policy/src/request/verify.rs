//! Public keys and self-signatures: exactly the algorithms Go's
//! `(*CertificateRequest).CheckSignature` verifies (crypto/x509/x509.go `checkSignature`,
//! `signatureAlgorithmDetails`, `getSignatureAlgorithmFromAI`), less SHA-1.
//!
//! | key | signature algorithms |
//! | --- | --- |
//! | RSA, 1024 to 16384 bits | PKCS#1 v1.5 and PSS with SHA-256, SHA-384, SHA-512 |
//! | ECDSA P-224, P-256, P-384, P-521 | ECDSA with SHA-256, SHA-384, SHA-512 |
//! | Ed25519 | Ed25519 |
//!
//! Anything else is refused with a message naming what is unsupported, never reported as a
//! signature that "does not verify". The implementations are RustCrypto's (`rsa`, `p224`,
//! `p256`, `p384`, `p521` over `ecdsa`, `ed25519-dalek`): pure Rust, maintained together,
//! and unlike *ring* they cover P-224, P-521 and 1024-bit RSA, which Go and so kube-apiserver
//! accept; `rsa` and `sha2` were already in the workspace.

use rsa::signature::hazmat::PrehashVerifier;
use sha2::Digest;

use super::der::{self, Oid, Reader, tag};
use super::{KeyAlgorithm, PublicKeyInfo, RequestError};

/// DER contents of the OIDs this module knows.
mod oid {
    /// rsaEncryption, RFC 8017 App. C.
    pub(super) const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 1];
    /// md2WithRSAEncryption.
    pub(super) const MD2_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 2];
    /// md5WithRSAEncryption.
    pub(super) const MD5_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 4];
    /// sha1WithRSAEncryption.
    pub(super) const SHA1_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 5];
    /// mgf1, RFC 8017 App. C.
    pub(super) const MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 8];
    /// id-RSASSA-PSS.
    pub(super) const RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 10];
    /// sha256WithRSAEncryption.
    pub(super) const SHA256_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 11];
    /// sha384WithRSAEncryption.
    pub(super) const SHA384_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 12];
    /// sha512WithRSAEncryption.
    pub(super) const SHA512_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 13];
    /// id-ecPublicKey, RFC 5480 §2.1.1.
    pub(super) const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 2, 1];
    /// ecdsa-with-SHA1, RFC 5758 §3.2.
    pub(super) const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 1];
    /// ecdsa-with-SHA256.
    pub(super) const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, 2];
    /// ecdsa-with-SHA384.
    pub(super) const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, 3];
    /// ecdsa-with-SHA512.
    pub(super) const ECDSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, 4];
    /// secp224r1, RFC 5480 §2.1.1.1.
    pub(super) const P224: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x21];
    /// secp256r1.
    pub(super) const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 3, 1, 7];
    /// secp384r1.
    pub(super) const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    /// secp521r1.
    pub(super) const P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
    /// id-Ed25519, RFC 8410 §3.
    pub(super) const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
    /// id-sha256, RFC 5754 §2.
    pub(super) const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 3, 4, 2, 1];
    /// id-sha384.
    pub(super) const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 3, 4, 2, 2];
    /// id-sha512.
    pub(super) const SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 3, 4, 2, 3];
}

/// Smallest RSA modulus verified, in bits: Go 1.24's crypto/rsa refuses smaller keys
/// (GODEBUG `rsa1024min`), so kube-apiserver does too.
pub(crate) const MIN_RSA_BITS: usize = 1024;
/// Largest RSA modulus verified, in bits; verification time grows with it.
pub(crate) const MAX_RSA_BITS: usize = 16384;

/// A SHA-2 hash a signature algorithm names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hash {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Hash {
    fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => sha2::Sha256::digest(message).to_vec(),
            Hash::Sha384 => sha2::Sha384::digest(message).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(message).to_vec(),
        }
    }

    fn len(self) -> u64 {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    fn from_oid(oid: Oid<'_>) -> Option<Hash> {
        match oid.contents() {
            oid::SHA256 => Some(Hash::Sha256),
            oid::SHA384 => Some(Hash::Sha384),
            oid::SHA512 => Some(Hash::Sha512),
            _ => None,
        }
    }
}

/// A signature algorithm csrgate verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureAlgorithm {
    /// RSASSA-PKCS1-v1_5 (RFC 8017 §8.2).
    RsaPkcs1(Hash),
    /// RSASSA-PSS (RFC 8017 §8.1) with MGF1 over the same hash and a salt as long as it.
    RsaPss(Hash),
    /// ECDSA (RFC 5758 §3.2).
    Ecdsa(Hash),
    /// PureEdDSA over edwards25519 (RFC 8410 §3).
    Ed25519,
}

/// A verified-ready public key.
#[derive(Debug)]
pub(crate) enum Key {
    /// An RSA key.
    Rsa(rsa::PublicKey),
    /// An ECDSA key on a named curve: the curve and the uncompressed point.
    Ec(Curve, Vec<u8>),
    /// An Ed25519 key.
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// A NIST curve csrgate verifies, the ones Go supports (crypto/x509 `namedCurveFromOID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    /// secp224r1.
    P224,
    /// secp256r1.
    P256,
    /// secp384r1.
    P384,
    /// secp521r1.
    P521,
}

impl Curve {
    /// The name policies read as `x509.publicKey.curve`: `P-224`, `P-256`, `P-384` or
    /// `P-521` (Go's `elliptic.Curve` names).
    pub fn name(self) -> &'static str {
        match self {
            Curve::P224 => "P-224",
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
        }
    }

    fn bits(self) -> i64 {
        match self {
            Curve::P224 => 224,
            Curve::P256 => 256,
            Curve::P384 => 384,
            Curve::P521 => 521,
        }
    }

    /// Bytes of one coordinate (SEC 1 §2.3.5).
    fn coordinate_len(self) -> usize {
        match self {
            Curve::P224 => 28,
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }
}

fn unsupported_key(message: impl Into<String>) -> RequestError {
    RequestError::UnsupportedKey(message.into())
}

fn unsupported_signature(message: impl Into<String>) -> RequestError {
    RequestError::UnsupportedSignature(message.into())
}

/// Reads an AlgorithmIdentifier (RFC 5280 §4.1.1.2): the OID and its parameters, if present.
fn read_algorithm<'a>(
    element: der::Element<'a>,
    what: &str,
) -> Result<(Oid<'a>, Option<der::Element<'a>>), RequestError> {
    let bad = |e: der::DerError| RequestError::Der(format!("{what}: {e}"));
    let mut reader = Reader::new(element.contents);
    let algorithm = reader.read_oid("algorithm").map_err(bad)?;
    let parameters = if reader.is_empty() {
        None
    } else {
        Some(reader.read_any().map_err(bad)?)
    };
    reader.finish("the parameters").map_err(bad)?;
    Ok((algorithm, parameters))
}

fn is_null(parameters: Option<der::Element<'_>>) -> bool {
    parameters.is_some_and(|p| p.tag == tag::NULL && p.contents.is_empty())
}

/// Reads the SubjectPublicKeyInfo (RFC 5280 §4.1.2.7) into what the `x509` variable shows and
/// a key to verify with.
///
/// Parameters follow Go's `parsePublicKey` (crypto/x509/parser.go): RSA keys carry NULL
/// (RFC 3279 §2.3.1), ECDSA keys a named-curve OID (RFC 5480 §2.1.1; Go reads no other form),
/// Ed25519 keys none (RFC 8410 §3). EC points must be uncompressed, as Go's
/// `ecdsa.ParseUncompressedPublicKey` requires.
///
/// # Errors
/// [`RequestError::UnsupportedKey`] for an algorithm, curve or size csrgate does not verify,
/// [`RequestError::Der`] for a key that is not encoded as its RFC says.
pub(crate) fn read_public_key(
    spki: der::Element<'_>,
) -> Result<(PublicKeyInfo, Key), RequestError> {
    let bad = |e: der::DerError| RequestError::Der(format!("subjectPublicKeyInfo: {e}"));
    let mut reader = Reader::new(spki.contents);
    let algorithm = reader.read(tag::SEQUENCE, "algorithm").map_err(bad)?;
    let bits = reader
        .read_octet_aligned_bits("subjectPublicKey")
        .map_err(bad)?;
    reader.finish("subjectPublicKey").map_err(bad)?;
    let (oid, parameters) = read_algorithm(algorithm, "subjectPublicKeyInfo algorithm")?;

    match oid.contents() {
        oid::RSA_ENCRYPTION => {
            if !is_null(parameters) {
                return Err(RequestError::Der(
                    "RSA public key algorithm parameters must be NULL (RFC 3279 §2.3.1)".into(),
                ));
            }
            read_rsa_key(bits)
        }
        oid::EC_PUBLIC_KEY => {
            let curve_oid = match parameters {
                Some(p) if p.tag == tag::OID => Oid::from_contents(p.contents)
                    .map_err(|e| RequestError::Der(format!("ECDSA curve: {e}")))?,
                _ => {
                    return Err(unsupported_key(
                        "ECDSA key without a named curve (RFC 5480 §2.1.1)",
                    ));
                }
            };
            let curve = match curve_oid.contents() {
                oid::P224 => Curve::P224,
                oid::P256 => Curve::P256,
                oid::P384 => Curve::P384,
                oid::P521 => Curve::P521,
                _ => return Err(unsupported_key(format!("ECDSA curve {curve_oid}"))),
            };
            let len = curve.coordinate_len();
            if bits.len() != 1 + 2 * len || bits.first() != Some(&0x04) {
                return Err(unsupported_key(format!(
                    "ECDSA {} key is not an uncompressed point of {} bytes",
                    curve.name(),
                    1 + 2 * len
                )));
            }
            check_ec_point(curve, bits)?;
            let info = PublicKeyInfo {
                algorithm: KeyAlgorithm::Ecdsa,
                size: curve.bits(),
                curve: Some(curve),
            };
            Ok((info, Key::Ec(curve, bits.to_vec())))
        }
        oid::ED25519 => {
            if parameters.is_some() {
                return Err(RequestError::Der(
                    "Ed25519 public key algorithm must have no parameters (RFC 8410 §3)".into(),
                ));
            }
            let bytes: [u8; 32] = bits
                .try_into()
                .map_err(|_| unsupported_key(format!("Ed25519 key of {} bytes", bits.len())))?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map_err(|_| unsupported_key("Ed25519 key is not a curve point"))?;
            let info = PublicKeyInfo {
                algorithm: KeyAlgorithm::Ed25519,
                size: 256,
                curve: None,
            };
            Ok((info, Key::Ed25519(key)))
        }
        oid::RSA_PSS => Err(unsupported_key(
            "RSASSA-PSS public key (id-RSASSA-PSS); Kubernetes reads RSA keys as rsaEncryption only",
        )),
        _ => Err(unsupported_key(format!("public key algorithm {oid}"))),
    }
}

/// RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER } (RFC 8017 A.1.1).
fn read_rsa_key(bits: &[u8]) -> Result<(PublicKeyInfo, Key), RequestError> {
    let bad = |e: der::DerError| RequestError::Der(format!("RSA public key: {e}"));
    let mut outer = Reader::new(bits);
    let mut key = outer
        .read_nested(tag::SEQUENCE, "RSAPublicKey")
        .map_err(bad)?;
    outer.finish("RSAPublicKey").map_err(bad)?;
    let n = key.read_integer("modulus").map_err(bad)?;
    let e = key.read_integer("publicExponent").map_err(bad)?;
    key.finish("publicExponent").map_err(bad)?;
    if n.first().is_some_and(|b| b & 0x80 != 0) || e.first().is_some_and(|b| b & 0x80 != 0) {
        return Err(RequestError::Der(
            "RSA modulus or exponent is negative".into(),
        ));
    }
    let n = n.strip_prefix(&[0]).unwrap_or(n);
    // The exact bit length: a 3071-bit modulus is a 3071-bit key.
    let size = match n.first() {
        Some(&top) => (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
        None => 0,
    };
    // Go's crypto/rsa (checkPublicKey) requires an odd exponent of at least 3 that fits in
    // 31 bits, and an odd modulus.
    let exponent = der::small_unsigned(e).unwrap_or(u64::MAX);
    if !(3..=(1 << 31) - 1).contains(&exponent) || exponent.is_multiple_of(2) {
        return Err(unsupported_key(format!(
            "RSA public exponent {} (an odd number from 3 to 2^31-1 is required)",
            if exponent == u64::MAX {
                "too large".to_owned()
            } else {
                exponent.to_string()
            }
        )));
    }
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&size) {
        return Err(unsupported_key(format!(
            "RSA key of {size} bits (csrgate verifies {MIN_RSA_BITS} to {MAX_RSA_BITS} bits, as Go does from {MIN_RSA_BITS})"
        )));
    }
    if n.last().is_some_and(|b| b & 1 == 0) {
        return Err(unsupported_key("RSA modulus is even"));
    }
    let precision = u32::try_from(n.len() * 8).unwrap_or(u32::MAX);
    let modulus = rsa::BoxedUint::from_be_slice(n, precision)
        .map_err(|e| unsupported_key(format!("RSA modulus: {e:?}")))?;
    let public = rsa::PublicKey::new_with_size_limits(
        modulus,
        rsa::BoxedUint::from(exponent),
        MIN_RSA_BITS..=MAX_RSA_BITS,
    )
    .map_err(|e| unsupported_key(format!("RSA key: {e}")))?;
    let info = PublicKeyInfo {
        algorithm: KeyAlgorithm::Rsa,
        size: i64::try_from(size).unwrap_or(i64::MAX),
        curve: None,
    };
    Ok((info, Key::Rsa(public)))
}

/// Refuses a point that is not on its curve, or is the identity.
fn check_ec_point(curve: Curve, point: &[u8]) -> Result<(), RequestError> {
    let on_curve = match curve {
        Curve::P224 => p224::ecdsa::VerifyingKey::from_sec1_bytes(point).is_ok(),
        Curve::P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(point).is_ok(),
        Curve::P384 => p384::ecdsa::VerifyingKey::from_sec1_bytes(point).is_ok(),
        Curve::P521 => p521::ecdsa::VerifyingKey::from_sec1_bytes(point).is_ok(),
    };
    if on_curve {
        Ok(())
    } else {
        Err(unsupported_key(format!(
            "ECDSA {} key is not a point on the curve",
            curve.name()
        )))
    }
}

/// Reads the request's signatureAlgorithm (RFC 2986 §4.2).
///
/// Parameters as RFC 4055 §5 / RFC 5758 §3.2 / RFC 8410 §3 require, which is stricter than
/// Go's `getSignatureAlgorithmFromAI` (it ignores the parameters of every algorithm but
/// Ed25519 and PSS): PKCS#1 v1.5 with NULL or absent parameters (Go writes NULL, some
/// encoders omit it), ECDSA and Ed25519 with none, PSS with Go's three parameter sets only
/// (same hash for message and MGF1, salt as long as the hash, trailer field 1).
///
/// # Errors
/// [`RequestError::UnsupportedSignature`] naming the algorithm (SHA-1, MD5 and MD2 by name),
/// [`RequestError::Der`] for parameters an algorithm forbids.
pub(crate) fn read_signature_algorithm(
    element: der::Element<'_>,
) -> Result<SignatureAlgorithm, RequestError> {
    let (oid, parameters) = read_algorithm(element, "signatureAlgorithm")?;
    let absent_or_null = parameters.is_none() || is_null(parameters);
    let must_be_absent = |algorithm: SignatureAlgorithm, name: &str| {
        if parameters.is_some() {
            Err(RequestError::Der(format!(
                "signatureAlgorithm {name} must have no parameters"
            )))
        } else {
            Ok(algorithm)
        }
    };
    let pkcs1 = |hash: Hash, name: &str| {
        if absent_or_null {
            Ok(SignatureAlgorithm::RsaPkcs1(hash))
        } else {
            Err(RequestError::Der(format!(
                "signatureAlgorithm {name} parameters must be NULL or absent"
            )))
        }
    };
    match oid.contents() {
        oid::SHA256_RSA => pkcs1(Hash::Sha256, "sha256WithRSAEncryption"),
        oid::SHA384_RSA => pkcs1(Hash::Sha384, "sha384WithRSAEncryption"),
        oid::SHA512_RSA => pkcs1(Hash::Sha512, "sha512WithRSAEncryption"),
        oid::ECDSA_SHA256 => {
            must_be_absent(SignatureAlgorithm::Ecdsa(Hash::Sha256), "ecdsa-with-SHA256")
        }
        oid::ECDSA_SHA384 => {
            must_be_absent(SignatureAlgorithm::Ecdsa(Hash::Sha384), "ecdsa-with-SHA384")
        }
        oid::ECDSA_SHA512 => {
            must_be_absent(SignatureAlgorithm::Ecdsa(Hash::Sha512), "ecdsa-with-SHA512")
        }
        oid::ED25519 => must_be_absent(SignatureAlgorithm::Ed25519, "Ed25519"),
        oid::RSA_PSS => read_pss_parameters(parameters).map(SignatureAlgorithm::RsaPss),
        oid::SHA1_RSA => Err(unsupported_signature(
            "sha1WithRSAEncryption: SHA-1 signatures are not accepted",
        )),
        oid::ECDSA_SHA1 => Err(unsupported_signature(
            "ecdsa-with-SHA1: SHA-1 signatures are not accepted",
        )),
        oid::MD5_RSA => Err(unsupported_signature(
            "md5WithRSAEncryption: MD5 signatures are not accepted",
        )),
        oid::MD2_RSA => Err(unsupported_signature(
            "md2WithRSAEncryption: MD2 signatures are not accepted",
        )),
        _ => Err(unsupported_signature(format!(
            "signature algorithm {oid} is not one csrgate verifies (RSA PKCS#1 v1.5 or PSS, ECDSA, with SHA-256/384/512; Ed25519)"
        ))),
    }
}

/// RSASSA-PSS-params (RFC 4055 §3.1) restricted to Go's three sets.
fn read_pss_parameters(parameters: Option<der::Element<'_>>) -> Result<Hash, RequestError> {
    let unsupported = |why: &str| unsupported_signature(format!("RSASSA-PSS parameters: {why}"));
    let bad = |e: der::DerError| RequestError::Der(format!("RSASSA-PSS parameters: {e}"));
    let Some(parameters) = parameters.filter(|p| p.tag == tag::SEQUENCE) else {
        return Err(unsupported("missing (the SHA-1 defaults are not accepted)"));
    };
    let mut reader = Reader::new(parameters.contents);
    // [0] hashAlgorithm: an explicit tag around an AlgorithmIdentifier.
    let mut hash_field = reader
        .read_nested(0xa0, "hashAlgorithm")
        .map_err(|_| unsupported("no hashAlgorithm (the SHA-1 default is not accepted)"))?;
    let hash_algorithm = hash_field
        .read(tag::SEQUENCE, "hashAlgorithm")
        .map_err(bad)?;
    hash_field.finish("hashAlgorithm").map_err(bad)?;
    let (hash_oid, hash_parameters) = read_algorithm(hash_algorithm, "hashAlgorithm")?;
    if hash_parameters.is_some() && !is_null(hash_parameters) {
        return Err(unsupported(
            "hashAlgorithm parameters must be NULL or absent",
        ));
    }
    let hash = Hash::from_oid(hash_oid)
        .ok_or_else(|| unsupported(&format!("hash {hash_oid} (SHA-256/384/512 only)")))?;
    // [1] maskGenAlgorithm: MGF1 over the same hash.
    let mut mgf_field = reader
        .read_nested(0xa1, "maskGenAlgorithm")
        .map_err(|_| unsupported("no maskGenAlgorithm (the MGF1-SHA-1 default is not accepted)"))?;
    let mgf = mgf_field
        .read(tag::SEQUENCE, "maskGenAlgorithm")
        .map_err(bad)?;
    mgf_field.finish("maskGenAlgorithm").map_err(bad)?;
    let (mgf_oid, mgf_parameters) = read_algorithm(mgf, "maskGenAlgorithm")?;
    let mgf_hash = match mgf_parameters {
        Some(p) if p.tag == tag::SEQUENCE && mgf_oid.is(oid::MGF1) => {
            let (oid, parameters) = read_algorithm(p, "MGF1 hash")?;
            if parameters.is_some() && !is_null(parameters) {
                return Err(unsupported("MGF1 hash parameters must be NULL or absent"));
            }
            Hash::from_oid(oid)
        }
        _ => None,
    };
    if mgf_hash != Some(hash) {
        return Err(unsupported(
            "the mask generation must be MGF1 with the message hash",
        ));
    }
    // [2] saltLength: as long as the hash.
    let mut salt_field = reader
        .read_nested(0xa2, "saltLength")
        .map_err(|_| unsupported("no saltLength (the 20-byte default is not accepted)"))?;
    let salt = salt_field.read_integer("saltLength").map_err(bad)?;
    salt_field.finish("saltLength").map_err(bad)?;
    if der::small_unsigned(salt) != Some(hash.len()) {
        return Err(unsupported("saltLength must equal the hash length"));
    }
    // [3] trailerField: DEFAULT 1, so DER omits it; Go also accepts an explicit 1.
    if reader.peek_tag() == Some(0xa3) {
        let mut trailer_field = reader.read_nested(0xa3, "trailerField").map_err(bad)?;
        let trailer = trailer_field.read_integer("trailerField").map_err(bad)?;
        trailer_field.finish("trailerField").map_err(bad)?;
        if der::small_unsigned(trailer) != Some(1) {
            return Err(unsupported("trailerField must be 1"));
        }
    }
    reader.finish("RSASSA-PSS-params").map_err(bad)?;
    Ok(hash)
}

/// ECDSA verification of a DER `Ecdsa-Sig-Value` (RFC 5480 §2.2.3 via RFC 5758 §3.2) over a
/// digest of any SHA-2 length, as Go's `ecdsa.VerifyASN1` does: the digest is truncated to
/// the curve order's length or zero-extended, per SEC 1 §4.1.4 (`verify_prehash` does both).
/// A macro, not a generic function: the curve crates share no one trait bound that is
/// shorter than four copies of this.
macro_rules! ecdsa_verify {
    ($curve:ident, $point:expr, $digest:expr, $signature:expr) => {{
        match (
            $curve::ecdsa::VerifyingKey::from_sec1_bytes($point),
            $curve::ecdsa::Signature::from_der($signature),
        ) {
            (Ok(key), Ok(signature)) => key.verify_prehash($digest, &signature).is_ok(),
            _ => false,
        }
    }};
}

/// Verifies `signature` over `message` (the DER of the certificationRequestInfo).
///
/// # Errors
/// [`RequestError::UnsupportedSignature`] when the algorithm does not fit the key (an RSA
/// algorithm with an ECDSA key, ...); [`RequestError::Signature`] when it does not verify.
pub(crate) fn verify(
    algorithm: SignatureAlgorithm,
    key: &Key,
    message: &[u8],
    signature: &[u8],
) -> Result<(), RequestError> {
    let failed = |what: &str| {
        RequestError::Signature(format!(
            "{what} signature is not valid for the request's own key"
        ))
    };
    match (algorithm, key) {
        (SignatureAlgorithm::RsaPkcs1(hash), Key::Rsa(public)) => {
            let scheme = match hash {
                Hash::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                Hash::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
                Hash::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
            };
            public
                .verify(scheme, &hash.digest(message), signature)
                .map_err(|_| failed("RSA PKCS#1 v1.5"))
        }
        (SignatureAlgorithm::RsaPss(hash), Key::Rsa(public)) => {
            let digest = hash.digest(message);
            let result = match hash {
                Hash::Sha256 => public.verify(rsa::Pss::<sha2::Sha256>::new(), &digest, signature),
                Hash::Sha384 => public.verify(rsa::Pss::<sha2::Sha384>::new(), &digest, signature),
                Hash::Sha512 => public.verify(rsa::Pss::<sha2::Sha512>::new(), &digest, signature),
            };
            result.map_err(|_| failed("RSA PSS"))
        }
        (SignatureAlgorithm::Ecdsa(hash), Key::Ec(curve, point)) => {
            if super::fast::ecdsa_verifies(*curve, hash, point, message, signature) {
                return Ok(());
            }
            let digest = hash.digest(message);
            let ok = match curve {
                Curve::P224 => ecdsa_verify!(p224, point, &digest, signature),
                Curve::P256 => ecdsa_verify!(p256, point, &digest, signature),
                Curve::P384 => ecdsa_verify!(p384, point, &digest, signature),
                Curve::P521 => ecdsa_verify!(p521, point, &digest, signature),
            };
            if ok { Ok(()) } else { Err(failed("ECDSA")) }
        }
        (SignatureAlgorithm::Ed25519, Key::Ed25519(public)) => {
            let signature =
                ed25519_dalek::Signature::from_slice(signature).map_err(|_| failed("Ed25519"))?;
            public
                .verify_strict(message, &signature)
                .map_err(|_| failed("Ed25519"))
        }
        (algorithm, _) => Err(unsupported_signature(format!(
            "signature algorithm {algorithm:?} does not fit the request's {} key",
            match key {
                Key::Rsa(_) => "RSA",
                Key::Ec(..) => "ECDSA",
                Key::Ed25519(_) => "Ed25519",
            }
        ))),
    }
}
