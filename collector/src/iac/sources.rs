//! State sources the collector follows by itself (`serve --state-source NAME=PATH|URL`): a
//! local state file, re-read when it changes, or a Terraform HTTP backend's state URL, polled.
//!
//! Each poll reads the state through the same allow-list parser as `driftwatch iac import`
//! and imports it when its content changed since the last import. A state that cannot be read
//! or is refused (malformed, stale) keeps the last good import; the reason is logged once per
//! distinct reason, not once per poll.

use std::fmt;
use std::io::{self, Read};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};

use super::{import, tfstate};
use crate::metrics::Metrics;
use crate::store::StateImport;
use crate::store::{self, Store};

/// Where a followed state lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    /// A Terraform HTTP backend's address (GET returns the state). Basic authentication from
    /// `TF_HTTP_USERNAME` / `TF_HTTP_PASSWORD`, as Terraform's own backend reads them.
    Http(String),
}

/// `NAME=PATH` or `NAME=http(s)://…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateSource {
    pub name: String,
    pub location: Location,
}

/// Why a `--state-source` value is refused; each names the value.
#[derive(Debug, thiserror::Error)]
pub enum SourceSpecError {
    #[error("{0:?}: expected NAME=PATH or NAME=URL (e.g. prod-web=/srv/tf/prod.tfstate)")]
    Shape(String),
    #[error("{0:?}: the state name must be 1 to {max} characters", max = import::MAX_NAME_LEN)]
    NameLength(String),
    #[error("{0:?}: no path or URL after `=`")]
    NoTarget(String),
    #[error("{0:?}: only local files and http(s):// URLs are supported")]
    Scheme(String),
}

impl FromStr for StateSource {
    type Err = SourceSpecError;

    fn from_str(text: &str) -> Result<Self, SourceSpecError> {
        let Some((name, target)) = text.split_once('=') else {
            return Err(SourceSpecError::Shape(text.to_owned()));
        };
        let name = name.trim();
        if name.is_empty() || name.len() > import::MAX_NAME_LEN {
            return Err(SourceSpecError::NameLength(text.to_owned()));
        }
        let location = if target.starts_with("http://") || target.starts_with("https://") {
            Location::Http(target.to_owned())
        } else if target.is_empty() {
            return Err(SourceSpecError::NoTarget(text.to_owned()));
        } else if target.contains("://") {
            return Err(SourceSpecError::Scheme(text.to_owned()));
        } else {
            Location::File(PathBuf::from(target))
        };
        Ok(StateSource {
            name: name.to_owned(),
            location,
        })
    }
}

impl fmt::Display for StateSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::File(p) => write!(f, "{}={}", self.name, p.display()),
            Location::Http(u) => write!(f, "{}={}", self.name, redact(u)),
        }
    }
}

/// A URL without credentials, for logs.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) if !rest.split('/').next().unwrap_or("").is_empty() => {
                format!("{scheme}://…@{host}")
            }
            _ => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// What one source remembers between polls.
#[derive(Default)]
struct Followed {
    /// The file's (modification time, length) at the last read.
    file_version: Option<(SystemTime, u64)>,
    /// SHA-256 of the content last imported.
    imported: Option<[u8; 32]>,
    /// The last failure logged, so a persistent one is logged once.
    last_error: Option<String>,
}

/// How often a collector that does not hold the sources' lease checks whether it got it.
const STANDBY_CHECK: Duration = Duration::from_secs(1);

/// Follows `sources`, polling every `every`, on a thread of its own, while this collector
/// holds their lease ([`Store::lease`]).
pub fn follow<S: Store>(
    sources: Vec<StateSource>,
    every: Duration,
    max_bytes: u64,
    store: Arc<S>,
    metrics: Arc<Metrics>,
) {
    if sources.is_empty() {
        return;
    }
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build(),
    );
    let spawned = std::thread::Builder::new()
        .name("state-sources".into())
        .spawn(move || {
            let mut state: Vec<Followed> = sources.iter().map(|_| Followed::default()).collect();
            // One collector of those sharing a database follows the sources; the others stand
            // by and take over within a second or two of its end.
            let lease = store.lease("state-sources");
            loop {
                if !lease.held() {
                    std::thread::sleep(every.min(STANDBY_CHECK));
                    continue;
                }
                for (source, followed) in sources.iter().zip(&mut state) {
                    let outcome = poll(source, followed, &agent, max_bytes, &*store);
                    match outcome {
                        Ok(Some(summary)) => {
                            metrics.state_source_imports.inc();
                            followed.last_error = None;
                            tracing::info!(source = %source, "{summary}");
                        }
                        Ok(None) => {}
                        Err(error) => {
                            metrics.state_source_errors.inc();
                            let error = error.to_string();
                            if followed.last_error.as_ref() != Some(&error) {
                                if has_import(source, followed, &*store) {
                                    tracing::warn!(
                                        source = %source, %error,
                                        "Cannot import the state source; keeping the last import."
                                    );
                                } else {
                                    tracing::warn!(
                                        source = %source, %error,
                                        "Cannot import the state source; nothing imported from it yet."
                                    );
                                }
                                followed.last_error = Some(error);
                            }
                        }
                    }
                }
                std::thread::sleep(every);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "Cannot start the state-source thread.");
    }
}

