//! The host listing as the collector's gRPC server sends it ([`EncodedListHosts`]).
//!
//! `driftwatch hosts` on a fleet of 10,000 hosts answers 10,000 `Host` messages of 16 fields,
//! most of them strings that change only when a host reports something new. Building those
//! messages for every listing (an allocation per string), encoding them and freeing them again
//! on another thread was most of the collector's work per listing. Protobuf lets a message be
//! sent in parts: encodings of the same message type, concatenated, decode as one message with
//! the fields of all of them. So the collector keeps each host's reported fields encoded (and
//! what IaC correlation says of it), and a listing appends, per host, a small `Host` holding
//! only what the query decides (drift, status) followed by those bytes. Clients decode an
//! ordinary [`v1::ListHostsResponse`].
//!
//! [`v1::ListHostsResponse`]: crate::v1::ListHostsResponse

use prost::Message;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};

use crate::v1::Host;

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

    /// Appends one host made of `first` followed by `parts`, each a `Host` encoded earlier.
    /// No two may set one singular field (the decoder would keep the last); repeated fields
    /// are concatenated in that order.
    pub fn push(&mut self, first: &Host, parts: &[&[u8]]) {
        let len = first.encoded_len() + parts.iter().map(|p| p.len()).sum::<usize>();
        encoding::encode_key(HOSTS, WireType::LengthDelimited, &mut self.hosts);
        encoding::encode_varint(len as u64, &mut self.hosts);
        first.encode_raw(&mut self.hosts);
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
    use crate::v1::{IacLink, ListHostsResponse};

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
            encoded.push(&first, &[&part.encode_to_vec(), &[]]);
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
