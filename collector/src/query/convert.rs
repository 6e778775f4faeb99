//! The store's answers as the API's messages (`driftwatch.v1`): the one place the query side
//! turns domain types into what gRPC and the JSON API send.

use driftwatch_proto::v1;

use crate::store::{self, Cause, HistoryEntry, PathSummary, StoreError, rfc3339};

/// A stored item's encoding as the message it is. The store wrote it from a validated item, so
/// one that does not decode is damage.
pub fn item(encoded: &[u8]) -> Result<v1::DriftItem, StoreError> {
    store::item::decode(encoded)
        .map_err(|e| StoreError::Database(format!("a stored drift item does not decode: {e}")))
}

pub fn history_event(e: &HistoryEntry) -> Result<v1::HistoryEvent, StoreError> {
    Ok(v1::HistoryEvent {
        host: e.host.clone(),
        seq: e.seq,
        event: e.transition.as_str().to_owned(),
        observed_at: rfc3339(e.observed_at),
        received_at: rfc3339(e.received_at),
        path: e.subject.clone(),
        severity: e.severity.as_str().to_owned(),
        item: Some(item(&e.item)?),
        source: e.source.as_str().to_owned(),
    })
}

pub fn path_summary(p: &PathSummary) -> v1::PathSummary {
    v1::PathSummary {
        path: p.path.clone(),
        hosts: p.hosts,
        max_severity: p.max_severity.as_str().to_owned(),
        first_observed: rfc3339(p.first_observed),
        last_observed: rfc3339(p.last_observed),
    }
}

pub fn cause(c: Cause) -> Result<v1::Cause, StoreError> {
    Ok(v1::Cause {
        example: Some(item(&c.example)?),
        cause: c.cause,
        path: c.subject,
        kind: c.kind,
        severity: c.severity.as_str().to_owned(),
        changed: c.changed,
        host_count: c.host_count,
        hosts: c.hosts,
    })
}

/// A host and its items (the IaC columns are the caller's to fill).
pub fn host_detail(d: store::HostDetail) -> Result<v1::HostDetail, StoreError> {
    Ok(v1::HostDetail {
        host: Some(super::listing::host(d.host)),
        drift: d.items.iter().map(|i| item(i)).collect::<Result<_, _>>()?,
    })
}
