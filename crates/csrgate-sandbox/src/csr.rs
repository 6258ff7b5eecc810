//! CertificateSigningRequest rules: validation (validation.go), the create/update/approval/status strategies
//! (strategy.go) and the CertificateSubjectRestriction admission plugin.

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::identity::UserInfo;
use crate::status::Cause;

/// The signer the real API server refuses for new v1 CSRs.
pub const LEGACY_UNKNOWN_SIGNER: &str = "kubernetes.io/legacy-unknown";
/// The client-certificate signer the subject restriction guards.
pub const KUBE_APISERVER_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";

/// Every key usage `certificates.k8s.io/v1` accepts, sorted as the real error message lists them.
pub const VALID_USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

const TRUE_ONLY: &[&str] = &["Approved", "Denied", "Failed"];

/// Which update path a write came through; each may change different parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdatePath {
    /// PUT/PATCH on the object: metadata only.
    Main,
    /// `/status`: conditions other than Approved/Denied, and the certificate.
    Status,
    /// `/approval`: conditions only.
    Approval,
}

/// Parse and check the PEM CSR as `validateCSR` does; the error text is what the API server reports.
///
/// The request is read as kube-apiserver reads it at create (Go's `pem.Decode`,
/// `x509.ParseCertificateRequest` and `CheckSignature`, crypto/x509/x509.go and parser.go): the
/// sandbox stores what the real server stores (1024-bit RSA, P-224 and P-521 keys, SHA-1
/// signatures, a challengePassword in any string type) and refuses what it refuses (raw UTF-8 in
/// a SAN, MD5, RSA keys under 1024 bits), so tests against it see the real server's behaviour.
pub fn check_request(pem_bytes: &[u8]) -> Result<(), String> {
    let csr = go_csr::parse_pem(pem_bytes)?;
    csr.check_signature()
}

/// The organizations (O) of the request's subject, or empty when it does not parse.
pub fn request_organizations(pem_bytes: &[u8]) -> Vec<String> {
    go_csr::parse_pem(pem_bytes)
        .map(|csr| csr.organizations)
        .unwrap_or_default()
}

/// A certificate request read the way Go's crypto/x509 reads one, no stricter and no laxer.
mod go_csr {
    use rsa::signature::Verifier as _;
    use rsa::signature::hazmat::PrehashVerifier as _;
    use sha2::Digest as _;

