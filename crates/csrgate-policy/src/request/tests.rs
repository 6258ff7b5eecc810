//! Tests of the request parser: one per rule, with requests made by openssl (`testdata/`,
//! see `make.sh` and `make-algorithms.sh`) or built here as DER and signed with rcgen.

use super::*;
use rcgen::{
    CertificateParams, CustomExtension, DnType, KeyPair, PublicKeyData, SanType, SigningKey,
};

fn testdata(name: &str) -> Vec<u8> {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The DER inside a PEM test file.
fn der_of(pem: &[u8]) -> Vec<u8> {
    decode_pem(pem).unwrap()
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

fn parse(der: &[u8]) -> Result<ParsedRequest, RequestError> {
    parse_request(pem_of(der).as_bytes())
}

// --- a small DER writer for odd requests ---

fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = contents.len();
    if n < 0x80 {
        out.push(u8::try_from(n).unwrap());
    } else if n < 0x100 {
        out.extend([0x81, u8::try_from(n).unwrap()]);
    } else {
        out.extend([
            0x82,
            u8::try_from(n >> 8).unwrap(),
            u8::try_from(n & 0xff).unwrap(),
        ]);
    }
    out.extend_from_slice(contents);
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &cat(parts))
}

fn set(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x31, &cat(parts))
}

fn oid(contents: &[u8]) -> Vec<u8> {
    tlv(0x06, contents)
}

const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_O: &[u8] = &[0x55, 0x04, 0x0a];
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];
const OID_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
const OID_EXT_REQ: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 9, 14];
const OID_CHALLENGE: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 9, 7];
const OID_EMAIL_ATTR: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 9, 1];
const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, 2];

/// A request Attribute: `SEQUENCE { type, SET { value } }`.
fn attr(oid_contents: &[u8], value: &[u8]) -> Vec<u8> {
    seq(&[&oid(oid_contents), &set(&[value])])
}

/// A subject AttributeTypeAndValue: `SEQUENCE { type, value }`.
fn atv(oid_contents: &[u8], value: &[u8]) -> Vec<u8> {
    seq(&[&oid(oid_contents), value])
}

fn subject(attrs: &[Vec<u8>]) -> Vec<u8> {
    let rdns: Vec<Vec<u8>> = attrs.iter().map(|a| set(&[a])).collect();
    let parts: Vec<&[u8]> = rdns.iter().map(Vec::as_slice).collect();
    seq(&parts)
}

fn extension(oid_contents: &[u8], value: &[u8]) -> Vec<u8> {
    seq(&[&oid(oid_contents), &tlv(0x04, value)])
}

fn san_value(names: &[Vec<u8>]) -> Vec<u8> {
    let parts: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
    seq(&parts)
}

fn extension_request(extensions: &[Vec<u8>]) -> Vec<u8> {
    let parts: Vec<&[u8]> = extensions.iter().map(Vec::as_slice).collect();
    seq(&[&oid(OID_EXT_REQ), &set(&[&seq(&parts)])])
}

/// A request assembled from parts and signed with a fresh P-256 key (ECDSA with SHA-256);
/// the default is jane's valid request, and each setter changes one thing.
struct Der {
    version: Vec<u8>,
    subject: Vec<u8>,
    /// The contents of the `[0]` attributes, or `None` to leave the field out.
    attributes: Option<Vec<u8>>,
    algorithm: Vec<u8>,
}

impl Der {
    fn new() -> Self {
        Self {
            version: tlv(0x02, &[0]),
            subject: subject(&[
                atv(OID_CN, &tlv(0x0c, b"jane")),
                atv(OID_O, &tlv(0x0c, b"dev-team")),
            ]),
            attributes: Some(Vec::new()),
            algorithm: seq(&[&oid(ECDSA_SHA256)]),
        }
    }
    fn attributes(mut self, attributes: &[Vec<u8>]) -> Self {
        self.attributes = Some(attributes.concat());
        self
    }
    fn extensions(self, extensions: &[Vec<u8>]) -> Self {
        self.attributes(&[extension_request(extensions)])
    }
    fn sans(self, names: &[Vec<u8>]) -> Self {
        self.extensions(&[extension(OID_SAN, &san_value(names))])
    }
    fn build(self) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let spki = key.subject_public_key_info();
        let mut info_parts: Vec<&[u8]> = vec![&self.version, &self.subject, &spki];
        let attributes = self.attributes.as_ref().map(|a| tlv(0xa0, a));
        if let Some(a) = &attributes {
            info_parts.push(a);
        }
        let info = seq(&info_parts);
        let signature = key.sign(&info).unwrap();
        let mut bits = vec![0];
        bits.extend(signature);
        seq(&[&info, &self.algorithm, &tlv(0x03, &bits)])
    }
}

/// The three top-level parts of a request's DER.
fn split(der: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut outer = Reader::new(der);
    let mut request = outer.read_nested(0x30, "request").unwrap();
    let info = request.read_any().unwrap().encoding.to_vec();
    let algorithm = request.read_any().unwrap().encoding.to_vec();
    let signature = request.read_any().unwrap().encoding.to_vec();
    (info, algorithm, signature)
}

