//! Correlation: which IaC resource owns each reporting host, and what disagrees between what
//! the host reports, what the state records and what the image catalog says.
//!
//! A match is a chain of evidence with a confidence, and weak evidence never overrides strong:
//! 1. the host's cloud instance id = an instance resource's id (EC2 `id`, GCE `instance_id`,
//!    Azure `virtual_machine_id`, compared case-insensitively, within the host's cloud):
//!    confidence `high`;
//! 2. its `aws:autoscaling:groupName` tag = an `aws_autoscaling_group`'s name (members of a
//!    group are never in state): `high`; the expected image and user data then come from the
//!    launch template the host's `aws:ec2launchtemplate:id` tag names, else the group's
//!    launch template or launch configuration;
//! 3. only when neither holds: its private IP or host name = an instance's private IP or DNS
//!    name. That is a *candidate*, never an owner (default private ranges repeat in every
//!    account): the host stays `unmanaged`, with "possible match: …" in the reason, and is not
//!    covered. A candidate is never in another cloud than the host reports, never a resource
//!    another host holds by id, never one whose id contradicts the host's.
//!
//! Resources are machines by their cloud id across every imported state: one instance in two
//! states is one machine with both addresses (`IacLink.also`, `Ghost.also`), covered or a
//! ghost once. Image ids are compared as [`driftwatch_iac::image`] reduces them, so GCE and
//! Azure spellings of one image match.
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
use driftwatch_iac::image::{cloud_of_type, host_cloud, image_key, same_image};
use driftwatch_iac::import;

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
    /// The owner, by strong evidence only.
    pub iac: Option<v1::IacLink>,
    /// Possible matches by address or name alone, for a host no resource holds.
    pub candidates: Vec<v1::IacLink>,
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

/// One machine: an instance resource identified by its cloud id across every imported state
/// it appears in (one instance imported twice, under two names or in two overlapping states,
/// is one machine with two places).
#[derive(Debug)]
struct Machine {
    /// Indices into `iac.resources`: the place in the most recently imported state first.
    places: Vec<usize>,
    cloud: Option<&'static str>,
}

impl Machine {
    fn primary(&self) -> usize {
        self.places[0]
    }
}

struct Index<'a> {
    states: HashMap<&'a str, &'a StateInfo>,
    machines: Vec<Machine>,
    /// (cloud, lowercased cloud id) → machine.
    machine_by_key: HashMap<(Option<&'static str>, String), usize>,
    /// Address → (machine, the place that has the address).
    machines_by_ip: HashMap<&'a str, Vec<(usize, usize)>>,
    machines_by_dns: HashMap<String, Vec<(usize, usize)>>,
    groups: HashMap<&'a str, usize>,
    templates: HashMap<&'a str, usize>,
    /// Catalog images by [`image_key`].
    images: HashMap<String, Vec<&'a Image>>,
}

fn push_unique(list: &mut Vec<(usize, usize)>, m: (usize, usize)) {
    if !list.contains(&m) {
        list.push(m);
    }
}

