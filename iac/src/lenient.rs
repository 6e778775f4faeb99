//! Allow-listed attribute values that are read without ever failing on their shape.
//!
//! Attributes are provider-defined and change between provider versions (the AWS provider's
//! autoscaling group went from a `tags` list of string maps to a `tag` set of objects; the AWS
//! provider 6 stores `user_data` in clear text). One odd attribute must not make a whole state
//! unreadable, and the JSON reader cannot recover from an error in the middle of a value. So
//! every allow-listed attribute is a [`Field`]: its visitor accepts any JSON value, keeps the
//! shapes it expects, and skips anything else (with [`IgnoredAny`], so nothing is copied) as
//! [`Field::Unexpected`], which the conversion turns into a warning naming the attribute — never
//! its value.
//!
//! Nested blocks (Terraform stores `launch_template { … }` as a list of objects) are structs whose
//! fields are all `Field`s, so deserializing one cannot fail either; [`lenient_block!`] makes
//! them usable as a `Field`. Their unknown keys are skipped by serde's derive, also through
//! `IgnoredAny`.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::Tags;

/// One allow-listed attribute as found in the input.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) enum Field<T> {
    /// Missing, `null`, or (for most strings) empty.
    #[default]
    Absent,
    Value(T),
    /// Present with a shape the parser does not understand; says which JSON kind it was.
    Unexpected(&'static str),
}

/// A list block: Terraform stores nested blocks as JSON arrays of objects.
pub(crate) type List<T> = Field<Vec<Field<T>>>;

/// How one Rust type is read from each JSON kind. Every method defaults to "unexpected".
pub(crate) trait FieldValue: Sized {
    fn from_str(_: &str) -> Field<Self> {
        Field::Unexpected("a string")
    }
    fn from_u64(_: u64) -> Field<Self> {
        Field::Unexpected("a number")
    }
    fn from_i64(_: i64) -> Field<Self> {
        Field::Unexpected("a negative number")
    }
    fn from_f64(_: f64) -> Field<Self> {
        Field::Unexpected("a fractional number")
    }
    fn from_bool(_: bool) -> Field<Self> {
        Field::Unexpected("a boolean")
    }
    fn from_map<'de, A: MapAccess<'de>>(map: A) -> Result<Field<Self>, A::Error> {
        Ok(Field::Unexpected(drain_object(map)?))
    }
    fn from_seq<'de, A: SeqAccess<'de>>(seq: A) -> Result<Field<Self>, A::Error> {
        drain_seq(seq)?;
        Ok(Field::Unexpected("an array"))
    }
}

/// The key Pulumi marks a secret value with, wherever one appears in a stack export:
/// `{"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "ciphertext": …}`
/// (or `"plaintext"` under `--show-secrets`). Such an object is never read as a value.
pub(crate) const PULUMI_SECRET_SIG: &str = "4dabf18193072939515e22adb298388d";

/// What an unexpected object is called when it is a Pulumi secret (warnings say so).
const A_SECRET: &str = "a value marked secret";

/// Skips an object where a value of another kind was expected, saying what it was: an object,
/// or a Pulumi secret. Only the keys are looked at.
fn drain_object<'de, A: MapAccess<'de>>(mut map: A) -> Result<&'static str, A::Error> {
    let mut kind = "an object";
    while let Some(key) = map.next_key::<String>()? {
        if key == PULUMI_SECRET_SIG {
            kind = A_SECRET;
        }
        map.next_value::<IgnoredAny>()?;
    }
    Ok(kind)
}

/// Skips the rest of an object without materializing any of it.
pub(crate) fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Skips the rest of an array without materializing any of it.
pub(crate) fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

impl<'de, T: FieldValue> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldVisitor(PhantomData))
    }
}

struct FieldVisitor<T>(PhantomData<T>);

