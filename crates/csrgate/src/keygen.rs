//! Key pairs and PKCS#10 certificate requests for `csrgate request`, made with rcgen.
//!
//! Keys are written as PKCS#8 version 1 (RFC 5208; for Ed25519, RFC 8410 section 7), the form
//! every tool reads: ring, rcgen's backend, writes Ed25519 keys as version 2 (RFC 5958, with
//! the public key), which `openssl pkey` 3.0 refuses.

use pkcs8::der::Encode as _;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

use crate::cli::{KeyType, RequestArgs};

/// Why a key or a request could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    /// The key could not be generated.
    #[error("generating a {0:?} key")]
    Generate(
        KeyType,
        #[source] Box<dyn std::error::Error + Send + Sync + 'static>,
    ),
    /// The PKCS#10 request could not be built (e.g. a SAN that is not ASCII).
    #[error("building the certificate request")]
    Request(#[source] rcgen::Error),
}

/// A fresh key pair of the requested kind, PKCS#8 version 1. RSA keys come from the `rsa`
/// crate (ring cannot generate them) and are handed to rcgen as PKCS#8, so ring signs the
/// request.
///
/// # Errors
/// [`KeygenError::Generate`] when the system's randomness or the encoding fails.
pub fn generate_key(key_type: KeyType) -> Result<KeyPair, KeygenError> {
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| KeygenError::Generate(key_type, e);
    let algorithm = match key_type {
        KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyType::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyType::Ed25519 => &rcgen::PKCS_ED25519,
        KeyType::Rsa2048 => return rsa_key(2048).map_err(failed),
        KeyType::Rsa4096 => return rsa_key(4096).map_err(failed),
    };
    let key = KeyPair::generate_for(algorithm).map_err(|e| failed(Box::new(e)))?;
    pkcs8_v1(key).map_err(failed)
}

/// An RSA key of `bits`, through PKCS#8.
fn rsa_key(bits: usize) -> Result<KeyPair, Box<dyn std::error::Error + Send + Sync>> {
    use rsa::pkcs8::EncodePrivateKey as _;
    let private = rsa::PrivateKey::new(&mut getrandom::SysRng, bits)?;
    let der = private.to_pkcs8_der()?;
    Ok(KeyPair::try_from(der.as_bytes())?)
}

/// The same key as PKCS#8 version 1: the optional public key (the only version-2 field
/// ring writes) dropped; a key already in version 1 comes back unchanged.
fn pkcs8_v1(key: KeyPair) -> Result<KeyPair, Box<dyn std::error::Error + Send + Sync>> {
    let mut info = pkcs8::PrivateKeyInfoRef::try_from(key.serialized_der())?;
    if info.public_key.is_none() {
        return Ok(key);
    }
    info.public_key = None;
    let reencoded = KeyPair::try_from(info.to_der()?.as_slice())?;
    // ring derives the public key again from the private key: it must be the same key.
    if reencoded.public_key_raw() != key.public_key_raw() {
        return Err("the re-encoded key has another public key".into());
    }
    Ok(reencoded)
}

/// The PKCS#10 request, PEM: subject CN (and O), the SANs given, signed with `key`.
///
/// # Errors
/// [`KeygenError::Request`] when a name is not valid in a certificate request.
pub fn build_request(args: &RequestArgs, key: &KeyPair) -> Result<String, KeygenError> {
    let mut params = CertificateParams::default();
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, args.cn.as_str());
    if let Some(org) = &args.org {
        subject.push(DnType::OrganizationName, org.as_str());
    }
    params.distinguished_name = subject;
    let mut sans = Vec::new();
    for name in &args.dns_names {
        sans.push(SanType::DnsName(
            name.as_str().try_into().map_err(KeygenError::Request)?,
        ));
    }
    sans.extend(args.ip_addresses.iter().copied().map(SanType::IpAddress));
    for uri in &args.uris {
        sans.push(SanType::URI(
            uri.as_str().try_into().map_err(KeygenError::Request)?,
        ));
    }
    params.subject_alt_names = sans;
    params
        .serialize_request(key)
        .and_then(|csr| csr.pem())
        .map_err(KeygenError::Request)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::cmd::request::tests::args;
    use rcgen::PublicKeyData as _;

    /// The PKCS#8 version 1 header of an Ed25519 key (RFC 8410 section 7), up to the seed.
    const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];

    #[test]
    fn the_request_carries_the_subject_the_names_and_the_key() {
        for key_type in [KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::Ed25519] {
            let key = generate_key(key_type).unwrap();
            let pem = build_request(&args(key_type), &key).unwrap();
            let parsed = rcgen::CertificateSigningRequestParams::from_pem(&pem).unwrap();
            assert_eq!(
                parsed.public_key.der_bytes(),
                key.der_bytes(),
                "{key_type:?}"
            );
            let subject = &parsed.params.distinguished_name;
            assert!(
                matches!(subject.get(&DnType::CommonName), Some(rcgen::DnValue::Utf8String(cn)) if cn == "jane"),
                "{subject:?}"
            );
            assert_eq!(parsed.params.subject_alt_names.len(), 3);
        }
    }

    #[test]
    fn ed25519_keys_are_written_as_pkcs8_version_1() {
        let key = generate_key(KeyType::Ed25519).unwrap();
        assert!(key.serialized_der().starts_with(&ED25519_PKCS8_V1_PREFIX));
        assert_eq!(key.algorithm(), &rcgen::PKCS_ED25519);
    }

    #[test]
    fn an_rsa_key_is_generated_and_signs_the_request() {
        let key = generate_key(KeyType::Rsa2048).unwrap();
        assert_eq!(key.algorithm(), &rcgen::PKCS_RSA_SHA256);
        let pem = build_request(&args(KeyType::Rsa2048), &key).unwrap();
        let parsed = rcgen::CertificateSigningRequestParams::from_pem(&pem).unwrap();
        assert_eq!(parsed.public_key.der_bytes(), key.der_bytes());
    }
}
