//! Fleet queries, each run inside one read-only, repeatable-read transaction by the parent.
//!
//! The host listing reads the `hosts` table every time: collectors sharing the database see
//! each other's writes at once, which a per-process mirror (SQLite's `hosts`) could not give.

use std::collections::HashMap;
use std::sync::Arc;

use postgres::types::ToSql;

use super::history;
use super::tx::Tx;

use super::{severity, to_u64};
use crate::store::aggregates::{Drift, HostRow, join_image, listing};
use crate::store::{
    Cause, HistoryEntry, HistoryQuery, HostDetail, HostQuery, ItemFilter, ListedHost, PathSummary,
    ReportedHost, Result, Severity, StoreError,
};

const HOST_COLUMNS: &str = "host, hostname, identity_source, image_id, baseline_id, \
     agent_version, image_name, image_version, last_seq, first_seen, last_seen, n_security, \
     n_behavioral, n_cosmetic, since_security, since_behavioral, since_cosmetic";

fn host_row(r: &postgres::Row) -> HostRow {
    let reported = ReportedHost {
        host: r.get(0),
        hostname: r.get(1),
        identity_source: r.get(2),
        image_id: r.get(3),
        baseline_id: r.get(4),
        agent_version: r.get(5),
        image: join_image(r.get(6), r.get::<_, &str>(7)),
        last_seq: to_u64(r.get(8)),
        first_seen: r.get(9),
        last_seen: r.get(10),
        listing: Default::default(),
    };
    HostRow::new(
        reported,
        [r.get(11), r.get(12), r.get(13)],
        [r.get(14), r.get(15), r.get(16)],
    )
}

pub(super) fn list_hosts(tx: &mut Tx<'_>, query: &HostQuery) -> Result<Vec<ListedHost>> {
    let rows: Vec<Arc<HostRow>> = tx
        .query(
            &format!("SELECT {HOST_COLUMNS} FROM hosts ORDER BY host"),
            &[],
        )?
        .iter()
        .map(|r| Arc::new(host_row(r)))
        .collect();
    let drifts = match query.filter.path {
        Some(_) => drift_by_path(tx, &query.filter, &rows)?,
        None => rows.iter().map(|r| r.cached_drift(&query.filter)).collect(),
    };
    Ok(listing(&rows, &drifts, query))
}

/// The drift of each of `hosts` as a filter with a path counts it.
fn drift_by_path(
    tx: &mut Tx<'_>,
    filter: &ItemFilter,
    hosts: &[Arc<HostRow>],
) -> Result<Vec<Drift>> {
    let index: HashMap<&str, usize> = hosts
        .iter()
        .enumerate()
        .map(|(i, row)| (row.host(), i))
        .collect();
    let mut drifts = vec![Drift::default(); hosts.len()];
    let conditions = Conditions::of(filter);
    let sql = format!(
        "SELECT subject, severity, host, observed_at FROM items{} ORDER BY subject",
        conditions.where_sql()
    );
    for row in tx.query(&sql, &conditions.params())? {
        if !filter.matches(row.get(0), severity(row.get(1))?) {
            continue;
        }
        if let Some(&i) = index.get(row.get::<_, &str>(2)) {
            drifts[i].add(severity(row.get(1))?, row.get(3));
        }
    }
    Ok(drifts)
}

/// The host `name` names: the host with that identity, else the one host with that hostname.
fn find_row(tx: &mut Tx<'_>, name: &str) -> Result<Option<HostRow>> {
    if name.is_empty() {
        return Ok(None);
    }
    if let Some(row) = tx.query_opt(
        &format!("SELECT {HOST_COLUMNS} FROM hosts WHERE host = $1"),
        &[&name],
    )? {
        return Ok(Some(host_row(&row)));
    }
    let named = tx.query(
        &format!("SELECT {HOST_COLUMNS} FROM hosts WHERE hostname = $1 LIMIT 2"),
        &[&name],
    )?;
    Ok(match named.as_slice() {
        [one] => Some(host_row(one)),
        _ => None,
    })
}

