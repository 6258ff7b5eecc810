//! A strict DER reader: the only way request bytes are read, so that every request csrgate
//! accepts has exactly one meaning.
//!
//! BER allows many encodings of one value (long-form lengths for short values, indefinite
//! lengths, constructed strings, padded integers and OID arcs); two parsers may then disagree
//! on what a request says. DER (X.690 §10) allows one, and RFC 2986 §4 requires requests to be
//! DER-encoded before signing. This reader refuses everything else: it is at least as strict
//! as Go's `encoding/asn1` and `cryptobyte`, which kube-apiserver reads requests with.

use std::fmt;

/// Universal tag numbers (X.680 §8.6) with the constructed bit where DER requires it.
pub(crate) mod tag {
    /// BOOLEAN.
    pub(crate) const BOOLEAN: u8 = 0x01;
    /// INTEGER.
    pub(crate) const INTEGER: u8 = 0x02;
    /// BIT STRING (primitive: X.690 §10.2 forbids the constructed form).
    pub(crate) const BIT_STRING: u8 = 0x03;
    /// OCTET STRING (primitive).
    pub(crate) const OCTET_STRING: u8 = 0x04;
    /// NULL.
    pub(crate) const NULL: u8 = 0x05;
    /// OBJECT IDENTIFIER.
    pub(crate) const OID: u8 = 0x06;
    /// UTF8String.
    pub(crate) const UTF8_STRING: u8 = 0x0c;
    /// NumericString.
    pub(crate) const NUMERIC_STRING: u8 = 0x12;
    /// PrintableString.
    pub(crate) const PRINTABLE_STRING: u8 = 0x13;
    /// TeletexString (T61String).
    pub(crate) const TELETEX_STRING: u8 = 0x14;
    /// IA5String.
    pub(crate) const IA5_STRING: u8 = 0x16;
    /// UniversalString.
    pub(crate) const UNIVERSAL_STRING: u8 = 0x1c;
    /// BMPString.
    pub(crate) const BMP_STRING: u8 = 0x1e;
    /// SEQUENCE, SEQUENCE OF.
    pub(crate) const SEQUENCE: u8 = 0x30;
    /// SET, SET OF.
    pub(crate) const SET: u8 = 0x31;
}

/// What was not DER, with where it was found (the caller adds which field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DerError(pub(crate) String);

impl fmt::Display for DerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) type Result<T> = std::result::Result<T, DerError>;

fn err<T>(message: impl Into<String>) -> Result<T> {
    Err(DerError(message.into()))
}

/// One element: its tag octet, its contents and its whole encoding (tag, length, contents),
/// which signatures are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Element<'a> {
    /// The identifier octet.
    pub(crate) tag: u8,
    /// The contents octets.
    pub(crate) contents: &'a [u8],
    /// Tag, length and contents.
    pub(crate) encoding: &'a [u8],
}