impl<'de, T: FieldValue> Visitor<'de> for FieldVisitor<T> {
    type Value = Field<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(T::from_bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(match u64::try_from(v) {
            Ok(v) => T::from_u64(v),
            Err(_) => T::from_i64(v),
        })
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(T::from_u64(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(T::from_f64(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(T::from_str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Field::Absent)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Field::Absent)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Field::deserialize(d)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::from_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        T::from_seq(seq)
    }
}

/// Identifiers, names, addresses. Empty is absent: providers write `""` for unset strings
/// (`public_ip` of an instance without one). Integers are accepted as their decimal text, since
/// some ids are numeric in one provider version and strings in another.
impl FieldValue for String {
    fn from_str(v: &str) -> Field<Self> {
        if v.is_empty() {
            Field::Absent
        } else {
            Field::Value(v.to_owned())
        }
    }
    fn from_u64(v: u64) -> Field<Self> {
        Field::Value(v.to_string())
    }
}

/// Versions and counts. A numeric string is accepted: some providers store numbers as text.
impl FieldValue for u64 {
    fn from_u64(v: u64) -> Field<Self> {
        Field::Value(v)
    }
    fn from_str(v: &str) -> Field<Self> {
        if v.is_empty() {
            return Field::Absent;
        }
        match v.parse() {
            Ok(n) => Field::Value(n),
            Err(_) => Field::Unexpected("a non-numeric string"),
        }
    }
}

/// Flags; the AWS provider's legacy autoscaling `tags` wrote booleans as `"true"`/`"false"`.
impl FieldValue for bool {
    fn from_bool(v: bool) -> Field<Self> {
        Field::Value(v)
    }
    fn from_str(v: &str) -> Field<Self> {
        match v {
            "true" => Field::Value(true),
            "false" => Field::Value(false),
            "" => Field::Absent,
            _ => Field::Unexpected("a string that is not a boolean"),
        }
    }
}

/// A tag or label value: unlike other strings, an empty value is a real value.
struct TagValue(String);

impl FieldValue for TagValue {
    fn from_str(v: &str) -> Field<Self> {
        Field::Value(TagValue(v.to_owned()))
    }
    fn from_u64(v: u64) -> Field<Self> {
        Field::Value(TagValue(v.to_string()))
    }
    fn from_bool(v: bool) -> Field<Self> {
        Field::Value(TagValue(v.to_string()))
    }
}

/// Tags and labels: a JSON object of strings. An entry whose value is not a string (or a number
/// or boolean, kept as text) is skipped, the rest of the map kept.
impl FieldValue for Tags {
    fn from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Field<Self>, A::Error> {
        let mut tags = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            // A Pulumi secret is an object too: the tags read so far are dropped with it.
            if key == PULUMI_SECRET_SIG {
                map.next_value::<IgnoredAny>()?;
                drain_map(map)?;
                return Ok(Field::Unexpected(A_SECRET));
            }
            if let Field::Value(TagValue(value)) = map.next_value::<Field<TagValue>>()? {
                tags.insert(key, value);
            }
        }
        Ok(Field::Value(tags))
    }
}

/// A list block or a list of values, element by element.
impl<T: FieldValue> FieldValue for Vec<Field<T>> {
    fn from_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Field<Self>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Field<T>>()? {
            items.push(item);
        }
        Ok(Field::Value(items))
    }
}

/// Makes structs whose fields are all [`Field`]s (with `#[serde(default)]`) usable as a field:
/// an object becomes the struct, any other JSON kind is unexpected.
macro_rules! lenient_block {
    ($($t:ty),* $(,)?) => {$(
        impl $crate::lenient::FieldValue for $t {
            fn from_map<'de, A: serde::de::MapAccess<'de>>(
                map: A,
            ) -> Result<$crate::lenient::Field<Self>, A::Error> {
                <$t as serde::Deserialize>::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )
                .map($crate::lenient::Field::Value)
            }
        }
    )*};
}
pub(crate) use lenient_block;

impl<T> Field<T> {
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Field<U> {
        match self {
            Field::Absent => Field::Absent,
            Field::Value(v) => Field::Value(f(v)),
            Field::Unexpected(kind) => Field::Unexpected(kind),
        }
    }
}

/// Turns fields into plain options while collecting a warning for each unexpected shape.
pub(crate) struct Notes<'a> {
    /// The resource instance address the warnings are about.
    pub(crate) address: &'a str,
    pub(crate) warnings: &'a mut super::Warnings,
}

