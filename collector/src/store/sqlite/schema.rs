//! The tables (see the parent module's docs) and their migrations.

use driftwatch_proto::drift::DriftItem;
use rusqlite::types::Type;
use rusqlite::{Connection, Transaction, TransactionBehavior, params};

use super::Context as _;
use crate::store::{ItemRecord, Result, StoreError};

/// A step of the schema.
pub(super) enum Migration {
    Sql(&'static str),
    /// A change SQL alone cannot make (converting data).
    Code(fn(&Transaction<'_>) -> Result<()>),
}

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied. Never edit
/// one that has shipped: add the next.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration::Sql(SCHEMA_V1),
    Migration::Sql(SCHEMA_V2),
    Migration::Code(items_encoded),
    Migration::Sql(super::credentials::SCHEMA_V4),
    Migration::Sql(SCHEMA_V5),
    Migration::Sql(super::enrollment::SCHEMA_V6),
    Migration::Sql(SCHEMA_V7),
    Migration::Code(events_checks_as_comparisons),
    Migration::Sql(SCHEMA_V9),
    Migration::Code(iac_state_kinds_pulumi_and_cloudformation),
    Migration::Sql(SCHEMA_V11),
    Migration::Sql(SCHEMA_V12),
    Migration::Code(history_in_chunks),
];

/// Version 13: the history is stored one row per write (`history`, its events encoded together
/// in `chunk`: `history::Chunk`), not one per event (`events`), which cost four b-tree
/// insertions per event, half of ingest. The rows of `events` are converted, consecutive
/// events of one write together, and the table dropped.
fn history_in_chunks(tx: &Transaction<'_>) -> Result<()> {
    tx.execute_batch(SCHEMA_V13)
        .and_then(|()| super::history::convert_events(tx))
        .and_then(|()| tx.execute_batch("DROP TABLE events;"))
        .context("storing the history one row per write")
}

const SCHEMA_V13: &str = "
CREATE TABLE history (
    id          INTEGER PRIMARY KEY,
    host        TEXT NOT NULL REFERENCES hosts (host),
    stream_id   TEXT NOT NULL,
    first_seq   INTEGER CHECK (first_seq > 0),
    received_at INTEGER NOT NULL,
    source      TEXT NOT NULL CHECK (source = 'stream' OR source = 'snapshot'),
    events      INTEGER NOT NULL CHECK (events > 0),
    chunk       BLOB NOT NULL,
    UNIQUE (host, stream_id, first_seq)
);
-- A host's history, and everyone's, newest first.
CREATE INDEX history_host_received ON history (host, received_at);
CREATE INDEX history_received ON history (received_at);
";

/// Version 12: `items` is keyed by (host, subject) itself (`WITHOUT ROWID`), so reading,
/// updating or replacing a host's item is one b-tree search instead of two (the key's index,
/// then the row); and `subject_counts` is kept by the writer, the only code that changes
/// items (`write::count_subject_in`, `count_subject_out`, and `recount_subject` when an item
/// changes severity in place), not by triggers, whose mere presence made every item statement
/// dearer (a statement journal, the trigger programs), whether they fired or not. The table is
/// copied once (`items` holds the current drift, not the history; its triggers go with it); a
/// guard refuses any update of an item's subject or `observed_at`, which no write makes.
const SCHEMA_V12: &str = "
CREATE TABLE items_v12 (
    host         TEXT NOT NULL REFERENCES hosts (host),
    subject      TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    kind         TEXT NOT NULL,
    severity     INTEGER NOT NULL CHECK (severity BETWEEN 0 AND 2),
    cause        TEXT NOT NULL,
    changed      TEXT NOT NULL,
    observed_at  INTEGER NOT NULL,
    sha256       BLOB NOT NULL,
    item         BLOB NOT NULL DEFAULT x'',
    PRIMARY KEY (host, subject)
) WITHOUT ROWID;
INSERT INTO items_v12
    SELECT host, subject, subject_kind, kind, severity, cause, changed, observed_at, sha256, item
    FROM items;
DROP TABLE items;
ALTER TABLE items_v12 RENAME TO items;
CREATE INDEX items_subject ON items (subject, cause, host, severity, observed_at);

-- Nothing changes an item's subject (it is half its key) or its observed_at; if something
-- ever does, the path counts must not go wrong silently.
CREATE TRIGGER items_subject_fixed BEFORE UPDATE OF subject, observed_at ON items
WHEN OLD.subject != NEW.subject OR OLD.observed_at != NEW.observed_at
BEGIN
    SELECT RAISE(ABORT, 'an item''s subject and observed_at cannot change: delete it and insert another');
END;
";

/// Version 11: the changes are counted in the writer's memory (`causes`), not in
/// `cause_counts`: every content change is a new cause, so keeping that table moved a host
/// from one row to another on every event, a fifth of ingest. `subject_counts` stays (ingest
/// rarely changes an item's path, severity or first observation).
const SCHEMA_V11: &str = "
DROP TRIGGER items_recounted_cause;
DROP TRIGGER items_counted_in;
DROP TRIGGER items_counted_out;
DROP TABLE cause_counts;

CREATE TRIGGER items_counted_in AFTER INSERT ON items BEGIN
    INSERT INTO subject_counts
        VALUES (NEW.subject, 1, NEW.severity = 0, NEW.severity = 1, NEW.severity = 2,
                NEW.observed_at, NEW.observed_at)
        ON CONFLICT (subject) DO UPDATE SET
            hosts = hosts + 1,
            n_security = n_security + (NEW.severity = 0),
            n_behavioral = n_behavioral + (NEW.severity = 1),
            n_cosmetic = n_cosmetic + (NEW.severity = 2),
            first_observed = min(first_observed, NEW.observed_at),
            last_observed = max(last_observed, NEW.observed_at);
END;

CREATE TRIGGER items_counted_out AFTER DELETE ON items BEGIN
    UPDATE subject_counts SET
        hosts = hosts - 1,
        n_security = n_security - (OLD.severity = 0),
        n_behavioral = n_behavioral - (OLD.severity = 1),
        n_cosmetic = n_cosmetic - (OLD.severity = 2)
    WHERE subject = OLD.subject;
    DELETE FROM subject_counts WHERE subject = OLD.subject AND hosts = 0;
    UPDATE subject_counts SET
        first_observed = (SELECT min(observed_at) FROM items WHERE subject = OLD.subject),
        last_observed = (SELECT max(observed_at) FROM items WHERE subject = OLD.subject)
    WHERE subject = OLD.subject
        AND (first_observed = OLD.observed_at OR last_observed = OLD.observed_at);
END;
";

/// Version 9: counts kept on write, so `paths` and `causes` read one row per path or change
/// instead of every item. Triggers on `items` keep them in the transaction that changes an
/// item, whichever statement does it; a path's first and last observation are counted afresh
/// (from `items_subject`, which has them) only when the item leaving held one of them.
/// `items_subject` leads with `cause` after `subject`, so a change's hosts and an example item
/// are one index range.
const SCHEMA_V9: &str = "
CREATE TABLE subject_counts (
    subject        TEXT PRIMARY KEY,
    hosts          INTEGER NOT NULL,
    n_security     INTEGER NOT NULL,
    n_behavioral   INTEGER NOT NULL,
    n_cosmetic     INTEGER NOT NULL,
    first_observed INTEGER NOT NULL,
    last_observed  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE cause_counts (
    cause        TEXT PRIMARY KEY,
    subject      TEXT NOT NULL,
    hosts        INTEGER NOT NULL,
    n_security   INTEGER NOT NULL,
    n_behavioral INTEGER NOT NULL,
    n_cosmetic   INTEGER NOT NULL
) WITHOUT ROWID;

DROP INDEX items_subject;
CREATE INDEX items_subject ON items (subject, cause, host, severity, observed_at);

INSERT INTO subject_counts
    SELECT subject, count(*), sum(severity = 0), sum(severity = 1), sum(severity = 2),
           min(observed_at), max(observed_at)
    FROM items GROUP BY subject;
INSERT INTO cause_counts
    SELECT cause, min(subject), count(*), sum(severity = 0), sum(severity = 1),
           sum(severity = 2)
    FROM items GROUP BY cause;

CREATE TRIGGER items_counted_in AFTER INSERT ON items BEGIN
    INSERT INTO subject_counts
        VALUES (NEW.subject, 1, NEW.severity = 0, NEW.severity = 1, NEW.severity = 2,
                NEW.observed_at, NEW.observed_at)
        ON CONFLICT (subject) DO UPDATE SET
            hosts = hosts + 1,
            n_security = n_security + (NEW.severity = 0),
            n_behavioral = n_behavioral + (NEW.severity = 1),
            n_cosmetic = n_cosmetic + (NEW.severity = 2),
            first_observed = min(first_observed, NEW.observed_at),
            last_observed = max(last_observed, NEW.observed_at);
    INSERT INTO cause_counts
        VALUES (NEW.cause, NEW.subject, 1, NEW.severity = 0, NEW.severity = 1, NEW.severity = 2)
        ON CONFLICT (cause) DO UPDATE SET
            hosts = hosts + 1,
            n_security = n_security + (NEW.severity = 0),
            n_behavioral = n_behavioral + (NEW.severity = 1),
            n_cosmetic = n_cosmetic + (NEW.severity = 2);
END;

CREATE TRIGGER items_counted_out AFTER DELETE ON items BEGIN
    UPDATE subject_counts SET
        hosts = hosts - 1,
        n_security = n_security - (OLD.severity = 0),
        n_behavioral = n_behavioral - (OLD.severity = 1),
        n_cosmetic = n_cosmetic - (OLD.severity = 2)
    WHERE subject = OLD.subject;
    DELETE FROM subject_counts WHERE subject = OLD.subject AND hosts = 0;
    UPDATE subject_counts SET
        first_observed = (SELECT min(observed_at) FROM items WHERE subject = OLD.subject),
        last_observed = (SELECT max(observed_at) FROM items WHERE subject = OLD.subject)
    WHERE subject = OLD.subject
        AND (first_observed = OLD.observed_at OR last_observed = OLD.observed_at);
    UPDATE cause_counts SET
        hosts = hosts - 1,
        n_security = n_security - (OLD.severity = 0),
        n_behavioral = n_behavioral - (OLD.severity = 1),
        n_cosmetic = n_cosmetic - (OLD.severity = 2)
    WHERE cause = OLD.cause;
    DELETE FROM cause_counts WHERE cause = OLD.cause AND hosts = 0;
END;

-- A path's item changed (ingest's upsert sets every column): its severity and observation
-- move; the path's host count does not.
CREATE TRIGGER items_recounted_subject AFTER UPDATE ON items
WHEN OLD.subject = NEW.subject
    AND (OLD.severity != NEW.severity OR OLD.observed_at != NEW.observed_at)
BEGIN
    UPDATE subject_counts SET
        n_security = n_security - (OLD.severity = 0) + (NEW.severity = 0),
        n_behavioral = n_behavioral - (OLD.severity = 1) + (NEW.severity = 1),
        n_cosmetic = n_cosmetic - (OLD.severity = 2) + (NEW.severity = 2),
        first_observed = min(first_observed, NEW.observed_at),
        last_observed = max(last_observed, NEW.observed_at)
    WHERE subject = OLD.subject;
    UPDATE subject_counts SET
        first_observed = (SELECT min(observed_at) FROM items WHERE subject = OLD.subject),
        last_observed = (SELECT max(observed_at) FROM items WHERE subject = OLD.subject)
    WHERE subject = OLD.subject
        AND OLD.observed_at != NEW.observed_at
        AND (first_observed = OLD.observed_at OR last_observed = OLD.observed_at);
END;

-- The item is another change now (or the same change, as serious as something else).
CREATE TRIGGER items_recounted_cause AFTER UPDATE ON items
WHEN OLD.subject = NEW.subject
    AND (OLD.cause != NEW.cause OR OLD.severity != NEW.severity)
BEGIN
    UPDATE cause_counts SET
        hosts = hosts - 1,
        n_security = n_security - (OLD.severity = 0),
        n_behavioral = n_behavioral - (OLD.severity = 1),
        n_cosmetic = n_cosmetic - (OLD.severity = 2)
    WHERE cause = OLD.cause;
    DELETE FROM cause_counts WHERE cause = OLD.cause AND hosts = 0;
    INSERT INTO cause_counts
        VALUES (NEW.cause, NEW.subject, 1, NEW.severity = 0, NEW.severity = 1, NEW.severity = 2)
        ON CONFLICT (cause) DO UPDATE SET
            hosts = hosts + 1,
            n_security = n_security + (NEW.severity = 0),
            n_behavioral = n_behavioral + (NEW.severity = 1),
            n_cosmetic = n_cosmetic + (NEW.severity = 2);
END;

-- Nothing changes an item's subject (it is half its key); if something ever does, the path
-- and change counts must not go wrong silently.
CREATE TRIGGER items_subject_fixed BEFORE UPDATE OF subject ON items
WHEN OLD.subject != NEW.subject
BEGIN
    SELECT RAISE(ABORT, 'an item''s subject cannot change: delete it and insert another');
END;
";

/// Version 8: `events`' checks on `transition` and `source` as comparisons, not `IN (…)` lists.
/// SQLite evaluates a CHECK's `IN` list by building a temporary b-tree for every row inserted,
/// a quarter of the cost of storing an event (measured on this table). The table's definition
/// is edited in place, as SQLite's documentation describes for changing CHECK constraints
/// (<https://www.sqlite.org/lang_altertable.html#otheralter>): the conditions are the same, so
/// no stored row changes and none needs to be checked again.
fn events_checks_as_comparisons(tx: &Transaction<'_>) -> Result<()> {
    edit_table_definition(
        tx,
        "events",
        &[
            (
                "CHECK (transition IN ('drifted', 'changed', 'resolved'))",
                "CHECK (transition = 'drifted' OR transition = 'changed' OR transition = 'resolved')",
            ),
            (
                "CHECK (source IN ('stream', 'snapshot'))",
                "CHECK (source = 'stream' OR source = 'snapshot')",
            ),
        ],
    )
}

/// Version 10: `iac_states.kind` also `pulumi` (`pulumi stack export`) and `cloudformation`
/// (`aws cloudformation describe-stack-resources`). The check is widened in place, as for
/// version 8: every stored row passes the wider check, so none needs to be checked again.
fn iac_state_kinds_pulumi_and_cloudformation(tx: &Transaction<'_>) -> Result<()> {
    edit_table_definition(
        tx,
        "iac_states",
        &[(
            "CHECK (kind IN ('state', 'show_json'))",
            "CHECK (kind = 'state' OR kind = 'show_json' OR kind = 'pulumi' OR \
             kind = 'cloudformation')",
        )],
    )
}

/// Replaces text in `table`'s definition in `sqlite_master` (each `from` must be there), for
/// changes SQLite's `ALTER TABLE` cannot make but that leave every stored row valid: a CHECK
/// made cheaper or wider (<https://www.sqlite.org/lang_altertable.html#otheralter>).
fn edit_table_definition(tx: &Transaction<'_>, table: &str, edits: &[(&str, &str)]) -> Result<()> {
    let what = format!("rewriting the definition of table {table}");
    let sql: String = tx
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )
        .context(&what)?;
    let mut edited = sql.clone();
    for (from, to) in edits {
        if !edited.contains(from) {
            return Err(StoreError::Database(format!(
                "{what}: the table's definition does not have {from}"
            )));
        }
        edited = edited.replace(from, to);
    }
    let version: i64 = tx
        .pragma_query_value(None, "schema_version", |r| r.get(0))
        .context(&what)?;
    tx.pragma_update(None, "writable_schema", true)
        .context(&what)?;
    tx.execute(
        "UPDATE sqlite_master SET sql = ?1 WHERE type = 'table' AND name = ?2",
        [edited.as_str(), table],
    )
    .context(&what)?;
    // Every connection, this one included, reads the schema anew.
    tx.pragma_update(None, "schema_version", version + 1)
        .context(&what)?;
    tx.pragma_update(None, "writable_schema", false)
        .context(&what)?;
    Ok(())
}

/// Version 7: the number of the host's newest connection ([`crate::store::StreamState`]).
const SCHEMA_V7: &str = "ALTER TABLE hosts ADD COLUMN connection INTEGER NOT NULL DEFAULT 0;";

/// Version 5: who imported each state (earlier imports: unknown, '').
const SCHEMA_V5: &str = "ALTER TABLE iac_states ADD COLUMN imported_by TEXT NOT NULL DEFAULT '';";

const SCHEMA_V1: &str = "
CREATE TABLE hosts (
    host              TEXT PRIMARY KEY,
    hostname          TEXT NOT NULL DEFAULT '',
    identity_source   TEXT NOT NULL DEFAULT '',
    cloud             TEXT NOT NULL DEFAULT '',
    region            TEXT NOT NULL DEFAULT '',
    availability_zone TEXT NOT NULL DEFAULT '',
    instance_id       TEXT NOT NULL DEFAULT '',
    image_id          TEXT NOT NULL DEFAULT '',
    private_ip        TEXT NOT NULL DEFAULT '',
    machine_id_hash   TEXT NOT NULL DEFAULT '',
    user_data_sha1    TEXT NOT NULL DEFAULT '',
    account_id        TEXT NOT NULL DEFAULT '',
    tags              TEXT NOT NULL DEFAULT '{}',
    agent_version     TEXT NOT NULL DEFAULT '',
    baseline_id       TEXT NOT NULL DEFAULT '',
    image_name        TEXT NOT NULL DEFAULT '',
    image_version     TEXT NOT NULL DEFAULT '',
    boot_id           TEXT NOT NULL DEFAULT '',
    stream_id         TEXT NOT NULL DEFAULT '',
    last_seq          INTEGER NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    first_seen        INTEGER NOT NULL,
    last_seen         INTEGER NOT NULL,
    n_security        INTEGER NOT NULL DEFAULT 0,
    n_behavioral      INTEGER NOT NULL DEFAULT 0,
    n_cosmetic        INTEGER NOT NULL DEFAULT 0,
    since_security    INTEGER,
    since_behavioral  INTEGER,
    since_cosmetic    INTEGER
);
-- get_host by hostname.
CREATE INDEX hosts_hostname ON hosts (hostname);

CREATE TABLE items (
    host         TEXT NOT NULL REFERENCES hosts (host),
    subject      TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    kind         TEXT NOT NULL,
    severity     INTEGER NOT NULL CHECK (severity BETWEEN 0 AND 2),
    cause        TEXT NOT NULL,
    changed      TEXT NOT NULL,
    observed_at  INTEGER NOT NULL,
    sha256       BLOB NOT NULL,
    json         TEXT NOT NULL,
    PRIMARY KEY (host, subject)
);
-- Covers every aggregate over paths (hosts, paths and causes by glob): never reads the JSON.
CREATE INDEX items_subject ON items (subject, severity, host, observed_at, cause);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    host        TEXT NOT NULL REFERENCES hosts (host),
    stream_id   TEXT NOT NULL,
    seq         INTEGER CHECK (seq > 0),
    transition  TEXT NOT NULL CHECK (transition IN ('drifted', 'changed', 'resolved')),
    observed_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    subject     TEXT NOT NULL,
    severity    INTEGER NOT NULL CHECK (severity BETWEEN 0 AND 2),
    source      TEXT NOT NULL CHECK (source IN ('stream', 'snapshot')),
    json        TEXT NOT NULL,
    UNIQUE (host, stream_id, seq)
);
-- A host's history, and everyone's, newest first.
CREATE INDEX events_host_received ON events (host, received_at);
CREATE INDEX events_received ON events (received_at);

