//! Correlation: which IaC resource owns each reporting host, and what disagrees between what
//! the host reports, what the state records and what the image catalog says.
//!
//! A host is matched, in order, on:
//! 1. its cloud instance id = an instance resource's id (EC2 `id`, GCE `instance_id`, Azure
//!    `virtual_machine_id`, compared case-insensitively): confidence `high`;
//! 2. its `aws:autoscaling:groupName` tag = an `aws_autoscaling_group`'s name (members of a
//!    group are never in state): `high`; the expected image and user data then come from the
//!    launch template the host's `aws:ec2launchtemplate:id` tag names, else the group's;
//! 3. its private IP, else its host name = an instance's private IP or private DNS name: `low`
//!    (addresses are reused, so this is shown, never trusted for the image checks).
//!
//! Everything here is computed from what the store holds, at query time: nothing in it is
//! stored, so an import or a hello is reflected by the next query.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use driftwatch_proto::text::count;
use driftwatch_proto::v1;
use prost::Message as _;

pub use crate::store::{HostFacts, IacData, Image, Resource, StateInfo};
use crate::store::{Millis, rfc3339};

/// The flag names (`hosts --json`'s `flags`, `iac status`).
pub mod flag {
    pub const UNMANAGED: &str = "unmanaged";
    pub const GHOST: &str = "ghost";
    pub const IMAGE_NOT_IN_CATALOG: &str = "image_not_in_catalog";
    pub const IMAGE_DIFFERS_FROM_STATE: &str = "image_differs_from_state";
    pub const BASELINE_MISMATCH: &str = "baseline_mismatch";
    pub const USERDATA_MISMATCH: &str = "userdata_mismatch";
    pub const DUPLICATE_MACHINE_ID: &str = "duplicate_machine_id";
}

pub use driftwatch_iac::import::role;

/// The instance tags that tie an autoscaled instance to its group and launch template.
pub const ASG_TAG: &str = "aws:autoscaling:groupName";
pub const LAUNCH_TEMPLATE_TAG: &str = "aws:ec2launchtemplate:id";

/// Default of `--ghost-after`.
pub const DEFAULT_GHOST_AFTER: Duration = Duration::from_secs(15 * 60);

/// The verdict on one host.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostVerdict {
    pub iac: Option<v1::IacLink>,
    pub flags: Vec<v1::Flag>,
    /// The Packer build that produced the host's image, when the catalog knows it.
    pub image_build: Option<String>,
}

impl HostVerdict {
    pub fn flag_names(&self) -> Vec<String> {
        self.flags.iter().map(|f| f.flag.clone()).collect()
    }
}

/// The verdict on the whole fleet.
#[derive(Clone, Debug, Default)]
pub struct Correlation {
    /// Every host given, by host key.
    pub hosts: HashMap<String, HostVerdict>,
    pub ghosts: Vec<v1::Ghost>,
    pub coverage: v1::Coverage,
}

impl Correlation {
    /// Flag name → hosts (and, for `ghost`, instances) carrying it.
    pub fn flag_counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for verdict in self.hosts.values() {
            for f in &verdict.flags {
                *counts.entry(f.flag.clone()).or_default() += 1;
            }
        }
        if !self.ghosts.is_empty() {
            *counts.entry(flag::GHOST.to_owned()).or_default() += self.ghosts.len() as u64;
        }
        counts
    }
}

/// Statuses a machine is not expected to report in.
fn expected_down(status: &str) -> bool {
    matches!(
        status.to_ascii_lowercase().as_str(),
        "stopped"
            | "stopping"
            | "terminated"
            | "shutting-down"
            | "suspended"
            | "suspending"
            | "deallocated"
            | "deallocating"
    )
}

/// "3h ago", "12m ago", for reasons.
fn ago(now: Millis, then: Millis) -> String {
    let secs = ((now - then).max(0) / 1000) as u64;
    let rounded = match secs {
        0..60 => Duration::from_secs(secs),
        60..3600 => Duration::from_secs(secs / 60 * 60),
        3600..86_400 => Duration::from_secs(secs / 3600 * 3600),
        _ => Duration::from_secs(secs / 86_400 * 86_400),
    };
    format!("{} ago", humantime::format_duration(rounded))
}

