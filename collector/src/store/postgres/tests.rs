//! The conformance suite against a real PostgreSQL 15: one throwaway server per test process
//! ([`server`]), one fresh database per test ([`fresh_store`]).
//!
//! The server is Debian's `postgresql-15` (`tests/setup.sh` installs it), started with
//! `initdb`/`pg_ctl` as the `postgres` user when the tests run as root (initdb refuses root),
//! on a free port, with its socket directory under /tmp (socket paths are short), trust
//! authentication on 127.0.0.1 only and `fsync=off`. A watcher process (it cannot signal a root process, so it polls /proc) stops it and removes
//! its directory once this test process has exited. `DRIFTWATCH_TEST_POSTGRES=URL` (a
//! database the tests may create databases with) uses an existing server instead.

use std::ops::Deref;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::store::conformance::{self, T0, apply1, batch, drifted, hosts, info, item};
use crate::store::{HistoryQuery, HostQuery};

/// Where Debian puts PostgreSQL 15's server programs (not on PATH).
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A store on a database of its own.
struct TestStore {
    store: PgStore,
}

impl Deref for TestStore {
    type Target = PgStore;

    fn deref(&self) -> &PgStore {
        &self.store
    }
}

/// The group whose members' connections need a password (scram-sha-256; every other role
/// is trusted).
const PASSWORD_ROLE: &str = "dw_password";
const PASSWORD: &str = "correct horse";

/// The test server: its URL without a database name, and the CA its TLS certificate chains
/// to (None for a server from `DRIFTWATCH_TEST_POSTGRES`).
struct Server {
    url: String,
    ca: Option<PathBuf>,
}

fn server() -> &'static str {
    &test_server().url
}

fn test_server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var("DRIFTWATCH_TEST_POSTGRES") {
        Ok(url) => Server {
            url: url.trim_end_matches('/').to_owned(),
            ca: None,
        },
        Err(_) => start_server(),
    })
}

