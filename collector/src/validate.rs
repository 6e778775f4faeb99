//! `driftwatch-collector validate`: `serve`'s options checked without serving, so that the
//! systemd unit's `ExecStartPre` refuses a bad configuration with every reason at once, each
//! naming its flag, instead of a service that starts, fails and restarts.
//!
//! What is checked is what `serve` would refuse at start without touching the network or the
//! database: plaintext off loopback, TLS files that do not load (certificate, key, client CA,
//! the enrollment CA), a database URL of no known kind, a SQLite path that cannot be a file,
//! an unreadable PostgreSQL password file, zero intervals. Whether the database answers is
//! left to `serve` (a PostgreSQL server still starting is not a configuration error).

use std::path::Path;
use std::time::Duration;

use crate::server::{self, ServeOptions, Url};

/// Every problem `serve` would meet with these options, each naming its flag; empty when
/// there is none.
pub fn problems(options: &ServeOptions) -> Vec<String> {
    let mut problems = Vec::new();
    let tls = options.tls_cert.is_some();
    if !tls && !options.listen.ip().is_loopback() && !options.insecure {
        problems.push(format!(
            "--listen {}: off loopback without TLS; give --tls-cert and --tls-key (and \
             --client-ca for mTLS), or --insecure to serve plaintext",
            options.listen
        ));
    }
    let authority = match options.authority() {
        Ok(authority) => authority,
        Err(e) => {
            problems.push(format!("--enroll-ca-cert/--enroll-ca-key: {e:#}"));
            None
        }
    };
    if let (Some(cert), Some(key)) = (&options.tls_cert, &options.tls_key) {
        let built = server::tls_config(cert, key, options.client_ca.as_deref(), authority.as_ref())
            .and_then(|config| {
                tonic::transport::Server::builder()
                    .tls_config(config)
                    .map_err(|e| anyhow::Error::new(e).context("loading the TLS configuration"))
            });
        if let Err(e) = built {
            problems.push(format!("--tls-cert/--tls-key/--client-ca: {e:#}"));
        }
    }
    match server::parse_database_url(&options.database) {
        Err(e) => problems.push(format!("--database: {e:#}")),
        Ok(Url::Sqlite(path)) => {
            if let Some(problem) = sqlite_path_problem(&path) {
                problems.push(format!("--database {}: {problem}", path.display()));
            }
        }
        Ok(Url::Postgres) => {
            if let Err(e) = server::read_password(options.database_password_file.as_deref()) {
                problems.push(format!("--database-password-file: {e:#}"));
            }
        }
    }
    for (flag, value) in [
        ("--heartbeat", options.heartbeat),
        ("--silent-after", options.silent_after),
        ("--state-poll", options.state_poll),
        ("--shutdown-timeout", options.shutdown_timeout),
    ] {
        if value == Duration::ZERO {
            problems.push(format!("{flag}: must be longer than 0s"));
        }
    }
    problems
}

/// Why a SQLite database cannot live at `path`, if it cannot: the file exists and is not a
/// regular file, or an existing ancestor is not a directory. A missing file (and missing
/// directories) `serve` creates.
fn sqlite_path_problem(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => return Some("exists and is not a regular file".into()),
        Ok(_) => return None,
        // Missing, or below something that is not a directory: the ancestors say which.
        Err(e)
            if !matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Some(format!("cannot be read: {e}"));
        }
        Err(_) => {}
    }
    let existing = path
        .ancestors()
        .skip(1)
        .find(|a| !a.as_os_str().is_empty() && std::fs::symlink_metadata(a).is_ok())?;
    match std::fs::metadata(existing) {
        Ok(meta) if !meta.is_dir() => Some(format!("{} is not a directory", existing.display())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        let dir = tempfile::tempdir().unwrap();
        let options = ServeOptions {
            database: format!("sqlite://{}", dir.path().join("c.db").display()),
            ..ServeOptions::default()
        };
        assert_eq!(problems(&options), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_reported_with_its_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let options = ServeOptions {
            listen: "0.0.0.0:7470".parse().unwrap(),
            database: format!("sqlite://{}", file.join("c.db").display()),
            heartbeat: Duration::ZERO,
            ..ServeOptions::default()
        };
        let found = problems(&options);
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(found[0].starts_with("--listen 0.0.0.0:7470"), "{found:#?}");
        assert!(found[1].contains("is not a directory"), "{found:#?}");
        assert!(found[2].starts_with("--heartbeat"), "{found:#?}");
    }

    #[test]
    fn unreadable_tls_files_and_a_bad_url_are_problems() {
        let dir = tempfile::tempdir().unwrap();
        let options = ServeOptions {
            tls_cert: Some(dir.path().join("missing.pem")),
            tls_key: Some(dir.path().join("missing.key")),
            database: "mysql://db/fleet".into(),
            ..ServeOptions::default()
        };
        let found = problems(&options);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found[0].contains("missing.pem"), "{found:#?}");
        assert!(found[1].starts_with("--database"), "{found:#?}");
    }
}