impl<'a> Index<'a> {
    fn new(iac: &'a IacData) -> Self {
        let states: HashMap<&str, &StateInfo> =
            iac.states.iter().map(|s| (s.name.as_str(), s)).collect();
        let mut index = Index {
            states,
            machines: Vec::new(),
            machine_by_key: HashMap::new(),
            machines_by_ip: HashMap::new(),
            machines_by_dns: HashMap::new(),
            groups: HashMap::new(),
            templates: HashMap::new(),
            images: HashMap::new(),
        };
        // Newest import first, so a machine's first place is its most recent record.
        let imported = |state: &str| index.states.get(state).map_or(0, |s| s.imported_at);
        let mut order: Vec<usize> = (0..iac.resources.len()).collect();
        order.sort_by(|&a, &b| {
            let (sa, sb) = (&iac.resources[a].0, &iac.resources[b].0);
            imported(sb)
                .cmp(&imported(sa))
                .then_with(|| sa.cmp(sb))
                .then_with(|| a.cmp(&b))
        });
        for i in order {
            let r = &iac.resources[i].1;
            match r.role.as_str() {
                role::INSTANCE => {
                    let cloud = cloud_of_type(&r.resource_type);
                    let key = (cloud, r.key.to_ascii_lowercase());
                    let m = match index.machine_by_key.get(&key) {
                        Some(&m) if !r.key.is_empty() => {
                            index.machines[m].places.push(i);
                            m
                        }
                        _ => {
                            index.machines.push(Machine {
                                places: vec![i],
                                cloud,
                            });
                            let m = index.machines.len() - 1;
                            if !r.key.is_empty() {
                                index.machine_by_key.insert(key, m);
                            }
                            m
                        }
                    };
                    if !r.private_ip.is_empty() {
                        push_unique(
                            index
                                .machines_by_ip
                                .entry(r.private_ip.as_str())
                                .or_default(),
                            (m, i),
                        );
                    }
                    if !r.private_dns.is_empty() {
                        let dns = r.private_dns.to_ascii_lowercase();
                        if let Some((short, _)) = dns.split_once('.') {
                            push_unique(
                                index.machines_by_dns.entry(short.to_owned()).or_default(),
                                (m, i),
                            );
                        }
                        push_unique(index.machines_by_dns.entry(dns).or_default(), (m, i));
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
            if let Some(key) = image_key(&image.image_id) {
                index.images.entry(key).or_default().push(image);
            }
        }
        index
    }

    /// The catalog entry for a host's image: the one of its region when the image is
    /// regional, else the most recent build.
    fn image(&self, host: &HostFacts) -> Option<&'a Image> {
        let builds = self.images.get(&image_key(&host.image_id)?)?;
        builds
            .iter()
            .copied()
            .filter(|b| host.region.is_empty() || b.region.is_empty() || b.region == host.region)
            .max_by_key(|b| b.build_time)
            .or_else(|| builds.iter().copied().max_by_key(|b| b.build_time))
    }
}

/// Whether a host that reports `host` as its cloud can be a resource of `resource`'s cloud:
/// never across two known clouds.
fn same_cloud(host: Option<&str>, resource: Option<&str>) -> bool {
    match (host, resource) {
        (Some(h), Some(r)) => h == r,
        _ => true,
    }
}

/// What strong evidence tells: the owning resource and what to expect of the host.
struct Match {
    /// The group, or the machine's primary place.
    resource: usize,
    machine: Option<usize>,
    link: v1::IacLink,
    /// The resource whose image and user data the host should have (the instance, or the
    /// group's launch template or configuration).
    expected: Option<usize>,
}

fn link(iac: &IacData, i: usize, confidence: &str, path: String) -> v1::IacLink {
    v1::IacLink {
        address: iac.resources[i].1.address.clone(),
        state: iac.resources[i].0.clone(),
        confidence: confidence.to_owned(),
        correlation_path: path,
        also: Vec::new(),
    }
}

/// A machine's places but `shown`, the one a link or ghost names.
fn places_but(iac: &IacData, machine: &Machine, shown: usize) -> Vec<v1::IacPlace> {
    machine
        .places
        .iter()
        .filter(|&&i| i != shown)
        .map(|&i| v1::IacPlace {
            state: iac.resources[i].0.clone(),
            address: iac.resources[i].1.address.clone(),
        })
        .collect()
}

/// Strong evidence only: the cloud instance id, or the autoscaling group's tag.
fn strong_match(host: &HostFacts, iac: &IacData, index: &Index<'_>) -> Option<Match> {
    let cloud = host_cloud(&host.cloud);
    if !host.instance_id.is_empty() {
        let id = host.instance_id.to_ascii_lowercase();
        // Keyed by the resource's cloud: a host that names no cloud may be any of them.
        let clouds: &[Option<&'static str>] = match cloud {
            Some("aws") => &[Some("aws"), None],
            Some("gce") => &[Some("gce"), None],
            // `host_cloud` names only aws, gce and azure.
            Some(_) => &[Some("azure"), None],
            None => &[Some("aws"), Some("gce"), Some("azure"), None],
        };
        let found = clouds
            .iter()
            .find_map(|&c| index.machine_by_key.get(&(c, id.clone())).copied());
        if let Some(m) = found {
            let machine = &index.machines[m];
            let i = machine.primary();
            let r = &iac.resources[i].1;
            let path = format!("instance_id {} = {}", host.instance_id, r.address);
            let mut link = link(iac, i, "high", path);
            link.also = places_but(iac, machine, machine.primary());
            return Some(Match {
                resource: i,
                machine: Some(m),
                link,
                expected: Some(i),
            });
        }
    }
    if let Some(group) = host.tags.get(ASG_TAG)
        && let Some(&i) = index.groups.get(group.as_str())
        && same_cloud(cloud, cloud_of_type(&iac.resources[i].1.resource_type))
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
            let t = &iac.resources[t].1;
            let kind = if matches!(
                t.resource_type.as_str(),
                "aws_launch_configuration" | "AWS::AutoScaling::LaunchConfiguration"
            ) {
                "launch configuration"
            } else {
                "launch template"
            };
            path.push_str(&format!(" ({kind} {})", t.address));
        }
        return Some(Match {
            resource: i,
            machine: None,
            link: link(iac, i, "high", path),
            expected: template,
        });
    }
    None
}

