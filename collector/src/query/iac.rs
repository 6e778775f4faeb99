//! IaC queries and imports: the `driftwatch.v1.Iac` gRPC service, its JSON API
//! (`/api/v1/iac/status`, `/api/v1/report`), and the IaC columns of `hosts`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use driftwatch_proto::text::count;
use driftwatch_proto::v1;
use tonic::{Request, Status};

use super::listing::Row;
use super::{Queries, QueryError, filter};
use crate::access::Caller;
use crate::iac::correlate::{Correlation, HostFacts, Matching};
use crate::iac::import;
use crate::store::{self, StateImport, Store};

fn ghost_after(text: &str, default: Duration) -> Result<Duration, QueryError> {
    if text.is_empty() {
        return Ok(default);
    }
    humantime::parse_duration(text).map_err(|e| {
        QueryError::BadRequest(format!(
            "ghost_after {text:?} is not a duration (e.g. 15m): {e}"
        ))
    })
}

/// What correlation reads that only hellos and imports change, and the matching made of it.
struct Snapshot {
    facts: Vec<HostFacts>,
    matching: Matching,
}

/// Hosts and their verdicts as of now, for status and report.
struct Fleet {
    snapshot: Arc<Snapshot>,
    correlation: Correlation,
}

impl Fleet {
    fn facts(&self) -> &[HostFacts] {
        &self.snapshot.facts
    }

    fn iac(&self) -> &store::IacData {
        self.snapshot.matching.iac()
    }
}

/// Fills `iac` and `flags` of listed hosts (on whichever thread lists them).
pub(super) struct IacColumns {
    snapshot: Arc<Snapshot>,
    ghost_after: Duration,
}

impl IacColumns {
    pub fn fill(&self, rows: &mut [Row], now: store::Millis) {
        let matching = &self.snapshot.matching;
        if !matching.lists_any() {
            return;
        }
        for row in rows {
            let reported = &row.listed.reported;
            let listed = matching.listed(&reported.host, reported.last_seen, now, self.ghost_after);
            if let Some(listed) = listed {
                row.iac = listed.encoded;
                row.ghost = listed.ghost;
            }
        }
    }

    /// Fills the columns of one host's whole message.
    pub fn fill_one(&self, host: &mut v1::Host, now: store::Millis) {
        let last_seen = store::parse_rfc3339(&host.last_seen).unwrap_or(now);
        let matching = &self.snapshot.matching;
        if let Some(verdict) = matching.verdict(&host.host, last_seen, now, self.ghost_after) {
            host.flags = verdict.flag_names();
            host.iac = verdict.iac;
            host.candidates = verdict.candidates;
        }
    }
}

/// The last snapshot, reused while the store's generation holds (a hello or an import
/// changes it). Only `ghost` and coverage depend on the clock: they are derived per query
/// from last-seen times.
#[derive(Default)]
pub(super) struct Cache(std::sync::Mutex<Option<(u64, Arc<Snapshot>)>>);

impl Cache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(u64, Arc<Snapshot>)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<S: Store> Queries<S> {
    /// The snapshot: the cached one while the store's generation holds.
    async fn snapshot(&self) -> Result<Arc<Snapshot>, QueryError> {
        // On a blocking thread like every store call: PostgreSQL's generation is a query.
        let generation = self.run(|s| Ok(s.generation())).await?;
        if let Some((g, snapshot)) = self.iac_cache.lock().as_ref()
            && *g == generation
        {
            return Ok(snapshot.clone());
        }
        let (facts, iac) = self.run(|s| Ok((s.host_facts()?, s.iac()?))).await?;
        let matching = Matching::new(&facts, iac);
        let snapshot = Arc::new(Snapshot { facts, matching });
        *self.iac_cache.lock() = Some((generation, snapshot.clone()));
        Ok(snapshot)
    }

    /// The whole fleet, correlated as of now.
    async fn correlate(&self, ghost_after: Duration) -> Result<Fleet, QueryError> {
        let snapshot = self.snapshot().await?;
        let last_seen: HashMap<String, store::Millis> =
            self.run(|s| s.last_seen()).await?.into_iter().collect();
        let correlation = snapshot.matching.correlation(
            |h| last_seen.get(h).copied(),
            store::now_millis(),
            ghost_after,
        );
        Ok(Fleet {
            snapshot,
            correlation,
        })
    }

    /// What fills the IaC columns of listed hosts, as of the store's current generation.
    pub(super) async fn iac_columns(&self) -> Result<IacColumns, QueryError> {
        Ok(IacColumns {
            snapshot: self.snapshot().await?,
            ghost_after: self.ghost_after,
        })
    }

