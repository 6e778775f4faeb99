//! Fleet queries, each run inside one read transaction by the parent.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::types::{Type, Value};
use rusqlite::{Connection, OptionalExtension as _, Row, params, params_from_iter};

use super::causes::Causes;
use super::hosts::{Drift, HOST_COLUMNS, HostRow, read_row};
use super::{severity_at, to_u64};
use crate::store::{
    Cause, HistoryEntry, HistoryQuery, HostDetail, HostQuery, ItemFilter, PathSummary, Severity,
    Source,
};

/// The drift of each of `hosts` as a filter with a path counts it: the glob's literal prefix
/// narrows through `items_subject` (which covers the query), the glob itself is checked here.
pub(super) fn drift_by_path(
    conn: &Connection,
    filter: &ItemFilter,
    hosts: &[Arc<HostRow>],
) -> rusqlite::Result<Vec<Drift>> {
    let index: HashMap<&str, usize> = hosts
        .iter()
        .enumerate()
        .map(|(i, row)| (row.host(), i))
        .collect();
    let mut drifts = vec![Drift::default(); hosts.len()];
    let conditions = Conditions::of(filter);
    let sql = drift_by_path_sql(&conditions);
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(&conditions.values))?;
    let mut glob = GlobCache::new(filter);
    while let Some(row) = rows.next()? {
        if !glob.matches(row.get_ref(0)?.as_str()?) {
            continue;
        }
        if let Some(&i) = index.get(row.get_ref(2)?.as_str()?) {
            drifts[i].add(severity_at(row, 1)?, row.get(3)?);
        }
    }
    Ok(drifts)
}

/// The `columns` of the host `name` names: the host with that identity, else the one host
/// with that hostname (an ambiguous hostname names no host).
pub(super) fn find<T>(
    conn: &Connection,
    name: &str,
    columns: &str,
    read: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    if name.is_empty() {
        return Ok(None);
    }
    let by_id = conn
        .prepare_cached(&format!("SELECT {columns} FROM hosts WHERE host = ?1"))?
        .query_row([name], &read)
        .optional()?;
    if by_id.is_some() {
        return Ok(by_id);
    }
    let mut named = conn
        .prepare_cached(&format!(
            "SELECT {columns} FROM hosts WHERE hostname = ?1 LIMIT 2"
        ))?
        .query_map([name], &read)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(match (named.pop(), named.is_empty()) {
        (Some(row), true) => Some(row),
        _ => None,
    })
}

pub(super) fn get_host(
    conn: &Connection,
    host: &str,
    query: &HostQuery,
) -> rusqlite::Result<Option<HostDetail>> {
    let Some(row) = find(conn, host, HOST_COLUMNS, read_row)? else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT subject, severity, observed_at, item FROM items WHERE host = ?1
         ORDER BY severity, subject",
    )?;
    let mut rows = stmt.query([row.host()])?;
    let mut drift = Drift::default();
    let mut items = Vec::new();
    while let Some(item) = rows.next()? {
        let severity = severity_at(item, 1)?;
        if !query.filter.matches(item.get_ref(0)?.as_str()?, severity) {
            continue;
        }
        drift.add(severity, item.get(2)?);
        items.push(item.get(3)?);
    }
    Ok(Some(HostDetail {
        host: row.listed(drift, query),
        items,
    }))
}

pub(super) fn list_paths(
    conn: &Connection,
    filter: &ItemFilter,
    limit: usize,
) -> rusqlite::Result<Vec<PathSummary>> {
    let mut paths = match filter.min_severity {
        None => counted_paths(conn, filter)?,
        // The counts are of every severity: a severity filter counts the items themselves.
        Some(_) => scanned_paths(conn, filter)?,
    };
    paths.sort_unstable_by(|a, b| b.hosts.cmp(&a.hosts).then_with(|| a.path.cmp(&b.path)));
    if limit > 0 {
        paths.truncate(limit);
    }
    Ok(paths)
}