CREATE TABLE baselines (
    baseline_id   TEXT PRIMARY KEY,
    image_name    TEXT NOT NULL DEFAULT '',
    image_version TEXT NOT NULL DEFAULT '',
    first_seen    INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL
);
";

/// Imported IaC: Terraform/OpenTofu states (only the allow-listed attributes of the resources
/// that describe machines) and the image catalog from Packer manifests.
const SCHEMA_V2: &str = "
CREATE TABLE iac_states (
    name              TEXT PRIMARY KEY,
    source            TEXT NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('state', 'show_json')),
    lineage           TEXT NOT NULL DEFAULT '',
    serial            INTEGER,
    terraform_version TEXT NOT NULL DEFAULT '',
    imported_at       INTEGER NOT NULL,
    ignored_instances INTEGER NOT NULL DEFAULT 0
);
-- The staleness check: the highest serial stored for a lineage.
CREATE INDEX iac_states_lineage ON iac_states (lineage, serial);

CREATE TABLE iac_resources (
    state          TEXT NOT NULL REFERENCES iac_states (name),
    address        TEXT NOT NULL,
    type           TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('instance', 'group', 'template')),
    key            TEXT NOT NULL,
    name           TEXT NOT NULL,
    image_id       TEXT NOT NULL,
    private_ip     TEXT NOT NULL,
    private_dns    TEXT NOT NULL,
    user_data_sha1 TEXT NOT NULL,
    status         TEXT NOT NULL,
    template       TEXT NOT NULL,
    location       TEXT NOT NULL,
    PRIMARY KEY (state, address)
);