/// Most candidates listed for one host.
const MAX_CANDIDATES: usize = 5;

/// Weak evidence: instances that share the host's private IP or host name, in a cloud the
/// host can be in, that no host holds by its id, and whose id does not contradict the host's.
/// Never an owner: listed as possible matches of an unmanaged host.
fn candidates(
    host: &HostFacts,
    iac: &IacData,
    index: &Index<'_>,
    held: &HashMap<usize, Vec<String>>,
) -> Vec<v1::IacLink> {
    let cloud = host_cloud(&host.cloud);
    let mut out: Vec<(usize, v1::IacLink)> = Vec::new();
    let mut consider = |(m, i): (usize, usize), path: String| {
        let machine = &index.machines[m];
        if out.iter().any(|(seen, _)| *seen == m)
            || held.contains_key(&m)
            || !same_cloud(cloud, machine.cloud)
        {
            return;
        }
        let r = &iac.resources[i].1;
        // A host with a cloud id of the same cloud as the resource is not that resource when
        // the ids differ, whatever the addresses say.
        if cloud.is_some()
            && cloud == machine.cloud
            && !host.instance_id.is_empty()
            && !r.key.is_empty()
            && !r.key.eq_ignore_ascii_case(&host.instance_id)
        {
            return;
        }
        let mut link = link(iac, i, "candidate", path);
        link.also = places_but(iac, machine, i);
        out.push((m, link));
    };
    let by_ip = (!host.private_ip.is_empty())
        .then(|| index.machines_by_ip.get(host.private_ip.as_str()))
        .flatten();
    let by_name = (!host.hostname.is_empty())
        .then(|| {
            index
                .machines_by_dns
                .get(&host.hostname.to_ascii_lowercase())
        })
        .flatten();
    for &(m, i) in by_ip.into_iter().flatten() {
        let address = &iac.resources[i].1.address;
        let why = "addresses repeat across networks: not proof";
        consider(
            (m, i),
            format!("private_ip {} = {address} ({why})", host.private_ip),
        );
    }
    for &(m, i) in by_name.into_iter().flatten() {
        let address = &iac.resources[i].1.address;
        let why = "names repeat: not proof";
        consider(
            (m, i),
            format!("hostname {} = {address} private_dns ({why})", host.hostname),
        );
    }
    out.into_iter()
        .take(MAX_CANDIDATES)
        .map(|(_, l)| l)
        .collect()
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
    /// Machines (instances by cloud id, across states) expected to run, with the hosts that
    /// hold them by strong evidence.
    machines: Vec<Expected>,
    /// Whether some host's listing shows something of IaC: a link, a flag, a candidate, or a
    /// ghost flag one day (IaC expects it to run). Without IaC state or images, none does.
    lists_any: bool,
}