fn push(flags: &mut Vec<v1::Flag>, name: &str, reason: String) {
    flags.push(v1::Flag {
        flag: name.to_owned(),
        reason,
    });
}

struct Index<'a> {
    states: HashMap<&'a str, &'a StateInfo>,
    instances_by_key: HashMap<String, Vec<usize>>,
    instances_by_ip: HashMap<&'a str, Vec<usize>>,
    instances_by_dns: HashMap<String, Vec<usize>>,
    groups: HashMap<&'a str, usize>,
    templates: HashMap<&'a str, usize>,
    images: HashMap<&'a str, Vec<&'a Image>>,
}

impl<'a> Index<'a> {
    fn new(iac: &'a IacData) -> Self {
        let mut index = Index {
            states: iac.states.iter().map(|s| (s.name.as_str(), s)).collect(),
            instances_by_key: HashMap::new(),
            instances_by_ip: HashMap::new(),
            instances_by_dns: HashMap::new(),
            groups: HashMap::new(),
            templates: HashMap::new(),
            images: HashMap::new(),
        };
        for (i, (_, r)) in iac.resources.iter().enumerate() {
            match r.role.as_str() {
                role::INSTANCE => {
                    if !r.key.is_empty() {
                        index
                            .instances_by_key
                            .entry(r.key.to_ascii_lowercase())
                            .or_default()
                            .push(i);
                    }
                    if !r.private_ip.is_empty() {
                        index
                            .instances_by_ip
                            .entry(r.private_ip.as_str())
                            .or_default()
                            .push(i);
                    }
                    if !r.private_dns.is_empty() {
                        let dns = r.private_dns.to_ascii_lowercase();
                        if let Some((short, _)) = dns.split_once('.') {
                            index
                                .instances_by_dns
                                .entry(short.to_owned())
                                .or_default()
                                .push(i);
                        }
                        index.instances_by_dns.entry(dns).or_default().push(i);
                    }
                }
                role::GROUP => {
                    index.groups.entry(r.key.as_str()).or_insert(i);
                }
                role::TEMPLATE => {
                    index.templates.entry(r.key.as_str()).or_insert(i);
                    if !r.name.is_empty() {
                        index.templates.entry(r.name.as_str()).or_insert(i);
                    }
                }
                _ => {}
            }
        }
        for image in &iac.images {
            index
                .images
                .entry(image.image_id.as_str())
                .or_default()
                .push(image);
        }
        index
    }

    /// The catalog entry for a host's image: the one of its region when the image is
    /// regional, else the most recent build.
    fn image(&self, host: &HostFacts) -> Option<&'a Image> {
        let builds = self.images.get(host.image_id.as_str())?;
        builds
            .iter()
            .copied()
            .filter(|b| host.region.is_empty() || b.region.is_empty() || b.region == host.region)
            .max_by_key(|b| b.build_time)
            .or_else(|| builds.iter().copied().max_by_key(|b| b.build_time))
    }
}

/// What a match tells: the owning resource and what to expect of the host.
struct Match {
    resource: usize,
    link: v1::IacLink,
    /// The resource whose image and user data the host should have (the instance, or the
    /// group's launch template); `None` for low-confidence matches.
    expected: Option<usize>,
}