    /// One DER element as Go's encoding/asn1 reads it: minimal lengths, no indefinite form.
    #[derive(Clone, Copy)]
    struct Tlv<'a> {
        tag: u8,
        contents: &'a [u8],
        full: &'a [u8],
    }

    fn syntax(message: &str) -> String {
        format!("asn1: syntax error: {message}")
    }

    fn read<'a>(input: &mut &'a [u8]) -> Result<Tlv<'a>, String> {
        let all: &'a [u8] = input;
        let (&tag, rest) = all
            .split_first()
            .ok_or_else(|| syntax("sequence truncated"))?;
        if tag & 0x1f == 0x1f {
            return Err(syntax("high-tag-number form not supported here"));
        }
        let (&first, mut rest) = rest
            .split_first()
            .ok_or_else(|| syntax("truncated tag or length"))?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 {
                return Err(syntax("indefinite length found (not DER)"));
            }
            if n > 4 || rest.len() < n {
                return Err(syntax("truncated tag or length"));
            }
            if rest[0] == 0 {
                return Err(syntax("superfluous leading zeros in length"));
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |a, &b| (a << 8) | usize::from(b));
            if len < 0x80 {
                return Err(syntax("non-minimal length"));
            }
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return Err(syntax("data truncated"));
        }
        let header = all.len() - rest.len();
        let tlv = Tlv {
            tag,
            contents: &rest[..len],
            full: &all[..header + len],
        };
        *input = &rest[len..];
        Ok(tlv)
    }

    fn expect<'a>(input: &mut &'a [u8], tag: u8) -> Result<Tlv<'a>, String> {
        let tlv = read(input)?;
        if tlv.tag == tag {
            Ok(tlv)
        } else {
            Err(format!(
                "asn1: structure error: tags don't match (expected {tag:#04x}, found {:#04x})",
                tlv.tag
            ))
        }
    }

    /// Go's `parseBase128Int` refuses a leading 0x80 octet and an unterminated arc.
    fn check_oid(contents: &[u8]) -> Result<(), String> {
        let mut start = true;
        for &b in contents {
            if start && b == 0x80 {
                return Err(syntax("integer is not minimally encoded"));
            }
            start = b & 0x80 == 0;
        }
        if contents.is_empty() || !start {
            return Err(syntax("truncated base 128 integer"));
        }
        Ok(())
    }

    fn read_oid<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], String> {
        let oid = expect(input, 0x06)?.contents;
        check_oid(oid)?;
        Ok(oid)
    }

    /// Go's `checkInteger`: non-empty and minimally encoded.
    fn check_integer(contents: &[u8]) -> Result<(), String> {
        match contents {
            [] => Err(syntax("empty integer")),
            [0x00, b, ..] if b & 0x80 == 0 => {
                Err("asn1: structure error: integer not minimally-encoded".into())
            }
            [0xff, b, ..] if b & 0x80 != 0 => {
                Err("asn1: structure error: integer not minimally-encoded".into())
            }
            _ => Ok(()),
        }
    }

    /// A BIT STRING's octets, right-aligned as Go's `BitString.RightAlign` does.
    fn bit_octets(contents: &[u8]) -> Result<Vec<u8>, String> {
        let (&unused, bits) = contents
            .split_first()
            .ok_or_else(|| syntax("zero length BIT STRING"))?;
        if unused > 7
            || (bits.is_empty() && unused != 0)
            || bits.last().is_some_and(|b| b & ((1u8 << unused) - 1) != 0)
        {
            return Err(syntax("invalid padding bits in BIT STRING"));
        }
        if unused == 0 {
            return Ok(bits.to_vec());
        }
        let mut out = Vec::with_capacity(bits.len());
        let mut previous = 0u8;
        for &b in bits {
            out.push(previous.checked_shl(8 - u32::from(unused)).unwrap_or(0) | (b >> unused));
            previous = b;
        }
        Ok(out)
    }

    /// Go's encoding/asn1 checks of the string types it reads into a Name; `None` for others.
    /// The character sets are asn1-rs's; Go's PrintableString also takes `*` and `&`
    /// (encoding/asn1 `isPrintable` with `allowAsterisk` and `allowAmpersand`, for compatibility).
    pub(super) fn check_string(tag: u8, bytes: &[u8]) -> Result<Option<String>, String> {
        use x509_parser::asn1_rs::{Ia5String, NumericString, PrintableString, TestValidCharset};
        let printable = |bytes: &[u8]| {
            let standard: Vec<u8> = bytes
                .iter()
                .map(|&b| if matches!(b, b'*' | b'&') { b' ' } else { b })
                .collect();
            PrintableString::test_valid_charset(&standard).is_ok()
        };
        let latin1 = |bytes: &[u8]| bytes.iter().map(|&b| char::from(b)).collect::<String>();
        Ok(Some(match tag {
            0x13 if printable(bytes) => latin1(bytes),
            0x13 => return Err(syntax("PrintableString contains invalid character")),
            0x16 if Ia5String::test_valid_charset(bytes).is_ok() => latin1(bytes),
            0x16 => return Err(syntax("IA5String contains invalid character")),
            0x12 if NumericString::test_valid_charset(bytes).is_ok() => latin1(bytes),
            0x12 => return Err(syntax("NumericString contains invalid character")),
            0x0c => std::str::from_utf8(bytes)
                .map_err(|_| syntax("invalid UTF-8 string"))?
                .to_owned(),
            0x14 => latin1(bytes),
            0x1e => {
                if !bytes.len().is_multiple_of(2) {
                    return Err(syntax("invalid BMPString"));
                }
                let bytes = bytes.strip_suffix(&[0, 0]).unwrap_or(bytes);
                let units = bytes
                    .chunks_exact(2)
                    .map(|p| u16::from_be_bytes([p[0], p[1]]));
                char::decode_utf16(units)
                    .map(|c| c.unwrap_or('\u{fffd}'))
                    .collect()
            }
            _ => return Ok(None),
        }))
    }

    /// What kube-apiserver keeps of a parsed request for its checks.
    pub(super) struct Csr {
        pub(super) organizations: Vec<String>,
        info: Vec<u8>,
        algorithm: Vec<u8>,
        algorithm_params: Option<Vec<u8>>,
        signature: Vec<u8>,
        key: Key,
    }

    enum Key {
        Rsa(rsa::PublicKey),
        Ecdsa(&'static str, Vec<u8>),
        Ed25519(ed25519_dalek::VerifyingKey),
        /// An algorithm Go parses no key for (`PublicKey` nil): CheckSignature then fails.
        Unknown,
    }

    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 1];
    const EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 2, 1];
    const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
    const EXT_REQ: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 9, 14];
    const SAN: &[u8] = &[0x55, 0x1d, 0x11];
    const ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];
    const UNSUPPORTED: &str = "x509: cannot verify signature: algorithm unimplemented";

    /// `pem.Decode` then `ParseCertificateRequest`, as `validateCSR` calls them.
    pub(super) fn parse_pem(pem_bytes: &[u8]) -> Result<Csr, String> {
        let wrong_type = || "PEM block type must be CERTIFICATE REQUEST".to_string();
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem_bytes).map_err(|_| wrong_type())?;
        if pem.label != "CERTIFICATE REQUEST" {
            return Err(wrong_type());
        }
        parse(&pem.contents)
    }

    fn parse(der: &[u8]) -> Result<Csr, String> {
        let mut input = der;
        let outer = expect(&mut input, 0x30)?;
        if !input.is_empty() {
            return Err(syntax("trailing data"));
        }
        let mut body = outer.contents;
        let info = expect(&mut body, 0x30)?;
        let mut algorithm = expect(&mut body, 0x30)?.contents;
        let signature = bit_octets(expect(&mut body, 0x03)?.contents)?;
        let algorithm_oid = read_oid(&mut algorithm)?.to_vec();
        let algorithm_params = if algorithm.is_empty() {
            None
        } else {
            Some(read(&mut algorithm)?.full.to_vec())
        };

        let mut fields = info.contents;
        check_integer(expect(&mut fields, 0x02)?.contents)?;
        let subject = expect(&mut fields, 0x30)?;
        let spki = expect(&mut fields, 0x30)?;
        let attributes = expect(&mut fields, 0xa0)?;
        let key = parse_key(spki.contents)?;
        let organizations = parse_subject(subject.contents)?;
        parse_attributes(attributes.contents)?;
        Ok(Csr {
            organizations,
            info: info.full.to_vec(),
            algorithm: algorithm_oid,
            algorithm_params,
            signature,
            key,
        })
    }

    /// `parsePublicKey`: RSA with NULL parameters, ECDSA on a named NIST curve with an
    /// uncompressed point, Ed25519 without parameters; other algorithms give no key.
    fn parse_key(spki: &[u8]) -> Result<Key, String> {
        let mut spki = spki;
        let mut algorithm = expect(&mut spki, 0x30)?.contents;
        let bits = bit_octets(expect(&mut spki, 0x03)?.contents)?;
        let oid = read_oid(&mut algorithm)?;
        let params = if algorithm.is_empty() {
            None
        } else {
            Some(read(&mut algorithm)?)
        };
        match oid {
            RSA => {
                if params.is_none_or(|p| p.full != [0x05, 0x00]) {
                    return Err("x509: RSA key missing NULL parameters".into());
                }
                let mut der = bits.as_slice();
                let mut key = expect(&mut der, 0x30)?.contents;
                let n = expect(&mut key, 0x02)?.contents;
                let e = expect(&mut key, 0x02)?.contents;
                check_integer(n)?;
                check_integer(e)?;
                if n[0] & 0x80 != 0 || n.iter().all(|&b| b == 0) {
                    return Err("x509: RSA modulus is not a positive number".into());
                }
                if e[0] & 0x80 != 0 || e.iter().all(|&b| b == 0) || e.len() > 4 {
                    return Err("x509: RSA public exponent is not a positive number".into());
                }
                let n = n.strip_prefix(&[0]).unwrap_or(n);
                let precision = u32::try_from(n.len() * 8).unwrap_or(u32::MAX);
                let modulus = rsa::BoxedUint::from_be_slice(n, precision)
                    .map_err(|_| "x509: invalid RSA public key".to_string())?;
                let exponent = e.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b));
                // The 1024-bit minimum is checked when verifying, where crypto/rsa checks it.
                let key = rsa::PublicKey::new_with_size_limits(
                    modulus,
                    rsa::BoxedUint::from(exponent),
                    1..=16384,
                )
                .map_err(|e| format!("crypto/rsa: {e}"))?;
                Ok(Key::Rsa(key))
            }
            EC => {
                let curve = match params.filter(|p| p.tag == 0x06).map(|p| p.contents) {
                    Some([0x2b, 0x81, 0x04, 0x00, 0x21]) => "P-224",
                    Some([0x2a, 0x86, 0x48, 0xce, 0x3d, 3, 1, 7]) => "P-256",
                    Some([0x2b, 0x81, 0x04, 0x00, 0x22]) => "P-384",
                    Some([0x2b, 0x81, 0x04, 0x00, 0x23]) => "P-521",
                    Some(_) => return Err("x509: unsupported elliptic curve".into()),
                    None => return Err("x509: invalid ECDSA parameters".into()),
                };
                let on_curve = bits.first() == Some(&4)
                    && match curve {
                        "P-224" => p224::ecdsa::VerifyingKey::from_sec1_bytes(&bits).is_ok(),
                        "P-256" => p256::ecdsa::VerifyingKey::from_sec1_bytes(&bits).is_ok(),
                        "P-384" => p384::ecdsa::VerifyingKey::from_sec1_bytes(&bits).is_ok(),
                        _ => p521::ecdsa::VerifyingKey::from_sec1_bytes(&bits).is_ok(),
                    };
                if !on_curve {
                    return Err("x509: failed to unmarshal elliptic curve point".into());
                }
                Ok(Key::Ecdsa(curve, bits))
            }
            ED25519 => {
                if params.is_some() {
                    return Err("x509: Ed25519 key encoded with illegal parameters".into());
                }
                let bytes: [u8; 32] = bits
                    .as_slice()
                    .try_into()
                    .map_err(|_| "x509: wrong Ed25519 public key size".to_string())?;
                ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                    .map(Key::Ed25519)
                    .map_err(|_| "x509: wrong Ed25519 public key size".to_string())
            }
            _ => Ok(Key::Unknown),
        }
    }

    /// The subject as `asn1.Unmarshal` into a `pkix.RDNSequence` checks it, keeping O values.
    fn parse_subject(mut rdns: &[u8]) -> Result<Vec<String>, String> {
        let mut organizations = Vec::new();
        while !rdns.is_empty() {
            let mut set = expect(&mut rdns, 0x31)?.contents;
            while !set.is_empty() {
                let mut atv = expect(&mut set, 0x30)?.contents;
                let oid = read_oid(&mut atv)?;
                let value = read(&mut atv)?;
                if let Some(text) = check_string(value.tag, value.contents)?
                    && oid == ORGANIZATION
                {
                    organizations.push(text);
                }
            }
        }
        Ok(organizations)
    }

    /// `parseCSRExtensions` and `parseSANExtension`: attributes that do not parse are skipped;
    /// the first value of each extensionRequest must be a list of extensions, whose SANs must
    /// parse (DNS, email and URI names ASCII, IP addresses 4 or 16 bytes).
    fn parse_attributes(mut attributes: &[u8]) -> Result<(), String> {
        while !attributes.is_empty() {
            let attribute = read(&mut attributes)?;
            let mut fields = attribute.contents;
            let (Ok(oid), Ok(values)) = (read_oid(&mut fields), expect(&mut fields, 0x31)) else {
                continue;
            };
            let mut values = values.contents;
            if oid != EXT_REQ || values.is_empty() {
                continue;
            }
            let mut extensions = expect(&mut values, 0x30)?.contents;
            while !extensions.is_empty() {
                let mut extension = expect(&mut extensions, 0x30)?.contents;
                let id = read_oid(&mut extension)?;
                if extension.first() == Some(&0x01) {
                    read(&mut extension)?;
                }
                let value = expect(&mut extension, 0x04)?.contents;
                if id == SAN {
                    parse_san(value)?;
                }
            }
        }
        Ok(())
    }

    fn parse_san(mut value: &[u8]) -> Result<(), String> {
        let mut names = expect(&mut value, 0x30)
            .map_err(|_| "x509: invalid subject alternative names".to_string())?
            .contents;
        while !names.is_empty() {
            let name = read(&mut names)
                .map_err(|_| "x509: invalid subject alternative name".to_string())?;
            let what = match name.tag ^ 0x80 {
                1 => "rfc822Name",
                2 => "dNSName",
                6 => "uniformResourceIdentifier",
                7 => {
                    if !matches!(name.contents.len(), 4 | 16) {
                        return Err(format!(
                            "x509: cannot parse IP address of length {}",
                            name.contents.len()
                        ));
                    }
                    continue;
                }
                _ => continue,
            };
            if !name.contents.is_ascii() {
                return Err(format!("x509: SAN {what} is malformed"));
            }
            if what == "uniformResourceIdentifier" {
                check_uri(&String::from_utf8_lossy(name.contents))?;
            }
        }
        Ok(())
    }

    #[cfg(test)]
    pub(super) fn check_uri_for_test(uri: &str) -> Result<(), String> {
        check_uri(uri)
    }

    /// What `parseSANExtension` refuses in an ASCII URI: what `url.Parse` refuses (control
    /// characters, bad `%` escapes, a missing scheme before `:`, a bad port or IP literal) and
    /// a host that is not a valid domain (`domainNameValid`: no empty label or trailing dot,
    /// bytes 33 to 126).
    fn check_uri(uri: &str) -> Result<(), String> {
        let fail = |why: &str| Err(format!("x509: cannot parse URI {uri:?}: {why}"));
        if uri.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return fail(&format!(
                "parse {uri:?}: net/url: invalid control character in URL"
            ));
        }
        let bytes = uri.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'%'
                && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return fail(&format!("parse {uri:?}: invalid URL escape"));
            }
        }
        if uri.starts_with(':') {
            return fail(&format!("parse {uri:?}: missing protocol scheme"));
        }
        let is_scheme = |s: &str| {
            s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        };
        let rest = match uri.split_once(':') {
            Some((scheme, rest)) if is_scheme(scheme) => rest,
            _ => uri,
        };
        let Some(after) = rest.strip_prefix("//") else {
            return Ok(());
        };
        let authority = after.split(['/', '?', '#']).next().unwrap_or_default();
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = if let Some(literal) = host_port.strip_prefix('[') {
            match literal.split_once(']') {
                Some((_, rest)) => ("", rest.strip_prefix(':').unwrap_or(rest)),
                None => return fail(&format!("parse {uri:?}: missing ']' in host")),
            }
        } else {
            host_port.split_once(':').unwrap_or((host_port, ""))
        };
        if !port.bytes().all(|b| b.is_ascii_digit()) {
            return fail(&format!("parse {uri:?}: invalid port {port:?} after host"));
        }
        let invalid_domain = !host.is_empty()
            && (host.ends_with('.')
                || host.split('.').any(str::is_empty)
                || host.bytes().any(|b| !(33..=126).contains(&b)));
        if invalid_domain {
            return fail("invalid domain");
        }
        Ok(())
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Hash {
        Sha1,
        Sha256,
        Sha384,
        Sha512,
    }

    impl Hash {
        fn digest(self, data: &[u8]) -> Vec<u8> {
            match self {
                Hash::Sha1 => sha1::Sha1::digest(data).to_vec(),
                Hash::Sha256 => sha2::Sha256::digest(data).to_vec(),
                Hash::Sha384 => sha2::Sha384::digest(data).to_vec(),
                Hash::Sha512 => sha2::Sha512::digest(data).to_vec(),
            }
        }
    }

    /// The signature schemes of Go's `signatureAlgorithmDetails` that verify.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Scheme {
        Pkcs1(Hash),
        Pss(Hash),
        Ecdsa(Hash),
        Ed25519,
    }

    impl Csr {
        /// The signature scheme of `signatureAlgorithm`, as Go's `getSignatureAlgorithmFromAI`
        /// reads it; MD5 and MD2 are refused as insecure, unknown algorithms as unsupported.
        fn scheme(&self) -> Result<Scheme, String> {
            let rsa_oid = |n: u8| vec![0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, n];
            let ec_oid = |n: u8| vec![0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, n];
            let oid = self.algorithm.as_slice();
            // x509.go's signatureAlgorithmDetails, for the algorithms CheckSignature verifies.
            let known = [
                (rsa_oid(5), Scheme::Pkcs1(Hash::Sha1)),
                (
                    vec![0x2b, 0x0e, 0x03, 0x02, 0x1d],
                    Scheme::Pkcs1(Hash::Sha1),
                ),
                (rsa_oid(11), Scheme::Pkcs1(Hash::Sha256)),
                (rsa_oid(12), Scheme::Pkcs1(Hash::Sha384)),
                (rsa_oid(13), Scheme::Pkcs1(Hash::Sha512)),
                (
                    vec![0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 1],
                    Scheme::Ecdsa(Hash::Sha1),
                ),
                (ec_oid(2), Scheme::Ecdsa(Hash::Sha256)),
                (ec_oid(3), Scheme::Ecdsa(Hash::Sha384)),
                (ec_oid(4), Scheme::Ecdsa(Hash::Sha512)),
            ];
            if let Some((_, scheme)) = known.into_iter().find(|(o, _)| o.as_slice() == oid) {
                return Ok(scheme);
            }
            if oid == ED25519 && self.algorithm_params.is_none() {
                Ok(Scheme::Ed25519)
            } else if oid == rsa_oid(10) {
                Ok(Scheme::Pss(
                    self.pss_hash().ok_or_else(|| UNSUPPORTED.to_string())?,
                ))
            } else if oid == rsa_oid(4) {
                Err("x509: cannot verify signature: insecure algorithm MD5-RSA".into())
            } else if oid == rsa_oid(2) {
                Err("x509: cannot verify signature: insecure algorithm MD2-RSA".into())
            } else {
                Err(UNSUPPORTED.into())
            }
        }

        /// `CheckSignature`, which for requests allows SHA-1 (x509.go passes `allowSHA1`).
        pub(super) fn check_signature(&self) -> Result<(), String> {
            let scheme = self.scheme()?;
            match (scheme, &self.key) {
                (Scheme::Pkcs1(hash) | Scheme::Pss(hash), Key::Rsa(key)) => {
                    let bits = rsa::traits::PublicKeyParts::n_bits_precision(key);
                    if bits < 1024 {
                        return Err(format!(
                            "crypto/rsa: {bits}-bit keys are insecure (see https://go.dev/pkg/crypto/rsa#hdr-Minimum_key_size)"
                        ));
                    }
                    let digest = hash.digest(&self.info);
                    let sig = &self.signature;
                    let result = match scheme {
                        Scheme::Pkcs1(Hash::Sha1) => {
                            key.verify(rsa::Pkcs1v15Sign::new::<sha1::Sha1>(), &digest, sig)
                        }
                        Scheme::Pkcs1(Hash::Sha256) => {
                            key.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest, sig)
                        }
                        Scheme::Pkcs1(Hash::Sha384) => {
                            key.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha384>(), &digest, sig)
                        }
                        Scheme::Pkcs1(_) => {
                            key.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha512>(), &digest, sig)
                        }
                        Scheme::Pss(Hash::Sha256) => {
                            key.verify(rsa::Pss::<sha2::Sha256>::new(), &digest, sig)
                        }
                        Scheme::Pss(Hash::Sha384) => {
                            key.verify(rsa::Pss::<sha2::Sha384>::new(), &digest, sig)
                        }
                        _ => key.verify(rsa::Pss::<sha2::Sha512>::new(), &digest, sig),
                    };
                    result.map_err(|_| "crypto/rsa: verification error".to_string())
                }
                (Scheme::Ecdsa(hash), Key::Ecdsa(curve, point)) => {
                    let digest = hash.digest(&self.info);
                    macro_rules! verify {
                        ($c:ident) => {
                            match (
                                $c::ecdsa::VerifyingKey::from_sec1_bytes(point),
                                $c::ecdsa::Signature::from_der(&self.signature),
                            ) {
                                (Ok(k), Ok(s)) => k.verify_prehash(&digest, &s).is_ok(),
                                _ => false,
                            }
                        };
                    }
                    let ok = match *curve {
                        "P-224" => verify!(p224),
                        "P-256" => verify!(p256),
                        "P-384" => verify!(p384),
                        _ => verify!(p521),
                    };
                    if ok {
                        Ok(())
                    } else {
                        Err("x509: ECDSA verification failure".into())
                    }
                }
                (Scheme::Ed25519, Key::Ed25519(key)) => {
                    let signature = ed25519_dalek::Signature::from_slice(&self.signature)
                        .map_err(|_| "x509: Ed25519 verification failure".to_string())?;
                    key.verify(&self.info, &signature)
                        .map_err(|_| "x509: Ed25519 verification failure".to_string())
                }
                (_, Key::Unknown) => Err(UNSUPPORTED.into()),
                (scheme, _) => Err(format!(
                    "x509: signature algorithm specifies an {} public key, but have public key of another type",
                    match scheme {
                        Scheme::Pkcs1(_) | Scheme::Pss(_) => "RSA",
                        Scheme::Ecdsa(_) => "ECDSA",
                        Scheme::Ed25519 => "Ed25519",
                    }
                )),
            }
        }

        /// `getSignatureAlgorithmFromAI` for PSS: MGF1 with the message hash, salt as long
        /// as the hash, trailer 1; anything else is an algorithm Go does not know.
        fn pss_hash(&self) -> Option<Hash> {
            let mut input = self.algorithm_params.as_deref()?;
            let mut seq = expect(&mut input, 0x30).ok()?.contents;
            let hash_of = |mut ai: &[u8]| -> Option<Hash> {
                let mut inner = expect(&mut ai, 0x30).ok()?.contents;
                let oid = read_oid(&mut inner).ok()?;
                if !(inner.is_empty() || inner == [0x05, 0x00]) {
                    return None;
                }
                match oid {
                    [0x60, 0x86, 0x48, 0x01, 0x65, 3, 4, 2, 1] => Some(Hash::Sha256),
                    [0x60, 0x86, 0x48, 0x01, 0x65, 3, 4, 2, 2] => Some(Hash::Sha384),
                    [0x60, 0x86, 0x48, 0x01, 0x65, 3, 4, 2, 3] => Some(Hash::Sha512),
                    _ => None,
                }
            };
            let hash = hash_of(expect(&mut seq, 0xa0).ok()?.contents)?;
            let mut mgf_field = expect(&mut seq, 0xa1).ok()?.contents;
            let mut mgf = expect(&mut mgf_field, 0x30).ok()?.contents;
            if read_oid(&mut mgf).ok()? != [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 8]
                || hash_of(mgf)? != hash
            {
                return None;
            }
            let mut salt_field = expect(&mut seq, 0xa2).ok()?.contents;
            let salt = expect(&mut salt_field, 0x02).ok()?.contents;
            let want: u8 = match hash {
                Hash::Sha256 => 32,
                Hash::Sha384 => 48,
                _ => 64,
            };
            if salt != [want] {
                return None;
            }
            if !seq.is_empty() {
                let mut trailer_field = expect(&mut seq, 0xa3).ok()?.contents;
                if expect(&mut trailer_field, 0x02).ok()?.contents != [1] {
                    return None;
                }
            }
            Some(hash)
        }
    }
}

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The longest DNS-1123 subdomain (kubernetes `apimachinery/pkg/util/validation`).
const DNS1123_SUBDOMAIN_MAX: usize = 253;
/// The longest DNS-1123 label.
const DNS1123_LABEL_MAX: usize = 63;

