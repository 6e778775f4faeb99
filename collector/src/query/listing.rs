//! The host listing as the gRPC server sends it ([`EncodedListHosts`]), and the other
//! answers' host messages ([`Row::to_host`]).
//!
//! `driftwatch hosts` on a fleet of 10,000 hosts answers 10,000 `Host` messages of 16 fields,
//! most of them strings that change only when a host reports something new. Building those
//! messages for every listing (an allocation per string), encoding them and freeing them again
//! on another thread was most of the collector's work per listing. Protobuf lets a message be
//! sent in parts: encodings of the same message type, concatenated, decode as one message with
//! the fields of all of them. So each host's reported fields are encoded once per change (kept
//! in the store's [`ReportedHost`], which the store replaces when the host changes), what IaC
//! correlation says of it once per correlation, and a listing appends, per host, a small
//! `Host` holding only what the query decides (drift, status) followed by those bytes. Clients
//! decode an ordinary `driftwatch.v1.ListHostsResponse`: the collector's build generates its
//! `Fleet` server with this type as `ListHosts`' answer.

use std::sync::Arc;

use driftwatch_proto::v1::Host;
use prost::Message;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};

use crate::iac::correlate::flag;
use crate::store::{ListedHost, ReportedHost, rfc3339, rfc3339_display};

/// A listed host with what IaC correlation says of it.
#[derive(Clone, Debug)]
pub struct Row {
    pub listed: ListedHost,
    /// A `Host` with only `iac` and `flags` (but `ghost`) set, encoded; empty when nothing.
    pub iac: Arc<[u8]>,
    /// The host's IaC instance has not reported for too long (the `ghost` flag).
    pub ghost: bool,
}

impl Row {
    pub fn new(listed: ListedHost) -> Row {
        Row {
            listed,
            iac: Arc::default(),
            ghost: false,
        }
    }

    /// What the query decided of the host: drift, status, the ghost flag.
    fn found(&self) -> Host {
        let f = &self.listed.found;
        Host {
            drift_count: f.drift_count,
            max_severity: f.max_severity.map(|s| s.as_str().to_owned()),
            drifted_since: f.drifted_since.map(rfc3339),
            status: f.status.as_str().to_owned(),
            flags: if self.ghost {
                vec![flag::GHOST.to_owned()]
            } else {
                Vec::new()
            },
            ..Host::default()
        }
    }

    /// The whole message, as a client decodes it (the parts in the order they are sent).
    pub fn to_host(&self) -> Host {
        let mut encoded = self.found().encode_to_vec();
        encoded.extend_from_slice(reported(&self.listed.reported));
        encoded.extend_from_slice(&self.iac);
        Host::decode(encoded.as_slice()).expect("a host encoded by this process decodes")
    }

    /// Appends the host to a gRPC answer. `scratch` is reused between hosts.
    pub fn encode_into(&self, out: &mut EncodedListHosts, scratch: &mut Scratch) {
        self.encode_found(scratch);
        out.push(&[&scratch.found, reported(&self.listed.reported), &self.iac]);
    }

    /// An upper bound of the bytes [`encode_into`](Self::encode_into) appends.
    pub fn room(&self) -> usize {
        reported(&self.listed.reported).len() + self.iac.len() + 128
    }

    /// [`found`](Self::found), encoded into `scratch.found` without building the message
    /// (its strings are the same for every host but one timestamp): the same bytes.
    fn encode_found(&self, scratch: &mut Scratch) {
        use std::fmt::Write as _;
        let f = &self.listed.found;
        let out = &mut scratch.found;
        out.clear();
        if f.drift_count != 0 {
            encoding::uint64::encode(DRIFT_COUNT, &f.drift_count, out);
        }
        if let Some(severity) = f.max_severity {
            encode_str(MAX_SEVERITY, severity.as_str(), out);
        }
        encode_str(STATUS, f.status.as_str(), out);
        if let Some(since) = f.drifted_since {
            scratch.time.clear();
            let _ = write!(scratch.time, "{}", rfc3339_display(since));
            encode_str(DRIFTED_SINCE, &scratch.time, out);
        }
        if self.ghost {
            encode_str(FLAGS, flag::GHOST, out);
        }
    }
}

/// Buffers a listing reuses from one host to the next.
#[derive(Default)]
pub struct Scratch {
    found: Vec<u8>,
    time: String,
}

/// Field numbers of `driftwatch.v1.Host` that [`Row::encode_found`] writes.
const DRIFT_COUNT: u32 = 3;
const MAX_SEVERITY: u32 = 4;
const STATUS: u32 = 6;
const DRIFTED_SINCE: u32 = 12;
const FLAGS: u32 = 16;

