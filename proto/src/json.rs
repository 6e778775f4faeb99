//! Serde helpers for the wire messages that double as the collector's JSON API: drift items are
//! written as `driftwatch-agent check --json` writes them ([`crate::drift`]'s JSON forms).

use serde::Serialize as _;
use serde::ser::{Error as _, SerializeSeq as _, Serializer};

use crate::drift::DriftItem;
use crate::v1;

/// Serializes a drift item as its JSON form (`null` when unset).
pub fn item<S: Serializer>(item: &Option<v1::DriftItem>, s: S) -> Result<S::Ok, S::Error> {
    match item {
        Some(item) => domain(item).map_err(S::Error::custom)?.serialize(s),
        None => s.serialize_none(),
    }
}

/// Serializes drift items as an array of their JSON forms.
pub fn items<S: Serializer>(items: &[v1::DriftItem], s: S) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(items.len()))?;
    for item in items {
        seq.serialize_element(&domain(item).map_err(S::Error::custom)?)?;
    }
    seq.end()
}

fn domain(item: &v1::DriftItem) -> Result<DriftItem, crate::drift::DriftError> {
    DriftItem::try_from(item.clone())
}