pub(super) fn find(tx: &mut Tx<'_>, name: &str) -> Result<Option<String>> {
    Ok(find_row(tx, name)?.map(|row| row.host().to_owned()))
}

pub(super) fn get_host(
    tx: &mut Tx<'_>,
    host: &str,
    query: &HostQuery,
) -> Result<Option<HostDetail>> {
    let Some(row) = find_row(tx, host)? else {
        return Ok(None);
    };
    let mut drift = Drift::default();
    let mut items = Vec::new();
    for item in tx.query(
        "SELECT subject, severity, observed_at, item FROM items WHERE host = $1
         ORDER BY severity, subject",
        &[&row.host()],
    )? {
        let severity = severity(item.get(1))?;
        if !query.filter.matches(item.get(0), severity) {
            continue;
        }
        drift.add(severity, item.get(2));
        items.push(item.get(3));
    }
    Ok(Some(HostDetail {
        host: row.listed(drift, query),
        items,
    }))
}

pub(super) fn list_paths(
    tx: &mut Tx<'_>,
    filter: &ItemFilter,
    limit: usize,
) -> Result<Vec<PathSummary>> {
    let conditions = Conditions::of(filter);
    let sql = format!(
        "SELECT subject, count(*), min(severity), min(observed_at), max(observed_at)
         FROM items{} GROUP BY subject",
        conditions.where_sql()
    );
    let mut paths = Vec::new();
    for row in tx.query(&sql, &conditions.params())? {
        let subject: &str = row.get(0);
        if !glob_matches(filter, subject) {
            continue;
        }
        paths.push(PathSummary {
            path: subject.to_owned(),
            hosts: to_u64(row.get(1)),
            max_severity: severity(row.get(2))?,
            first_observed: row.get(3),
            last_observed: row.get(4),
        });
    }
    paths.sort_unstable_by(|a, b| b.hosts.cmp(&a.hosts).then_with(|| a.path.cmp(&b.path)));
    if limit > 0 {
        paths.truncate(limit);
    }
    Ok(paths)
}

pub(super) fn list_causes(
    tx: &mut Tx<'_>,
    filter: &ItemFilter,
    min_hosts: usize,
    limit: usize,
    max_hosts: usize,
) -> Result<Vec<Cause>> {
    struct Group {
        subject: String,
        worst: Severity,
        hosts: Vec<String>,
    }
    let conditions = Conditions::of(filter);
    let sql = format!(
        "SELECT subject, severity, host, cause FROM items{} ORDER BY subject, severity, host",
        conditions.where_sql()
    );
    let mut groups: HashMap<String, Group> = HashMap::new();
    for row in tx.query(&sql, &conditions.params())? {
        let subject: &str = row.get(0);
        if !glob_matches(filter, subject) {
            continue;
        }
        let severity = severity(row.get(1))?;
        let host: String = row.get(2);
        let cause: String = row.get(3);
        let group = groups.entry(cause).or_insert_with(|| Group {
            subject: subject.to_owned(),
            worst: severity,
            hosts: Vec::new(),
        });
        group.worst = group.worst.min(severity);
        group.hosts.push(host);
    }
    let min_hosts = min_hosts.max(1);
    let mut groups: Vec<(String, Group)> = groups
        .into_iter()
        .filter(|(_, g)| g.hosts.len() >= min_hosts)
        .collect();
    groups.sort_unstable_by(|(ca, a), (cb, b)| {
        b.hosts
            .len()
            .cmp(&a.hosts.len())
            .then_with(|| a.subject.cmp(&b.subject))
            .then_with(|| ca.cmp(cb))
    });
    if limit > 0 {
        groups.truncate(limit);
    }
    let mut causes = Vec::with_capacity(groups.len());
    for (cause, mut group) in groups {
        group.hosts.sort_unstable();
        let host_count = group.hosts.len() as u64;
        // The first host's item.
        let example = tx.query_one(
            "SELECT kind, changed, item FROM items WHERE host = $1 AND subject = $2",
            &[&group.hosts[0], &group.subject],
        )?;
        let changed: Vec<String> = serde_json::from_str(example.get(1)).map_err(|e| {
            StoreError::Database(format!("an item's changed attributes do not parse: {e}"))
        })?;
        if max_hosts > 0 {
            group.hosts.truncate(max_hosts);
        }
        causes.push(Cause {
            cause,
            subject: group.subject,
            kind: example.get(0),
            severity: group.worst,
            changed,
            hosts: group.hosts,
            host_count,
            example: example.get(2),
        });
    }
    Ok(causes)
}