CREATE TABLE images (
    region       TEXT NOT NULL,
    image_id     TEXT NOT NULL,
    build        TEXT NOT NULL,
    builder_type TEXT NOT NULL,
    run_uuid     TEXT NOT NULL,
    build_time   INTEGER NOT NULL,
    baseline_id  TEXT NOT NULL,
    source       TEXT NOT NULL,
    imported_at  INTEGER NOT NULL,
    PRIMARY KEY (region, image_id)
);
";

/// Version 3: drift items are stored as their canonical encoding (`drift.proto`), converted
/// from the JSON text earlier collectors stored (the agents' `check --json` form). Each row's
/// digest and cause are computed anew from the encoding, as ingest now computes them; agents
/// of the typed protocol send digests over the encodings, so the sets compare as before.
fn items_encoded(tx: &Transaction<'_>) -> Result<()> {
    encode_items(tx).context("converting the drift items from JSON to their encoding")
}

fn encode_items(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "ALTER TABLE items ADD COLUMN item BLOB NOT NULL DEFAULT x'';
         ALTER TABLE events ADD COLUMN item BLOB NOT NULL DEFAULT x'';",
    )?;
    let convert = |json: &str| -> rusqlite::Result<ItemRecord> {
        let item: DriftItem = serde_json::from_str(json)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, Type::Text, Box::new(e)))?;
        Ok(ItemRecord::new(&item))
    };
    {
        let mut read = tx.prepare("SELECT host, subject, json FROM items")?;
        let mut update = tx.prepare(
            "UPDATE items SET item = ?3, sha256 = ?4, cause = ?5 WHERE host = ?1 AND subject = ?2",
        )?;
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            let (host, subject): (String, String) = (row.get(0)?, row.get(1)?);
            let record = convert(row.get_ref(2)?.as_str()?)?;
            update.execute(params![
                host,
                subject,
                record.encoded,
                record.sha256,
                record.cause
            ])?;
        }
        let mut read = tx.prepare("SELECT id, json FROM events")?;
        let mut update = tx.prepare("UPDATE events SET item = ?2 WHERE id = ?1")?;
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let record = convert(row.get_ref(1)?.as_str()?)?;
            update.execute(params![id, record.encoded])?;
        }
    }
    tx.execute_batch(
        "ALTER TABLE items DROP COLUMN json;
         ALTER TABLE events DROP COLUMN json;",
    )
}

/// Brings the schema up to date, refusing one newer than [`MIGRATIONS`] knows.
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let supported = MIGRATIONS.len() as i64;
    // Immediate: two collectors opening one new file must not both migrate it.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("starting the schema migration")?;
    let found: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .context("reading the schema version")?;
    if found > supported {
        return Err(StoreError::NewerSchema { found, supported });
    }
    if found == supported {
        return Ok(());
    }
    for (version, migration) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        let what = || format!("migrating the schema to version {}", version + 1);
        match migration {
            Migration::Sql(sql) => tx.execute_batch(sql).with_context(what)?,
            Migration::Code(migrate) => migrate(&tx).map_err(|e| match e {
                StoreError::Database(detail) => {
                    StoreError::Database(format!("{}: {detail}", what()))
                }
                other => other,
            })?,
        }
    }
    tx.pragma_update(None, "user_version", supported)
        .context("recording the schema version")?;
    tx.commit().context("committing the schema migration")
}
