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
    /// The whole message, as a client decodes it (the parts in the order they are sent).
    pub fn to_host(&self) -> v1::Host {
        let mut encoded = self.found.encode_to_vec();
        encoded.extend_from_slice(self.reported.encoded());
        encoded.extend_from_slice(&self.iac);
        v1::Host::decode(encoded.as_slice()).expect("a host encoded by this process decodes")
    }

    /// Appends the host to a gRPC answer.
    pub fn encode_into(&self, out: &mut v1::EncodedListHosts) {
        out.push(&self.found, &[self.reported.encoded(), &self.iac]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_api_and_grpc_show_a_host_alike() {
        let reported = v1::Host {
            host: "i-1".into(),
            hostname: "web-1".into(),
            last_seen: "2026-11-22T10:00:00.000Z".into(),
            last_seq: 9,
            ..v1::Host::default()
        };
        let iac = v1::Host {
            iac: Some(v1::IacLink {
                address: "aws_instance.web".into(),
                ..v1::IacLink::default()
            }),
            flags: vec!["image_not_in_catalog".into()],
            ..v1::Host::default()
        };
        let listed = ListedHost {
            reported: Arc::new(ReportedHost::new(&reported, 1)),
            found: v1::Host {
                drift_count: 3,
                status: "silent".into(),
                flags: vec!["ghost".into()],
                ..v1::Host::default()
            },
            iac: iac.encode_to_vec().into(),
        };
        let mut grpc = v1::EncodedListHosts::default();
        listed.encode_into(&mut grpc);
        let sent = v1::ListHostsResponse::decode(grpc.encode_to_vec().as_slice()).unwrap();

        let host = listed.to_host();
        assert_eq!(sent.hosts, std::slice::from_ref(&host));
        assert_eq!(
            (host.hostname.as_str(), host.drift_count, host.last_seq),
            ("web-1", 3, 9)
        );
        assert_eq!(host.flags, ["ghost", "image_not_in_catalog"]);
        assert_eq!(host.iac.unwrap().address, "aws_instance.web");
    }
}