fn match_host(host: &HostFacts, iac: &IacData, index: &Index<'_>) -> Option<Match> {
    let link = |i: usize, confidence: &str, path: String| v1::IacLink {
        address: iac.resources[i].1.address.clone(),
        state: iac.resources[i].0.clone(),
        confidence: confidence.to_owned(),
        correlation_path: path,
    };
    if !host.instance_id.is_empty()
        && let Some(&i) = index
            .instances_by_key
            .get(&host.instance_id.to_ascii_lowercase())
            .and_then(|v| v.first())
    {
        let r = &iac.resources[i].1;
        let path = format!("instance_id {} = {}", host.instance_id, r.address);
        return Some(Match {
            resource: i,
            link: link(i, "high", path),
            expected: Some(i),
        });
    }
    if let Some(group) = host.tags.get(ASG_TAG)
        && let Some(&i) = index.groups.get(group.as_str())
    {
        let r = &iac.resources[i].1;
        let template = host
            .tags
            .get(LAUNCH_TEMPLATE_TAG)
            .and_then(|t| index.templates.get(t.as_str()))
            .or_else(|| index.templates.get(r.template.as_str()))
            .copied();
        let mut path = format!("tag {ASG_TAG}={group} = {}", r.address);
        if let Some(t) = template {
            path.push_str(&format!(
                " (launch template {})",
                iac.resources[t].1.address
            ));
        }
        return Some(Match {
            resource: i,
            link: link(i, "high", path),
            expected: template,
        });
    }
    let unique = |v: Option<&Vec<usize>>| match v.map(Vec::as_slice) {
        Some([one]) => Some(*one),
        _ => None,
    };
    if !host.private_ip.is_empty()
        && let Some(i) = unique(index.instances_by_ip.get(host.private_ip.as_str()))
    {
        let path = format!(
            "private_ip {} = {} (addresses are reused: low confidence)",
            host.private_ip, iac.resources[i].1.address
        );
        return Some(Match {
            resource: i,
            link: link(i, "low", path),
            expected: None,
        });
    }
    if !host.hostname.is_empty()
        && let Some(i) = unique(
            index
                .instances_by_dns
                .get(&host.hostname.to_ascii_lowercase()),
        )
    {
        let path = format!(
            "hostname {} = {} private_dns (names are reused: low confidence)",
            host.hostname, iac.resources[i].1.address
        );
        return Some(Match {
            resource: i,
            link: link(i, "low", path),
            expected: None,
        });
    }
    None
}

/// Correlates every host with the imported IaC, as of `now`.
pub fn correlate(
    hosts: &[HostFacts],
    iac: &IacData,
    now: Millis,
    ghost_after: Duration,
) -> Correlation {
    let last_seen: HashMap<&str, Millis> = hosts
        .iter()
        .map(|h| (h.host.as_str(), h.last_seen))
        .collect();
    Matching::new(hosts, iac.clone()).correlation(|h| last_seen.get(h).copied(), now, ghost_after)
}

/// The part of a correlation that does not depend on the clock: which resource owns each
/// host and what disagrees. It depends only on the hosts' hellos and the imports, so it can
/// be kept while neither changes; [`Matching::verdict`] and [`Matching::correlation`] add
/// what depends on when hosts were last heard from (ghosts, coverage).
#[derive(Debug, Default)]
pub struct Matching {
    iac: IacData,
    hosts: HashMap<String, Matched>,
    /// Instance resources expected to run (by index into `iac.resources`), with the hosts
    /// matched to them.
    instances: Vec<(usize, Vec<String>)>,
}

#[derive(Debug, Default)]
struct Matched {
    /// Every flag but `ghost`.
    verdict: HostVerdict,
    /// The matched resource, when IaC expects it to run: (address, state).
    expected_up: Option<(String, String)>,
    /// What listings show of `verdict`: a `v1::Host` with only `iac` and `flags` (names)
    /// set, encoded.
    listed: Arc<[u8]>,
}

impl Matched {
    /// When the host was last heard from, if that makes it a ghost: IaC expects it to run,
    /// and it has not reported for `ghost_after`.
    fn ghost_since(
        &self,
        last_seen: Millis,
        now: Millis,
        ghost_after: Duration,
    ) -> Option<&(String, String)> {
        let expected = self.expected_up.as_ref()?;
        (last_seen < now - ghost_after.as_millis() as Millis).then_some(expected)
    }
}

/// What a host listing shows of one host's verdict.
#[derive(Clone, Debug)]
pub struct Listed {
    /// `iac` and `flags` but `ghost`, as a `v1::Host` encoding.
    pub encoded: Arc<[u8]>,
    /// Whether the host is a ghost now (the flag goes first).
    pub ghost: bool,
}