/// Paths from `subject_counts`: one row per path, whatever the number of hosts; in the
/// columns of [`paths_sql`].
fn counted_paths(conn: &Connection, filter: &ItemFilter) -> rusqlite::Result<Vec<PathSummary>> {
    let conditions = Conditions::of(filter);
    let sql = format!(
        "SELECT subject, hosts,
                CASE WHEN n_security > 0 THEN 0 WHEN n_behavioral > 0 THEN 1 ELSE 2 END,
                first_observed, last_observed
         FROM subject_counts{}",
        conditions.where_sql()
    );
    paths(conn, &sql, &conditions, filter)
}

fn scanned_paths(conn: &Connection, filter: &ItemFilter) -> rusqlite::Result<Vec<PathSummary>> {
    let conditions = Conditions::of(filter);
    paths(conn, &paths_sql(&conditions), &conditions, filter)
}

/// The paths `sql` gives (path, hosts, worst severity, first and last observation) that the
/// filter's glob keeps.
fn paths(
    conn: &Connection,
    sql: &str,
    conditions: &Conditions,
    filter: &ItemFilter,
) -> rusqlite::Result<Vec<PathSummary>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params_from_iter(&conditions.values))?;
    let mut glob = GlobCache::new(filter);
    let mut paths = Vec::new();
    while let Some(row) = rows.next()? {
        if !glob.matches(row.get_ref(0)?.as_str()?) {
            continue;
        }
        paths.push(PathSummary {
            path: row.get(0)?,
            hosts: to_u64(row.get(1)?),
            max_severity: severity_at(row, 2)?,
            first_observed: row.get(3)?,
            last_observed: row.get(4)?,
        });
    }
    Ok(paths)
}

/// A change's first hosts, in order: one range of `items_subject`.
pub(super) const CAUSE_HOSTS: &str =
    "SELECT host FROM items WHERE subject = ?1 AND cause = ?2 ORDER BY host LIMIT ?3";

/// A group of identical changes, before its host names are read.
pub(super) struct Group {
    cause: String,
    subject: String,
    worst: Severity,
    hosts: usize,
}

/// Causes by the counts kept on write: one entry per change, whatever the number of hosts; the
/// most shared first, at most `limit` (0: all).
pub(super) fn counted_causes(
    causes: &Causes,
    filter: &ItemFilter,
    min_hosts: usize,
    limit: usize,
) -> Vec<Group> {
    let min_hosts = min_hosts.max(1);
    let mut glob = GlobCache::new(filter);
    let mut groups: Vec<Group> = causes
        .select(|_, count| {
            count.total() >= min_hosts
                && count.subject.starts_with(&filter.path_prefix)
                && glob.matches(&count.subject)
        })
        .into_iter()
        .filter_map(|(cause, count)| {
            Some(Group {
                worst: count.worst()?,
                hosts: count.total(),
                subject: count.subject.to_string(),
                cause,
            })
        })
        .collect();
    groups.sort_unstable_by(|a, b| {
        b.hosts
            .cmp(&a.hosts)
            .then_with(|| a.subject.cmp(&b.subject))
            .then_with(|| a.cause.cmp(&b.cause))
    });
    if limit > 0 {
        groups.truncate(limit);
    }
    groups
}

