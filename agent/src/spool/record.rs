//! What a spool record holds: one drift event, as `driftwatch.v1.SpoolRecord` (`drift.proto`).
//!
//! ```text
//! version 2  SpoolRecord { version: 2, event: driftwatch.v1.Event }   (protobuf; first byte 0x08)
//! version 1  the event's JSON text, `driftwatch-agent run`'s output line (first byte `{`)
//! ```
//!
//! The event is kept in its wire form, so the uplink sends what it reads without converting
//! it. Version 1 records, written by agents before 0.2, are still read: a spool survives the
//! upgrade with everything the collector has not acknowledged.

use driftwatch_proto::drift::{DriftError, Event};
use driftwatch_proto::v1;
use prost::Message as _;

/// The record version this build writes.
pub const VERSION: u32 = 2;

/// Why a record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("not a drift event record: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("not a drift event record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("spool record version {0} (this agent reads 1 and {VERSION})")]
    Version(u32),
    #[error("spool record without an event")]
    Empty,
    #[error("invalid drift event: {0}")]
    Invalid(#[from] DriftError),
}

/// Encodes an event as a record.
pub fn encode(event: &Event) -> Vec<u8> {
    v1::SpoolRecord {
        version: VERSION,
        event: Some(event.to_wire()),
    }
    .encode_to_vec()
}

/// Reads a record (of either version) in the wire form.
pub fn decode_wire(payload: &[u8]) -> Result<v1::Event, RecordError> {
    if payload.first() == Some(&b'{') {
        return Ok(serde_json::from_slice::<Event>(payload)?.to_wire());
    }
    let record = v1::SpoolRecord::decode(payload)?;
    if record.version != VERSION {
        return Err(RecordError::Version(record.version));
    }
    record.event.ok_or(RecordError::Empty)
}

/// Reads a record (of either version) as a validated event.
pub fn decode(payload: &[u8]) -> Result<Event, RecordError> {
    if payload.first() == Some(&b'{') {
        return Ok(serde_json::from_slice::<Event>(payload)?);
    }
    Ok(Event::try_from(decode_wire(payload)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_proto::drift::{DriftItem, PackageChange, PackageDrift, Transition};

    fn event() -> Event {
        Event {
            seq: 3,
            transition: Transition::Drifted,
            observed_at: "2026-12-01T10:00:00.000Z".into(),
            item: DriftItem::Package(PackageDrift {
                name: "curl".into(),
                arch: "amd64".into(),
                kind: PackageChange::Installed,
                expected_version: None,
                actual_version: Some("8.1".into()),
                source: "dpkg".into(),
            }),
        }
    }

    #[test]
    fn records_of_both_versions_read_as_the_same_event() {
        let e = event();
        let v2 = encode(&e);
        assert_eq!(v2[0], 0x08, "field 1, varint: never `{{`");
        let v1_line = serde_json::to_vec(&e).unwrap();
        for payload in [&v2, &v1_line] {
            assert_eq!(decode(payload).unwrap(), e);
            assert_eq!(decode_wire(payload).unwrap(), e.to_wire());
        }
    }

    #[test]
    fn bad_records_say_what_is_wrong() {
        let future = v1::SpoolRecord {
            version: 3,
            event: Some(event().to_wire()),
        }
        .encode_to_vec();
        assert!(
            decode(&future)
                .unwrap_err()
                .to_string()
                .contains("version 3")
        );
        let empty = v1::SpoolRecord {
            version: VERSION,
            event: None,
        }
        .encode_to_vec();
        assert!(matches!(decode(&empty), Err(RecordError::Empty)));
        assert!(matches!(decode(b"{not json"), Err(RecordError::Json(_))));
        assert!(matches!(decode(b"\xff\xff"), Err(RecordError::Protobuf(_))));
    }
}
