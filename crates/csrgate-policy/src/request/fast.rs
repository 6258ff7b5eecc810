//! *ring* as the first verifier of the ECDSA self-signatures most requests carry (P-256 and
//! P-384 with SHA-256 or SHA-384: kubelets, openssl's and Go's defaults).
//!
//! Why: RustCrypto's `p256`, which verifies every algorithm Go accepts, takes about 2.4 million
//! instructions per P-256 verification here; *ring* about 0.75 million (valgrind callgrind,
//! the same key, message and signature), about 480 µs against 100 µs of wall time. *ring*
//! is already in the build (kube's TLS). aws-lc-rs verifies P-256 in about the same
//! instructions and time as *ring* (its C builds with the cc crate, no cmake, for glibc and
//! musl alike); the note of issue #15 has the figures.
//!
//! *ring* stays first for P-384 too, though under callgrind its P-384 counts more
//! instructions than RustCrypto's `p384` (11.2 against 8.9 million per verification):
//! valgrind hides the ADX/BMI2 instructions *ring* uses on the real CPU, where a P-384
//! request parses in about 770 µs with *ring* first and 890 µs with `p384` alone.
//!
//! *ring* only ever answers "valid": when it does not verify a signature (or does not
//! implement the curve and hash), RustCrypto decides as before, so what is accepted is what
//! RustCrypto accepted, and both parse the `Ecdsa-Sig-Value` as strict DER as Go's
//! `ecdsa.VerifyASN1` does.

use super::verify::{Curve, Hash};

/// Whether *ring* verifies `signature` (DER `Ecdsa-Sig-Value`) over `message` with the
/// uncompressed SEC 1 `point`; false when it does not, or has no algorithm for the pair.
pub(super) fn ecdsa_verifies(
    curve: Curve,
    hash: Hash,
    point: &[u8],
    message: &[u8],
    signature: &[u8],
) -> bool {
    use ring::signature as alg;
    let algorithm: &dyn alg::VerificationAlgorithm = match (curve, hash) {
        (Curve::P256, Hash::Sha256) => &alg::ECDSA_P256_SHA256_ASN1,
        (Curve::P256, Hash::Sha384) => &alg::ECDSA_P256_SHA384_ASN1,
        (Curve::P384, Hash::Sha256) => &alg::ECDSA_P384_SHA256_ASN1,
        (Curve::P384, Hash::Sha384) => &alg::ECDSA_P384_SHA384_ASN1,
        _ => return false,
    };
    alg::UnparsedPublicKey::new(algorithm, point)
        .verify(message, signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use ring::signature::{self as alg, KeyPair as _};

    use super::*;

    /// A P-256 key's uncompressed point and its DER signature over `message`.
    fn signed(message: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let rng = ring::rand::SystemRandom::new();
        let signing = &alg::ECDSA_P256_SHA256_ASN1_SIGNING;
        let pkcs8 = alg::EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
        let pair = alg::EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), &rng).unwrap();
        let signature = pair.sign(&rng, message).unwrap();
        (
            pair.public_key().as_ref().to_vec(),
            signature.as_ref().to_vec(),
        )
    }

    #[test]
    fn verifies_a_p256_sha256_signature_and_nothing_else() {
        let message = b"certificationRequestInfo";
        let (point, signature) = signed(message);
        assert!(ecdsa_verifies(
            Curve::P256,
            Hash::Sha256,
            &point,
            message,
            &signature
        ));
        // Another message, another hash, another curve: not verified here (RustCrypto then
        // decides, and refuses too).
        assert!(!ecdsa_verifies(
            Curve::P256,
            Hash::Sha256,
            &point,
            b"other",
            &signature
        ));
        assert!(!ecdsa_verifies(
            Curve::P256,
            Hash::Sha384,
            &point,
            message,
            &signature
        ));
        assert!(!ecdsa_verifies(
            Curve::P384,
            Hash::Sha256,
            &point,
            message,
            &signature
        ));
        // No *ring* algorithm for SHA-512 over P-256: left to RustCrypto.
        assert!(!ecdsa_verifies(
            Curve::P256,
            Hash::Sha512,
            &point,
            message,
            &signature
        ));
    }

    #[test]
    fn refuses_a_signature_that_is_not_strict_der() {
        let message = b"certificationRequestInfo";
        let (point, signature) = signed(message);
        // SEQUENCE { INTEGER r, INTEGER s }: give r one more leading zero byte, which DER (and
        // Go's cryptobyte) forbids whatever r's first byte, and fix up the lengths.
        let r_len = usize::from(signature[3]);
        let mut padded = vec![0x30, signature[1] + 1, 0x02, signature[3] + 1, 0x00];
        padded.extend_from_slice(&signature[4..4 + r_len]);
        padded.extend_from_slice(&signature[4 + r_len..]);
        assert!(!ecdsa_verifies(
            Curve::P256,
            Hash::Sha256,
            &point,
            message,
            &padded
        ));
        let mut trailing = signature.clone();
        trailing.push(0);
        assert!(!ecdsa_verifies(
            Curve::P256,
            Hash::Sha256,
            &point,
            message,
            &trailing
        ));
    }
}