/// The causes of `groups`, each with its first `max_hosts` hosts (0: all) read from
/// `items_subject`'s range of (subject, cause). A change the counts know of and this read
/// does not (committed after it began) is left out.
pub(super) fn causes_of(
    conn: &Connection,
    groups: Vec<Group>,
    max_hosts: usize,
) -> rusqlite::Result<Vec<Cause>> {
    let mut hosts_of = conn.prepare_cached(CAUSE_HOSTS)?;
    let cap = if max_hosts == 0 { -1 } else { max_hosts as i64 };
    let mut causes = Vec::with_capacity(groups.len());
    for group in groups {
        let hosts = hosts_of
            .query_map(params![group.subject, group.cause, cap], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        if hosts.is_empty() {
            continue;
        }
        causes.push(cause(conn, group, hosts)?);
    }
    Ok(causes)
}

/// Causes counted from the items a filter keeps (without a severity filter the store uses the
/// counts kept on write instead: [`counted_causes`]).
pub(super) fn list_causes(
    conn: &Connection,
    filter: &ItemFilter,
    min_hosts: usize,
    limit: usize,
    max_hosts: usize,
) -> rusqlite::Result<Vec<Cause>> {
    let conditions = Conditions::of(filter);
    let sql = causes_sql(&conditions);
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(&conditions.values))?;
    let mut glob = GlobCache::new(filter);
    // Rows come by subject, then cause, then host (`items_subject`): a group's rows are
    // consecutive and its hosts sorted.
    let mut groups: Vec<(Group, Vec<String>)> = Vec::new();
    while let Some(row) = rows.next()? {
        let subject = row.get_ref(0)?.as_str()?;
        if !glob.matches(subject) {
            continue;
        }
        let severity = severity_at(row, 1)?;
        let cause = row.get_ref(3)?.as_str()?;
        let same = groups
            .last()
            .is_some_and(|(g, _)| g.cause == cause && g.subject == subject);
        if !same {
            let group = Group {
                cause: cause.to_owned(),
                subject: subject.to_owned(),
                worst: severity,
                hosts: 0,
            };
            groups.push((group, Vec::new()));
        }
        let (group, hosts) = groups.last_mut().expect("pushed above");
        group.worst = group.worst.min(severity);
        group.hosts += 1;
        if max_hosts == 0 || hosts.len() < max_hosts {
            hosts.push(row.get(2)?);
        }
    }
    groups.retain(|(g, _)| g.hosts >= min_hosts);
    groups.sort_unstable_by(|(a, _), (b, _)| {
        b.hosts
            .cmp(&a.hosts)
            .then_with(|| a.subject.cmp(&b.subject))
            .then_with(|| a.cause.cmp(&b.cause))
    });
    if limit > 0 {
        groups.truncate(limit);
    }
    groups
        .into_iter()
        .map(|(group, hosts)| cause(conn, group, hosts))
        .collect()
}

/// The cause of `group`, with the first host's item as its example.
fn cause(conn: &Connection, group: Group, hosts: Vec<String>) -> rusqlite::Result<Cause> {
    let (kind, changed, item): (String, String, Vec<u8>) = conn
        .prepare_cached("SELECT kind, changed, item FROM items WHERE host = ?1 AND subject = ?2")?
        .query_row(params![hosts[0], group.subject], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let changed: Vec<String> = serde_json::from_str(&changed)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, Type::Text, Box::new(e)))?;
    Ok(Cause {
        cause: group.cause,
        subject: group.subject,
        kind,
        severity: group.worst,
        changed,
        hosts,
        host_count: group.hosts as u64,
        example: item,
    })
}

pub(super) fn history(
    conn: &Connection,
    query: &HistoryQuery,
) -> rusqlite::Result<Vec<HistoryEntry>> {
    let (sql, conditions) = history_sql(query);
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(&conditions.values))?;
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        let host = row.get_ref(0)?.as_str()?;
        let received_at = row.get(1)?;
        let source = Source::parse(row.get_ref(2)?.as_str()?).ok_or(unknown(2))?;
        let chunk = super::history::read(row, 3)?;
        // Newest first, as the rows.
        let entries = chunk.entries(host, received_at, source, |subject, severity| {
            query.filter.matches(subject, severity)
        });
        for entry in entries.rev() {
            events.push(entry.map_err(|_| unknown(3))?);
            if events.len() == query.limit {
                events.reverse();
                return Ok(events);
            }
        }
    }
    events.reverse();
    Ok(events)
}

fn drift_by_path_sql(conditions: &Conditions) -> String {
    format!(
        "SELECT subject, severity, host, observed_at FROM items{}",
        conditions.where_sql()
    )
}