impl Matching {
    pub fn new(hosts: &[HostFacts], iac: IacData) -> Matching {
        let index = Index::new(&iac);
        let mut machine_ids: HashMap<&str, Vec<&str>> = HashMap::new();
        for h in hosts {
            if !h.machine_id_hash.is_empty() {
                machine_ids
                    .entry(h.machine_id_hash.as_str())
                    .or_default()
                    .push(h.host.as_str());
            }
        }
        let mut owners: HashMap<usize, Vec<String>> = HashMap::new();
        let mut matched_hosts = HashMap::with_capacity(hosts.len());
        for h in hosts {
            let mut out = Matched::default();
            let verdict = &mut out.verdict;
            let matched = match_host(h, &iac, &index);
            let catalog = (!h.image_id.is_empty()).then(|| index.image(h)).flatten();
            verdict.image_build = catalog.map(|b| b.build.clone());
            match &matched {
                None if !iac.states.is_empty() => push(
                    &mut verdict.flags,
                    flag::UNMANAGED,
                    format!(
                        "no resource in the {} matches this host's instance id ({}), \
                         autoscaling group tag, private IP or host name",
                        count(iac.states.len() as u64, "imported state", "imported states"),
                        if h.instance_id.is_empty() {
                            "none reported"
                        } else {
                            &h.instance_id
                        }
                    ),
                ),
                None => {}
                Some(m) => {
                    let resource = &iac.resources[m.resource].1;
                    if resource.role == role::INSTANCE {
                        owners.entry(m.resource).or_default().push(h.host.clone());
                    }
                    if !expected_down(&resource.status) {
                        out.expected_up = Some((resource.address.clone(), m.link.state.clone()));
                    }
                    if let Some(e) = m.expected {
                        expectations(&mut verdict.flags, h, &iac.resources[e], &index);
                    }
                }
            }
            if !index.images.is_empty() && !h.image_id.is_empty() && catalog.is_none() {
                push(
                    &mut verdict.flags,
                    flag::IMAGE_NOT_IN_CATALOG,
                    format!(
                        "the host runs image {}, which no imported Packer manifest lists ({} \
                         images known): built outside the pipeline, or its manifest was not \
                         imported",
                        h.image_id,
                        iac.images.len()
                    ),
                );
            }
            if let Some(build) = catalog
                && !build.baseline_id.is_empty()
                && !h.baseline_id.is_empty()
                && build.baseline_id != h.baseline_id
            {
                push(
                    &mut verdict.flags,
                    flag::BASELINE_MISMATCH,
                    format!(
                        "image {} was baked with baseline {} (Packer build {}{}), but the agent \
                         holds baseline {}: the image was changed after baking or baked wrong",
                        h.image_id,
                        build.baseline_id,
                        build.build,
                        if build.run_uuid.is_empty() {
                            String::new()
                        } else {
                            format!(", run {}", build.run_uuid)
                        },
                        h.baseline_id
                    ),
                );
            }
            if let Some(same) = machine_ids.get(h.machine_id_hash.as_str())
                && same.len() > 1
            {
                let others: Vec<&str> = same.iter().copied().filter(|o| *o != h.host).collect();
                push(
                    &mut verdict.flags,
                    flag::DUPLICATE_MACHINE_ID,
                    format!(
                        "{} the same machine-id ({}): the image was baked with a populated \
                         /etc/machine-id",
                        count(
                            others.len() as u64,
                            "other host reports",
                            "other hosts report"
                        ),
                        others.join(", ")
                    ),
                );
            }
            verdict.iac = matched.map(|m| m.link);
            out.listed = v1::Host {
                iac: out.verdict.iac.clone(),
                flags: out.verdict.flag_names(),
                ..v1::Host::default()
            }
            .encode_to_vec()
            .into();
            matched_hosts.insert(h.host.clone(), out);
        }
        let instances = iac
            .resources
            .iter()
            .enumerate()
            .filter(|(_, (_, r))| r.role == role::INSTANCE && !expected_down(&r.status))
            .map(|(i, _)| (i, owners.remove(&i).unwrap_or_default()))
            .collect();
        Matching {
            iac,
            hosts: matched_hosts,
            instances,
        }
    }

    /// What was imported.
    pub fn iac(&self) -> &IacData {
        &self.iac
    }

    /// One host's verdict, given when it was last heard from; `None` for a host unknown when
    /// the matching was made.
    pub fn verdict(
        &self,
        host: &str,
        last_seen: Millis,
        now: Millis,
        ghost_after: Duration,
    ) -> Option<HostVerdict> {
        let matched = self.hosts.get(host)?;
        let mut verdict = matched.verdict.clone();
        if let Some((address, state)) = matched.ghost_since(last_seen, now, ghost_after) {
            verdict.flags.insert(
                0,
                v1::Flag {
                    flag: flag::GHOST.to_owned(),
                    reason: format!(
                        "{address} is in state {state} but this host last reported {} (at {})",
                        ago(now, last_seen),
                        rfc3339(last_seen)
                    ),
                },
            );
        }
        Some(verdict)
    }

