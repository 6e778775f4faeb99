//! Hosts as listings carry them: what each reported, encoded once per change, and what the
//! query found (see [`driftwatch_proto::listing`] for why).

use std::sync::Arc;

use driftwatch_proto::v1;
use prost::Message as _;

use super::Millis;

/// What a host reported about itself, as listings show it.
#[derive(Debug)]
pub struct ReportedHost {
    /// The host's identity.
    pub host: String,
    pub last_seen: Millis,
    /// A `v1::Host` with the fields the host's own reports set: every field but the ones a
    /// query decides (drift, status, IaC).
    encoded: Box<[u8]>,
}

impl ReportedHost {
    /// `reported` must leave the query's fields unset (checked in debug builds).
    pub fn new(reported: &v1::Host, last_seen: Millis) -> ReportedHost {
        debug_assert_eq!(
            (
                reported.drift_count,
                &reported.max_severity,
                &reported.status
            ),
            (0, &None, &String::new())
        );
        debug_assert!(reported.drifted_since.is_none());
        debug_assert!(reported.iac.is_none() && reported.flags.is_empty());
        ReportedHost {
            host: reported.host.clone(),
            last_seen,
            encoded: reported.encode_to_vec().into_boxed_slice(),
        }
    }

    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }
}

/// A host in a listing.
#[derive(Clone, Debug)]
pub struct ListedHost {
    pub reported: Arc<ReportedHost>,
    /// `drift_count`, `max_severity`, `drifted_since` and `status` as the query counts them,
    /// and the `ghost` flag when due. Nothing else is set.
    pub found: v1::Host,
    /// What IaC correlation says of the host: a `v1::Host` with only `iac` and `flags` (but
    /// `ghost`) set, encoded; empty when nothing.
    pub iac: Arc<[u8]>,
}

impl ListedHost {
    /// The whole message, as a client decodes it.
    pub fn to_host(&self) -> v1::Host {
        let mut out = v1::EncodedListHosts::default();
        self.encode_into(&mut out);
        v1::ListHostsResponse::decode(out.encode_to_vec().as_slice())
            .expect("a listing encoded by this process decodes")
            .hosts
            .pop()
            .unwrap_or_default()
    }

    /// Appends the host to a gRPC answer.
    pub fn encode_into(&self, out: &mut v1::EncodedListHosts) {
        out.push(&self.found, &[self.reported.encoded(), &self.iac]);
    }
}