/// History rows read at once.
const HISTORY_PAGE: i32 = 64;

pub(super) fn history(tx: &mut Tx<'_>, query: &HistoryQuery) -> Result<Vec<HistoryEntry>> {
    let mut conditions = Conditions::default();
    if !query.host.is_empty() {
        conditions.push("host =", query.host.clone());
    }
    if let Some(since) = query.since {
        conditions.push("received_at >=", since);
    }
    // Newest first, so a limit keeps the newest (the answer is reversed); `id` orders writes
    // received in the same millisecond as they were stored. A row holds a write's events (at
    // least one): without a filter on them, as many rows as the limit are enough.
    let unfiltered = query.filter.path.is_none() && query.filter.min_severity.is_none();
    let limit = match query.limit {
        n if n > 0 && unfiltered => format!(" LIMIT {}", conditions.bind(n as i64)),
        _ => String::new(),
    };
    let sql = format!(
        "SELECT {} FROM history{} ORDER BY received_at DESC, id DESC{limit}",
        history::COLUMNS,
        conditions.where_sql()
    );
    // Read a page of rows at a time: a row holds a write's events, often dozens, and the
    // limit is usually reached in the first rows.
    let rows = tx.bind(&sql, &conditions.params())?;
    let mut events = Vec::new();
    loop {
        let page = tx.next_page(&rows, HISTORY_PAGE)?;
        for row in &page {
            let entries = history::entries(row, |subject, severity| {
                query.filter.matches(subject, severity)
            })?;
            for entry in entries.rev() {
                events.push(entry?);
                if events.len() == query.limit {
                    events.reverse();
                    return Ok(events);
                }
            }
        }
        if page.len() < HISTORY_PAGE as usize {
            events.reverse();
            return Ok(events);
        }
    }
}

fn glob_matches(filter: &ItemFilter, subject: &str) -> bool {
    filter
        .path
        .as_ref()
        .is_none_or(|glob| subject.starts_with(&filter.path_prefix) && glob.is_match(subject))
}

/// `WHERE` conditions with their values, bound to `$1`, `$2`… in order.
#[derive(Default)]
struct Conditions {
    sql: Vec<String>,
    values: Vec<Box<dyn ToSql + Sync>>,
}

impl Conditions {
    /// What SQL can check of an item filter: the severity, and the glob's literal prefix as a
    /// range on the `COLLATE "C"` subject, so `items_subject` narrows the scan.
    fn of(filter: &ItemFilter) -> Conditions {
        let mut conditions = Conditions::default();
        if !filter.path_prefix.is_empty() {
            conditions.push("subject >=", filter.path_prefix.clone());
            if let Some(upper) = prefix_upper_bound(&filter.path_prefix) {
                conditions.push("subject <", upper);
            }
        }
        if let Some(min) = filter.min_severity {
            conditions.push("severity <=", min as i64);
        }
        conditions
    }

    /// `test` is a column and an operator; the value is bound after it.
    fn push(&mut self, test: &str, value: impl ToSql + Sync + 'static) {
        let placeholder = self.bind(value);
        self.sql.push(format!("{test} {placeholder}"));
    }

    /// Binds a value (for after the conditions): its placeholder.
    fn bind(&mut self, value: impl ToSql + Sync + 'static) -> String {
        self.values.push(Box::new(value));
        format!("${}", self.values.len())
    }

    fn where_sql(&self) -> String {
        if self.sql.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.sql.join(" AND "))
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.values.iter().map(|v| v.as_ref()).collect()
    }
}

/// The least string above every string that starts with `prefix` (see SQLite's); byte order
/// on UTF-8 is code point order, which is what `COLLATE "C"` compares.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = (last as u32 + 1..=char::MAX as u32).find_map(char::from_u32) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}