/// A machine IaC expects to run (or whose power state it does not record).
#[derive(Debug)]
struct Expected {
    /// Its place in the most recent import.
    resource: usize,
    also: Vec<v1::IacPlace>,
    owners: Vec<String>,
}

#[derive(Debug, Default)]
struct Matched {
    /// Every flag but `ghost`.
    verdict: HostVerdict,
    /// The matched resource, when IaC expects it to run: (address, state, and what to add
    /// when its state records no power state).
    expected_up: Option<(String, String, &'static str)>,
    /// What listings show of `verdict`: a `v1::Host` with only `iac`, `flags` (names) and
    /// `candidates` set, encoded.
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
    ) -> Option<&(String, String, &'static str)> {
        let expected = self.expected_up.as_ref()?;
        (last_seen < now - ghost_after.as_millis() as Millis).then_some(expected)
    }
}

/// What a host listing shows of one host's verdict.
#[derive(Clone, Debug)]
pub struct Listed {
    /// `iac`, `flags` but `ghost`, and `candidates`, as a `v1::Host` encoding.
    pub encoded: Arc<[u8]>,
    /// Whether the host is a ghost now (the flag goes first).
    pub ghost: bool,
}

/// "runs", or what the state says instead when it records no power state.
fn runs(r: &Resource) -> &'static str {
    if r.status.is_empty() {
        "is in state (which records no power state: it may be stopped or deallocated)"
    } else {
        "runs"
    }
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
        // Strong evidence first, for every host: a machine held by id is nobody's candidate.
        let strong: Vec<Option<Match>> = hosts
            .iter()
            .map(|h| strong_match(h, &iac, &index))
            .collect();
        let mut held: HashMap<usize, Vec<String>> = HashMap::new();
        for (h, m) in hosts.iter().zip(&strong) {
            if let Some(machine) = m.as_ref().and_then(|m| m.machine) {
                held.entry(machine).or_default().push(h.host.clone());
            }
        }
        let mut matched_hosts = HashMap::with_capacity(hosts.len());
        for (h, matched) in hosts.iter().zip(strong) {
            let mut out = Matched::default();
            let verdict = &mut out.verdict;
            let catalog = (!h.image_id.is_empty()).then(|| index.image(h)).flatten();
            verdict.image_build = catalog.map(|b| b.build.clone());
            match &matched {
                None if !iac.states.is_empty() => {
                    verdict.candidates = candidates(h, &iac, &index, &held);
                    push(
                        &mut verdict.flags,
                        flag::UNMANAGED,
                        unmanaged_reason(h, iac.states.len(), &verdict.candidates),
                    );
                }
                None => {}
                Some(m) => {
                    let resource = &iac.resources[m.resource].1;
                    if !expected_down(&resource.status) {
                        // Groups record no status by nature; instances may (azurerm VMs).
                        let unknown = resource.role == role::INSTANCE && resource.status.is_empty();
                        out.expected_up = Some((
                            resource.address.clone(),
                            m.link.state.clone(),
                            if unknown {
                                " (which records no power state)"
                            } else {
                                ""
                            },
                        ));
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
                         known): built outside the pipeline, or its manifest was not imported",
                        h.image_id,
                        count(iac.images.len() as u64, "image", "images"),
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
                candidates: out.verdict.candidates.clone(),
                ..v1::Host::default()
            }
            .encode_to_vec()
            .into();
            matched_hosts.insert(h.host.clone(), out);
        }
        let machines = index
            .machines
            .iter()
            .enumerate()
            .filter(|(_, m)| !expected_down(&iac.resources[m.primary()].1.status))
            .map(|(i, m)| Expected {
                resource: m.primary(),
                also: places_but(&iac, m, m.primary()),
                owners: held.remove(&i).unwrap_or_default(),
            })
            .collect();
        let lists_any = matched_hosts
            .values()
            .any(|m| !m.listed.is_empty() || m.expected_up.is_some());
        Matching {
            iac,
            hosts: matched_hosts,
            machines,
            lists_any,
        }
    }

    /// Whether [`listed`](Self::listed) may say something of some host: a listing of a fleet
    /// without IaC skips looking up each of its hosts.
    pub fn lists_any(&self) -> bool {
        self.lists_any
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
        if let Some((address, state, recorded)) = matched.ghost_since(last_seen, now, ghost_after) {
            verdict.flags.insert(
                0,
                v1::Flag {
                    flag: flag::GHOST.to_owned(),
                    reason: format!(
                        "{address} is in state {state}{recorded} but this host last reported \
                         {} (at {})",
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
        for machine in &self.machines {
            let (state, r) = &self.iac.resources[machine.resource];
            out.coverage.state_instances += 1;
            // The owner heard from last.
            let newest = machine
                .owners
                .iter()
                .filter_map(|h| Some((h, last_seen(h)?)))
                .max_by_key(|(_, seen)| *seen);
            let elsewhere = if machine.also.is_empty() {
                String::new()
            } else {
                let list: Vec<String> = machine
                    .also
                    .iter()
                    .map(|p| format!("{} in state {}", p.address, p.state))
                    .collect();
                format!(" (also {})", list.join(", "))
            };
            let reason = match newest {
                Some((_, seen)) if seen >= stale_before => {
                    out.coverage.covered_instances += 1;
                    continue;
                }
                Some((host, seen)) => format!(
                    "state {state} says {}{elsewhere} {}{}; its host {host} last reported {}",
                    r.address,
                    runs(r),
                    status_suffix(r),
                    ago(now, seen)
                ),
                None => format!(
                    "state {state} says {} ({}){elsewhere} {}{}; no agent reports for it",
                    r.address,
                    if r.key.is_empty() { "no id" } else { &r.key },
                    runs(r),
                    status_suffix(r)
                ),
            };
            out.ghosts.push(v1::Ghost {
                address: r.address.clone(),
                state: state.clone(),
                instance_id: r.key.clone(),
                reason,
                also: machine.also.clone(),
            });
        }
        out
    }
}

/// Why a host no resource holds is unmanaged, with its possible matches.
fn unmanaged_reason(h: &HostFacts, states: usize, candidates: &[v1::IacLink]) -> String {
    let mut reason = format!(
        "no resource in the {} matches this host's instance id ({}) or autoscaling group tag",
        count(states as u64, "imported state", "imported states"),
        if h.instance_id.is_empty() {
            "none reported"
        } else {
            &h.instance_id
        }
    );
    if !candidates.is_empty() {
        let list: Vec<String> = candidates
            .iter()
            .map(|c| {
                format!(
                    "{} in state {} ({})",
                    c.address, c.state, c.correlation_path
                )
            })
            .collect();
        reason.push_str(&format!("; possible match: {}", list.join("; ")));
    }
    reason
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
            let serial = match s.serial {
                Some(n) => format!("serial {n}"),
                None if s.kind == "show_json" => {
                    "no serial: `terraform show -json` carries none".to_owned()
                }
                None => match import::why_no_serial(&s.kind) {
                    Some(why) => format!("no serial: {why}"),
                    None => "no serial".to_owned(),
                },
            };
            format!(
                "{} {state} ({serial}, imported {})",
                import::kind_noun(&s.kind),
                rfc3339(s.imported_at)
            )
        }
        None => format!("state {state}"),
    };
    if same_image(&r.image_id, &h.image_id) == Some(false) {
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
