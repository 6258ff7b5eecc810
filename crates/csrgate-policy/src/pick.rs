//! Converting only the fields policies read into CEL values, not whole objects.
//!
//! Why: turning a whole CSR into a CEL value serializes every field (the base64 request
//! included) and converting that value into the interpreter's own form copies it all again,
//! which cost more than evaluating ten policies. Policies read a handful of field paths
//! (`object.spec.username`, `x509.dnsNames`), so [`pick`] runs the type's own `Serialize`,
//! descends only into the fields on a wanted path, and converts the value at the end of each
//! path exactly as `cel::to_value` would; everything else is skipped without being
//! converted. A path gets the value that looking it up in the full conversion gives, or
//! nothing when that lookup finds nothing.
//!
//! A shape this cannot reproduce exactly (an enum variant, which the full conversion turns
//! into a map, or a map key that is not a string) is an error, and the caller then converts
//! the whole object as before.

use std::sync::Arc;

use kube::core::cel::cel::objects::Key;
use kube::core::cel::cel::{self, SerializationError, Value};
use serde::ser::{self, Impossible, Serialize};

/// The field paths wanted below one value, each with the slot its value goes to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Want {
    /// The slot for this value itself, when a path ends here.
    slot: Option<usize>,
    /// Longer paths, by their next field name.
    fields: Vec<(String, Want)>,
}

impl Want {
    /// Adds a dotted path (relative to this value) whose value goes to `slot`.
    pub(crate) fn add<'p>(&mut self, mut segments: impl Iterator<Item = &'p str>, slot: usize) {
        let Some(segment) = segments.next() else {
            self.slot = Some(slot);
            return;
        };
        let position = self.fields.iter().position(|(name, _)| name == segment);
        let index = position.unwrap_or_else(|| {
            self.fields.push((segment.to_owned(), Want::default()));
            self.fields.len() - 1
        });
        self.fields[index].1.add(segments, slot);
    }

    /// Fills the slots of this value and the paths below it from its converted form.
    fn fill_from(&self, value: &Value, out: &mut [Option<Value>]) {
        if let Some(slot) = self.slot {
            out[slot] = Some(value.clone());
        }
        let Value::Map(map) = value else {
            return;
        };
        for (name, want) in &self.fields {
            if let Some(field) = map.map.get(&Key::String(Arc::new(name.clone()))) {
                want.fill_from(field, out);
            }
        }
    }
}

/// Converts the wanted paths of `value` into `out` (one slot per path): a slot gets what
/// looking its path up in `cel::to_value(value)` gives, or stays `None` when that lookup finds
/// nothing.
///
/// # Errors
/// Serializing a wanted part failed, or the value has a shape this cannot reproduce exactly;
/// convert the whole value instead.
pub(crate) fn pick<T: Serialize + ?Sized>(
    value: &T,
    want: &Want,
    out: &mut [Option<Value>],
) -> Result<(), SerializationError> {
    if want.slot.is_some() {
        // The value is wanted whole: convert it, and read longer paths from it.
        want.fill_from(&cel::to_value(value)?, out);
        return Ok(());
    }
    if want.fields.is_empty() {
        return Ok(());
    }
    value.serialize(Pick { want, out })
}

/// Fills every slot of `want` from the full conversion of a value.
pub(crate) fn fill_from(want: &Want, value: &Value, out: &mut [Option<Value>]) {
    want.fill_from(value, out);
}

fn unsupported() -> SerializationError {
    ser::Error::custom("shape not supported when picking fields")
}

/// A serializer that descends into the wanted fields of the maps and structs it is given.
///
/// A path lookup finds nothing below a value that is not a map, so such values fill no slot.
struct Pick<'w, 'o> {
    want: &'w Want,
    out: &'o mut [Option<Value>],
}

impl<'w, 'o> ser::Serializer for Pick<'w, 'o> {
    type Ok = ();
    type Error = SerializationError;
    type SerializeSeq = Skip;
    type SerializeTuple = Skip;
    type SerializeTupleStruct = Skip;
    type SerializeTupleVariant = Impossible<(), SerializationError>;
    type SerializeMap = PickMap<'w, 'o>;
    type SerializeStruct = PickMap<'w, 'o>;
    type SerializeStructVariant = Impossible<(), SerializationError>;