/// Whether a state is stored under the source's name: imported by this collector, or before
/// it started (then the failure keeps it; otherwise there is nothing to keep).
fn has_import<S: Store + ?Sized>(source: &StateSource, followed: &Followed, store: &S) -> bool {
    followed.imported.is_some()
        || store
            .iac()
            .is_ok_and(|iac| iac.states.iter().any(|s| s.name == source.name))
}

/// Why one poll of a source imported nothing.
#[derive(Debug, thiserror::Error)]
enum PollError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("GET failed: {0}")]
    Get(#[source] ureq::Error),
    #[error("the backend holds no state yet")]
    NoState,
    #[error("GET answered HTTP {0}")]
    Status(u16),
    #[error(transparent)]
    State(#[from] tfstate::StateError),
    #[error(transparent)]
    Refused(#[from] import::RequestError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// One poll of one source: `Some(summary)` when it imported.
fn poll<S: Store + ?Sized>(
    source: &StateSource,
    followed: &mut Followed,
    agent: &ureq::Agent,
    max_bytes: u64,
    store: &S,
) -> Result<Option<String>, PollError> {
    let reader: Box<dyn Read> = match &source.location {
        Location::File(path) => {
            let unreadable = |source| PollError::Read {
                path: path.clone(),
                source,
            };
            let meta = std::fs::metadata(path).map_err(unreadable)?;
            let version = (
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                meta.len(),
            );
            if followed.file_version == Some(version) {
                return Ok(None);
            }
            let file = std::fs::File::open(path).map_err(unreadable)?;
            followed.file_version = Some(version);
            Box::new(file)
        }
        Location::Http(url) => {
            let mut request = agent.get(url);
            if let (Ok(user), Ok(password)) = (
                std::env::var("TF_HTTP_USERNAME"),
                std::env::var("TF_HTTP_PASSWORD"),
            ) {
                use base64::Engine as _;
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                request = request.header("Authorization", format!("Basic {token}"));
            }
            let response = request.call().map_err(PollError::Get)?;
            match response.status().as_u16() {
                200 => {}
                // The backend has no state yet.
                204 | 404 => return Err(PollError::NoState),
                code => return Err(PollError::Status(code)),
            }
            Box::new(response.into_body().into_reader())
        }
    };
    let mut hashing = Hashing {
        inner: reader,
        hasher: Sha256::new(),
    };
    let summary = tfstate::parse_state_limited(&mut hashing, max_bytes)?;
    let digest: [u8; 32] = hashing.hasher.finalize().into();
    if followed.imported == Some(digest) {
        return Ok(None);
    }
    let request = import::state_request(summary, &source.name, &source.to_string());
    import::validate_state(&request)?;
    let serial = request.serial;
    let import = StateImport {
        imported_by: format!("state source {source}"),
        ..super::state_import(request)
    };
    let outcome = store.import_state(&import, store::now_millis())?;
    followed.imported = Some(digest);
    Ok(Some(import::state_summary(
        &import.kind,
        &source.name,
        serial,
        outcome.stored,
        outcome.replaced,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_bad_ones_say_why() {
        assert_eq!(
            "prod=/srv/prod.tfstate".parse::<StateSource>().unwrap(),
            StateSource {
                name: "prod".into(),
                location: Location::File("/srv/prod.tfstate".into())
            }
        );
        let http: StateSource = "web=https://u:p@tf.example/state/web".parse().unwrap();
        assert_eq!(
            http.location,
            Location::Http("https://u:p@tf.example/state/web".into())
        );
        assert_eq!(http.to_string(), "web=https://…@tf.example/state/web");
        for (bad, want) in [
            ("/srv/prod.tfstate", "NAME=PATH"),
            ("=x", "1 to 200"),
            ("p=", "no path"),
            ("p=s3://bucket/key", "only local files"),
        ] {
            let err = bad.parse::<StateSource>().unwrap_err().to_string();
            assert!(err.contains(want), "{bad}: {err}");
        }
    }
}