/// A CA and a certificate for `localhost` and 127.0.0.1 signed by it, as PEM files in a
/// directory the `postgres` user can read.
fn tls_files() -> tempfile::TempDir {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    for (name, pem) in [
        ("ca.pem", ca_pem),
        ("server.crt", leaf.pem()),
        ("server.key", key.serialize_pem()),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    dir
}

fn start_server() -> Server {
    let initdb = Path::new(PG_BIN).join("initdb");
    assert!(
        initdb.exists(),
        "{} is missing: the PostgreSQL tests need Debian's postgresql-15 (run tests/setup.sh as \
         root), or DRIFTWATCH_TEST_POSTGRES=postgres://USER@HOST:PORT naming a server",
        initdb.display()
    );
    let root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    let tls = tls_files();
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        // As one script, run as postgres when root: a directory it owns, the cluster (with
        // TLS: the key must be the server's and 0600), the server, and a watcher that stops
        // it when this process is gone.
        let script = format!(
            r#"set -e
dir=$(mktemp -d /tmp/dwpg.XXXXXX)
mkdir "$dir/s"
cp {tls}/ca.pem {tls}/server.crt {tls}/server.key "$dir/"
chmod 600 "$dir/server.key"
{PG_BIN}/initdb -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 -N >"$dir/initdb.log" 2>&1
sed -i '1i host all +dw_password 127.0.0.1/32 scram-sha-256' "$dir/data/pg_hba.conf"
{PG_BIN}/pg_ctl -D "$dir/data" -l "$dir/server.log" -w -o "-p {port} -k $dir/s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key" start >/dev/null
{PG_BIN}/psql -X -q -h 127.0.0.1 -p {port} -U postgres -d postgres -c "CREATE ROLE dw_password NOLOGIN"
nohup sh -c 'while [ -d /proc/{pid} ]; do sleep 1; done; {PG_BIN}/pg_ctl -D "$1/data" -m immediate -w stop; rm -rf "$1"' watcher "$dir" >/dev/null 2>&1 &
echo "$dir"
"#,
            tls = tls.path().display(),
            pid = std::process::id(),
        );
        let output = if root {
            Command::new("runuser")
                .args(["-u", "postgres", "--", "sh", "-c", &script])
                .current_dir("/tmp")
                .output()
        } else {
            Command::new("sh").args(["-c", &script]).output()
        }
        .expect("running initdb and pg_ctl");
        if output.status.success() {
            let dir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            return Server {
                url: format!("postgres://postgres@127.0.0.1:{port}"),
                ca: Some(Path::new(&dir).join("ca.pem")),
            };
        }
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    panic!("could not start a throwaway PostgreSQL: {last}");
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// A store on a new, empty database of the test server.
fn fresh_store() -> TestStore {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let server = server();
    let name = format!(
        "dw_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = postgres::Client::connect(&format!("{server}/postgres"), postgres::NoTls)
        .expect("connecting to the test server");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("creating a test database");
    drop(admin);
    TestStore {
        store: PgStore::open(&format!("{server}/{name}"), None).expect("opening the store"),
    }
}

conformance::conformance_tests!(fresh_store());

#[test]
fn migrating_twice_applies_nothing_the_second_time() {
    let store = fresh_store();
    let url = format!(
        "{}/{}",
        server(),
        store.database().rsplit('/').next().unwrap()
    );
    assert_eq!(PgStore::migrate(&url, None).unwrap(), 0);
    store.hello(&info("i-1", "web-1"), T0).unwrap();
}

#[test]
fn collectors_opening_one_new_database_together_migrate_it_once() {
    // A database nobody migrated yet: several collectors open it at once.
    let url = blank_database("race");
    let applied: Vec<usize> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| PgStore::migrate(&url, None).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(applied.iter().sum::<usize>(), schema::MIGRATIONS.len());
}

/// Version 3 widens `iac_states.kind` (SQLite's version 10): a version-2 database keeps its
/// states and takes Pulumi and CloudFormation stacks afterwards (issue 15).
#[test]
fn a_version_2_database_migrates_to_3_and_keeps_its_states() {
    let url = blank_database("v2");
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    schema_at(&mut client, 2);
    client
        .batch_execute(
            "INSERT INTO iac_states (name, source, kind, lineage, serial, imported_at)
                 VALUES ('prod', 'prod.tfstate', 'state', 'L1', 7, 1);",
        )
        .unwrap();
    let refused = client.batch_execute(
        "INSERT INTO iac_states (name, source, kind, imported_at) VALUES ('d', 'd', 'pulumi', 1)",
    );
    assert!(refused.is_err());
    drop(client);
    assert_eq!(
        PgStore::migrate(&url, None).unwrap(),
        schema::MIGRATIONS.len() - 2
    );
    let store = PgStore::open(&url, None).unwrap();
    let data = store.iac().unwrap();
    assert_eq!(
        (data.states[0].kind.as_str(), data.states[0].serial),
        ("state", Some(7))
    );
    let pulumi = driftwatch_proto::v1::ImportStateRequest {
        name: "web/dev".into(),
        source: "dev.json".into(),
        kind: "pulumi".into(),
        ..Default::default()
    };
    store
        .import_state(&crate::iac::state_import(pulumi), T0)
        .unwrap();
    assert_eq!(store.iac().unwrap().states.len(), 2);
}

/// Brings a fresh database to schema `version` as a collector of that version left it.
fn schema_at(client: &mut postgres::Client, version: usize) {
    let mut tx = client.transaction().unwrap();
    for step in &schema::MIGRATIONS[..version] {
        match step {
            schema::Migration::Sql(sql) => tx.batch_execute(sql).unwrap(),
            schema::Migration::Code(migrate) => migrate(&mut tx).unwrap(),
        }
    }
    tx.batch_execute(&format!(
        "CREATE TABLE schema_version (
             one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), version BIGINT NOT NULL);
         INSERT INTO schema_version (version) VALUES ({version});"
    ))
    .unwrap();
    tx.commit().unwrap();
}

/// A fresh database of its own, not migrated: its URL.
fn blank_database(suffix: &str) -> String {
    let store = fresh_store();
    let name = store.database().rsplit('/').next().unwrap().to_owned();
    drop(store);
    let mut admin =
        postgres::Client::connect(&format!("{}/postgres", server()), postgres::NoTls).unwrap();
    let blank = format!("{name}_{suffix}");
    admin
        .batch_execute(&format!("CREATE DATABASE {blank}"))
        .unwrap();
    format!("{}/{blank}", server())
}

/// Version 4 stores the history one row per write (SQLite's version 13): a version-3
/// database's events are converted, consecutive events of one write together, and read back
/// as they were.
#[test]
fn a_version_3_history_is_converted_to_one_row_per_write() {
    let url = blank_database("v3");
    let rows = conformance::events_of_old();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    schema_at(&mut client, 3);
    client
        .batch_execute(
            "INSERT INTO hosts (host, first_seen, last_seen) VALUES ('i-1', 0, 0), ('i-2', 0, 0);",
        )
        .unwrap();
    for (host, stream, seq, transition, received_at, item, source) in &rows {
        client
            .execute(
                "INSERT INTO events (host, stream_id, seq, transition, observed_at, received_at,
                     subject, severity, source, item)
                 VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9)",
                &[
                    host,
                    stream,
                    seq,
                    transition,
                    received_at,
                    &item.subject,
                    &(item.severity.index() as i64),
                    source,
                    &item.encoded,
                ],
            )
            .unwrap();
    }
    assert_eq!(
        PgStore::migrate(&url, None).unwrap(),
        schema::MIGRATIONS.len() - 3
    );
    let stored: Vec<(String, String, Option<i64>, i64)> = client
        .query(
            "SELECT host, stream_id, first_seq, events FROM history ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(stored, conformance::events_of_old_as_rows());
    let events_left: bool = client
        .query_one("SELECT to_regclass('events') IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert!(!events_left, "the events table is dropped");
    drop(client);
    conformance::assert_history_is(&PgStore::open(&url, None).unwrap(), &rows);
}

#[test]
fn a_server_that_is_down_is_a_clear_error_at_open() {
    let port = free_port();
    let err = PgStore::open(&format!("postgres://dw@127.0.0.1:{port}/fleet"), None).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("cannot connect to the PostgreSQL database postgres://dw@127.0.0.1"),
        "{text}"
    );
}