/// `der` with its (unsigned) outer signatureAlgorithm replaced.
fn with_algorithm(der: &[u8], algorithm: &[u8]) -> Vec<u8> {
    let (info, _, signature) = split(der);
    seq(&[&info, algorithm, &signature])
}

fn dns(name: &str) -> Vec<u8> {
    tlv(0x82, name.as_bytes())
}

fn assert_err(result: Result<ParsedRequest, RequestError>, check: impl Fn(&RequestError) -> bool) {
    match result {
        Ok(parsed) => panic!("accepted: {parsed:?}"),
        Err(e) => assert!(check(&e), "unexpected error: {e:?} ({e})"),
    }
}

fn message_has(text: &'static str) -> impl Fn(&RequestError) -> bool {
    move |e| e.to_string().contains(text)
}

// --- what a valid request reads as ---

#[test]
fn reads_subject_and_key_of_an_openssl_ecdsa_request() {
    let parsed = parse_request(&testdata("jane.csr")).unwrap();
    assert_eq!(parsed.common_name, "jane");
    assert_eq!(parsed.organizations, ["dev-team"]);
    assert!(parsed.organizational_units.is_empty());
    let key = &parsed.public_key;
    assert_eq!(
        (key.algorithm.as_str(), key.size, key.curve_name()),
        ("ECDSA", 256, "P-256")
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
    assert_eq!(p384.public_key.curve_name(), "P-384");
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
fn the_der_builder_makes_a_valid_request() {
    let parsed = parse(&Der::new().sans(&[dns("a.example.com")]).build()).unwrap();
    assert_eq!(parsed.common_name, "jane");
    assert_eq!(parsed.dns_names, ["a.example.com"]);
}

// --- signatures and keys (issue #11 part 4) ---

#[test]
fn verifies_every_algorithm_go_verifies() {
    for (file, algorithm, size, curve) in [
        ("alg-p224-sha256.csr", "ECDSA", 224, "P-224"),
        ("alg-p521-sha256.csr", "ECDSA", 521, "P-521"),
        ("alg-p521-sha512.csr", "ECDSA", 521, "P-521"),
        ("alg-p256-sha384.csr", "ECDSA", 256, "P-256"),
        ("alg-p384-sha512.csr", "ECDSA", 384, "P-384"),
        ("alg-rsa1024-sha512.csr", "RSA", 1024, ""),
        ("alg-rsa2048-sha384.csr", "RSA", 2048, ""),
        ("alg-rsa3071-sha256.csr", "RSA", 3071, ""),
        ("alg-rsa2048-pss-sha256.csr", "RSA", 2048, ""),
        ("alg-rsa2048-pss-sha384.csr", "RSA", 2048, ""),
        ("alg-rsa2048-pss-sha512.csr", "RSA", 2048, ""),
        ("jane-rsa1024.csr", "RSA", 1024, ""),
    ] {
        let parsed = parse_request(&testdata(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let key = &parsed.public_key;
        assert_eq!(
            (key.algorithm.as_str(), key.size, key.curve_name()),
            (algorithm, size, curve),
            "{file}"
        );
    }
}

#[test]
fn counts_rsa_key_bits_exactly() {
    let parsed = parse_request(&testdata("alg-rsa3071-sha256.csr")).unwrap();
    assert_eq!(parsed.public_key.size, 3071);
}

#[test]
fn refuses_sha1_md5_sha224_and_unknown_algorithms_as_unsupported_not_as_bad_signatures() {
    for (file, text) in [
        ("alg-rsa2048-sha1.csr", "SHA-1"),
        ("alg-p256-sha1.csr", "SHA-1"),
        ("alg-rsa2048-sha224.csr", "1.2.840.113549.1.1.14"),
    ] {
        assert_err(
            parse_request(&testdata(file)),
            |e| matches!(e, RequestError::UnsupportedSignature(m) if m.contains(text)),
        );
    }
    let rsa = der_of(&testdata("alg-rsa2048-sha384.csr"));
    let md5 = seq(&[
        &oid(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 4]),
        &[0x05, 0x00],
    ]);
    assert_err(
        parse(&with_algorithm(&rsa, &md5)),
        |e| matches!(e, RequestError::UnsupportedSignature(m) if m.contains("MD5")),
    );
    let unknown = seq(&[&oid(&[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37])]);
    assert_err(
        parse(&with_algorithm(&rsa, &unknown)),
        |e| matches!(e, RequestError::UnsupportedSignature(m) if m.contains("1.3.6.1.4.1.311")),
    );
}

#[test]
fn refuses_pss_parameters_go_does_not_verify() {
    assert_err(
        parse_request(&testdata("alg-rsa2048-pss-sha256-salt20.csr")),
        |e| matches!(e, RequestError::UnsupportedSignature(m) if m.contains("saltLength")),
    );
}

#[test]
fn refuses_rsa_keys_below_1024_bits_with_a_clear_message() {
    assert_err(
        parse_request(&testdata("alg-rsa512-sha256.csr")),
        |e| matches!(e, RequestError::UnsupportedKey(m) if m.contains("RSA key of 512 bits")),
    );
}

#[test]
fn refuses_an_algorithm_that_does_not_fit_the_key() {
    let ec = der_of(&testdata("jane.csr"));
    let rsa_algorithm = seq(&[
        &oid(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 11]),
        &[0x05, 0x00],
    ]);
    assert_err(
        parse(&with_algorithm(&ec, &rsa_algorithm)),
        |e| matches!(e, RequestError::UnsupportedSignature(m) if m.contains("ECDSA key")),
    );
}

#[test]
fn refuses_a_forged_signature() {
    assert_err(parse_request(&testdata("jane-forged.csr")), |e| {
        matches!(e, RequestError::Signature(_))
    });
}

#[test]
fn ecdsa_and_ed25519_algorithms_must_have_absent_parameters() {
    let ec = der_of(&testdata("jane.csr"));
    let with_null = seq(&[&oid(ECDSA_SHA256), &[0x05, 0x00]]);
    assert_err(
        parse(&with_algorithm(&ec, &with_null)),
        |e| matches!(e, RequestError::Der(m) if m.contains("ecdsa-with-SHA256 must have no parameters")),
    );
    let ed = der_of(&testdata("jane-ed25519.csr"));
    let with_null = seq(&[&oid(&[0x2b, 0x65, 0x70]), &[0x05, 0x00]]);
    assert_err(
        parse(&with_algorithm(&ed, &with_null)),
        |e| matches!(e, RequestError::Der(m) if m.contains("Ed25519 must have no parameters")),
    );
}

#[test]
fn rsa_pkcs1_parameters_may_be_null_or_absent_but_nothing_else() {
    let rsa = der_of(&testdata("alg-rsa2048-sha384.csr"));
    let sha384_rsa: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 12];
    let absent = seq(&[&oid(sha384_rsa)]);
    assert!(parse(&with_algorithm(&rsa, &absent)).is_ok());
    let other = seq(&[&oid(sha384_rsa), &tlv(0x04, &[])]);
    assert_err(
        parse(&with_algorithm(&rsa, &other)),
        |e| matches!(e, RequestError::Der(m) if m.contains("NULL or absent")),
    );
}

// --- PEM framing (part 3) ---

#[test]
fn refuses_text_that_is_not_pem() {
    assert_err(parse_request(b"hello"), |e| {
        matches!(e, RequestError::NotPem(_))
    });
    assert_err(parse_request(&[0xff, 0xfe]), |e| {
        matches!(e, RequestError::NotPem(_))
    });
}

#[test]
fn refuses_a_pem_block_that_is_not_a_certificate_request() {
    let jane = String::from_utf8(testdata("jane.csr")).unwrap();
    let pem = jane.replace("CERTIFICATE REQUEST", "CERTIFICATE");
    assert_eq!(
        parse_request(pem.as_bytes()).unwrap_err(),
        RequestError::WrongPemLabel("CERTIFICATE".into())
    );
    let pem = jane.replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST");
    assert_eq!(
        parse_request(pem.as_bytes()).unwrap_err(),
        RequestError::WrongPemLabel("NEW CERTIFICATE REQUEST".into())
    );
}

#[test]
fn refuses_an_end_line_that_does_not_match() {
    let jane = String::from_utf8(testdata("jane.csr")).unwrap();
    let pem = jane.replace("END CERTIFICATE REQUEST", "END CERTIFICATE");
    assert_err(parse_request(pem.as_bytes()), |e| {
        matches!(e, RequestError::NotPem(_))
    });
    let pem = jane.replace("-----END CERTIFICATE REQUEST-----\n", "");
    assert_err(parse_request(pem.as_bytes()), |e| {
        matches!(e, RequestError::NotPem(_))
    });
}

#[test]
fn refuses_junk_after_begin_and_pem_headers() {
    let jane = String::from_utf8(testdata("jane.csr")).unwrap();
    let pem = jane.replace(
        "-----BEGIN CERTIFICATE REQUEST-----",
        "-----BEGIN CERTIFICATE REQUEST----- junk",
    );
    assert_err(parse_request(pem.as_bytes()), |e| {
        matches!(e, RequestError::WrongPemLabel(_))
    });
    let pem = jane.replace(
        "-----BEGIN CERTIFICATE REQUEST-----\n",
        "-----BEGIN CERTIFICATE REQUEST-----\nProc-Type: 4,ENCRYPTED\n\n",
    );
    assert_err(
        parse_request(pem.as_bytes()),
        |e| matches!(e, RequestError::NotPem(m) if m.contains("headers")),
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
    assert_err(parse_request(leading.as_bytes()), |e| {
        matches!(e, RequestError::NotPem(_))
    });
    // Surrounding whitespace and CRLF line ends are fine.
    assert!(parse_request(format!("\n  {one}\n\n").as_bytes()).is_ok());
    assert!(parse_request(one.replace('\n', "\r\n").as_bytes()).is_ok());
}

#[test]
fn refuses_non_canonical_base64() {
    // "AA==" is the one canonical text of the byte 0x00; "AB==" sets a padding bit (RFC 4648
    // §3.5) and would be another text for the same byte.
    let pem = |body: &str| {
        format!("-----BEGIN CERTIFICATE REQUEST-----\n{body}\n-----END CERTIFICATE REQUEST-----\n")
    };
    assert_eq!(decode_pem(pem("AA==").as_bytes()).unwrap(), [0]);
    assert_err(
        parse_request(pem("AB==").as_bytes()),
        |e| matches!(e, RequestError::NotPem(m) if m.contains("canonical base64")),
    );
    assert_err(parse_request(pem("AA=").as_bytes()), |e| {
        matches!(e, RequestError::NotPem(_))
    });
}

// --- DER exactness (part 3) ---

#[test]
fn refuses_trailing_bytes_after_the_der() {
    let mut der = Der::new().build();
    der.extend_from_slice(&[0x05, 0x00]);
    assert_eq!(parse(&der).unwrap_err(), RequestError::TrailingDer(2));
}

#[test]
fn refuses_der_that_is_not_a_request() {
    assert_err(parse(&[0x30, 0x03, 0x02, 0x01, 0x01]), |e| {
        matches!(e, RequestError::Der(_))
    });
}

#[test]
fn refuses_non_minimal_lengths() {
    let der = Der::new().build();
    // Re-encode the outer SEQUENCE length with one octet more than needed.
    let (info, algorithm, signature) = split(&der);
    let body = cat(&[&info, &algorithm, &signature]);
    let len = body.len();
    let mut long = vec![
        0x30,
        0x83,
        0,
        u8::try_from(len >> 8).unwrap(),
        u8::try_from(len & 0xff).unwrap(),
    ];
    long.extend(body);
    assert_err(parse(&long), message_has("leading zero octet"));
}

#[test]
fn refuses_a_version_other_than_0() {
    let der = Der {
        version: tlv(0x02, &[1]),
        ..Der::new()
    }
    .build();
    assert_err(parse(&der), message_has("version 1 is not 0"));
}

#[test]
fn refuses_a_request_without_the_attributes_field() {
    let der = Der {
        attributes: None,
        ..Der::new()
    }
    .build();
    assert_err(parse(&der), message_has("attributes: missing"));
}

#[test]
fn refuses_duplicate_extensions() {
    let ku = extension(OID_KEY_USAGE, &tlv(0x03, &[0x05, 0xa0]));
    let der = Der::new().extensions(&[ku.clone(), ku]).build();
    assert_err(
        parse(&der),
        |e| matches!(e, RequestError::Extensions(m) if m.contains("2.5.29.15 appears twice")),
    );
}

#[test]
fn refuses_two_san_extensions() {
    let a = extension(OID_SAN, &san_value(&[dns("good.example.com")]));
    let b = extension(OID_SAN, &san_value(&[dns("evil.example.com")]));
    assert_eq!(
        parse(&Der::new().extensions(&[a, b]).build()).unwrap_err(),
        RequestError::DuplicateSan
    );
    // The same through rcgen, as a custom extension beside its own SAN extension.
    let mut params = CertificateParams::new(vec!["good.example.com".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "jane");
    params
        .custom_extensions
        .push(CustomExtension::from_oid_content(
            &[2, 5, 29, 17],
            san_value(&[dns("evil.example.com")]),
        ));
    let der = params
        .serialize_request(&KeyPair::generate().unwrap())
        .unwrap()
        .der()
        .to_vec();
    assert_eq!(parse(&der).unwrap_err(), RequestError::DuplicateSan);
}

#[test]
fn refuses_an_extension_request_with_two_values() {
    let san = seq(&[&extension(OID_SAN, &san_value(&[dns("good.example.com")]))]);
    let evil = seq(&[&extension(OID_SAN, &san_value(&[dns("evil.example.com")]))]);
    let attribute = seq(&[&oid(OID_EXT_REQ), &set(&[&san, &evil])]);
    assert_err(
        parse(&Der::new().attributes(&[attribute]).build()),
        |e| matches!(e, RequestError::Extensions(m) if m.contains("2 values")),
    );
}

#[test]
fn refuses_extensions_outside_the_extension_request_set() {
    // `SEQUENCE { extensionRequest, SET { exts }, exts }`: a second list after the SET, which
    // a parser reading only the SET's first value would never see.
    let inside = seq(&[&extension(OID_SAN, &san_value(&[dns("good.example.com")]))]);
    let outside = seq(&[&extension(OID_SAN, &san_value(&[dns("evil.example.com")]))]);
    let attribute = seq(&[&oid(OID_EXT_REQ), &set(&[&inside]), &outside]);
    assert_err(
        parse(&Der::new().attributes(&[attribute]).build()),
        |e| matches!(e, RequestError::Attributes(m) if m.contains("unexpected bytes after the attribute values")),
    );
}

#[test]
fn refuses_two_extension_request_attributes() {
    let a = extension_request(&[extension(OID_SAN, &san_value(&[dns("a.example.com")]))]);
    let b = extension_request(&[extension(OID_KEY_USAGE, &tlv(0x03, &[0x05, 0xa0]))]);
    assert_err(
        parse(&Der::new().attributes(&[a, b]).build()),
        |e| matches!(e, RequestError::Extensions(m) if m.contains("more than one extensionRequest")),
    );
}

#[test]
fn refuses_an_empty_extension_list_and_an_attribute_without_values() {
    let empty = seq(&[&oid(OID_EXT_REQ), &set(&[&seq(&[])])]);
    assert_err(
        parse(&Der::new().attributes(&[empty]).build()),
        |e| matches!(e, RequestError::Extensions(m) if m.contains("empty")),
    );
    let no_values = seq(&[&oid(OID_CHALLENGE), &set(&[])]);
    assert_err(
        parse(&Der::new().attributes(&[no_values]).build()),
        |e| matches!(e, RequestError::Attributes(m) if m.contains("no value")),
    );
}

#[test]
fn refuses_trailing_bytes_inside_an_extension() {
    // After extnValue, inside the Extension SEQUENCE.
    let mut inner = cat(&[
        &oid(OID_SAN),
        &tlv(0x04, &san_value(&[dns("a.example.com")])),
    ]);
    inner.extend_from_slice(&[0x05, 0x00]);
    let der = Der::new().extensions(&[tlv(0x30, &inner)]).build();
    assert_err(
        parse(&der),
        |e| matches!(e, RequestError::Extensions(m) if m.contains("unexpected bytes after extnValue")),
    );
    // After the GeneralNames, inside extnValue: Go would ignore these bytes.
    let mut value = san_value(&[dns("a.example.com")]);
    value.extend(dns("evil.example.com"));
    let der = Der::new().extensions(&[extension(OID_SAN, &value)]).build();
    assert_err(
        parse(&der),
        |e| matches!(e, RequestError::Extensions(m) if m.contains("unexpected bytes")),
    );
}

#[test]
fn refuses_critical_written_as_its_default_false() {
    let ext = seq(&[
        &oid(OID_SAN),
        &[0x01, 0x01, 0x00],
        &tlv(0x04, &san_value(&[dns("a.example.com")])),
    ]);
    assert_err(
        parse(&Der::new().extensions(&[ext]).build()),
        |e| matches!(e, RequestError::Extensions(m) if m.contains("FALSE")),
    );
    // TRUE is fine.
    let ext = seq(&[
        &oid(OID_SAN),
        &[0x01, 0x01, 0xff],
        &tlv(0x04, &san_value(&[dns("a.example.com")])),
    ]);
    assert!(parse(&Der::new().extensions(&[ext]).build()).is_ok());
}

#[test]
fn refuses_non_minimal_oid_encodings() {
    // 2.5.29.17 with its last arc written as 0x80 0x11.
    let ext = seq(&[
        &oid(&[0x55, 0x1d, 0x80, 0x11]),
        &tlv(0x04, &san_value(&[dns("a.example.com")])),
    ]);
    assert_err(
        parse(&Der::new().extensions(&[ext]).build()),
        message_has("non-minimal"),
    );
    let der = Der {
        subject: subject(&[atv(&[0x55, 0x04, 0x80, 0x03], &tlv(0x0c, b"jane"))]),
        ..Der::new()
    }
    .build();
    assert_err(parse(&der), message_has("non-minimal"));
}

#[test]
fn refuses_strings_whose_characters_their_type_forbids() {
    for (value, why) in [
        (tlv(0x13, b"jane@example"), "PrintableString"),
        (tlv(0x0c, &[0x6a, 0xff]), "UTF8String"),
        (tlv(0x16, "jäne".as_bytes()), "IA5String"),
        (tlv(0x12, b"12a"), "NumericString"),
        (tlv(0x1e, &[0xd8, 0x00]), "BMPString"),
        (tlv(0x1e, &[0x00]), "BMPString"),
    ] {
        let der = Der {
            subject: subject(&[atv(OID_CN, &value)]),
            ..Der::new()
        }
        .build();
        assert_err(
            parse(&der),
            |e| matches!(e, RequestError::Subject(m) if m.contains(why)),
        );
    }
    // Also in attributes the x509 variable does not show, as Go checks every string.
    let der = Der {
        subject: subject(&[
            atv(OID_CN, &tlv(0x0c, b"jane")),
            atv(OID_EMAIL_ATTR, &tlv(0x16, "jäne@example.com".as_bytes())),
        ]),
        ..Der::new()
    }
    .build();
    assert_err(parse(&der), |e| matches!(e, RequestError::Subject(_)));
    // PrintableString with '*' and '&', which Go allows, is read.
    let der = Der {
        subject: subject(&[atv(OID_CN, &tlv(0x13, b"*.a&b"))]),
        ..Der::new()
    }
    .build();
    assert_eq!(parse(&der).unwrap().common_name, "*.a&b");
}

#[test]
fn reads_bmp_and_teletex_names_as_go_does() {
    let der = Der {
        subject: subject(&[
            atv(OID_CN, &tlv(0x1e, &[0x00, 0x6a, 0x00, 0xe4, 0x00, 0x00])),
            atv(OID_O, &tlv(0x14, &[0x64, 0xe9, 0x76])),
        ]),
        ..Der::new()
    }
    .build();
    let parsed = parse(&der).unwrap();
    assert_eq!(parsed.common_name, "jä");
    assert_eq!(parsed.organizations, ["dév"]);
}

#[test]
fn refuses_a_common_name_kubernetes_cannot_read() {
    // UniversalString: Go leaves it out of the parsed subject, so it would vanish from the
    // certificate; a policy must not approve a CN that is not issued.
    let der = Der {
        subject: subject(&[atv(OID_CN, &tlv(0x1c, &[0, 0, 0, 0x6a]))]),
        ..Der::new()
    }
    .build();
    assert_err(
        parse(&der),
        message_has("not a string of a type Kubernetes reads"),
    );
}

#[test]
fn refuses_two_common_names_and_empty_rdn_sets() {
    let der = Der {
        subject: subject(&[
            atv(OID_CN, &tlv(0x0c, b"jane")),
            atv(OID_CN, &tlv(0x0c, b"root")),
        ]),
        ..Der::new()
    }
    .build();
    assert_err(parse(&der), message_has("more than one common name"));
    let der = Der {
        subject: seq(&[&set(&[])]),
        ..Der::new()
    }
    .build();
    assert_err(parse(&der), message_has("empty RelativeDistinguishedName"));
}

#[test]
fn reads_a_challenge_password_written_as_a_bmp_string() {
    let parsed = parse_request(&testdata("alg-challenge-bmp.csr")).unwrap();
    assert_eq!(parsed.common_name, "jane");
    // Built here too: UTF8String and BMPString passwords are valid, two values are not.
    let bmp = attr(OID_CHALLENGE, &tlv(0x1e, &[0x00, 0x70, 0x00, 0xe4]));
    assert!(parse(&Der::new().attributes(&[bmp]).build()).is_ok());
    let two = seq(&[
        &oid(OID_CHALLENGE),
        &set(&[&tlv(0x0c, b"a"), &tlv(0x0c, b"b")]),
    ]);
    assert_err(
        parse(&Der::new().attributes(&[two]).build()),
        |e| matches!(e, RequestError::Attributes(m) if m.contains("2 values")),
    );
    let not_a_string = attr(OID_CHALLENGE, &tlv(0x02, &[1]));
    assert_err(
        parse(&Der::new().attributes(&[not_a_string]).build()),
        |e| matches!(e, RequestError::Attributes(m) if m.contains("not a DirectoryString")),
    );
}

// --- names (parts 1 and 2) ---

#[test]
fn dns_names_are_shown_lower_case() {
    let der = Der::new()
        .sans(&[dns("KUBERNETES.default.svc"), dns("Worker-1")])
        .build();
    assert_eq!(
        parse(&der).unwrap().dns_names,
        ["kubernetes.default.svc", "worker-1"]
    );
}

#[test]
fn refuses_dns_names_with_a_trailing_dot_or_an_empty_label() {
    for name in ["kubernetes.default.svc.", "a..example.com", ".example.com"] {
        assert_err(
            parse(&Der::new().sans(&[dns(name)]).build()),
            |e| matches!(e, RequestError::InvalidSan(m) if m.contains("dNSName")),
        );
    }
}

#[test]
fn ip_addresses_are_shown_as_go_writes_them() {
    let mapped: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 96, 0, 1];
    let long: [u8; 16] = [0xfd, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b];
    let der = Der::new()
        .sans(&[
            tlv(0x87, &mapped),
            tlv(0x87, &long),
            tlv(0x87, &[10, 0, 0, 1]),
        ])
        .build();
    assert_eq!(
        parse(&der).unwrap().ip_addresses,
        ["10.96.0.1", "fd00:10::b", "10.0.0.1"]
    );
}

#[test]
fn refuses_an_ip_san_of_the_wrong_length() {
    let der = Der::new()
        .sans(&[tlv(0x87, &[10, 0, 0, 1, 255, 255, 255, 0])])
        .build();
    assert_err(
        parse(&der),
        |e| matches!(e, RequestError::InvalidSan(m) if m.contains("8 bytes")),
    );
}

#[test]
fn refuses_ia5_sans_that_are_not_names_and_says_which() {
    for (name, kind, why) in [
        (
            tlv(0x82, "bücher.example.com".as_bytes()),
            "dNSName",
            "non-ASCII",
        ),
        (tlv(0x82, b"a.example.com\0.evil.com"), "dNSName", "NUL"),
        (tlv(0x82, b"a example.com"), "dNSName", "space"),
        (
            tlv(0x81, b"jane@example.com\n"),
            "rfc822Name",
            "control character",
        ),
        (
            tlv(0x81, "jäne@example.com".as_bytes()),
            "rfc822Name",
            "non-ASCII",
        ),
        (
            tlv(0x86, b"spiffe://a/b\0"),
            "uniformResourceIdentifier",
            "NUL",
        ),
        (
            tlv(0x86, "spiffe://ä/b".as_bytes()),
            "uniformResourceIdentifier",
            "non-ASCII",
        ),
        (tlv(0x82, b""), "dNSName", "empty"),
    ] {
        assert_err(
            parse(&Der::new().sans(&[name]).build()),
            |e| matches!(e, RequestError::InvalidSan(m) if m.contains(kind) && m.contains(why)),
        );
    }
}

#[test]
fn refuses_uris_go_does_not_parse() {
    for uri in ["no-scheme/path", "spiffe://bad..host/x", "https://a/%zz"] {
        assert_err(
            parse(&Der::new().sans(&[tlv(0x86, uri.as_bytes())]).build()),
            |e| matches!(e, RequestError::InvalidSan(m) if m.contains("URI")),
        );
    }
}

#[test]
fn refuses_san_types_it_does_not_model() {
    let other_name = tlv(
        0xa0,
        &cat(&[&oid(&[0x2b, 6, 1]), &tlv(0xa0, &tlv(0x0c, b"x"))]),
    );
    assert_eq!(
        parse(&Der::new().sans(&[other_name]).build()).unwrap_err(),
        RequestError::UnsupportedSan("otherName")
    );
    // A constructed [2]: not a dNSName DER allows.
    assert_err(
        parse(&Der::new().sans(&[tlv(0xa2, &dns("a"))]).build()),
        |e| matches!(e, RequestError::InvalidSan(_)),
    );
    // An empty GeneralNames.
    assert_err(
        parse(&Der::new().sans(&[]).build()),
        |e| matches!(e, RequestError::InvalidSan(m) if m.contains("no names")),
    );
}

// --- bounds ---

#[test]
fn refuses_more_than_256_sans_of_one_type() {
    let names: Vec<Vec<u8>> = (0..=MAX_SANS_PER_TYPE)
        .map(|i| dns(&format!("h{i}.example.com")))
        .collect();
    assert_err(parse(&Der::new().sans(&names).build()), |e| {
        matches!(
            e,
            RequestError::Limit {
                limit: MAX_SANS_PER_TYPE,
                ..
            }
        )
    });
}

#[test]
fn refuses_strings_longer_than_1_kib() {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, "jane");
    let long = "a".repeat(MAX_STRING_BYTES + 1);
    params
        .subject_alt_names
        .push(SanType::DnsName(long.as_str().try_into().unwrap()));
    let der = params
        .serialize_request(&KeyPair::generate().unwrap())
        .unwrap()
        .der()
        .to_vec();
    assert_err(parse(&der), |e| {
        matches!(
            e,
            RequestError::Limit {
                limit: MAX_STRING_BYTES,
                ..
            }
        )
    });
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
    let cache = RequestCache::default();
    for file in ["jane.csr", "jane-forged.csr", "worker-1-serving.csr"] {
        let bytes = testdata(file);
        let first = cache.parse(&bytes);
        let second = cache.parse(&bytes);
        assert!(
            std::sync::Arc::ptr_eq(&first, &second),
            "{file}: second call is a hit"
        );
        assert_eq!(*first, parse_request(&bytes), "{file}");
    }
    let mut longer = testdata("jane.csr");
    longer.extend_from_slice(b"x");
    assert_eq!(*cache.parse(&longer), Err(RequestError::TrailingPem));
}

mod proptests {
    use super::*;
    use proptest::prelude::*;

    const JANE: &str = include_str!("../../testdata/jane.csr");

    /// A DNS label of letters (either case), digits and hyphens.
    fn label() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?"
    }

    fn dns_name() -> impl Strategy<Value = String> {
        proptest::collection::vec(label(), 1..4).prop_map(|labels| labels.join("."))
    }

    fn ip() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|b| b.to_vec()),
            any::<[u8; 4]>().prop_map(|b| {
                let mut v = vec![0u8; 10];
                v.extend([0xff, 0xff]);
                v.extend(b);
                v
            }),
            any::<[u16; 8]>().prop_map(|g| {
                // Runs of zeros are where spellings differ; make them common.
                g.iter()
                    .flat_map(|x| if x % 3 == 0 { [0, 0] } else { x.to_be_bytes() })
                    .collect()
            }),
        ]
    }

    /// A policy reading both name lists, for the round-trip property.
    fn round_trip_policy() -> crate::CompiledPolicy {
        crate::fixtures::ready(
            "names",
            r#"
signerNames: ["kubernetes.io/kube-apiserver-client"]
validations:
  - name: no-reserved-names
    expression: '!x509.dnsNames.exists(n, n == "kubernetes" || n.startsWith("a"))'
    messageExpression: 'x509.dnsNames.join(",") + " / " + x509.ipAddresses.join(",")'
  - name: private-ips
    expression: 'x509.ipAddresses.all(a, a.startsWith("10.") || a.startsWith("fd"))'
"#,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A request whose SANs are re-encoded from the canonical view (`x509.dnsNames`,
        /// `x509.ipAddresses` parsed back into bytes) reads the same as the original, so a
        /// policy decides both the same: the view loses nothing a decision could depend on
        /// (checked with [`round_trip_policy`] through `decide`).
        #[test]
        fn canonical_sans_round_trip_to_the_same_view(
            names in proptest::collection::vec(dns_name(), 0..4),
            ips in proptest::collection::vec(ip(), 0..4),
        ) {
            prop_assume!(!names.is_empty() || !ips.is_empty());
            let mut sans: Vec<Vec<u8>> = names.iter().map(|n| dns(n)).collect();
            sans.extend(ips.iter().map(|b| tlv(0x87, b)));
            let original = Der::new().sans(&sans).build();
            let first = parse(&original).unwrap();
            let mut again: Vec<Vec<u8>> = first.dns_names.iter().map(|n| dns(n)).collect();
            again.extend(first.ip_addresses.iter().map(|text| {
                match text.parse::<std::net::IpAddr>().unwrap() {
                    std::net::IpAddr::V4(a) => tlv(0x87, &a.octets()),
                    std::net::IpAddr::V6(a) => tlv(0x87, &a.octets()),
                }
            }));
            let reencoded = Der::new().sans(&again).build();
            let second = parse(&reencoded).unwrap();
            prop_assert_eq!(&first.dns_names, &second.dns_names);
            prop_assert_eq!(&first.ip_addresses, &second.ip_addresses);
            // And decided the same by a policy over both lists (a deny-list and an allow-list).
            let decide = |der: &[u8]| {
                let csr = crate::fixtures::CsrBuilder::new().raw_request(pem_of(der).as_bytes()).build();
                crate::fixtures::decide(&[round_trip_policy()], &csr, None)
            };
            let (a, b) = (decide(&original), decide(&reencoded));
            prop_assert_eq!((a.outcome(), a.reason(), a.message()), (b.outcome(), b.reason(), b.message()));
            prop_assert_eq!(
                ParsedRequest { public_key: second.public_key.clone(), ..first },
                second
            );
        }

        /// The parser never panics on arbitrary bytes, as PEM or as DER.
        #[test]
        fn never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_request(&bytes);
            let _ = parse_der(&bytes);
        }

        /// A request with any single byte of its DER changed either fails to parse or
        /// still verifies (the change hit unsigned framing that re-encodes the same); it
        /// never yields a subject other than what was signed.
        #[test]
        fn a_mutated_request_never_parses_into_something_else(index in 0usize..400, xor in 1u8..=255) {
            let mut der = der_of(JANE.as_bytes());
            let i = index % der.len();
            der[i] ^= xor;
            if let Ok(parsed) = parse_der(&der) {
                prop_assert_eq!(parsed.common_name, "jane");
                prop_assert_eq!(parsed.organizations, vec!["dev-team".to_owned()]);
            }
        }
    }
}