    /// Stores a state `by` a caller (recorded with it, shown by `iac status`).
    pub async fn import_state(
        &self,
        r: v1::ImportStateRequest,
        by: &Caller,
    ) -> Result<v1::ImportResult, QueryError> {
        import::validate_state(&r).map_err(|e| QueryError::BadRequest(e.to_string()))?;
        let now = store::now_millis();
        // What the answer and the log need; the request itself (every resource) moves to the
        // store call.
        let (name, source, serial, kind) =
            (r.name.clone(), r.source.clone(), r.serial, r.kind.clone());
        let import = StateImport {
            imported_by: by.to_string(),
            ..crate::iac::state_import(r)
        };
        let outcome = self
            .run(move |s| s.import_state(&import, now))
            .await
            .map_err(rejected_as_bad_request)?;
        self.metrics
            .imports
            .get_or_create(&crate::metrics::KindLabel { kind: "state" })
            .inc();
        tracing::info!(
            state = %name, %source, resources = outcome.stored,
            replaced = outcome.replaced, by = %by, %kind, "Imported a state."
        );
        Ok(v1::ImportResult {
            summary: import::state_summary(&kind, &name, serial, outcome.stored, outcome.replaced),
            resources: outcome.stored,
            replaced: outcome.replaced,
        })
    }

    pub async fn import_manifest(
        &self,
        r: v1::ImportManifestRequest,
        by: &Caller,
    ) -> Result<v1::ImportResult, QueryError> {
        import::validate_manifest(&r).map_err(|e| QueryError::BadRequest(e.to_string()))?;
        let now = store::now_millis();
        let source = r.source.clone();
        let (import, skipped) = crate::iac::manifest_import(r);
        let outcome = self
            .run(move |s| s.import_manifest(&import, now))
            .await
            .map_err(rejected_as_bad_request)?;
        self.metrics
            .imports
            .get_or_create(&crate::metrics::KindLabel { kind: "manifest" })
            .inc();
        tracing::info!(
            %source, images = outcome.stored, replaced = outcome.replaced, by = %by,
            "Imported a Packer manifest."
        );
        let skipped = if skipped == 0 {
            String::new()
        } else {
            format!(
                "; skipped {} that {} not cloud images",
                count(skipped, "artifact", "artifacts"),
                if skipped == 1 { "is" } else { "are" }
            )
        };
        Ok(v1::ImportResult {
            summary: format!(
                "imported {} from {source} ({} already known, updated){skipped}",
                count(outcome.stored, "image", "images"),
                outcome.replaced
            ),
            resources: outcome.stored,
            replaced: outcome.replaced,
        })
    }

    pub async fn iac_status(&self, r: v1::IacStatusRequest) -> Result<v1::IacStatus, QueryError> {
        let fleet = self
            .correlate(ghost_after(&r.ghost_after, self.ghost_after)?)
            .await?;
        Ok(status(&fleet))
    }

    pub async fn report(&self, r: v1::ReportRequest) -> Result<v1::IacReport, QueryError> {
        let item_filter = filter(&r.severity, "")?;
        let fleet = self
            .correlate(ghost_after(&r.ghost_after, self.ghost_after)?)
            .await?;
        let causes = self
            .run(move |s| {
                s.list_causes(&item_filter, 1, 0, 0)?
                    .into_iter()
                    .map(super::convert::cause)
                    .collect()
            })
            .await?;
        Ok(v1::IacReport {
            generated_at: store::rfc3339(store::now_millis()),
            status: Some(status(&fleet)),
            groups: report_groups(&fleet, causes),
        })
    }
}

/// A stored state as `iac status` shows it.
fn state_info(s: &store::StateInfo) -> v1::StateInfo {
    v1::StateInfo {
        name: s.name.clone(),
        source: s.source.clone(),
        kind: s.kind.clone(),
        lineage: s.lineage.clone(),
        serial: s.serial,
        terraform_version: s.terraform_version.clone(),
        imported_at: store::rfc3339(s.imported_at),
        resources: s.resources,
        imported_by: s.imported_by.clone(),
    }
}

/// A rejected import is the client's to fix.
fn rejected_as_bad_request(e: QueryError) -> QueryError {
    match e {
        QueryError::Store(store::StoreError::Rejected(m)) => QueryError::BadRequest(m),
        other => other,
    }
}