/// A second store on the same database: another collector sharing it.
fn second(store: &PgStore) -> PgStore {
    let name = store.database().rsplit('/').next().unwrap();
    PgStore::open(&format!("{}/{name}", server()), None).unwrap()
}

#[test]
fn collectors_sharing_a_database_see_each_other_s_writes_at_once() {
    let a = fresh_store();
    let b = second(&a);
    let before = b.generation();
    a.hello(&info("i-1", "web-1"), T0).unwrap();
    assert_ne!(
        b.generation(),
        before,
        "a hello through A moves B's generation"
    );
    let x = item("/etc/x.conf", "security", "bb");
    apply1(&*a, batch("i-1", "s1", vec![drifted(1, &x)], T0 + 1_000)).unwrap();
    let query = HostQuery {
        now: T0 + 2_000,
        silent_after: conformance::SILENT_AFTER,
        ..Default::default()
    };
    let listed = hosts(&b, &query);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].drift_count, 1);
    // B continues the stream where A left it.
    let applied = apply1(&b, batch("i-1", "s1", vec![drifted(1, &x)], T0 + 3_000)).unwrap();
    assert_eq!((applied.last_seq, applied.events), (1, 0));
}

/// Debian's server has lz4: history chunks are compressed with it (schema version 5), and read
/// back whole.
#[test]
fn history_chunks_are_stored_compressed_with_lz4() {
    let store = fresh_store();
    store.hello(&info("i-1", "web-1"), T0).unwrap();
    // Large enough to be compressed (past the server's 2 KB threshold), as most chunks are.
    let events: Vec<_> = (1..=40)
        .map(|seq| {
            drifted(
                seq,
                &item(&format!("/etc/app/f{seq:02}.conf"), "cosmetic", "v"),
            )
        })
        .collect();
    apply1(&*store, batch("i-1", "s1", events, T0)).unwrap();
    let row = store
        .conn("test")
        .unwrap()
        .client
        .query_one(
            "SELECT pg_column_compression(chunk), octet_length(chunk) > pg_column_size(chunk)
             FROM history",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("lz4"));
    assert!(
        row.get::<_, bool>(1),
        "the chunk is stored smaller than it is"
    );
    assert_eq!(store.history(&HistoryQuery::default()).unwrap().len(), 40);
}

/// A host's drift counts per severity (security, behavioral, cosmetic), as stored.
fn counts(store: &PgStore, host: &str) -> (i64, i64, i64) {
    let row = store
        .conn("test")
        .unwrap()
        .client
        .query_one(
            "SELECT n_security, n_behavioral, n_cosmetic FROM hosts WHERE host = $1",
            &[&host],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// A collector remembers the items it wrote (`known`) rather than read them back, for as long
/// as the host's `items_version` says nobody else changed them. Items changed behind its back
/// (the version kept) prove the memory is used; the version advanced, it reads them again.
#[test]
fn the_items_a_collector_wrote_are_remembered_until_the_host_s_version_moves() {
    let store = fresh_store();
    store.hello(&info("i-1", "web-1"), T0).unwrap();
    let sql = |sql: &str| {
        store
            .conn("test")
            .unwrap()
            .client
            .batch_execute(sql)
            .unwrap()
    };
    let x = |severity, content| item("/etc/x.conf", severity, content);
    apply1(
        &*store,
        batch("i-1", "s1", vec![drifted(1, &x("security", "v1"))], T0),
    )
    .unwrap();

    // Behind the collector's back, version kept: it still knows the item as security.
    sql("UPDATE items SET severity = 1 WHERE host = 'i-1'");
    apply1(
        &*store,
        batch("i-1", "s1", vec![drifted(2, &x("cosmetic", "v2"))], T0),
    )
    .unwrap();
    assert_eq!(
        counts(&store, "i-1"),
        (0, 0, 1),
        "security moved to cosmetic"
    );

    // As another collector would: the version moves, and the item is read again.
    sql("UPDATE items SET severity = 1 WHERE host = 'i-1';
         UPDATE hosts SET items_version = items_version + 1, n_cosmetic = 0, n_behavioral = 1
         WHERE host = 'i-1'");
    apply1(
        &*store,
        batch("i-1", "s1", vec![drifted(3, &x("security", "v3"))], T0),
    )
    .unwrap();
    assert_eq!(
        counts(&store, "i-1"),
        (1, 0, 0),
        "behavioral moved to security"
    );
}

/// Two collectors taking turns on one host's items: each sees what the other did, never its
/// own stale memory of them.
#[test]
fn collectors_taking_turns_on_a_host_each_build_on_the_other_s_items() {
    use crate::store::Transition;
    use crate::store::conformance::event;
    let a = fresh_store();
    let b = second(&a);
    a.hello(&info("i-1", "web-1"), T0).unwrap();
    let x = |severity, content| item("/etc/x.conf", severity, content);
    let y = item("/etc/y.conf", "cosmetic", "y1");
    let at = |seq: Millis| T0 + seq * 1_000;
    let events = vec![drifted(1, &x("security", "v1")), drifted(2, &y)];
    apply1(&*a, batch("i-1", "s1", events, at(2))).unwrap();
    // B resolves x; A, which wrote it, drifts it again: a new item, not a change of one.
    let resolved = event(3, Transition::Resolved, &x("security", "v1"));
    apply1(&b, batch("i-1", "s1", vec![resolved], at(3))).unwrap();
    apply1(
        &*a,
        batch("i-1", "s1", vec![drifted(4, &x("behavioral", "v2"))], at(4)),
    )
    .unwrap();
    // B, which last knew x resolved, changes it.
    let last = x("security", "v3");
    apply1(&b, batch("i-1", "s1", vec![drifted(5, &last)], at(5))).unwrap();

    assert_eq!(counts(&a, "i-1"), (1, 0, 1));
    let query = HostQuery {
        now: at(10),
        silent_after: conformance::SILENT_AFTER,
        ..Default::default()
    };
    for store in [&*a, &b] {
        assert_eq!(hosts(store, &query)[0].drift_count, 2);
        let detail = store.get_host("i-1", &query).unwrap().unwrap();
        assert_eq!(detail.items, [last.encoded.clone(), y.encoded.clone()]);
    }
    let seqs: Vec<u64> = a
        .history(&HistoryQuery::default())
        .unwrap()
        .into_iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
}

/// A heartbeat's digest is remembered at the host's `items_version` and read again once
/// another collector changes the host's items; writes that change no item (heartbeats' `Seen`)
/// leave the version where it was.
#[test]
fn a_host_s_digest_follows_changes_made_through_another_collector() {
    use crate::store::Write;
    let a = fresh_store();
    let b = second(&a);
    a.hello(&info("i-1", "web-1"), T0).unwrap();
    let version = |store: &PgStore| -> i64 {
        let row = store
            .conn("test")
            .unwrap()
            .client
            .query_one("SELECT items_version FROM hosts WHERE host = 'i-1'", &[])
            .unwrap();
        row.get(0)
    };
    let x = item("/etc/x.conf", "security", "v1");
    apply1(&*a, batch("i-1", "s1", vec![drifted(1, &x)], T0)).unwrap();
    let (state, digest) = a.digest("i-1").unwrap().unwrap();
    assert_eq!(
        (state.last_seq, digest),
        (1, conformance::set_digest([x.sha256]))
    );
    assert_eq!(version(&a), 1);

    let seen = Write::Seen {
        host: "i-1".into(),
        at: T0 + 5_000,
    };
    apply1(&b, seen).unwrap();
    assert_eq!(version(&a), 1, "a heartbeat changes no item");

    let y = item("/etc/y.conf", "cosmetic", "v1");
    apply1(&b, batch("i-1", "s1", vec![drifted(2, &y)], T0)).unwrap();
    let (state, digest) = a.digest("i-1").unwrap().unwrap();
    assert_eq!(state.last_seq, 2);
    assert_eq!(digest, conformance::set_digest([x.sha256, y.sha256]));
    assert_eq!(a.digest("i-1").unwrap(), b.digest("i-1").unwrap());
    assert_eq!(a.digest("i-9").unwrap(), None);
}

#[test]
fn one_batch_applied_through_two_collectors_at_once_is_stored_once() {
    let a = fresh_store();
    let b = second(&a);
    a.hello(&info("i-1", "web-1"), T0).unwrap();
    let events: Vec<_> = (1..=50)
        .map(|seq| drifted(seq, &item(&format!("/etc/f{seq}"), "behavioral", "bb")))
        .collect();
    let write = batch("i-1", "s1", events, T0 + 1_000);
    let stored: Vec<u64> = std::thread::scope(|scope| {
        let stores: [&PgStore; 2] = [&a, &b];
        let handles: Vec<_> = stores
            .into_iter()
            .map(|store| {
                let write = write.clone();
                scope.spawn(move || apply1(store, write).unwrap().events)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // One of them stored the batch; the other found it stored (a replay).
    assert_eq!(stored.iter().sum::<u64>(), 50, "{stored:?}");
    assert_eq!(a.history(&HistoryQuery::default()).unwrap().len(), 50);
    assert_eq!(a.digest("i-1").unwrap().unwrap().0.last_seq, 50);
}

/// Whether the store's connections are encrypted (`pg_stat_ssl`).
fn encrypted(store: &PgStore) -> bool {
    store
        .conn("test")
        .unwrap()
        .client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0)
}

#[test]
fn tls_require_encrypts_and_verify_full_checks_the_certificate() {
    let Some(ca) = &test_server().ca else {
        eprintln!("DRIFTWATCH_TEST_POSTGRES names the server: its TLS setup is unknown, skipped");
        return;
    };
    let store = fresh_store();
    let name = store.database().rsplit('/').next().unwrap().to_owned();
    assert!(!encrypted(&store), "127.0.0.1 without sslmode: plaintext");
    for host in ["127.0.0.1", "localhost"] {
        let url = format!(
            "{}/{name}?sslmode=verify-full&sslrootcert={}",
            server().replace("127.0.0.1", host),
            ca.display()
        );
        let verified = PgStore::open(&url, None).unwrap();
        assert!(encrypted(&verified), "{url}");
        verified.hello(&info("i-1", "web-1"), T0).unwrap();
    }
    let required = PgStore::open(&format!("{}/{name}?sslmode=require", server()), None).unwrap();
    assert!(encrypted(&required));
    // The test CA is none of the Web PKI's roots.
    let err = PgStore::open(&format!("{}/{name}?sslmode=verify-full", server()), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot connect") && err.contains("certificate"),
        "{err}"
    );
}

#[test]
fn a_password_comes_from_the_url_or_the_password_file() {
    if test_server().ca.is_none() {
        eprintln!(
            "DRIFTWATCH_TEST_POSTGRES names the server: its authentication is unknown, skipped"
        );
        return;
    }
    let store = fresh_store();
    let name = store.database().rsplit('/').next().unwrap().to_owned();
    let mut admin = store.conn("test").unwrap();
    // Roles are the server's: one per test database, so tests do not race on it.
    let role = format!("{PASSWORD_ROLE}_{name}");
    admin
        .client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}' IN ROLE {PASSWORD_ROLE};
             GRANT ALL ON ALL TABLES IN SCHEMA public TO {role};
             GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role};"
        ))
        .unwrap();
    drop(admin);
    let host = server().trim_start_matches("postgres://postgres@");
    let with = |password: &str| {
        format!(
            "postgres://{role}:{}@{host}/{name}",
            password.replace(' ', "%20")
        )
    };
    let from_url = PgStore::open(&with(PASSWORD), None).unwrap();
    from_url.hello(&info("i-1", "web-1"), T0).unwrap();
    // The password file's wins over the URL's.
    let from_file = PgStore::open(&with("wrong"), Some(PASSWORD)).unwrap();
    from_file.hello(&info("i-2", "web-2"), T0).unwrap();
    let err = PgStore::open(&with("wrong"), None).unwrap_err().to_string();
    assert!(err.contains("password authentication failed"), "{err}");
}

#[test]
fn a_write_failing_with_a_database_error_is_undone_alone() {
    use crate::store::conformance::{batch, drifted, item};
    let store = fresh_store();
    for host in ["i-1", "i-2", "i-3"] {
        store.hello(&info(host, host), T0).unwrap();
    }
    // PostgreSQL text cannot hold NUL: storing this item fails in the database, after the
    // write has stored its event (so the group is applied again under savepoints).
    let results = store
        .apply(&[
            batch(
                "i-1",
                "s1",
                vec![drifted(1, &item("/etc/a", "security", "x"))],
                T0,
            ),
            batch(
                "i-2",
                "s1",
                vec![
                    drifted(1, &item("/etc/b", "security", "x")),
                    drifted(2, &item("/etc/b\0c", "security", "x")),
                ],
                T0,
            ),
            batch(
                "i-3",
                "s1",
                vec![drifted(1, &item("/etc/c", "security", "x"))],
                T0,
            ),
        ])
        .unwrap();
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert!(
        matches!(&results[1], Err(StoreError::Database(_))),
        "{results:?}"
    );
    let hosts: Vec<String> = store
        .history(&HistoryQuery::default())
        .unwrap()
        .into_iter()
        .map(|e| e.host)
        .collect();
    assert_eq!(hosts, ["i-1", "i-3"]);
    assert_eq!(store.digest("i-2").unwrap().unwrap().0.last_seq, 0);
}

/// Waits up to 10 s for `f` to give something.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_collector_s_feed_gets_the_events_committed_through_any_in_commit_safe_order() {
    let a = fresh_store();
    let b = second(&a);
    let feed = crate::store::Feed::new(100);
    let mut followed = feed.subscribe();
    let stop = CancellationToken::new();
    assert!(b.follow_commits(&feed, stop.clone()));
    // The follower starts at "now": give it a moment to place its cursor.
    std::thread::sleep(Duration::from_millis(800));
    a.hello(&info("i-1", "web-1"), T0).unwrap();
    let x = item("/etc/x.conf", "security", "bb");
    apply1(&*a, batch("i-1", "s1", vec![drifted(1, &x)], T0 + 1_000)).unwrap();
    let first = eventually("A's event in B's feed", || followed.try_recv().ok());
    assert_eq!((first.host.as_str(), first.seq), ("i-1", 1));

    // A transaction that took its id first and commits last: B's feed holds back what
    // committed after it began until it ends, then gives both, oldest transaction first.
    let name = a.database().rsplit('/').next().unwrap().to_owned();
    let mut slow = postgres::Client::connect(&format!("{}/{name}", server()), postgres::NoTls)
        .expect("connecting");
    // (Another host's event: one of i-1 would hold its row against the batch's FOR UPDATE.)
    a.hello(&info("i-2", "web-2"), T0).unwrap();
    let mut tx = slow.transaction().unwrap();
    let mut slow_event = crate::store::chunk::Chunk::default();
    slow_event.push(
        Some(1),
        crate::store::Transition::Drifted,
        0,
        "/etc/slow",
        crate::store::Severity::Security,
        b"",
    );
    tx.execute(
        "INSERT INTO history (host, stream_id, first_seq, received_at, source, events, chunk)
         VALUES ('i-2', 'other', 1, 0, 'stream', 1, $1)",
        &[&prost::Message::encode_to_vec(&slow_event)],
    )
    .unwrap();
    let y = item("/etc/y.conf", "security", "bb");
    apply1(&*a, batch("i-1", "s1", vec![drifted(2, &y)], T0 + 2_000)).unwrap();
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(
        followed.try_recv().is_err(),
        "nothing is published while an older transaction may still commit events"
    );
    tx.commit().unwrap();
    let subjects: Vec<String> = (0..2)
        .map(|_| {
            eventually("both events", || followed.try_recv().ok())
                .subject
                .clone()
        })
        .collect();
    assert_eq!(subjects, ["/etc/slow", "/etc/y.conf"]);
    stop.cancel();
    drop(slow);
}

#[test]
fn a_lease_is_held_by_one_collector_at_a_time_and_moves_when_it_goes() {
    let a = fresh_store();
    let b = second(&a);
    let on_a = a.lease("state-sources");
    eventually("A holds the lease", || on_a.held().then_some(()));
    let on_b = b.lease("state-sources");
    let other = b.lease("another");
    eventually("B holds another lease", || other.held().then_some(()));
    std::thread::sleep(Duration::from_millis(2_500));
    assert!(on_a.held() && !on_b.held(), "one holder at a time");
    drop(on_a);
    eventually("B takes the lease once A gave it up", || {
        on_b.held().then_some(())
    });
    // A collector whose connection is cut loses it too (a killed collector's kernel closes
    // its connections; here the server ends the session).
    let mut admin = postgres::Client::connect(&format!("{}/postgres", server()), postgres::NoTls)
        .expect("connecting");
    let on_a = a.lease("state-sources");
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks
             WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()
               AND objid = ($1::bigint & 4294967295)::oid",
            &[&super::lease::key("state-sources")],
        )
        .unwrap();
    eventually("B notices it lost the lease", || {
        (!on_b.held()).then_some(())
    });
    eventually("the lease is held again, by one of them", || {
        (on_a.held() || on_b.held()).then_some(())
    });
    std::thread::sleep(Duration::from_millis(2_500));
    assert!(on_a.held() != on_b.held(), "one holder at a time");
}