/// Reads DER elements one after another from a byte slice.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// Whether every byte has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The tag of the next element, if any.
    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Fails unless every byte has been read: X.690 §8.1.1 has no room for trailing octets
    /// inside a SEQUENCE or SET, and a parser that skips them reads a different value.
    pub(crate) fn finish(&self, what: &str) -> Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            err(format!("{} unexpected bytes after {what}", self.rest.len()))
        }
    }

    /// Reads the next element, whatever its tag.
    ///
    /// Refused (X.690 §8.1.2–§8.1.3, §10.1): high tag numbers (no field of a request uses
    /// one), the indefinite length, long-form lengths for values under 128 bytes, lengths
    /// with leading zero octets, and lengths past the end of the input.
    pub(crate) fn read_any(&mut self) -> Result<Element<'a>> {
        let input = self.rest;
        let (&tag, after_tag) = input
            .split_first()
            .ok_or_else(|| DerError("missing element: input ends".into()))?;
        if tag & 0x1f == 0x1f {
            return err(format!(
                "tag {tag:#04x}: multi-byte tag numbers are not used"
            ));
        }
        let (&first, mut after_length) = after_tag
            .split_first()
            .ok_or_else(|| DerError("input ends inside a length".into()))?;
        let length = if first < 0x80 {
            usize::from(first)
        } else if first == 0x80 {
            return err("indefinite length (BER, not DER)");
        } else {
            let count = usize::from(first & 0x7f);
            if count > 4 {
                return err(format!("length of {count} octets"));
            }
            if after_length.len() < count {
                return err("input ends inside a length");
            }
            let (octets, rest) = after_length.split_at(count);
            if octets.first() == Some(&0) {
                return err("length with a leading zero octet (not DER)");
            }
            let length = octets
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            if length < 0x80 {
                return err(format!("long-form length for {length} bytes (not DER)"));
            }
            after_length = rest;
            length
        };
        if after_length.len() < length {
            return err(format!(
                "element of {length} bytes, but only {} remain",
                after_length.len()
            ));
        }
        let (contents, rest) = after_length.split_at(length);
        let header = input.len() - after_length.len();
        let encoding = &input[..header + length];
        self.rest = rest;
        Ok(Element {
            tag,
            contents,
            encoding,
        })
    }

    /// Reads the next element, which must carry `expected`.
    pub(crate) fn read(&mut self, expected: u8, what: &str) -> Result<Element<'a>> {
        match self.peek_tag() {
            Some(tag) if tag == expected => self.read_any(),
            Some(tag) => err(format!(
                "{what}: expected tag {expected:#04x}, found {tag:#04x}"
            )),
            None => err(format!("{what}: missing")),
        }
    }

    /// Reads a constructed element with tag `expected` and returns a reader over its contents.
    pub(crate) fn read_nested(&mut self, expected: u8, what: &str) -> Result<Reader<'a>> {
        Ok(Reader::new(self.read(expected, what)?.contents))
    }

    /// Reads an OBJECT IDENTIFIER.
    pub(crate) fn read_oid(&mut self, what: &str) -> Result<Oid<'a>> {
        let element = self.read(tag::OID, what)?;
        Oid::from_contents(element.contents).map_err(|e| DerError(format!("{what}: {e}")))
    }

    /// Reads an INTEGER's contents after checking the minimal encoding X.690 §8.3.2 requires.
    pub(crate) fn read_integer(&mut self, what: &str) -> Result<&'a [u8]> {
        let element = self.read(tag::INTEGER, what)?;
        check_integer(element.contents).map_err(|e| DerError(format!("{what}: {e}")))?;
        Ok(element.contents)
    }

    /// Reads a BOOLEAN; DER encodes TRUE as 0xFF only (X.690 §11.1).
    pub(crate) fn read_boolean(&mut self, what: &str) -> Result<bool> {
        let element = self.read(tag::BOOLEAN, what)?;
        match element.contents {
            [0x00] => Ok(false),
            [0xff] => Ok(true),
            other => err(format!("{what}: BOOLEAN encoded as {other:02x?} (not DER)")),
        }
    }

    /// Reads a BIT STRING whose length is a whole number of octets (keys and signatures are),
    /// returning its octets.
    pub(crate) fn read_octet_aligned_bits(&mut self, what: &str) -> Result<&'a [u8]> {
        let element = self.read(tag::BIT_STRING, what)?;
        match element.contents.split_first() {
            Some((0, bits)) => Ok(bits),
            Some((unused, _)) => err(format!(
                "{what}: BIT STRING with {unused} unused bits, not whole octets"
            )),
            None => err(format!("{what}: empty BIT STRING encoding")),
        }
    }
}

/// Checks an INTEGER's contents: present, and without a redundant leading octet.
pub(crate) fn check_integer(contents: &[u8]) -> std::result::Result<(), String> {
    match contents {
        [] => Err("empty INTEGER".into()),
        [0x00, next, ..] if next & 0x80 == 0 => {
            Err("INTEGER with a redundant leading zero octet (not DER)".into())
        }
        [0xff, next, ..] if next & 0x80 != 0 => {
            Err("INTEGER with a redundant leading 0xff octet (not DER)".into())
        }
        _ => Ok(()),
    }
}

/// The small non-negative INTEGER in `contents`, if it fits a `u64`.
pub(crate) fn small_unsigned(contents: &[u8]) -> Option<u64> {
    if contents.first().is_some_and(|b| b & 0x80 != 0) {
        return None;
    }
    let digits = match contents {
        [0x00, rest @ ..] => rest,
        all => all,
    };
    if digits.len() > 8 {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
    )
}

/// An OBJECT IDENTIFIER as its DER contents, known to be minimally encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Oid<'a>(&'a [u8]);

