//! Names as TLS matches them: the canonical forms `x509.dnsNames` and `x509.ipAddresses`
//! hold, and the checks that refuse SAN bytes that are not a name.
//!
//! A policy compares strings; a TLS client compares names. Where the two could differ (letter
//! case, IPv6 spellings, IPv4-mapped addresses, bytes a client reads differently), csrgate
//! either shows the name in the one form the client uses or refuses the request, so a policy
//! never approves a name its author did not see.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Which SAN a string came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SanKind {
    /// `dNSName` (`[2] IA5String`).
    Dns,
    /// `rfc822Name` (`[1] IA5String`).
    Email,
    /// `uniformResourceIdentifier` (`[6] IA5String`).
    Uri,
}

impl SanKind {
    /// The ASN.1 name of the GeneralName alternative (RFC 5280 §4.2.1.6).
    pub(crate) fn name(self) -> &'static str {
        match self {
            SanKind::Dns => "dNSName",
            SanKind::Email => "rfc822Name",
            SanKind::Uri => "uniformResourceIdentifier",
        }
    }
}

/// Checks that a dNSName, rfc822Name or URI SAN is a name: IA5String (RFC 5280 §4.2.1.6
/// types all three as IA5String, i.e. ASCII), and without control characters, NUL, spaces or
/// DEL, which no host name, mailbox or URI contains (RFC 1034 §3.5, RFC 5321 §4.1.2, RFC 3986
/// §2) and which clients print, log and compare differently.
///
/// Go's `parseSANExtension` (crypto/x509/parser.go), which kube-apiserver uses at create,
/// refuses non-ASCII bytes in the three; csrgate refuses the rest too, failing closed.
///
/// # Errors
/// A message naming the first offending byte and its position.
pub(crate) fn check_ia5_name(kind: SanKind, bytes: &[u8]) -> Result<&str, String> {
    if bytes.is_empty() {
        return Err(format!("{} is empty", kind.name()));
    }
    // The name as an auditor can read it: bytes escaped, at most 128 characters.
    let shown = {
        let escaped = bytes.escape_ascii().to_string();
        match escaped.char_indices().nth(128) {
            Some((cut, _)) => format!("\"{}\"...", &escaped[..cut]),
            None => format!("\"{escaped}\""),
        }
    };
    if let Some((i, &b)) = bytes.iter().enumerate().find(|(_, b)| !b.is_ascii()) {
        return Err(format!(
            "{} {shown} has non-ASCII byte {b:#04x} at offset {i}: not an IA5String (an internationalized name must be written in its xn-- A-label form)",
            kind.name()
        ));
    }
    if let Some((i, &b)) = bytes
        .iter()
        .enumerate()
        .find(|(_, b)| b.is_ascii_control() || **b == b' ')
    {
        let what = match b {
            0 => "NUL".to_owned(),
            b' ' => "a space".to_owned(),
            0x7f => "DEL".to_owned(),
            other => format!("control character {other:#04x}"),
        };
        return Err(format!("{} {shown} has {what} at offset {i}", kind.name()));
    }
    // All ASCII, so this cannot fail; map the impossible case to the same refusal anyway.
    std::str::from_utf8(bytes).map_err(|_| format!("{} is not ASCII", kind.name()))
}

/// The canonical form of a dNSName, as `x509.dnsNames` shows it: ASCII lower case.
///
/// Go's host matching (`matchHostnames` in crypto/x509/verify.go) lower-cases both the
/// certificate's name and the host before comparing, so `KUBERNETES.default.svc` is the API
/// server's name to every Go client; a policy must see it as `kubernetes.default.svc`.
///
/// # Errors
/// Refused, as an invalid request, rather than shown: an empty label (`a..b`, `.a`) and a
/// trailing dot (`example.com.`). Go removes a trailing dot from the *host* it verifies but
/// not from the certificate's name, whose empty last label then never matches; other clients
/// strip the dot from both and match. Shown as-is, `kubernetes.default.svc.` would slip past
/// a policy denying `kubernetes.default.svc` yet authenticate as it to those clients; shown
/// without the dot, the policy would approve a name Go clients never accept. No valid
/// request needs either form, so csrgate refuses both.
pub(crate) fn canonical_dns_name(name: &str) -> Result<String, String> {
    if name.ends_with('.') {
        return Err(format!(
            "dNSName {name:?} ends with a dot: write the name without it"
        ));
    }
    if name.split('.').any(str::is_empty) {
        return Err(format!("dNSName {name:?} has an empty label"));
    }
    Ok(name.to_ascii_lowercase())
}

