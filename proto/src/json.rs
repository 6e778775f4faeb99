//! Serde helpers for the wire messages that double as the collector's JSON API: drift items
//! travel as JSON text and are written out as the JSON values they are.

use serde::Serialize as _;
use serde::ser::{Error as _, SerializeSeq as _, Serializer};
use serde_json::value::RawValue;

/// Serializes JSON text as the value it holds (an empty string as `null`).
pub fn raw<S: Serializer>(json: &str, s: S) -> Result<S::Ok, S::Error> {
    if json.is_empty() {
        return s.serialize_none();
    }
    let value: &RawValue = serde_json::from_str(json).map_err(S::Error::custom)?;
    value.serialize(s)
}

/// Serializes a list of JSON texts as an array of the values they hold.
pub fn raw_list<S: Serializer>(list: &[String], s: S) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(list.len()))?;
    for json in list {
        let value: &RawValue = serde_json::from_str(json).map_err(S::Error::custom)?;
        seq.serialize_element(value)?;
    }
    seq.end()
}