/// `IsDNS1123Subdomain`: lowercase labels joined by dots, at most 253 characters.
fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= DNS1123_SUBDOMAIN_MAX
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `ValidateSignerName` (kubernetes `pkg/apis/core/validation/names.go`): exactly one `/`; a
/// domain of at least two DNS-1123 labels, at most 253 characters; a path of dot-separated
/// DNS-1123 subdomains; at most 571 characters in all. Stops at the first bad label of each
/// part, as the real validation does.
pub fn validate_signer_name(signer: &str) -> Vec<Cause> {
    let field = "spec.signerName";
    if signer.is_empty() {
        return vec![Cause::required(field, "")];
    }
    let segments: Vec<&str> = signer.split('/').collect();
    let [domain, path] = segments[..] else {
        return vec![Cause::invalid(
            field,
            &serde_json::Value::String(signer.to_string()),
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        )];
    };
    let mut causes = Vec::new();
    if domain.len() > DNS1123_SUBDOMAIN_MAX {
        causes.push(Cause::too_long(field, DNS1123_SUBDOMAIN_MAX));
    }
    let domain_value = serde_json::Value::String(domain.to_string());
    let labels: Vec<&str> = domain.split('.').collect();
    if let Some(label) = labels.iter().find(|label| !is_dns1123_label(label)) {
        causes.push(Cause::invalid(
            field,
            &domain_value,
            &format!(
                "validating label {label:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ),
        ));
    }
    if labels.len() < 2 {
        causes.push(Cause::invalid(
            field,
            &domain_value,
            "should be a domain with at least two segments separated by dots",
        ));
    }
    if let Some(label) = path.split('.').find(|label| !is_dns1123_subdomain(label)) {
        causes.push(Cause::invalid(
            field,
            &serde_json::Value::String(path.to_string()),
            &format!(
                "validating label {label:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ),
        ));
    }
    let longest = DNS1123_SUBDOMAIN_MAX + (DNS1123_SUBDOMAIN_MAX + DNS1123_LABEL_MAX + 1) + 1;
    if signer.len() > longest {
        causes.push(Cause::too_long(field, longest));
    }
    causes
}

fn conditions(
    csr: &CertificateSigningRequest,
) -> &[k8s_openapi::api::certificates::v1::CertificateSigningRequestCondition] {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[])
}

fn count(csr: &CertificateSigningRequest, type_: &str) -> usize {
    conditions(csr).iter().filter(|c| c.type_ == type_).count()
}

/// Whether the CSR carries a condition of this type (with any status).
pub fn has_condition(csr: &CertificateSigningRequest, type_: &str) -> bool {
    count(csr, type_) > 0
}

fn certificate(csr: &CertificateSigningRequest) -> &[u8] {
    csr.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .map_or(&[], |c| &c.0)
}

fn check_certificate(pem_data: &[u8]) -> Result<(), String> {
    if pem_data.is_empty() {
        return Ok(());
    }
    let mut blocks = 0;
    for pem in x509_parser::pem::Pem::iter_from_buffer(pem_data) {
        let Ok(pem) = pem else { break };
        if pem.label != "CERTIFICATE" {
            return Err(format!(
                "only CERTIFICATE PEM blocks are allowed, found {:?}",
                pem.label
            ));
        }
        blocks += 1;
        x509_parser::parse_x509_certificate(&pem.contents)
            .map_err(|e| format!("x509: malformed certificate: {e}"))?;
    }
    if blocks == 0 {
        return Err("must contain at least one CERTIFICATE PEM block".into());
    }
    Ok(())
}

/// `validateCertificateSigningRequest` for a create (`old = None`) or an update through `path`.
pub fn validate(
    csr: &CertificateSigningRequest,
    old: Option<&CertificateSigningRequest>,
    path: UpdatePath,
) -> Vec<Cause> {
    let mut causes = Vec::new();
    validate_spec(csr, old, &mut causes);
    validate_conditions(csr, old, &mut causes);
    let unchanged_cert = old.is_some_and(|o| certificate(o) == certificate(csr));
    if !unchanged_cert && let Err(e) = check_certificate(certificate(csr)) {
        causes.push(Cause::invalid(
            "status.certificate",
            &serde_json::Value::String("<certificate data>".into()),
            &e,
        ));
    }
    if let Some(old) = old {
        validate_update(csr, old, path, &mut causes);
    }
    causes
}

/// The spec: the request as kube-apiserver parses it, usages, signerName, expirationSeconds.
fn validate_spec(
    csr: &CertificateSigningRequest,
    old: Option<&CertificateSigningRequest>,
    causes: &mut Vec<Cause>,
) {
    let spec = &csr.spec;
    if let Err(e) = check_request(&spec.request.0) {
        let shown = String::from_utf8_lossy(&spec.request.0).into_owned();
        causes.push(Cause::invalid(
            "spec.request",
            &serde_json::Value::String(shown),
            &e,
        ));
    }
    let usages = spec.usages.as_deref().unwrap_or(&[]);
    if usages.is_empty() {
        causes.push(Cause::required("spec.usages", ""));
    }
    let old_usages = old.and_then(|o| o.spec.usages.as_deref()).unwrap_or(&[]);
    if !old_usages
        .iter()
        .any(|u| !VALID_USAGES.contains(&u.as_str()))
    {
        for (i, u) in usages.iter().enumerate() {
            if !VALID_USAGES.contains(&u.as_str()) {
                causes.push(Cause::not_supported(
                    format!("spec.usages[{i}]"),
                    u,
                    VALID_USAGES,
                ));
            }
        }
    }
    for (i, u) in usages.iter().enumerate() {
        if usages[..i].contains(u) {
            causes.push(Cause::duplicate(format!("spec.usages[{i}]"), u));
        }
    }
    let legacy_allowed = old.is_some_and(|o| o.spec.signer_name == LEGACY_UNKNOWN_SIGNER);
    if spec.signer_name == LEGACY_UNKNOWN_SIGNER && !legacy_allowed {
        causes.push(Cause::invalid(
            "spec.signerName",
            &serde_json::Value::String(spec.signer_name.clone()),
            "the legacy signerName is not allowed via this API version",
        ));
    } else if !legacy_allowed {
        causes.extend(validate_signer_name(&spec.signer_name));
    }
    if let Some(secs) = spec.expiration_seconds
        && secs < 600
    {
        causes.push(Cause::invalid(
            "spec.expirationSeconds",
            &serde_json::Value::from(secs),
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
}

/// The conditions: type and status present, `True` only for Approved, Denied and Failed, Approved
/// and Denied exclusive (unless the stored object already had both), no type twice.
fn validate_conditions(
    csr: &CertificateSigningRequest,
    old: Option<&CertificateSigningRequest>,
    causes: &mut Vec<Cause>,
) {
    let mut seen: Vec<&str> = Vec::new();
    let (mut approved, mut denied) = (false, false);
    for (i, c) in conditions(csr).iter().enumerate() {
        let field = format!("status.conditions[{i}]");
        if c.type_.is_empty() {
            causes.push(Cause::required(format!("{field}.type"), ""));
        }
        let allowed: &[&str] = if TRUE_ONLY.contains(&c.type_.as_str()) {
            &["True"]
        } else {
            &["False", "True", "Unknown"]
        };
        if c.status.is_empty() {
            causes.push(Cause::required(format!("{field}.status"), ""));
        } else if !allowed.contains(&c.status.as_str()) {
            causes.push(Cause::not_supported(
                format!("{field}.status"),
                &c.status,
                allowed,
            ));
        }
        let both_tolerated =
            old.is_some_and(|o| has_condition(o, "Approved") && has_condition(o, "Denied"));
        match c.type_.as_str() {
            "Approved" => {
                approved = true;
                if denied && !both_tolerated {
                    causes.push(Cause::invalid(
                        format!("{field}.type"),
                        &serde_json::Value::String(c.type_.clone()),
                        "Approved and Denied conditions are mutually exclusive",
                    ));
                }
            }
            "Denied" => {
                denied = true;
                if approved && !both_tolerated {
                    causes.push(Cause::invalid(
                        format!("{field}.type"),
                        &serde_json::Value::String(c.type_.clone()),
                        "Approved and Denied conditions are mutually exclusive",
                    ));
                }
            }
            _ => {}
        }
        if seen.contains(&c.type_.as_str()) {
            causes.push(Cause::duplicate(format!("{field}.type"), &c.type_));
        }
        seen.push(&c.type_);
    }
}

/// What an update through `path` may change: no condition removed, Approved and Denied only
/// through `approval`, the certificate set once and only through `status`.
fn validate_update(
    csr: &CertificateSigningRequest,
    old: &CertificateSigningRequest,
    path: UpdatePath,
    causes: &mut Vec<Cause>,
) {
    for t in ["Approved", "Denied", "Failed"] {
        if count(csr, t) < count(old, t) {
            causes.push(Cause::forbidden(
                "status.conditions",
                &format!("updates may not remove a condition of type {t:?}"),
            ));
        }
    }
    if path != UpdatePath::Approval {
        for t in ["Approved", "Denied"] {
            let (o, n) = (count(old, t), count(csr, t));
            let pick = |x: &CertificateSigningRequest| {
                conditions(x)
                    .iter()
                    .filter(|c| c.type_ == t)
                    .cloned()
                    .collect::<Vec<_>>()
            };
            if n > o {
                causes.push(Cause::forbidden(
                    "status.conditions",
                    &format!("updates may not add a condition of type {t:?}"),
                ));
            } else if n == o && pick(old) != pick(csr) {
                causes.push(Cause::forbidden(
                    "status.conditions",
                    &format!("updates may not modify a condition of type {t:?}"),
                ));
            }
        }
    }
    if certificate(csr) != certificate(old) {
        if path != UpdatePath::Status {
            causes.push(Cause::forbidden(
                "status.certificate",
                "updates may not set certificate content",
            ));
        } else if !certificate(old).is_empty() {
            causes.push(Cause::forbidden(
                "status.certificate",
                "updates may not modify existing certificate content",
            ));
        }
    }
}

/// `PrepareForCreate`: requester identity from the caller, status emptied.
pub fn prepare_for_create(csr: &mut CertificateSigningRequest, user: &UserInfo) {
    csr.spec.username = Some(user.username.clone());
    csr.spec.uid = user.uid.clone();
    csr.spec.groups = Some(user.groups.clone());
    csr.spec.extra = if user.extra.is_empty() {
        None
    } else {
        Some(user.extra.clone())
    };
    csr.status = None;
}

/// `PrepareForUpdate` of each path: keep what that path may not change from `old`, fill in condition times.
pub fn prepare_for_update(
    csr: &mut CertificateSigningRequest,
    old: &CertificateSigningRequest,
    path: UpdatePath,
) {
    csr.spec = old.spec.clone();
    match path {
        UpdatePath::Main => csr.status = old.status.clone(),
        UpdatePath::Status => populate_condition_timestamps(csr, old),
        UpdatePath::Approval => {
            let conditions = csr.status.as_ref().and_then(|s| s.conditions.clone());
            let mut status = old.status.clone().unwrap_or_default();
            status.conditions = conditions;
            csr.status = Some(status);
            populate_condition_timestamps(csr, old);
        }
    }
    if csr
        .status
        .as_ref()
        .is_some_and(|s| *s == CertificateSigningRequestStatus::default())
    {
        csr.status = None;
    }
}

fn populate_condition_timestamps(
    csr: &mut CertificateSigningRequest,
    old: &CertificateSigningRequest,
) {
    let now = Time(crate::now());
    let old_conditions = conditions(old).to_vec();
    let Some(list) = csr.status.as_mut().and_then(|s| s.conditions.as_mut()) else {
        return;
    };
    for c in list.iter_mut() {
        if c.last_update_time.is_none() {
            c.last_update_time = Some(now.clone());
        }
        if c.last_transition_time.is_none() {
            let kept = old_conditions
                .iter()
                .find(|o| {
                    o.type_ == c.type_ && o.status == c.status && o.last_transition_time.is_some()
                })
                .and_then(|o| o.last_transition_time.clone());
            c.last_transition_time = Some(kept.unwrap_or_else(|| now.clone()));
        }
    }
}

/// CertificateSubjectRestriction: the reason a create is forbidden, if it is.
pub fn subject_restriction(csr: &CertificateSigningRequest) -> Option<String> {
    if csr.spec.signer_name != KUBE_APISERVER_CLIENT_SIGNER {
        return None;
    }
    request_organizations(&csr.spec.request.0)
        .iter()
        .any(|o| o == "system:masters")
        .then(|| format!("use of {KUBE_APISERVER_CLIENT_SIGNER} signer with system:masters group is not allowed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_strings_are_checked_as_go_checks_them() {
        let check = |tag, bytes: &[u8]| go_csr::check_string(tag, bytes);
        assert_eq!(
            check(0x13, b"a*b&c"),
            Ok(Some("a*b&c".into())),
            "Go allows * and &"
        );
        assert!(check(0x13, b"a@b").is_err(), "@ is not printable");
        assert!(check(0x16, "é".as_bytes()).is_err(), "IA5 is ASCII");
        assert_eq!(check(0x12, b"12 3"), Ok(Some("12 3".into())));
        assert!(check(0x12, b"12a").is_err());
        assert_eq!(check(0x04, b"x"), Ok(None), "not a string type");
    }

    #[test]
    fn a_signer_name_without_a_path_is_invalid() {
        let causes = validate_signer_name("example.com");
        assert_eq!(causes.len(), 1);
        assert!(
            causes[0].message.contains("example.com/signer-name"),
            "{causes:?}"
        );
    }

    #[test]
    fn a_single_label_domain_is_invalid() {
        let causes = validate_signer_name("example/x");
        assert!(
            causes
                .iter()
                .any(|c| c.message.contains("at least two segments")),
            "{causes:?}"
        );
    }

    #[test]
    fn a_signer_name_with_two_slashes_is_invalid_as_kube_apiserver_says() {
        let causes = validate_signer_name("example.com/a/b");
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert!(causes[0].message.contains("example.com/signer-name"));
    }

    #[test]
    fn the_longest_signer_name_kube_apiserver_accepts_passes_and_one_more_byte_does_not() {
        let label = "a".repeat(63);
        // A 253-character domain and a 317-character path: 571 in all.
        let domain = format!("{label}.{label}.{label}.{}", "b".repeat(61));
        assert_eq!(domain.len(), 253);
        let path = format!("{}.{}", "c".repeat(253), "d".repeat(63));
        let longest = format!("{domain}/{path}");
        assert_eq!(longest.len(), 571);
        assert!(
            validate_signer_name(&longest).is_empty(),
            "{:?}",
            validate_signer_name(&longest)
        );
        let too_long = format!("{domain}/{path}e");
        assert!(
            validate_signer_name(&too_long)
                .iter()
                .any(|c| c.reason == "FieldValueTooLong"),
        );
    }

    #[test]
    fn a_good_signer_name_passes() {
        assert!(validate_signer_name("example.com/my-signer").is_empty());
        assert!(validate_signer_name("kubernetes.io/kube-apiserver-client").is_empty());
    }

    /// Issue #11: kube-apiserver refuses raw UTF-8 in a dNSName at create; so does the sandbox.
    #[test]
    fn a_request_with_a_raw_utf8_dns_name_is_refused_as_kube_apiserver_refuses_it() {
        let manifest = include_str!("../../../tests/cases/utf8-dnsname/web-idn-utf8.yaml");
        let request = manifest
            .lines()
            .find_map(|l| l.trim().strip_prefix("request: "))
            .unwrap();
        use base64::Engine as _;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(request)
            .unwrap();
        assert_eq!(
            check_request(&pem),
            Err("x509: SAN dNSName is malformed".to_string())
        );
        let manifest = include_str!("../../../tests/cases/utf8-dnsname/web-idn-alabel.yaml");
        let request = manifest
            .lines()
            .find_map(|l| l.trim().strip_prefix("request: "))
            .unwrap();
        let pem = base64::engine::general_purpose::STANDARD
            .decode(request)
            .unwrap();
        assert_eq!(check_request(&pem), Ok(()));
    }

    fn policy_testdata(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../csrgate-policy/testdata/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Issue #11: the sandbox stores what kube-apiserver (Go's CheckSignature, which allows
    /// SHA-1 for requests) stores, and refuses what it refuses, with its message.
    #[test]
    fn requests_are_verified_as_kube_apiserver_verifies_them() {
        for stored in [
            "alg-challenge-bmp.csr",
            "alg-p224-sha256.csr",
            "alg-p256-sha1.csr",
            "alg-p256-sha384.csr",
            "alg-p384-sha512.csr",
            "alg-p521-sha256.csr",
            "alg-p521-sha512.csr",
            "alg-rsa1024-sha512.csr",
            "alg-rsa2048-pss-sha256.csr",
            "alg-rsa2048-pss-sha384.csr",
            "alg-rsa2048-pss-sha512.csr",
            "alg-rsa2048-sha1.csr",
            "alg-rsa2048-sha384.csr",
            "alg-rsa3071-sha256.csr",
            "jane-ed25519.csr",
            "jane-rsa1024.csr",
            "jane.csr",
            "worker-1-serving.csr",
        ] {
            assert_eq!(check_request(&policy_testdata(stored)), Ok(()), "{stored}");
        }
        for (refused, message) in [
            (
                "alg-rsa2048-pss-sha256-salt20.csr",
                "x509: cannot verify signature: algorithm unimplemented",
            ),
            (
                "alg-rsa2048-sha224.csr",
                "x509: cannot verify signature: algorithm unimplemented",
            ),
            (
                "alg-rsa512-sha256.csr",
                "crypto/rsa: 512-bit keys are insecure",
            ),
            ("jane-forged.csr", "x509: ECDSA verification failure"),
        ] {
            let got = check_request(&policy_testdata(refused)).unwrap_err();
            assert!(got.starts_with(message), "{refused}: {got}");
        }
        assert_eq!(
            request_organizations(&policy_testdata("alg-challenge-bmp.csr")),
            ["dev-team"]
        );
    }

    #[test]
    fn uri_sans_are_checked_as_go_checks_them() {
        use go_csr::check_uri_for_test as check;
        assert!(check("spiffe://cluster.local/ns/a/sa/b").is_ok());
        assert!(check("urn:a//b.").is_ok());
        assert!(check("https://[fd00::1]:443/x").is_ok());
        for bad in [
            "spiffe://a\x01b/x",
            "https://a/%zz",
            ":nothing",
            "https://a:port/",
            "https://[fd00::1/",
            "spiffe://cluster.local./x",
            "spiffe://a..b/x",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_certificate_block_is_not_a_request() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(
            check_request(pem),
            Err("PEM block type must be CERTIFICATE REQUEST".to_string())
        );
    }
}