/// Checks a URI SAN as Go's `parseSANExtension` does before it accepts one: it must parse as
/// a URI (`url.Parse`: valid `%` escapes, a bracketed IPv6 literal, a numeric port), and a
/// host, when present, must be a valid domain
/// (`domainNameValid`: no empty label, no trailing dot). csrgate also requires a scheme
/// (RFC 3986 §3: a URI, unlike a relative reference, has one; RFC 5280 §4.2.1.6 says the name
/// MUST NOT be a relative URI). The text is kept as written: URI paths are case-sensitive.
pub(crate) fn check_uri(uri: &str) -> Result<(), String> {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err(format!("URI {uri:?} has no scheme"));
    };
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err(format!("URI {uri:?} has an invalid scheme"));
    }
    let bytes = uri.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%' {
            let ok = bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return Err(format!("URI {uri:?} has an invalid % escape"));
            }
        }
    }
    if let Some(after) = rest.strip_prefix("//") {
        let authority = after.split(['/', '?', '#']).next().unwrap_or_default();
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        // url.Parse: an IP literal is bracketed, and a port is digits.
        let (host, port) = if let Some(literal) = host_port.strip_prefix('[') {
            let Some((address, rest)) = literal.split_once(']') else {
                return Err(format!("URI {uri:?} has an unclosed IP literal"));
            };
            if address.parse::<Ipv6Addr>().is_err() {
                return Err(format!("URI {uri:?} has an invalid IP literal"));
            }
            match rest.strip_prefix(':') {
                Some(port) => ("", port),
                None if rest.is_empty() => ("", ""),
                None => return Err(format!("URI {uri:?} has bytes after its IP literal")),
            }
        } else {
            host_port.split_once(':').unwrap_or((host_port, ""))
        };
        if !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("URI {uri:?} has an invalid port {port:?}"));
        }
        if !host.is_empty() && (host.ends_with('.') || host.split('.').any(str::is_empty)) {
            return Err(format!("URI {uri:?} has an invalid host {host:?}"));
        }
    }
    Ok(())
}

/// The canonical text of a SAN IP address, as `x509.ipAddresses` shows it: Go's
/// `net.IP.String()` (net/ip.go), which is what Go clients match and print.
///
/// - 4 bytes: dotted decimal, `10.0.0.1`.
/// - 16 bytes of an IPv4-mapped address (`::ffff:a.b.c.d`): the IPv4 address, `10.96.0.1`.
///   Go's `net.IP.Equal` treats both as one address, so a certificate for
///   `::ffff:10.96.0.1` is a certificate for `10.96.0.1`; a policy must see it so.
/// - other 16 bytes: RFC 5952 text: lower-case hex, no leading zeros, the longest run of two
///   or more zero groups (the first, on a tie) written `::`.
///
/// # Errors
/// Any other length: 8 or 32 bytes are a name-constraint address and mask (RFC 5280
/// §4.2.1.10), not a SAN; Go refuses them too.
pub(crate) fn canonical_ip(bytes: &[u8]) -> Result<String, String> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Ok(Ipv4Addr::from(v4).to_string());
    }
    let Ok(v6) = <[u8; 16]>::try_from(bytes) else {
        return Err(format!(
            "iPAddress of {} bytes (an address is 4 or 16 bytes)",
            bytes.len()
        ));
    };
    let address = Ipv6Addr::from(v6);
    if let Some(v4) = address.to_ipv4_mapped() {
        return Ok(v4.to_string());
    }
    Ok(rfc5952(&address.segments()))
}