/// A mutation fuzzer over the request parser, run by hand for as long as
/// `CSRGATE_FUZZ_SECS` says (default 5 s):
/// `CSRGATE_FUZZ_SECS=600 cargo test -p csrgate-policy --release --lib fuzz -- --ignored`.
///
/// Each round takes a valid request (every `testdata/*.csr`), applies 1 to 8 random edits
/// (byte flips, insertions, deletions, length-octet changes, splices from another request),
/// and parses the result as DER and as PEM. It fails on a panic (the test harness reports
/// it), on a parse taking longer than a second (a hang), or when an edited request is
/// accepted but reads differently from its original. No dependency: a xorshift
/// generator seeded from `CSRGATE_FUZZ_SEED` or the clock, printed so a failure can be rerun.
#[test]
#[ignore = "long-running; run by hand with CSRGATE_FUZZ_SECS"]
fn fuzz_the_request_parser_for_a_while() {
    let seconds: u64 = std::env::var("CSRGATE_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let mut seed: u64 = std::env::var("CSRGATE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| {
                    u64::try_from(d.as_nanos() & 0xffff_ffff_ffff).unwrap_or(1)
                })
        })
        | 1;
    println!("CSRGATE_FUZZ_SEED={seed}");
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let dir = format!("{}/testdata", env!("CARGO_MANIFEST_DIR"));
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "csr") {
            corpus.push(der_of(&std::fs::read(path).unwrap()));
        }
    }
    assert!(!corpus.is_empty());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let (mut rounds, mut accepted, mut changed) = (0u64, 0u64, 0u64);
    while std::time::Instant::now() < deadline {
        let pick = |r: u64, len: usize| usize::try_from(r).unwrap_or(0) % len.max(1);
        let original = &corpus[pick(next(), corpus.len())];
        let mut input = original.clone();
        for _ in 0..=next() % 8 {
            let at = pick(next(), input.len());
            match next() % 6 {
                0 if !input.is_empty() => input[at] ^= u8::try_from(next() & 0xff).unwrap_or(1),
                1 => input.insert(
                    at.min(input.len()),
                    u8::try_from(next() & 0xff).unwrap_or(0),
                ),
                2 if !input.is_empty() => {
                    input.remove(at);
                }
                3 if !input.is_empty() => {
                    // Length octets are where parsers go wrong: nudge one by a little.
                    input[at] = input[at]
                        .wrapping_add(u8::try_from(next() % 3).unwrap_or(0))
                        .wrapping_sub(1);
                }
                4 => {
                    let other = &corpus[pick(next(), corpus.len())];
                    let from = pick(next(), other.len());
                    let len = pick(next(), 64).min(other.len() - from);
                    let at = at.min(input.len());
                    input.splice(at..at, other[from..from + len].iter().copied());
                }
                _ => input.truncate(at),
            }
        }
        let started = std::time::Instant::now();
        if let Ok(parsed) = parse_der(&input) {
            // Only the signed certificationRequestInfo feeds the view, so an edit that still
            // verifies touched unsigned framing and cannot change what the request asks for.
            assert_eq!(
                Ok(parsed),
                parse_der(original),
                "an edited request reads differently: {input:02x?}"
            );
            accepted += 1;
            if input != *original {
                changed += 1;
            }
        }
        let _ = parse_request(pem_of(&input).as_bytes());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "parse took {:?} on {input:02x?}",
            started.elapsed()
        );
        rounds += 1;
    }
    println!(
        "fuzz: {rounds} inputs in {seconds} s, {accepted} accepted as valid requests, {changed} of them differing from their original"
    );
}