impl<'a> Oid<'a> {
    /// Checks X.690 §8.19: at least one subidentifier, each minimally encoded (no leading
    /// 0x80 octet) and complete (the last octet has its high bit clear). Go's encoding/asn1
    /// refuses the same; a non-minimal arc would let two byte strings name one OID.
    pub(crate) fn from_contents(contents: &'a [u8]) -> std::result::Result<Self, String> {
        if contents.is_empty() {
            return Err("empty OBJECT IDENTIFIER".into());
        }
        if contents.last().is_some_and(|b| b & 0x80 != 0) {
            return Err("OBJECT IDENTIFIER ends inside a subidentifier".into());
        }
        let mut start = true;
        let mut arc_octets = 0usize;
        for &b in contents {
            if start && b == 0x80 {
                return Err("OBJECT IDENTIFIER with a non-minimal subidentifier (not DER)".into());
            }
            arc_octets += 1;
            // Arcs past 63 bits are refused rather than printed wrongly.
            if arc_octets > 9 {
                return Err("OBJECT IDENTIFIER subidentifier too large".into());
            }
            start = b & 0x80 == 0;
            if start {
                arc_octets = 0;
            }
        }
        Ok(Self(contents))
    }

    /// The DER contents.
    pub(crate) fn contents(&self) -> &'a [u8] {
        self.0
    }

    /// Whether this is the OID whose contents are `der`.
    pub(crate) fn is(&self, der: &[u8]) -> bool {
        self.0 == der
    }
}

impl fmt::Display for Oid<'_> {
    /// Dotted decimal, e.g. `2.5.29.17`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut value: u64 = 0;
        let mut first = true;
        for &b in self.0 {
            value = (value << 7) | u64::from(b & 0x7f);
            if b & 0x80 == 0 {
                if first {
                    // X.690 §8.19.4: the first subidentifier packs the first two arcs.
                    let (a, b) = match value {
                        0..=39 => (0, value),
                        40..=79 => (1, value - 40),
                        _ => (2, value - 80),
                    };
                    write!(f, "{a}.{b}")?;
                    first = false;
                } else {
                    write!(f, ".{value}")?;
                }
                value = 0;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths() {
        let mut r = Reader::new(&[0x04, 0x01, 0xaa]);
        assert_eq!(r.read_any().unwrap().contents, [0xaa]);
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend(std::iter::repeat_n(0u8, 0x80));
        assert_eq!(Reader::new(&long).read_any().unwrap().contents.len(), 0x80);
    }

    #[test]
    fn refuses_non_minimal_and_indefinite_lengths() {
        assert!(Reader::new(&[0x04, 0x81, 0x01, 0xaa]).read_any().is_err());
        assert!(Reader::new(&[0x04, 0x82, 0x00, 0x81]).read_any().is_err());
        assert!(Reader::new(&[0x30, 0x80, 0x00, 0x00]).read_any().is_err());
        assert!(Reader::new(&[0x04, 0x05, 0x00]).read_any().is_err());
        assert!(Reader::new(&[0x1f, 0x81, 0x00]).read_any().is_err());
    }

    #[test]
    fn refuses_non_minimal_integers_and_booleans() {
        assert!(check_integer(&[0x00, 0x01]).is_err());
        assert!(check_integer(&[0xff, 0x80]).is_err());
        assert!(check_integer(&[]).is_err());
        assert!(check_integer(&[0x00, 0x80]).is_ok());
        assert!(Reader::new(&[0x01, 0x01, 0x01]).read_boolean("b").is_err());
        assert!(Reader::new(&[0x01, 0x01, 0xff]).read_boolean("b").unwrap());
    }

    #[test]
    fn prints_and_checks_oids() {
        let san = Oid::from_contents(&[0x55, 0x1d, 0x11]).unwrap();
        assert_eq!(san.to_string(), "2.5.29.17");
        let rsa =
            Oid::from_contents(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]).unwrap();
        assert_eq!(rsa.to_string(), "1.2.840.113549.1.1.1");
        assert!(Oid::from_contents(&[0x55, 0x80, 0x1d]).is_err());
        assert!(Oid::from_contents(&[0x55, 0x9d]).is_err());
        assert!(Oid::from_contents(&[]).is_err());
    }
}