    /// What a listing shows of one host's verdict ([`verdict`](Self::verdict)), without
    /// building it.
    pub fn listed(
        &self,
        host: &str,
        last_seen: Millis,
        now: Millis,
        ghost_after: Duration,
    ) -> Option<Listed> {
        let matched = self.hosts.get(host)?;
        Some(Listed {
            encoded: matched.listed.clone(),
            ghost: matched.ghost_since(last_seen, now, ghost_after).is_some(),
        })
    }

    /// The whole fleet's verdict, given when each host was last heard from.
    pub fn correlation(
        &self,
        last_seen: impl Fn(&str) -> Option<Millis>,
        now: Millis,
        ghost_after: Duration,
    ) -> Correlation {
        let stale_before = now - ghost_after.as_millis() as Millis;
        let mut out = Correlation::default();
        for host in self.hosts.keys() {
            let seen = last_seen(host).unwrap_or(Millis::MIN);
            if let Some(verdict) = self.verdict(host, seen, now, ghost_after) {
                out.hosts.insert(host.clone(), verdict);
            }
        }
        out.coverage.reporting_hosts = self.hosts.len() as u64;
        out.coverage.correlated_hosts = self
            .hosts
            .values()
            .filter(|m| m.verdict.iac.is_some())
            .count() as u64;
        for (i, owners) in &self.instances {
            let (state, r) = &self.iac.resources[*i];
            out.coverage.state_instances += 1;
            // The owner heard from last.
            let newest = owners
                .iter()
                .filter_map(|h| Some((h, last_seen(h)?)))
                .max_by_key(|(_, seen)| *seen);
            let reason = match newest {
                Some((_, seen)) if seen >= stale_before => {
                    out.coverage.covered_instances += 1;
                    continue;
                }
                Some((host, seen)) => format!(
                    "state {state} says {} runs{}; its host {host} last reported {}",
                    r.address,
                    status_suffix(r),
                    ago(now, seen)
                ),
                None => format!(
                    "state {state} says {} ({}) runs{}; no agent reports for it",
                    r.address,
                    if r.key.is_empty() { "no id" } else { &r.key },
                    status_suffix(r)
                ),
            };
            out.ghosts.push(v1::Ghost {
                address: r.address.clone(),
                state: state.clone(),
                instance_id: r.key.clone(),
                reason,
            });
        }
        out
    }
}

fn status_suffix(r: &Resource) -> String {
    if r.status.is_empty() {
        String::new()
    } else {
        format!(" (status {})", r.status)
    }
}

/// The checks against the resource the host should match: image and user data.
fn expectations(
    flags: &mut Vec<v1::Flag>,
    h: &HostFacts,
    (state, r): &(String, Resource),
    index: &Index<'_>,
) {
    let origin = || match index.states.get(state.as_str()) {
        Some(s) => {
            let serial = s.serial.map_or(String::new(), |n| format!("serial {n}, "));
            format!(
                "state {state} ({serial}imported {})",
                rfc3339(s.imported_at)
            )
        }
        None => format!("state {state}"),
    };
    if !r.image_id.is_empty() && !h.image_id.is_empty() && r.image_id != h.image_id {
        let caveat = if r.role == role::TEMPLATE {
            "instances launched before the template changed keep their image"
        } else {
            "the state records the image last observed, so it may be stale: refresh and \
             import it again if the instance was rebuilt since"
        };
        push(
            flags,
            flag::IMAGE_DIFFERS_FROM_STATE,
            format!(
                "{} records image {} for {}, the host reports {}; {caveat}",
                origin(),
                r.image_id,
                r.address,
                h.image_id
            ),
        );
    }
    if !r.user_data_sha1.is_empty()
        && !h.user_data_sha1.is_empty()
        && !r.user_data_sha1.eq_ignore_ascii_case(&h.user_data_sha1)
    {
        push(
            flags,
            flag::USERDATA_MISMATCH,
            format!(
                "{} records user data with SHA-1 {} for {}, the host was started with {}",
                origin(),
                r.user_data_sha1,
                r.address,
                h.user_data_sha1
            ),
        );
    }
}

#[cfg(test)]
mod tests;
