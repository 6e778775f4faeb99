//! What heartbeats read: hosts' stored streams and the digests of their drift sets, many hosts
//! in one statement ([`streams`]).
//!
//! A host's items are read only when its `items_version` moved since [`Digests`] last saw it:
//! heartbeats ask every few seconds, of hosts that mostly did not change.

use driftwatch_proto::drift::set_digest;

use super::known::Digests;
use super::to_u64;
use super::tx::Query;
use super::write::item_digest;
use crate::store::{Result, StoreError, StreamHead, StreamRead, StreamState};

/// Each read's host's stream, and its digest where asked ([`Store::streams`]), in one
/// statement: a row per host found, its items only where a digest is asked and the version
/// remembered is not the host's (`NULL` never is). `LIMIT 1` keeps the lookup a probe of the
/// key per read (a join the planner may turn into a scan of every host).
///
/// [`Store::streams`]: crate::store::Store::streams
pub(super) fn streams(
    q: &mut impl Query,
    reads: &[StreamRead],
    digests: &Digests,
) -> Result<Vec<Option<StreamHead>>> {
    // What was remembered when asked: another read may remember a later version meanwhile.
    let remembered: Vec<Option<(i64, [u8; 32])>> = reads
        .iter()
        .map(|r| r.digest.then(|| digests.get(&r.host)).flatten())
        .collect();
    let hosts: Vec<&str> = reads.iter().map(|r| r.host.as_str()).collect();
    let versions: Vec<Option<i64>> = remembered.iter().map(|m| m.map(|(v, _)| v)).collect();
    let digest: Vec<bool> = reads.iter().map(|r| r.digest).collect();
    let rows = q.query(
        "SELECT k.n, h.stream_id, h.last_seq, h.connection, h.items_version,
             CASE WHEN k.digest AND h.items_version IS DISTINCT FROM k.version
                 THEN ARRAY(SELECT i.sha256 FROM items i WHERE i.host = h.host) END
         FROM unnest($1::text[], $2::bigint[], $3::bool[]) WITH ORDINALITY
             AS k (host, version, digest, n)
         CROSS JOIN LATERAL (
             SELECT host, stream_id, last_seq, connection, items_version
             FROM hosts WHERE host = k.host LIMIT 1
         ) h",
        &[&hosts, &versions, &digest],
    )?;
    let mut heads = vec![None; reads.len()];
    for r in rows {
        let i = usize::try_from(r.get::<_, i64>(0) - 1)
            .ok()
            .filter(|&i| i < reads.len())
            .ok_or_else(|| StoreError::Database("a stream read out of range".into()))?;
        let read = &reads[i];
        let state = StreamState {
            stream_id: r.get(1),
            last_seq: to_u64(r.get(2)),
            connection: to_u64(r.get(3)),
        };
        let version: i64 = r.get(4);
        let digest = match (read.digest, r.get::<_, Option<Vec<&[u8]>>>(5)) {
            (false, _) => None,
            (true, Some(items)) => {
                let items = items
                    .into_iter()
                    .map(|d| item_digest(&read.host, d))
                    .collect::<Result<Vec<_>>>()?;
                let digest = set_digest(&items);
                digests.put(&read.host, version, digest);
                Some(digest)
            }
            // Not read again: the version is the one remembered.
            (true, None) => remembered[i].map(|(_, digest)| digest),
        };
        heads[i] = Some(StreamHead { state, digest });
    }
    Ok(heads)
}