/// RFC 5952 §4 text of eight 16-bit groups, written here rather than taken from `Display`
/// for `Ipv6Addr` so the form is pinned to Go's and cannot change with the standard library.
fn rfc5952(groups: &[u16; 8]) -> String {
    // Longest run of zero groups, the first on a tie; a single zero group is not shortened.
    let (mut best_start, mut best_len) = (0usize, 0usize);
    let mut i = 0;
    while i < groups.len() {
        if groups[i] == 0 {
            let start = i;
            while i < groups.len() && groups[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                (best_start, best_len) = (start, i - start);
            }
        } else {
            i += 1;
        }
    }
    let hex = |g: &[u16]| {
        g.iter()
            .map(|x| format!("{x:x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    if best_len < 2 {
        return hex(groups);
    }
    format!(
        "{}::{}",
        hex(&groups[..best_start]),
        hex(&groups[best_start + best_len..])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(text: &str) -> Vec<u8> {
        text.parse::<Ipv6Addr>().unwrap().octets().to_vec()
    }

    #[test]
    fn ip_text_is_gos_net_ip_string() {
        // Expected values are what Go's net.IP.String() prints for these addresses.
        for (input, go) in [
            ("fd00:10:0:0:0:0:0:b", "fd00:10::b"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
            ("0:0:0:0:0:0:0:0", "::"),
            ("0:0:0:0:0:0:0:1", "::1"),
            ("1:0:0:0:0:0:0:0", "1::"),
            ("FD00::B", "fd00::b"),
            ("::ffff:10.96.0.1", "10.96.0.1"),
            ("::10.96.0.1", "::a60:1"),
            ("64:ff9b::10.0.0.1", "64:ff9b::a00:1"),
        ] {
            assert_eq!(canonical_ip(&v6(input)).unwrap(), go, "{input}");
        }
        assert_eq!(canonical_ip(&[10, 0, 0, 1]).unwrap(), "10.0.0.1");
        assert!(canonical_ip(&[10, 0, 0, 1, 255, 255, 255, 0]).is_err());
        assert!(canonical_ip(&[]).is_err());
    }

    #[test]
    fn dns_names_are_lower_cased_and_refused_with_a_trailing_dot_or_empty_label() {
        assert_eq!(
            canonical_dns_name("KUBERNETES.default.SVC").unwrap(),
            "kubernetes.default.svc"
        );
        assert_eq!(
            canonical_dns_name("*.Example.com").unwrap(),
            "*.example.com"
        );
        assert!(canonical_dns_name("kubernetes.default.svc.").is_err());
        assert!(canonical_dns_name("a..b").is_err());
        assert!(canonical_dns_name(".a").is_err());
    }

    #[test]
    fn ia5_names_refuse_non_ascii_controls_nul_and_spaces() {
        assert!(check_ia5_name(SanKind::Dns, "bücher.example".as_bytes()).is_err());
        for bad in [&b"a\0b"[..], b"a b", b"a\nb", b"a\x7fb", b""] {
            let e = check_ia5_name(SanKind::Uri, bad).unwrap_err();
            assert!(e.starts_with("uniformResourceIdentifier"), "{e}");
        }
        assert_eq!(
            check_ia5_name(SanKind::Email, b"jane@example.com").unwrap(),
            "jane@example.com"
        );
    }

    #[test]
    fn uris_need_a_scheme_valid_escapes_and_a_valid_host() {
        assert!(check_uri("spiffe://cluster.local/ns/a/sa/b").is_ok());
        assert!(check_uri("urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66").is_ok());
        assert!(check_uri("https://[fd00::1]:443/x").is_ok());
        assert!(check_uri("cluster.local/x").is_err());
        assert!(check_uri("spiffe://cluster.local./x").is_err());
        assert!(check_uri("spiffe://a..b/x").is_err());
        assert!(check_uri("https://a/%zz").is_err());
        assert!(check_uri("1http://a").is_err());
        assert!(check_uri("https://a:8443/x").is_ok());
        assert!(check_uri("https://a:port/x").is_err());
        assert!(check_uri("https://[fd00::1/x").is_err());
        assert!(check_uri("https://[nope]/x").is_err());
        assert!(check_uri("https://[fd00::1]x/").is_err());
    }
}