fn status(fleet: &Fleet) -> v1::IacStatus {
    let mut hosts: Vec<v1::FlaggedHost> = fleet
        .facts()
        .iter()
        .filter_map(|h| {
            let verdict = fleet.correlation.hosts.get(&h.host)?;
            (!verdict.flags.is_empty()).then(|| v1::FlaggedHost {
                host: h.host.clone(),
                hostname: h.hostname.clone(),
                image_id: h.image_id.clone(),
                iac: verdict.iac.clone(),
                flags: verdict.flags.clone(),
                candidates: verdict.candidates.clone(),
            })
        })
        .collect();
    hosts.sort_by(|a, b| {
        b.flags
            .len()
            .cmp(&a.flags.len())
            .then_with(|| a.host.cmp(&b.host))
    });
    let mut catalog: Vec<&str> = fleet
        .iac()
        .images
        .iter()
        .map(|i| i.image_id.as_str())
        .collect();
    catalog.sort_unstable();
    catalog.dedup();
    v1::IacStatus {
        coverage: Some(fleet.correlation.coverage),
        states: fleet.iac().states.iter().map(state_info).collect(),
        catalog_images: catalog.len() as u64,
        hosts,
        ghosts: fleet.correlation.ghosts.clone(),
        flag_counts: fleet.correlation.flag_counts(),
    }
}

/// Drift grouped by (IaC resource, image), each cause split into the groups of its hosts;
/// groups with security drift first, then by resource.
fn report_groups(fleet: &Fleet, causes: Vec<v1::Cause>) -> Vec<v1::ReportGroup> {
    type Key = (String, String, String);
    let mut key_of: HashMap<&str, Key> = HashMap::new();
    let mut groups: BTreeMap<Key, v1::ReportGroup> = BTreeMap::new();
    for h in fleet.facts() {
        let verdict = fleet.correlation.hosts.get(&h.host);
        let link = verdict.and_then(|v| v.iac.as_ref());
        let key = (
            link.map(|l| l.address.clone()).unwrap_or_default(),
            link.map(|l| l.state.clone()).unwrap_or_default(),
            h.image_id.clone(),
        );
        key_of.insert(&h.host, key.clone());
        let group = groups.entry(key).or_insert_with(|| v1::ReportGroup {
            resource: link.map(|l| l.address.clone()).unwrap_or_default(),
            state: link.map(|l| l.state.clone()).unwrap_or_default(),
            image_id: h.image_id.clone(),
            image_build: verdict
                .and_then(|v| v.image_build.clone())
                .unwrap_or_default(),
            ..Default::default()
        });
        group.hosts.push(h.host.clone());
    }
    for cause in causes {
        let mut split: BTreeMap<&Key, Vec<String>> = BTreeMap::new();
        for host in &cause.hosts {
            if let Some(key) = key_of.get(host.as_str()) {
                split.entry(key).or_default().push(host.clone());
            }
        }
        for (key, hosts) in split {
            if let Some(group) = groups.get_mut(key) {
                group.causes.push(v1::Cause {
                    host_count: hosts.len() as u64,
                    hosts,
                    ..cause.clone()
                });
            }
        }
    }
    let rank = |severity: &str| store::Severity::parse(severity).map_or(usize::MAX, |s| s as usize);
    let mut out: Vec<v1::ReportGroup> = groups
        .into_values()
        .filter(|g| !g.causes.is_empty())
        .map(|mut g| {
            g.causes.sort_by(|a, b| {
                rank(&a.severity)
                    .cmp(&rank(&b.severity))
                    .then_with(|| b.host_count.cmp(&a.host_count))
                    .then_with(|| a.path.cmp(&b.path))
            });
            g
        })
        .collect();
    let worst = |g: &v1::ReportGroup| g.causes.first().map_or(usize::MAX, |c| rank(&c.severity));
    out.sort_by(|a, b| {
        worst(a)
            .cmp(&worst(b))
            .then_with(|| a.resource.is_empty().cmp(&b.resource.is_empty()))
            .then_with(|| a.resource.cmp(&b.resource))
            .then_with(|| a.image_id.cmp(&b.image_id))
    });
    out
}

/// The gRPC face.
pub struct IacService<S>(pub Queries<S>);

#[tonic::async_trait]
impl<S: Store> v1::iac_server::Iac for IacService<S> {
    async fn import_state(
        &self,
        r: Request<v1::ImportStateRequest>,
    ) -> Result<tonic::Response<v1::ImportResult>, Status> {
        let by = Caller::of(&r);
        Ok(tonic::Response::new(
            self.0.import_state(r.into_inner(), &by).await?,
        ))
    }

    async fn import_manifest(
        &self,
        r: Request<v1::ImportManifestRequest>,
    ) -> Result<tonic::Response<v1::ImportResult>, Status> {
        let by = Caller::of(&r);
        Ok(tonic::Response::new(
            self.0.import_manifest(r.into_inner(), &by).await?,
        ))
    }

    async fn status(
        &self,
        r: Request<v1::IacStatusRequest>,
    ) -> Result<tonic::Response<v1::IacStatus>, Status> {
        Ok(tonic::Response::new(
            self.0.iac_status(r.into_inner()).await?,
        ))
    }

    async fn report(
        &self,
        r: Request<v1::ReportRequest>,
    ) -> Result<tonic::Response<v1::IacReport>, Status> {
        Ok(tonic::Response::new(self.0.report(r.into_inner()).await?))
    }
}