/// A string field, as prost encodes it when it is set.
fn encode_str(tag: u32, value: &str, out: &mut Vec<u8>) {
    encoding::encode_key(tag, WireType::LengthDelimited, out);
    encoding::encode_varint(value.len() as u64, out);
    out.extend_from_slice(value.as_bytes());
}

/// A host's reported fields, encoded once per change.
pub fn reported(r: &ReportedHost) -> &[u8] {
    r.listing.get_or_init(|| {
        Host {
            host: r.host.clone(),
            hostname: r.hostname.clone(),
            identity_source: r.identity_source.clone(),
            image: r.image.clone(),
            image_id: r.image_id.clone(),
            baseline_id: r.baseline_id.clone(),
            agent_version: r.agent_version.clone(),
            last_seq: r.last_seq,
            first_seen: rfc3339(r.first_seen),
            last_seen: rfc3339(r.last_seen),
            ..Host::default()
        }
        .encode_to_vec()
        .into_boxed_slice()
    })
}

/// A whole host for answers other than the listing (one host's detail, tests).
pub fn host(listed: ListedHost) -> Host {
    Row::new(listed).to_host()
}

/// Field numbers of `driftwatch.v1.ListHostsResponse`.
const HOSTS: u32 = 1;
const TOTAL: u32 = 2;

/// A `driftwatch.v1.ListHostsResponse` whose hosts are encoded as they are appended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodedListHosts {
    /// The `hosts` fields, encoded.
    hosts: Vec<u8>,
    count: usize,
    /// Hosts that matched, before the listing's limit.
    pub total: u64,
}

impl EncodedListHosts {
    /// An empty listing with room for `bytes` of encoded hosts.
    pub fn with_capacity(bytes: usize) -> Self {
        EncodedListHosts {
            hosts: Vec::with_capacity(bytes),
            ..Self::default()
        }
    }

    /// Appends one host made of `parts`, each a `Host` encoded earlier. No two may set one
    /// singular field (the decoder would keep the last); repeated fields are concatenated in
    /// that order.
    pub fn push(&mut self, parts: &[&[u8]]) {
        let len = parts.iter().map(|p| p.len()).sum::<usize>();
        encoding::encode_key(HOSTS, WireType::LengthDelimited, &mut self.hosts);
        encoding::encode_varint(len as u64, &mut self.hosts);
        for part in parts {
            self.hosts.extend_from_slice(part);
        }
        self.count += 1;
    }

