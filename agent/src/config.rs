//! The daemon's configuration: `agent.toml`, every setting overridable by a flag.
//!
//! ```toml
//! baseline = "/var/lib/driftwatch/baseline.dwb"   # required (here or --baseline)
//! root = "/"
//! state_dir = "/var/lib/driftwatch"
//! public_key = "/etc/driftwatch/ci.pub"          # optional: refuse baselines not signed by it
//! listen = "127.0.0.1:7471"                       # metrics only (no drift content); "" turns it off
//! status_socket = "/var/lib/driftwatch/agent.sock" # status with drift and diffs, mode 0600; "" turns it off
//!
//! [collector]              # optional: without a url, standalone (JSON lines on stdout)
//! url = "https://collector.internal:7470"  # or a list: replicas, tried in turn on failure
//! ca = "/etc/driftwatch/collector-ca.pem"    # verifies the collector (https)
//! cert = "/etc/driftwatch/agent.pem"         # client certificate (mTLS), with key
//! key = "/etc/driftwatch/agent.key"
//! heartbeat = "5s"
//! identity_file = "/etc/driftwatch/identity.json"  # cloud-init instance-data.json shape
//! metadata_service = false # ask the cloud's instance metadata service (EC2 IMDSv2)
//!
//! [rescan]
//! interval = "6h"          # full rescan (throttled)
//! full_hash_every = 4      # every Nth rescan re-hashes everything
//! degraded_interval = "5m" # rescan of directories inotify could not watch
//!
//! [hashing]
//! rate = "64MiB"           # bytes per second for rescans and background hashes; "0" = unlimited
//! background_above = "64MiB" # larger changed files are hashed off the event path
//!
//! [watch]
//! coalesce = "1ms"         # quiet time that ends a burst while a file is mid-write
//! max_watches = 0          # 0 = as many as the kernel allows
//!
//! [spool]
//! max_size = "64MiB"
//!
//! [enroll]                 # optional: the collector issues this host's certificate
//! token_file = "/etc/driftwatch/join-token"  # dwj_… (driftwatch enroll token create)
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Settings given as flags; each wins over the file.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Overrides {
    /// The agent's config file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The baseline file baked into the image.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// The directory that stands for `/`.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Where the spool and ledger live.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Refuse baselines not signed by this key.
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// The collector's URL (http:// or https://), or several separated by commas (replicas
    /// sharing one database: the agent fails over to the next when one goes away); without
    /// it the agent runs standalone, and "" forces standalone whatever the file says.
    #[arg(long, value_name = "URL[,URL…]")]
    pub collector: Option<String>,
    /// PEM CA certificate(s) that verify an https:// collector.
    #[arg(long, value_name = "FILE")]
    pub collector_ca: Option<PathBuf>,
    /// PEM client certificate presented to the collector (mTLS); needs --collector-key.
    #[arg(long, value_name = "FILE")]
    pub collector_cert: Option<PathBuf>,
    /// PEM private key of --collector-cert.
    #[arg(long, value_name = "FILE")]
    pub collector_key: Option<PathBuf>,
    /// Enroll with the collector's fleet CA using the join token in this file: the host's key
    /// is made here and its certificate issued by the collector (instead of
    /// --collector-cert/--collector-key).
    #[arg(long, value_name = "FILE")]
    pub enroll_token_file: Option<PathBuf>,
    /// Heartbeat interval towards the collector, e.g. "5s".
    #[arg(long, value_name = "DURATION")]
    pub heartbeat: Option<String>,
    /// A JSON file shaped like cloud-init's instance-data.json that names this host.
    #[arg(long, value_name = "FILE")]
    pub identity_file: Option<PathBuf>,
    /// Ask the cloud instance metadata service (EC2 IMDSv2) who this host is.
    #[arg(long)]
    pub metadata_service: bool,
    /// Metrics listener, TCP ("" turns it off): `/metrics` and `/healthz`, no drift content.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The status socket (unix, mode 0600: the agent's user and root only), which serves
    /// `/status` with the drift and its diffs; default STATE_DIR/agent.sock, "" turns it off.
    #[arg(long, value_name = "PATH")]
    pub status_socket: Option<PathBuf>,
    /// Full rescan interval, e.g. "6h".
    #[arg(long, value_name = "DURATION")]
    pub rescan_interval: Option<String>,
    /// Hashing rate limit for rescans, e.g. "64MiB" (per second); "0" = unlimited.
    #[arg(long, value_name = "SIZE")]
    pub hash_rate: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    /// The baseline file baked into the image.
    baseline: Option<PathBuf>,
    /// The directory that stands for `/`.
    root: Option<PathBuf>,
    /// Where the spool and ledger live.
    state_dir: Option<PathBuf>,
    /// Refuse baselines not signed by this key.
    public_key: Option<PathBuf>,
    /// Where to stream events: a `[collector]` section, or just its URL as a string.
    collector: Option<CollectorSetting>,
    /// Metrics listener (TCP address:port; "" turns it off): no drift content.
    listen: Option<String>,
    /// The status socket (unix, mode 0600), which serves the drift and its diffs; default
    /// `<state_dir>/agent.sock`, "" turns it off.
    status_socket: Option<PathBuf>,
    #[serde(default)]
    rescan: RescanSection,
    #[serde(default)]
    hashing: HashingSection,
    #[serde(default)]
    watch: WatchSection,
    #[serde(default)]
    spool: SpoolSection,
    #[serde(default)]
    enroll: EnrollSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollSection {
    /// The join token (`dwj_…`) the host enrolls with when it has no certificate.
    token_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RescanSection {
    /// Full rescan interval.
    interval: Option<String>,
    /// Every Nth full rescan re-hashes every file.
    full_hash_every: Option<u32>,
    /// Rescan interval for directories inotify cannot watch.
    degraded_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HashingSection {
    /// Bytes per second for rescans and background hashes.
    rate: Option<String>,
    /// A changed regular file larger than this is hashed in the background: its event is
    /// emitted at once with the hash pending, the hash follows in a second event.
    background_above: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WatchSection {
    /// Quiet time that ends a burst while a file may still be mid-write (a burst whose paths
    /// are all settled, e.g. closed after writing, is evaluated at once).
    coalesce: Option<String>,
    /// Upper bound on inotify watches (0 = the kernel's limit).
    max_watches: Option<u64>,
}

/// `url = "https://a"`, `url = "https://a,https://b"` or `url = ["https://a", "https://b"]`.
#[derive(Debug)]
struct UrlList(Vec<String>);

impl UrlList {
    /// URLs given as one string, separated by commas.
    fn split(text: &str) -> Vec<String> {
        text.split(',').map(|u| u.trim().to_owned()).collect()
    }
}

impl<'de> Deserialize<'de> for UrlList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UrlList;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a URL, or a list of URLs")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(UrlList(UrlList::split(v)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut urls = Vec::new();
                while let Some(url) = seq.next_element::<String>()? {
                    urls.push(url);
                }
                Ok(UrlList(urls))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `collector = "https://…"` is short for `[collector] url = "https://…"`.
#[derive(Debug)]
enum CollectorSetting {
    Url(String),
    Section(CollectorSection),
}

impl<'de> Deserialize<'de> for CollectorSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = CollectorSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a [collector] table or a URL string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CollectorSetting::Url(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                // Through the derived impl, so unknown keys and bad types keep their messages.
                CollectorSection::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(CollectorSetting::Section)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CollectorSection {
    /// The collector's URL, http:// or https://, or several (replicas).
    url: Option<UrlList>,
    /// PEM CA certificate(s) that verify the collector (https only).
    ca: Option<PathBuf>,
    /// PEM client certificate for mTLS (with `key`).
    cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    key: Option<PathBuf>,
    /// Heartbeat interval.
    heartbeat: Option<String>,
    /// A JSON file shaped like cloud-init's instance-data.json that names this host.
    identity_file: Option<PathBuf>,
    /// Ask the cloud instance metadata service who this host is.
    metadata_service: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpoolSection {
    /// Bound on the bytes of records in the spool; its preallocated files take up to two
    /// segments (at most 1/8 of the bound) more on disk.
    max_size: Option<String>,
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentConfig {
    pub baseline: PathBuf,
    pub root: PathBuf,
    pub state_dir: PathBuf,
    pub public_key: Option<PathBuf>,
    /// Where to stream events; `None`: standalone (JSON lines on stdout).
    pub collector: Option<CollectorConfig>,
    /// The metrics listener (TCP): `/metrics` and `/healthz` only.
    pub listen: Option<SocketAddr>,
    /// The status socket (unix, mode 0600): `/status` with the drift and its diffs.
    pub status_socket: Option<PathBuf>,
    pub rescan_interval: Duration,
    pub full_hash_every: u32,
    pub degraded_interval: Duration,
    /// Bytes per second; 0 = unlimited.
    pub hash_rate: u64,
    /// Changed regular files larger than this are hashed in the background.
    pub hash_background_above: u64,
    pub coalesce: Duration,
    pub max_watches: Option<u64>,
    pub spool_max_bytes: u64,
}

/// The validated `[collector]` section.
#[derive(Clone, Debug, PartialEq)]
pub struct CollectorConfig {
    /// The collector's URLs, http:// or https:// (all alike), checked; never empty. The
    /// first is the one in use: the uplink rotates the list when it fails over.
    pub urls: Vec<String>,
    /// PEM CA certificate(s); required with https (this build trusts no system roots).
    pub ca: Option<PathBuf>,
    /// Client certificate and key (mTLS); both or neither.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub heartbeat: Duration,
    /// Names the host; checked at load (a malformed file is a configuration error).
    pub identity_file: Option<PathBuf>,
    pub metadata_service: bool,
    /// Enrollment (`[enroll]`): the host's certificate comes from the collector.
    pub enroll: Option<crate::ship::enroll::EnrollConfig>,
}

impl CollectorConfig {
    /// The URL in use (the first).
    pub fn url(&self) -> &str {
        &self.urls[0]
    }

    pub fn is_tls(&self) -> bool {
        self.url().starts_with("https://")
    }

    /// Moves on to the next URL (the one in use goes last); false when there is only one.
    pub fn fail_over(&mut self) -> bool {
        self.urls.rotate_left(1);
        self.urls.len() > 1
    }
}

/// The default heartbeat interval.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

/// Every problem in a configuration, each with its key.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: invalid configuration:{}", .problems.iter().map(|(k, m)| format!("\n  {k}: {m}")).collect::<String>())]
pub struct ConfigError {
    pub origin: String,
    pub problems: Vec<(String, String)>,
}

pub const DEFAULT_STATE_DIR: &str = "/var/lib/driftwatch";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7471";
/// The status socket's name inside the state directory.
pub const STATUS_SOCKET: &str = "agent.sock";
/// The longest path a unix socket can be bound at (`sun_path` holds 108 bytes with its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

impl AgentConfig {
    /// Reads the config file (if any) and applies the flags; reports every problem at once.
    pub fn load(overrides: &Overrides) -> Result<AgentConfig, ConfigError> {
        let origin = overrides
            .config
            .as_ref()
            .map_or_else(|| "<flags>".to_owned(), |p| p.display().to_string());
        let fail = |key: &str, message: String| ConfigError {
            origin: origin.clone(),
            problems: vec![(key.to_owned(), message)],
        };
        let file: FileConfig = match &overrides.config {
            None => FileConfig::default(),
            Some(path) => {
                let text = read_text(path).map_err(|e| fail("", format!("cannot read: {e}")))?;
                toml::from_str(&text).map_err(|e| fail("", e.to_string().trim_end().to_owned()))?
            }
        };
        let mut problems: Vec<(String, String)> = Vec::new();
        let mut bad = |key: &str, message: String| problems.push((key.to_owned(), message));

        let baseline = overrides.baseline.clone().or(file.baseline);
        if baseline.is_none() {
            bad(
                "baseline",
                "missing: set `baseline` in the config or pass --baseline".into(),
            );
        }
        let root = overrides
            .root
            .clone()
            .or(file.root)
            .unwrap_or_else(|| "/".into());
        if !root.is_dir() {
            bad("root", format!("{} is not a directory", root.display()));
        }
        let state_dir = overrides
            .state_dir
            .clone()
            .or(file.state_dir)
            .unwrap_or_else(|| DEFAULT_STATE_DIR.into());
        let listen_text = overrides
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen = if listen_text.is_empty() {
            None
        } else {
            match listen_text.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(e) => {
                    bad(
                        "listen",
                        format!("{listen_text:?} is not an address:port ({e})"),
                    );
                    None
                }
            }
        };
        let status_socket = match overrides.status_socket.clone().or(file.status_socket) {
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some(p),
            None => Some(AgentConfig::default_status_socket(&state_dir)),
        };
        if let Some(path) = &status_socket {
            let len = path.as_os_str().len();
            if len > MAX_SOCKET_PATH {
                bad(
                    "status_socket",
                    format!(
                        "{} is {len} bytes long; a unix socket path holds at most \
                         {MAX_SOCKET_PATH} (set status_socket, or a shorter state_dir)",
                        path.display()
                    ),
                );
            }
        }
        let token_file = overrides
            .enroll_token_file
            .clone()
            .or(file.enroll.token_file);
        let mut collector = collector(&mut bad, overrides, file.collector);
        if let Some(token_file) = token_file {
            match collector.as_mut() {
                None => bad(
                    "enroll.token_file",
                    "enrollment needs a collector: set collector.url (https://) and collector.ca"
                        .into(),
                ),
                Some(c) if !c.is_tls() => bad(
                    "enroll.token_file",
                    "enrollment needs an https:// collector.url (the collector's fleet CA \
                     issues TLS client certificates)"
                        .into(),
                ),
                Some(c) if c.cert.is_some() || c.key.is_some() => bad(
                    "enroll.token_file",
                    "enrollment issues this host's certificate: remove collector.cert and \
                     collector.key, or the enrollment"
                        .into(),
                ),
                Some(c) => {
                    c.enroll = Some(crate::ship::enroll::EnrollConfig {
                        token_file,
                        dir: state_dir.join(crate::ship::enroll::DIR),
                    })
                }
            }
        }
        let rescan_interval = duration(
            &mut bad,
            "rescan.interval",
            overrides.rescan_interval.clone().or(file.rescan.interval),
            Duration::from_secs(6 * 3600),
        );
        let degraded_interval = duration(
            &mut bad,
            "rescan.degraded_interval",
            file.rescan.degraded_interval,
            Duration::from_secs(300),
        );
        let coalesce = duration(
            &mut bad,
            "watch.coalesce",
            file.watch.coalesce,
            Duration::from_millis(1),
        );
        let hash_rate = size(
            &mut bad,
            "hashing.rate",
            overrides.hash_rate.clone().or(file.hashing.rate),
            64 << 20,
        );
        let hash_background_above = size(
            &mut bad,
            "hashing.background_above",
            file.hashing.background_above,
            64 << 20,
        );
        if hash_background_above < 1 << 20 {
            bad("hashing.background_above", "must be at least 1MiB".into());
        }
        let spool_max_bytes = size(&mut bad, "spool.max_size", file.spool.max_size, 64 << 20);
        if spool_max_bytes < 1 << 20 {
            bad("spool.max_size", "must be at least 1MiB".into());
        }
        let full_hash_every = file.rescan.full_hash_every.unwrap_or(4);
        if full_hash_every == 0 {
            bad("rescan.full_hash_every", "must be at least 1".into());
        }
        if !problems.is_empty() {
            return Err(ConfigError { origin, problems });
        }
        Ok(AgentConfig {
            baseline: baseline.expect("checked above"),
            root,
            state_dir,
            public_key: overrides.public_key.clone().or(file.public_key),
            collector,
            listen,
            status_socket,
            rescan_interval,
            full_hash_every,
            degraded_interval,
            hash_rate,
            hash_background_above,
            coalesce,
            max_watches: file.watch.max_watches.filter(|n| *n > 0),
            spool_max_bytes,
        })
    }

    /// The spool directory inside the state directory.
    pub fn spool_dir(&self) -> PathBuf {
        self.state_dir.join("spool")
    }

    /// The ledger snapshot inside the state directory.
    pub fn ledger_path(&self) -> PathBuf {
        self.state_dir.join("ledger.pb")
    }

    /// Where damaged state files are moved aside (`STATE/quarantine`).
    pub fn quarantine_dir(&self) -> PathBuf {
        self.state_dir.join("quarantine")
    }

    /// Where agents before 0.2 kept the ledger (as JSON); converted once at start.
    pub fn legacy_ledger_path(&self) -> PathBuf {
        self.state_dir.join("ledger.json")
    }

    /// Where the running agent writes its metrics listener's address (port 0 picks one).
    pub fn status_addr_path(state_dir: &Path) -> PathBuf {
        state_dir.join("status.addr")
    }

    /// The status socket when none is configured: `STATE_DIR/agent.sock`.
    pub fn default_status_socket(state_dir: &Path) -> PathBuf {
        state_dir.join(STATUS_SOCKET)
    }
}

/// The `[collector]` section with its flags applied, checked; `None` when standalone.
fn collector(
    bad: &mut impl FnMut(&str, String),
    overrides: &Overrides,
    file: Option<CollectorSetting>,
) -> Option<CollectorConfig> {
    // `--collector ""` runs standalone whatever the file says.
    if overrides.collector.as_deref() == Some("") {
        return None;
    }
    let section = match file {
        None => CollectorSection::default(),
        Some(CollectorSetting::Url(url)) => CollectorSection {
            url: Some(UrlList(UrlList::split(&url))),
            ..CollectorSection::default()
        },
        Some(CollectorSetting::Section(s)) => s,
    };
    let urls = overrides
        .collector
        .as_deref()
        .map(UrlList::split)
        .or(section.url.map(|l| l.0))
        .filter(|urls| urls.iter().any(|u| !u.is_empty()));
    let ca = overrides.collector_ca.clone().or(section.ca);
    let cert = overrides.collector_cert.clone().or(section.cert);
    let key = overrides.collector_key.clone().or(section.key);
    let identity_file = overrides.identity_file.clone().or(section.identity_file);
    let heartbeat_text = overrides.heartbeat.clone().or(section.heartbeat);
    let metadata_service = overrides.metadata_service || section.metadata_service.unwrap_or(false);
    let Some(urls) = urls else {
        let set: Vec<&str> = [
            ("ca", ca.is_some()),
            ("cert", cert.is_some()),
            ("key", key.is_some()),
            ("heartbeat", heartbeat_text.is_some()),
            ("identity_file", identity_file.is_some()),
            ("metadata_service", metadata_service),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect();
        if !set.is_empty() {
            bad(
                "collector.url",
                format!(
                    "missing, but collector.{} is set: give the collector's URL, or remove the \
                     collector settings to run standalone",
                    set.join(", collector.")
                ),
            );
        }
        return None;
    };
    let tls = urls[0].starts_with("https://");
    for url in &urls {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            bad(
                "collector.url",
                format!("{url:?} must start with http:// or https://"),
            );
        } else if let Err(e) = url.parse::<tonic::codegen::http::Uri>() {
            bad("collector.url", format!("{url:?} is not a URL: {e}"));
        } else if url
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .is_empty()
        {
            bad("collector.url", format!("{url:?} has no host"));
        } else if url.starts_with("https://") != tls {
            bad(
                "collector.url",
                format!(
                    "{url:?}: the collector's URLs must all be https:// or all http:// (one \
                     collector.ca and client certificate serve them all)"
                ),
            );
        }
    }
    for (name, path) in [("ca", &ca), ("cert", &cert), ("key", &key)] {
        let Some(path) = path else { continue };
        let key = format!("collector.{name}");
        if !tls {
            bad(&key, "only used with an https:// collector.url".into());
            continue;
        }
        match crate::fsutil::read_bounded(path, MAX_FILE_BYTES) {
            Err(e) => bad(&key, format!("cannot read {}: {e}", path.display())),
            Ok(bytes) if !bytes.windows(11).any(|w| w == b"-----BEGIN ") => {
                bad(&key, format!("{} is not a PEM file", path.display()))
            }
            Ok(_) => {}
        }
    }
    if tls && ca.is_none() {
        bad(
            "collector.ca",
            "required with an https:// collector: the CA certificate(s) that sign the \
             collector's certificate (the agent trusts no system roots)"
                .into(),
        );
    }
    match (&cert, &key) {
        (Some(_), None) if tls => bad(
            "collector.key",
            "missing: collector.cert needs its key".into(),
        ),
        (None, Some(_)) if tls => bad(
            "collector.cert",
            "missing: collector.key needs its certificate".into(),
        ),
        _ => {}
    }
    let heartbeat = duration(
        bad,
        "collector.heartbeat",
        heartbeat_text,
        DEFAULT_HEARTBEAT,
    );
    if let Some(Err(e)) = identity_file
        .as_deref()
        .map(crate::ship::identity::read_identity_file)
    {
        bad("collector.identity_file", e.to_string());
    }
    Some(CollectorConfig {
        urls,
        ca,
        cert,
        key,
        heartbeat,
        identity_file,
        metadata_service,
        enroll: None,
    })
}

fn duration(
    bad: &mut impl FnMut(&str, String),
    key: &str,
    value: Option<String>,
    default: Duration,
) -> Duration {
    let Some(text) = value else { return default };
    match humantime::parse_duration(&text) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            bad(key, "must be greater than zero".into());
            default
        }
        Err(e) => {
            bad(
                key,
                format!("{text:?} is not a duration like \"6h\" or \"30s\": {e}"),
            );
            default
        }
    }
}

fn size(bad: &mut impl FnMut(&str, String), key: &str, value: Option<String>, default: u64) -> u64 {
    let Some(text) = value else { return default };
    parse_size(&text).unwrap_or_else(|e| {
        bad(key, e.to_string());
        default
    })
}

/// The largest configuration file (or PEM file it names) read; a larger one is refused, as is
/// one that is not a regular file (`--config /dev/zero`).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// A configuration file's text, bounded (see [`MAX_FILE_BYTES`]).
fn read_text(path: &Path) -> std::io::Result<String> {
    let bytes = crate::fsutil::read_bounded(path, MAX_FILE_BYTES)?;
    String::from_utf8(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// A size that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error(
        "{text:?} is not a size like \"64MiB\" (a number and a unit: B, KiB, MiB, GiB, TiB; \
         K, KB, M, MB, G, GB, T, TB are binary too)"
    )]
    Invalid {
        text: String,
        #[source]
        source: ::parse_size::Error,
    },
    #[error("{text:?} is too large")]
    TooLarge { text: String },
}

/// Parses sizes like `64MiB`, `1G`, `512k`, `1.5 GiB`, `1048576`: every multiple is binary
/// (`KB` = `KiB` = 1024 bytes), the unit is case-insensitive and optional.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    const SIZES: ::parse_size::Config = ::parse_size::Config::new().with_binary();
    SIZES.parse_size(text.trim()).map_err(|source| {
        let text = text.to_owned();
        match source {
            ::parse_size::Error::PosOverflow => SizeError::TooLarge { text },
            source => SizeError::Invalid { text, source },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
        // Beyond the old syntax: fractions, spaces, terabytes; every multiple stays binary.
        assert_eq!(parse_size(" 1.5 KiB "), Ok(1536));
        assert_eq!(parse_size("2 TB"), Ok(2 << 40));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(
            parse_size("99999999999G").unwrap_err().to_string(),
            "\"99999999999G\" is too large"
        );
        let err = parse_size("64 parsecs").unwrap_err().to_string();
        assert!(
            err.contains("\"64 parsecs\" is not a size like \"64MiB\""),
            "{err}"
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "root = \"/nonexistent-root\"\nlisten = \"nowhere\"\ncollector = \"ftp://x\"\n[rescan]\ninterval = \"soon\"\n[hashing]\nrate = \"fast\"\n",
        )
        .unwrap();
        let err = AgentConfig::load(&Overrides {
            config: Some(path),
            ..Overrides::default()
        })
        .unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "baseline",
                "root",
                "listen",
                "collector.url",
                "rescan.interval",
                "hashing.rate"
            ]
        );
    }

    fn load_text(dir: &Path, text: &str, overrides: Overrides) -> Result<AgentConfig, ConfigError> {
        let path = dir.join("agent.toml");
        std::fs::write(&path, text).unwrap();
        AgentConfig::load(&Overrides {
            config: Some(path),
            baseline: Some("/b.dwb".into()),
            ..overrides
        })
    }

    fn problem_keys(e: &ConfigError) -> Vec<&str> {
        e.problems.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn collector_section_flags_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        // No collector: standalone, as before.
        let c = load_text(dir.path(), "", Overrides::default()).unwrap();
        assert_eq!(c.collector, None);
        // The string form is the url alone.
        let c = load_text(
            dir.path(),
            "collector = \"http://127.0.0.1:7470\"\n",
            Overrides::default(),
        )
        .unwrap();
        let collector = c.collector.unwrap();
        assert_eq!(collector.url(), "http://127.0.0.1:7470");
        assert_eq!(collector.heartbeat, DEFAULT_HEARTBEAT);
        assert!(!collector.metadata_service);
        // The section, with flags winning; `--collector ""` forces standalone.
        let text = "[collector]\nurl = \"http://a:1\"\nheartbeat = \"2s\"\n";
        let c = load_text(
            dir.path(),
            text,
            Overrides {
                collector: Some("http://b:2".into()),
                heartbeat: Some("250ms".into()),
                metadata_service: true,
                ..Overrides::default()
            },
        )
        .unwrap()
        .collector
        .unwrap();
        assert_eq!(
            (c.url(), c.heartbeat),
            ("http://b:2", Duration::from_millis(250))
        );
        assert!(c.metadata_service);
        let c = load_text(
            dir.path(),
            text,
            Overrides {
                collector: Some(String::new()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(c.collector, None);
        // TLS material: PEM files, read at load.
        let pem = dir.path().join("ca.pem");
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let text = format!(
            "[collector]\nurl = \"https://c:1\"\nca = \"{0}\"\ncert = \"{0}\"\nkey = \"{0}\"\n",
            pem.display()
        );
        let c = load_text(dir.path(), &text, Overrides::default())
            .unwrap()
            .collector
            .unwrap();
        assert!(c.is_tls());
        assert_eq!(c.ca.as_deref(), Some(pem.as_path()));
    }

    #[test]
    fn collector_problems_name_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.txt");
        std::fs::write(&not_pem, "hello").unwrap();
        let identity = dir.path().join("identity.json");
        std::fs::write(&identity, "{\"v1\": {\"cloud_name\": \"aws\"}}").unwrap();
        let text = format!(
            "[collector]\nurl = \"https://c:1\"\nca = \"{}\"\ncert = \"/nonexistent.pem\"\n\
             heartbeat = \"0s\"\nidentity_file = \"{}\"\n",
            not_pem.display(),
            identity.display()
        );
        let e = load_text(dir.path(), &text, Overrides::default()).unwrap_err();
        assert_eq!(
            problem_keys(&e),
            [
                "collector.ca",
                "collector.cert",
                "collector.key",
                "collector.heartbeat",
                "collector.identity_file"
            ],
            "{e}"
        );
        let message = e.to_string();
        assert!(message.contains("not a PEM file"), "{message}");
        assert!(message.contains("v1.instance_id"), "{message}");
        // https needs a CA; TLS files with http:// are a mistake; settings without a url too.
        let e = load_text(
            dir.path(),
            "collector = \"https://c:1\"\n",
            Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(problem_keys(&e), ["collector.ca"]);
        let e = load_text(
            dir.path(),
            &format!(
                "[collector]\nurl = \"http://c:1\"\nca = \"{}\"\n",
                not_pem.display()
            ),
            Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(problem_keys(&e), ["collector.ca"]);
        assert!(e.to_string().contains("only used with an https://"), "{e}");
        let e = load_text(
            dir.path(),
            "[collector]\nheartbeat = \"1s\"\n",
            Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(problem_keys(&e), ["collector.url"]);
        assert!(e.to_string().contains("collector.heartbeat is set"), "{e}");
        // Unknown keys in the section are refused by name.
        let e = load_text(
            dir.path(),
            "[collector]\nurl = \"http://c:1\"\nurls = 1\n",
            Overrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("urls"), "{e}");
        let e = load_text(
            dir.path(),
            "collector = \"tcp://c:1\"\n",
            Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(problem_keys(&e), ["collector.url"]);
    }

    #[test]
    fn several_collector_urls_are_replicas_tried_in_turn() {
        let dir = tempfile::tempdir().unwrap();
        let urls = |c: &AgentConfig| c.collector.as_ref().unwrap().urls.clone();
        let listed = load_text(
            dir.path(),
            "[collector]\nurl = [\"http://a:1\", \"http://b:2\"]\n",
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(urls(&listed), ["http://a:1", "http://b:2"]);
        let flag = load_text(
            dir.path(),
            "collector = \"http://x:1\"\n",
            Overrides {
                collector: Some("http://a:1, http://b:2".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(urls(&flag), ["http://a:1", "http://b:2"]);
        let mut collector = flag.collector.unwrap();
        assert!(collector.fail_over());
        assert_eq!(collector.url(), "http://b:2");
        assert!(collector.fail_over());
        assert_eq!(collector.url(), "http://a:1");
        // One CA and one client certificate serve every URL: the schemes must agree.
        let e = load_text(
            dir.path(),
            "[collector]\nurl = \"http://a:1,https://b:2\"\n",
            Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(problem_keys(&e), ["collector.url"]);
        assert!(
            e.to_string().contains("all be https:// or all http://"),
            "{e}"
        );
        let e = load_text(
            dir.path(),
            "[collector]\nurl = [\"http://a:1\", \"b:2\"]\n",
            Overrides::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("\"b:2\" must start with http://"),
            "{e}"
        );
    }

    #[test]
    fn the_packaged_config_parses_with_and_without_its_collector_section() {
        let text = include_str!("../../packaging/agent.toml");
        toml::from_str::<FileConfig>(text).unwrap();
        // Uncommenting the example section must give a valid one (the key names stay in sync).
        let mut in_section = false;
        let uncommented: String = text
            .lines()
            .map(|line| {
                if line == "#[collector]" {
                    in_section = true;
                } else if line.starts_with('[') {
                    in_section = false;
                }
                let is_setting = line.starts_with('#') && !line.starts_with("# ") && line != "#";
                if in_section && is_setting {
                    &line[1..]
                } else {
                    line
                }
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let file: FileConfig = toml::from_str(&uncommented).unwrap();
        let Some(CollectorSetting::Section(c)) = file.collector else {
            panic!("no [collector] section in {uncommented}");
        };
        assert_eq!(
            c.url.map(|l| l.0),
            Some(vec!["https://collector.internal:7470".to_owned()])
        );
        assert!(c.ca.is_some() && c.cert.is_some() && c.key.is_some() && c.identity_file.is_some());
        assert_eq!(
            (c.heartbeat.as_deref(), c.metadata_service),
            (Some("5s"), Some(false))
        );
    }

    #[test]
    fn the_status_socket_defaults_to_the_state_dir_and_can_be_moved_or_turned_off() {
        let dir = tempfile::tempdir().unwrap();
        let c = load_text(dir.path(), "state_dir = \"/s\"\n", Overrides::default()).unwrap();
        assert_eq!(c.status_socket, Some(PathBuf::from("/s/agent.sock")));
        let c = load_text(
            dir.path(),
            "status_socket = \"/run/x.sock\"\n",
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.status_socket, Some(PathBuf::from("/run/x.sock")));
        let off = Overrides {
            status_socket: Some(PathBuf::new()),
            ..Overrides::default()
        };
        let c = load_text(dir.path(), "status_socket = \"/run/x.sock\"\n", off).unwrap();
        assert_eq!(c.status_socket, None);
        let long = format!("state_dir = \"/{}\"\n", "d".repeat(100));
        let err = load_text(dir.path(), &long, Overrides::default()).unwrap_err();
        assert_eq!(err.problems[0].0, "status_socket", "{err}");
        assert!(err.to_string().contains("at most 107"), "{err}");
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "baseline = \"/a.dwb\"\nlisten = \"127.0.0.1:1\"\n").unwrap();
        let config = AgentConfig::load(&Overrides {
            config: Some(path),
            baseline: Some("/b.dwb".into()),
            listen: Some(String::new()),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(config.baseline, PathBuf::from("/b.dwb"));
        assert_eq!(config.listen, None);
        assert_eq!(
            config.status_socket,
            Some(PathBuf::from(DEFAULT_STATE_DIR).join("agent.sock"))
        );
        assert_eq!(config.rescan_interval, Duration::from_secs(6 * 3600));
    }
}