impl Notes<'_> {
    pub(crate) fn take<T>(&mut self, attribute: &str, field: Field<T>) -> Option<T> {
        match field {
            Field::Absent => None,
            Field::Value(v) => Some(v),
            Field::Unexpected(A_SECRET) => {
                self.warnings.push(format!(
                    "{}: attribute `{attribute}` is marked secret: not read, not stored",
                    self.address
                ));
                None
            }
            Field::Unexpected(kind) => {
                self.warnings.push(format!(
                    "{}: attribute `{attribute}` is {kind}, not the shape driftwatch reads; \
                     ignored",
                    self.address
                ));
                None
            }
        }
    }

    /// Tags or labels; absent is an empty map.
    pub(crate) fn tags(&mut self, attribute: &str, field: Field<Tags>) -> Tags {
        self.take(attribute, field).unwrap_or_default()
    }

    /// The first element of a list block (blocks with at most one element, or the primary one).
    pub(crate) fn first<T>(&mut self, attribute: &str, field: List<T>) -> Option<T> {
        let first = self.take(attribute, field)?.into_iter().next()?;
        self.take(&format!("{attribute}[0]"), first)
    }

    /// Every element of a list block, skipping (with a warning) those of unexpected shape.
    pub(crate) fn all<T>(&mut self, attribute: &str, field: List<T>) -> Vec<T> {
        let items = self.take(attribute, field).unwrap_or_default();
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            if let Some(v) = self.take(&format!("{attribute}[{i}]"), item) {
                out.push(v);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Block {
        id: Field<String>,
        version: Field<u64>,
        tags: Field<Tags>,
        inner: List<Inner>,
    }

    #[derive(Deserialize, Default, Debug, PartialEq)]
    #[serde(default)]
    struct Inner {
        image: Field<String>,
    }

    lenient_block!(Block, Inner);

    fn parse(json: &str) -> Field<Block> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn expected_shapes_are_kept() {
        let Field::Value(b) = parse(
            r#"{"id":"i-1","version":"3","tags":{"a":"x","empty":"","n":5},
                "inner":[{"image":"ami-1","other":{"deep":[1,2]}}],"secret":"s3cr3t"}"#,
        ) else {
            panic!("not a value")
        };
        assert_eq!(b.id, Field::Value("i-1".into()));
        assert_eq!(b.version, Field::Value(3));
        let tags = match b.tags {
            Field::Value(t) => t,
            other => panic!("{other:?}"),
        };
        assert_eq!(tags.get("empty").map(String::as_str), Some(""));
        assert_eq!(tags.get("n").map(String::as_str), Some("5"));
        assert_eq!(
            b.inner,
            Field::Value(vec![Field::Value(Inner {
                image: Field::Value("ami-1".into())
            })])
        );
    }

    #[test]
    fn unexpected_shapes_never_fail_and_say_what_they_were() {
        let Field::Value(b) =
            parse(r#"{"id":{"nested":["x"]},"version":"latest","tags":["a","b"],"inner":"nope"}"#)
        else {
            panic!("not a value")
        };
        assert_eq!(b.id, Field::Unexpected("an object"));
        assert_eq!(b.version, Field::Unexpected("a non-numeric string"));
        assert_eq!(b.tags, Field::Unexpected("an array"));
        assert!(matches!(b.inner, Field::Unexpected("a string")));
        assert!(matches!(parse("[1]"), Field::Unexpected("an array")));
        assert!(matches!(parse("null"), Field::Absent));
    }

    #[test]
    fn notes_name_the_attribute_not_the_value() {
        let mut warnings = crate::Warnings::default();
        let mut notes = Notes {
            address: "aws_instance.a",
            warnings: &mut warnings,
        };
        let inner: List<Inner> =
            serde_json::from_str(r#"["hunter2", {"image": "ami-2"}]"#).unwrap();
        assert_eq!(notes.first("inner", inner), None);
        let list = warnings.into_vec();
        assert_eq!(list.len(), 1);
        assert!(list[0].contains("aws_instance.a: attribute `inner[0]` is a string"));
        assert!(!list[0].contains("hunter2"));
    }
}