    fn serialize_bool(self, _: bool) -> Result<(), SerializationError> {
        Ok(())
    }
    fn serialize_i8(self, _: i8) -> Result<(), SerializationError> {
        Ok(())
    }
    fn serialize_i16(self, _: i16) -> Result<(), SerializationError> {
        Ok(())
    }
    fn serialize_i32(self, _: i32) -> Result<(), SerializationError> {
        Ok(())
    }
    fn serialize_i64(self, _: i64) -> Result<(), SerializationError> {
        Ok(())
    }
    fn serialize_u8(self, _: u8) -> Result<(), SerializationError> {
        Ok(())
    }
    fn serialize_u16(self, _: u16) -> Result<(), SerializationError> {
        Ok(())
    }
    fn serialize_u32(self, _: u32) -> Result<(), SerializationError> {
        Ok(())
    }
    fn serialize_u64(self, _: u64) -> Result<(), SerializationError> {
        Ok(())
    }
    fn serialize_f32(self, _: f32) -> Result<(), SerializationError> {
        Ok(())
    }
    fn serialize_f64(self, _: f64) -> Result<(), SerializationError> {
        Ok(())
    }
    fn serialize_char(self, _: char) -> Result<(), SerializationError> {
        Ok(())
    }
    fn serialize_str(self, _: &str) -> Result<(), SerializationError> {
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), SerializationError> {
        Ok(())
    }
    fn serialize_none(self) -> Result<(), SerializationError> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), SerializationError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), SerializationError> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), SerializationError> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), SerializationError> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), SerializationError> {
        // cel's own duration and timestamp wrappers become scalars, never maps.
        if name.starts_with("$__cel_private_") {
            return Ok(());
        }
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), SerializationError> {
        Err(unsupported())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Skip, SerializationError> {
        Ok(Skip)
    }
    fn serialize_tuple(self, _: usize) -> Result<Skip, SerializationError> {
        Ok(Skip)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Skip, SerializationError> {
        Ok(Skip)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, SerializationError> {
        Err(unsupported())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<PickMap<'w, 'o>, SerializationError> {
        Ok(PickMap::new(self))
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<PickMap<'w, 'o>, SerializationError> {
        Ok(PickMap::new(self))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, SerializationError> {
        Err(unsupported())
    }
}

/// A sequence no path looks into: its elements are not converted.
struct Skip;

impl ser::SerializeSeq for Skip {
    type Ok = ();
    type Error = SerializationError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, _: &T) -> Result<(), Self::Error> {
        Ok(())
    }
    fn end(self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl ser::SerializeTuple for Skip {
    type Ok = ();
    type Error = SerializationError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, _: &T) -> Result<(), Self::Error> {
        Ok(())
    }
    fn end(self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Skip {
    type Ok = ();
    type Error = SerializationError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &T) -> Result<(), Self::Error> {
        Ok(())
    }
    fn end(self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// A map or struct whose wanted entries are picked.
struct PickMap<'w, 'o> {
    want: &'w Want,
    out: &'o mut [Option<Value>],
    /// What is wanted of the entry whose key was just given, if anything.
    next: Option<&'w Want>,
}

impl<'w, 'o> PickMap<'w, 'o> {
    fn new(pick: Pick<'w, 'o>) -> Self {
        Self {
            want: pick.want,
            out: pick.out,
            next: None,
        }
    }

    fn wanted(&self, key: &str) -> Option<&'w Want> {
        self.want
            .fields
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, want)| want)
    }
}

impl ser::SerializeMap for PickMap<'_, '_> {
    type Ok = ();
    type Error = SerializationError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Self::Error> {
        // Only string keys can be reached by a path; any other key is a shape the full
        // conversion may treat differently (or refuse), so let it decide.
        let Value::String(key) = cel::to_value(key)? else {
            return Err(unsupported());
        };
        self.next = self.wanted(&key);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        if let Some(want) = self.next.take() {
            pick(value, want, self.out)?;
        }
        Ok(())
    }

    fn end(self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl ser::SerializeStruct for PickMap<'_, '_> {
    type Ok = ();
    type Error = SerializationError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Self::Error> {
        if let Some(want) = self.wanted(key) {
            pick(value, want, self.out)?;
        }
        Ok(())
    }

    fn end(self) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{CsrBuilder, node, testdata};

    fn want(paths: &[&str]) -> Want {
        let mut want = Want::default();
        for (slot, path) in paths.iter().enumerate() {
            want.add(path.split('.'), slot);
        }
        want
    }

    fn select<'v>(mut value: &'v Value, path: &str) -> Option<&'v Value> {
        for segment in path.split('.') {
            let Value::Map(map) = value else {
                return None;
            };
            value = map.map.get(&Key::String(Arc::new(segment.to_owned())))?;
        }
        Some(value)
    }

    fn same_as_full<T: Serialize>(value: &T, paths: &[&str]) {
        let full = cel::to_value(value).unwrap();
        let mut out = vec![None; paths.len()];
        pick(value, &want(paths), &mut out).unwrap();
        for (path, picked) in paths.iter().zip(&out) {
            assert_eq!(picked.as_ref(), select(&full, path), "{path}");
        }
    }

    #[test]
    fn picked_paths_read_as_in_the_full_value_and_absent_ones_stay_absent() {
        let csr = CsrBuilder::new().expiration(None).build();
        same_as_full(
            &csr,
            &[
                "spec.username",
                "spec.groups",
                "spec.expirationSeconds",
                "spec.usages",
                "spec.request",
                "spec.nope",
                "spec.username.deeper",
                "metadata",
                "metadata.name",
                "metadata.labels",
                "apiVersion",
                "kind",
                "status",
            ],
        );
        let worker = node(
            "worker-1",
            &[("InternalIP", "10.0.0.11"), ("Hostname", "worker-1")],
        );
        same_as_full(
            &worker,
            &[
                "status",
                "status.addresses",
                "metadata.name",
                "metadata.labels",
                "spec",
            ],
        );
        let request = crate::parse_request(&testdata("worker-1-serving.csr")).unwrap();
        same_as_full(
            &request,
            &[
                "commonName",
                "dnsNames",
                "ipAddresses",
                "publicKey.size",
                "publicKey.curve",
                "publicKey",
                "extensions",
            ],
        );
    }

    #[test]
    fn enum_variants_are_left_to_the_full_conversion() {
        #[derive(serde::Serialize)]
        enum Shape {
            Circle { radius: i64 },
        }
        #[derive(serde::Serialize)]
        struct Holder {
            shape: Shape,
        }
        let holder = Holder {
            shape: Shape::Circle { radius: 1 },
        };
        let mut out = vec![None; 1];
        assert!(pick(&holder, &want(&["shape.Circle"]), &mut out).is_err());
        assert!(pick(&holder, &want(&["shape"]), &mut out).is_ok());
    }
}