fn paths_sql(conditions: &Conditions) -> String {
    format!(
        "SELECT subject, count(*), min(severity), min(observed_at), max(observed_at)
         FROM items{} GROUP BY subject",
        conditions.where_sql()
    )
}

/// Covered by `items_subject`, in its order: grouping never reads an item.
fn causes_sql(conditions: &Conditions) -> String {
    format!(
        "SELECT subject, severity, host, cause FROM items{} ORDER BY subject, cause, host",
        conditions.where_sql()
    )
}

/// A column whose text is none of the values its CHECK constraint allows.
fn unknown(column: usize) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(column, "an unknown value".into(), Type::Text)
}

/// Newest first, so a limit stops the scan early (the caller reverses); `id` orders writes
/// received in the same millisecond as they were stored. A row holds a write's events: the
/// path and severity filter is the caller's, event by event.
pub(super) fn history_sql(query: &HistoryQuery) -> (String, Conditions) {
    let mut conditions = Conditions::default();
    if !query.host.is_empty() {
        conditions.push("host = ?", query.host.clone());
    }
    if let Some(since) = query.since {
        conditions.push("received_at >= ?", since);
    }
    let sql = format!(
        "SELECT host, received_at, source, chunk FROM history{} ORDER BY received_at DESC, id DESC",
        conditions.where_sql()
    );
    (sql, conditions)
}

/// The statements that scan items by a filter, for tests of their plans.
#[cfg(test)]
pub(super) fn item_scans(filter: &ItemFilter) -> Vec<String> {
    let conditions = Conditions::of(filter);
    vec![
        drift_by_path_sql(&conditions),
        paths_sql(&conditions),
        causes_sql(&conditions),
    ]
}

/// `WHERE` conditions with their values (bound in order, to `?` placeholders).
#[derive(Default)]
pub(super) struct Conditions {
    sql: Vec<&'static str>,
    values: Vec<Value>,
}

impl Conditions {
    /// What SQL can check of an item filter: the severity, and the glob's literal prefix as a
    /// range, so an index on `subject` narrows the scan. The glob itself is left to the caller.
    fn of(filter: &ItemFilter) -> Conditions {
        let mut conditions = Conditions::default();
        if !filter.path_prefix.is_empty() {
            conditions.push("subject >= ?", filter.path_prefix.clone());
            if let Some(upper) = prefix_upper_bound(&filter.path_prefix) {
                conditions.push("subject < ?", upper);
            }
        }
        if let Some(min) = filter.min_severity {
            conditions.push("severity <= ?", min as i64);
        }
        conditions
    }

    fn push(&mut self, sql: &'static str, value: impl Into<Value>) {
        self.sql.push(sql);
        self.values.push(value.into());
    }

    fn where_sql(&self) -> String {
        if self.sql.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.sql.join(" AND "))
        }
    }
}

/// The least string above every string that starts with `prefix` (None when there is none:
/// an empty prefix, or one of only U+10FFFF). SQLite compares text as UTF-8 bytes, which orders
/// like code points, so `prefix <= s < bound` holds exactly for the strings with the prefix.
pub(super) fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = (last as u32 + 1..=char::MAX as u32).find_map(char::from_u32) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// A filter's glob verdict, remembered for the last subject: rows read through
/// `items_subject` come sorted by subject, so the glob runs once per distinct path.
struct GlobCache<'a> {
    filter: &'a ItemFilter,
    last: Option<(String, bool)>,
}

impl<'a> GlobCache<'a> {
    fn new(filter: &'a ItemFilter) -> GlobCache<'a> {
        GlobCache { filter, last: None }
    }

    fn matches(&mut self, subject: &str) -> bool {
        let Some(glob) = &self.filter.path else {
            return true;
        };
        if let Some((last, verdict)) = &self.last
            && last == subject
        {
            return *verdict;
        }
        let verdict = subject.starts_with(&self.filter.path_prefix) && glob.is_match(subject);
        self.last = Some((subject.to_owned(), verdict));
        verdict
    }
}
