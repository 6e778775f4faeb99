//! The tables (see the parent module's docs) and their migrations.
//!
//! PostgreSQL's schema counts its own versions in `schema_version`: its version 1 is SQLite's
//! version 6 (every table, with the same columns, keys and checks), its version 2 SQLite's
//! version 7 and what only a shared database needs, its version 3 SQLite's version 10
//! (`iac_states.kind` also `pulumi` and `cloudformation`). SQLite's version 8 (how its checks
//! are written, not what they allow) and version 9 (counts kept for its listings) have no
//! PostgreSQL counterpart. Migrations run in one
//! transaction that first takes a transaction-level advisory lock ([`MIGRATION_LOCK`]), so
//! collectors starting together on one database migrate it once: the second waits for the
//! first to commit, then finds the schema current.

use postgres::{Client, Transaction};

use super::Context as _;
use crate::store::{Result, StoreError};

/// The advisory lock key migrations hold ("driftwat" in ASCII): one key for every
/// driftwatch database on a server (a migration of another database waits a moment, no more).
pub(super) const MIGRATION_LOCK: i64 = 0x6472_6966_7477_6174;

/// A step of the schema.
pub(super) enum Migration {
    Sql(&'static str),
    /// A change SQL alone cannot make (converting data).
    Code(fn(&mut Transaction<'_>) -> Result<()>),
}

/// Schema migrations, applied in order; `schema_version` counts those applied. Never edit one
/// that has shipped: add the next.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration::Sql(SCHEMA_V1),
    Migration::Sql(SCHEMA_V2),
    Migration::Sql(SCHEMA_V3),
    Migration::Code(history_in_chunks),
    Migration::Sql(SCHEMA_V5),
];

/// Version 5: what ingest asks of the server, cut again (docs/BENCHMARKS.md).
/// - `hosts.items_version`, advanced by every group that writes the host, so that a collector
///   knows whether the items it remembers of the host are still current (`known`) and need not
///   read them back.
/// - A history row's `chunk` is compressed with lz4, where the server has it (PostgreSQL 14 and
///   later, built with lz4, as Debian's and the PGDG's packages are): ingest writes tens of
///   megabytes of chunks a second, and the server spent more time copying, logging and
///   writing them whole than lz4 takes to shrink them to a fraction. Without lz4 they stay
///   uncompressed (pglz costs more than it saves). Rows already stored keep their form.
const SCHEMA_V5: &str = r#"
ALTER TABLE hosts ADD COLUMN items_version BIGINT NOT NULL DEFAULT 0;
-- Run as text: PostgreSQL 13, which has no per-column compression, never parses it.
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 140000 THEN
        EXECUTE 'ALTER TABLE history
            ALTER COLUMN chunk SET STORAGE EXTENDED,
            ALTER COLUMN chunk SET COMPRESSION lz4';
    END IF;
EXCEPTION WHEN feature_not_supported THEN
    NULL;
END
$$;
"#;

/// Version 4: what ingest asks of the server, cut to a third (docs/BENCHMARKS.md).
/// - The history is stored one row per write (`history`, its events encoded together in
///   `chunk`: `store::chunk::Chunk`), not one per event (`events`), whose row and five index
///   entries per event were half of the server's work (SQLite's version 13). The rows of
///   `events` are converted, consecutive events of one write together, and the table dropped.
///   `tx` is what `events.tx` was (see `feed`); converted rows get the migration's.
/// - An item's change is a HOT update (its row's page, no index entry): `cause`, which every
///   change of content changes, leaves `items_subject`, and `items` pages keep room.
fn history_in_chunks(tx: &mut Transaction<'_>) -> Result<()> {
    tx.batch_execute(SCHEMA_V4)
        .context("creating the history table")?;
    super::history::convert_events(tx)?;
    tx.batch_execute("DROP TABLE events")
        .context("dropping the events table")
}

const SCHEMA_V4: &str = r#"
CREATE TABLE history (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host        TEXT COLLATE "C" NOT NULL REFERENCES hosts (host),
    stream_id   TEXT NOT NULL,
    first_seq   BIGINT CHECK (first_seq > 0),
    received_at BIGINT NOT NULL,
    source      TEXT NOT NULL CHECK (source IN ('stream', 'snapshot')),
    events      BIGINT NOT NULL CHECK (events > 0),
    chunk       BYTEA NOT NULL,
    tx          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    UNIQUE (host, stream_id, first_seq)
);
-- Out of line and not compressed: a write's items are mostly digests and paths, and pglz
-- spent more of the server's time on them than anything else in a history row.
ALTER TABLE history ALTER COLUMN chunk SET STORAGE EXTERNAL;
-- An item's change keeps its row's page (a HOT update, no new index entry) when no indexed
-- column changes and the page has room: `cause` changes with every change of content, so it
-- leaves `items_subject` (the causes listing reads it from the row), and pages keep room.
DROP INDEX items_subject;
CREATE INDEX items_subject ON items (subject, severity, host, observed_at);
ALTER TABLE items SET (fillfactor = 70);
-- A host's history, and everyone's, newest first; and what the feed follows.
CREATE INDEX history_host_received ON history (host, received_at);
CREATE INDEX history_received ON history (received_at);
CREATE INDEX history_tx ON history (tx, id);
"#;

/// Version 3: `iac_states.kind` also `pulumi` (`pulumi stack export`) and `cloudformation`
/// (`aws cloudformation describe-stack-resources`), as SQLite's version 10. The check is the
/// one PostgreSQL named for the column's inline CHECK of version 1; every stored row passes
/// the wider one.
const SCHEMA_V3: &str = r#"
ALTER TABLE iac_states
    DROP CONSTRAINT iac_states_kind_check,
    ADD CONSTRAINT iac_states_kind_check
        CHECK (kind IN ('state', 'show_json', 'pulumi', 'cloudformation'));
"#;

/// Version 2: collectors sharing the database.
/// - `hosts.connection`: the number of the host's newest connection (SQLite's version 7).
/// - `events.tx`: the transaction that stored the event, so every collector can follow what
///   every other commits, in commit-safe order (see `feed`): the `events` rows of
///   transactions below the oldest one still running are final, whatever order they
///   committed in. (Rows stored before this version get the migration's.)
const SCHEMA_V2: &str = r#"
ALTER TABLE hosts ADD COLUMN connection BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN tx xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX events_tx ON events (tx, id);
"#;

/// Text that is compared, sorted or ranged is `COLLATE "C"` (byte order, as SQLite compares
/// text and as the queries' prefix ranges assume), whatever the database's default collation.
const SCHEMA_V1: &str = r#"
CREATE TABLE hosts (
    host              TEXT COLLATE "C" PRIMARY KEY,
    hostname          TEXT COLLATE "C" NOT NULL DEFAULT '',
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
    last_seq          BIGINT NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    first_seen        BIGINT NOT NULL,
    last_seen         BIGINT NOT NULL,
    n_security        BIGINT NOT NULL DEFAULT 0,
    n_behavioral      BIGINT NOT NULL DEFAULT 0,
    n_cosmetic        BIGINT NOT NULL DEFAULT 0,
    since_security    BIGINT,
    since_behavioral  BIGINT,
    since_cosmetic    BIGINT
);
CREATE INDEX hosts_hostname ON hosts (hostname);

CREATE TABLE items (
    host         TEXT COLLATE "C" NOT NULL REFERENCES hosts (host),
    subject      TEXT COLLATE "C" NOT NULL,
    subject_kind TEXT NOT NULL,
    kind         TEXT NOT NULL,
    severity     BIGINT NOT NULL CHECK (severity BETWEEN 0 AND 2),
    cause        TEXT COLLATE "C" NOT NULL,
    changed      TEXT NOT NULL,
    observed_at  BIGINT NOT NULL,
    sha256       BYTEA NOT NULL,
    item         BYTEA NOT NULL,
    PRIMARY KEY (host, subject)
);
CREATE INDEX items_subject ON items (subject, severity, host, observed_at, cause);

CREATE TABLE events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host        TEXT COLLATE "C" NOT NULL REFERENCES hosts (host),
    stream_id   TEXT NOT NULL,
    seq         BIGINT CHECK (seq > 0),
    transition  TEXT NOT NULL CHECK (transition IN ('drifted', 'changed', 'resolved')),
    observed_at BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    subject     TEXT COLLATE "C" NOT NULL,
    severity    BIGINT NOT NULL CHECK (severity BETWEEN 0 AND 2),
    source      TEXT NOT NULL CHECK (source IN ('stream', 'snapshot')),
    item        BYTEA NOT NULL,
    UNIQUE (host, stream_id, seq)
);
CREATE INDEX events_host_received ON events (host, received_at);
CREATE INDEX events_received ON events (received_at);

CREATE TABLE baselines (
    baseline_id   TEXT COLLATE "C" PRIMARY KEY,
    image_name    TEXT NOT NULL DEFAULT '',
    image_version TEXT NOT NULL DEFAULT '',
    first_seen    BIGINT NOT NULL,
    last_seen     BIGINT NOT NULL
);

CREATE TABLE iac_states (
    name              TEXT COLLATE "C" PRIMARY KEY,
    source            TEXT NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('state', 'show_json')),
    lineage           TEXT NOT NULL DEFAULT '',
    serial            BIGINT,
    terraform_version TEXT NOT NULL DEFAULT '',
    imported_at       BIGINT NOT NULL,
    ignored_instances BIGINT NOT NULL DEFAULT 0,
    imported_by       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX iac_states_lineage ON iac_states (lineage, serial);

CREATE TABLE iac_resources (
    state          TEXT COLLATE "C" NOT NULL REFERENCES iac_states (name),
    address        TEXT COLLATE "C" NOT NULL,
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
    region       TEXT COLLATE "C" NOT NULL,
    image_id     TEXT COLLATE "C" NOT NULL,
    build        TEXT NOT NULL,
    builder_type TEXT NOT NULL,
    run_uuid     TEXT NOT NULL,
    build_time   BIGINT NOT NULL,
    baseline_id  TEXT NOT NULL,
    source       TEXT NOT NULL,
    imported_at  BIGINT NOT NULL,
    PRIMARY KEY (region, image_id)
);

CREATE TABLE tokens (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('reader', 'operator', 'admin')),
    sha256     BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE UNIQUE INDEX tokens_live_name ON tokens (name) WHERE revoked_at IS NULL;

CREATE TABLE join_tokens (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT NOT NULL,
    sha256     BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    uses       BIGINT NOT NULL CHECK (uses > 0),
    used       BIGINT NOT NULL DEFAULT 0,
    image      TEXT,
    created_by TEXT NOT NULL,
    revoked_at BIGINT
);
CREATE UNIQUE INDEX join_tokens_live_name ON join_tokens (name) WHERE revoked_at IS NULL;

CREATE TABLE enrollments (
    host        TEXT COLLATE "C" PRIMARY KEY,
    key_sha256  BYTEA NOT NULL,
    token       TEXT NOT NULL,
    enrolled_at BIGINT NOT NULL
);

-- `id` orders certificates issued in the same millisecond (SQLite's rowid).
CREATE TABLE certificates (
    id         BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    serial     TEXT COLLATE "C" PRIMARY KEY,
    host       TEXT COLLATE "C" NOT NULL,
    key_sha256 BYTEA NOT NULL,
    issued_at  BIGINT NOT NULL,
    not_after  BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_by TEXT
);
CREATE INDEX certificates_host ON certificates (host, issued_at);

-- Store::generation: advanced after every committed hello and import, by every collector
-- sharing the database.
CREATE SEQUENCE generation;
"#;

/// Brings the schema up to date under [`MIGRATION_LOCK`], refusing one newer than
/// [`MIGRATIONS`] knows. Returns the versions it applied.
pub(super) fn migrate(client: &mut Client) -> Result<usize> {
    let supported = MIGRATIONS.len() as i64;
    let mut tx = client
        .transaction()
        .context("starting the schema migration")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .context("waiting for the migration lock")?;
    // Checked before any DDL: a collector whose role may only read and write the tables
    // (the schema migrated beforehand with `migrate` by its owner) starts on a current schema.
    let exists: bool = tx
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
        .context("looking for schema_version")?
        .get(0);
    if !exists {
        tx.batch_execute(
            "CREATE TABLE schema_version (
                 one     BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
                 version BIGINT NOT NULL
             )",
        )
        .context("creating schema_version")?;
    }
    let found: i64 = tx
        .query_opt("SELECT version FROM schema_version", &[])
        .context("reading the schema version")?
        .map_or(0, |row| row.get(0));
    if found > supported {
        return Err(StoreError::NewerSchema { found, supported });
    }
    if found == supported {
        return Ok(0);
    }
    for (version, step) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        let what = || format!("migrating the schema to version {}", version + 1);
        match step {
            Migration::Sql(sql) => tx.batch_execute(sql).with_context(what)?,
            Migration::Code(migrate) => migrate(&mut tx).map_err(|e| match e {
                StoreError::Database(why) => StoreError::Database(format!("{}: {why}", what())),
                other => other,
            })?,
        }
    }
    tx.execute(
        "INSERT INTO schema_version (version) VALUES ($1)
         ON CONFLICT (one) DO UPDATE SET version = excluded.version",
        &[&supported],
    )
    .context("recording the schema version")?;
    tx.commit().context("committing the schema migration")?;
    Ok((supported - found.max(0)) as usize)
}