    /// How many hosts were appended.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl Message for EncodedListHosts {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.hosts);
        if self.total != 0 {
            encoding::uint64::encode(TOTAL, &self.total, buf);
        }
    }

    /// Keeps each host as it was encoded (the server never decodes its own answers, but a
    /// `Message` must be able to).
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            HOSTS => {
                let mut host = Vec::new();
                encoding::bytes::merge(wire_type, &mut host, buf, ctx)?;
                encoding::bytes::encode(HOSTS, &host, &mut self.hosts);
                self.count += 1;
                Ok(())
            }
            TOTAL => encoding::uint64::merge(wire_type, &mut self.total, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        self.hosts.len()
            + if self.total != 0 {
                encoding::uint64::encoded_len(TOTAL, &self.total)
            } else {
                0
            }
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_proto::v1::{IacLink, ListHostsResponse};

    fn reported(host: &str) -> Host {
        Host {
            host: host.into(),
            hostname: format!("{host}.internal"),
            last_seen: "2026-11-22T10:00:00.000Z".into(),
            image: "web 1.2".into(),
            baseline_id: "b1".into(),
            last_seq: 42,
            flags: vec!["unmanaged".into()],
            ..Host::default()
        }
    }

    fn found(n: u64) -> Host {
        Host {
            drift_count: n,
            max_severity: (n > 0).then(|| "security".to_owned()),
            status: "online".into(),
            drifted_since: (n > 0).then(|| "2026-11-22T09:00:00.000Z".to_owned()),
            iac: Some(IacLink {
                address: "aws_instance.web".into(),
                ..IacLink::default()
            }),
            flags: vec!["ghost".into()],
            ..Host::default()
        }
    }

    #[test]
    fn a_client_decodes_hosts_sent_in_parts_as_whole_hosts() {
        let mut encoded = EncodedListHosts::with_capacity(0);
        let mut expected = ListHostsResponse::default();
        for (i, host) in ["i-1", "i-2", "i-3"].into_iter().enumerate() {
            let (first, part) = (found(i as u64), reported(host));
            encoded.push(&[&first.encode_to_vec(), &part.encode_to_vec(), &[]]);
            let mut whole = first.clone();
            whole.merge(part.encode_to_vec().as_slice()).unwrap();
            expected.hosts.push(whole);
        }
        encoded.total = 7;
        expected.total = 7;
        assert_eq!(encoded.len(), 3);

        let bytes = encoded.encode_to_vec();
        assert_eq!(bytes.len(), encoded.encoded_len());
        let decoded = ListHostsResponse::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded, expected);
        assert_eq!(decoded.hosts[2].drift_count, 2);
        assert_eq!(decoded.hosts[2].hostname, "i-3.internal");
        // Repeated fields: in the order of the parts.
        assert_eq!(decoded.hosts[0].flags, ["ghost", "unmanaged"]);

        // And back: what a server decodes of its own answer encodes the same.
        let again = EncodedListHosts::decode(bytes.as_slice()).unwrap();
        assert_eq!(again, encoded);
    }

    #[test]
    fn the_json_api_and_grpc_show_a_host_alike() {
        use crate::store::{Found, HostStatus, Severity};
        let reported = ReportedHost {
            host: "i-1".into(),
            hostname: "web-1".into(),
            last_seen: 1_700_000_000_000,
            last_seq: 9,
            ..ReportedHost::default()
        };
        let iac = Host {
            iac: Some(IacLink {
                address: "aws_instance.web".into(),
                ..IacLink::default()
            }),
            flags: vec!["image_not_in_catalog".into()],
            ..Host::default()
        };
        let row = Row {
            listed: ListedHost {
                reported: Arc::new(reported),
                found: Found {
                    drift_count: 3,
                    max_severity: Some(Severity::Security),
                    drifted_since: Some(1_600_000_000_000),
                    status: HostStatus::Silent,
                },
            },
            iac: iac.encode_to_vec().into(),
            ghost: true,
        };
        let mut grpc = EncodedListHosts::default();
        row.encode_into(&mut grpc, &mut Scratch::default());
        let sent = ListHostsResponse::decode(grpc.encode_to_vec().as_slice()).unwrap();

        let host = row.to_host();
        assert_eq!(sent.hosts, std::slice::from_ref(&host));
        assert_eq!(
            (host.hostname.as_str(), host.drift_count, host.last_seq),
            ("web-1", 3, 9)
        );
        assert_eq!(
            (host.status.as_str(), host.max_severity.as_deref()),
            ("silent", Some("security"))
        );
        assert_eq!(host.last_seen, "2023-11-14T22:13:20.000Z");
        assert_eq!(
            host.drifted_since.as_deref(),
            Some("2020-09-13T12:26:40.000Z")
        );
        assert_eq!(host.flags, ["ghost", "image_not_in_catalog"]);
        assert_eq!(host.iac.unwrap().address, "aws_instance.web");
    }

    #[test]
    fn what_the_query_found_is_encoded_as_the_message_would_be() {
        use crate::store::{Found, HostStatus, Severity};
        let mut scratch = Scratch::default();
        for (found, ghost) in [
            (
                Found {
                    drift_count: 0,
                    max_severity: None,
                    drifted_since: None,
                    status: HostStatus::Online,
                },
                false,
            ),
            (
                Found {
                    drift_count: 12,
                    max_severity: Some(Severity::Security),
                    drifted_since: Some(1_600_000_000_123),
                    status: HostStatus::Silent,
                },
                true,
            ),
            (
                Found {
                    drift_count: 1,
                    max_severity: Some(Severity::Cosmetic),
                    drifted_since: Some(-5),
                    status: HostStatus::Online,
                },
                false,
            ),
        ] {
            let row = Row {
                listed: ListedHost {
                    reported: Arc::new(ReportedHost::default()),
                    found,
                },
                iac: Arc::default(),
                ghost,
            };
            row.encode_found(&mut scratch);
            assert_eq!(scratch.found, row.found().encode_to_vec(), "{row:?}");
            let mut one = EncodedListHosts::default();
            row.encode_into(&mut one, &mut scratch);
            assert!(one.encoded_len() <= row.room());
        }
    }

    #[test]
    fn an_empty_listing_is_an_empty_message() {
        let empty = EncodedListHosts::default();
        assert!(empty.is_empty());
        assert!(empty.encode_to_vec().is_empty());
        assert_eq!(
            ListHostsResponse::decode(&[][..]).unwrap(),
            ListHostsResponse::default()
        );
    }
}
