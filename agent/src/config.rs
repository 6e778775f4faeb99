//! The daemon's configuration: `agent.toml`, every setting overridable by a flag.
//!
//! ```toml
//! baseline = "/var/lib/driftwatch/baseline.dwb"   # required (here or --baseline)
//! root = "/"
//! state_dir = "/var/lib/driftwatch"
//! public_key = "/etc/driftwatch/ci.pub"          # optional: refuse baselines not signed by it
//! collector = "https://collector.internal:7470"   # optional: without it, JSON lines on stdout
//! listen = "127.0.0.1:7471"                       # status and metrics; "" turns it off
//!
//! [rescan]
//! interval = "6h"          # full rescan (throttled)
//! full_hash_every = 4      # every Nth rescan re-hashes everything
//! degraded_interval = "5m" # rescan of directories inotify could not watch
//!
//! [hashing]
//! rate = "64MiB"           # bytes per second for rescans; "0" = unlimited
//!
//! [watch]
//! coalesce = "1ms"         # quiet time that ends a burst of events
//! max_watches = 0          # 0 = as many as the kernel allows
//!
//! [spool]
//! max_size = "64MiB"
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
    /// The collector's URL; without it the agent runs standalone.
    #[arg(long, value_name = "URL")]
    pub collector: Option<String>,
    /// Status and metrics listener ("" turns it off).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
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
    /// The collector's URL.
    collector: Option<String>,
    /// Status and metrics listener.
    listen: Option<String>,
    #[serde(default)]
    rescan: RescanSection,
    #[serde(default)]
    hashing: HashingSection,
    #[serde(default)]
    watch: WatchSection,
    #[serde(default)]
    spool: SpoolSection,
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
    /// Bytes per second for rescans.
    rate: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WatchSection {
    /// Quiet time that ends a burst of events.
    coalesce: Option<String>,
    /// Upper bound on inotify watches (0 = the kernel's limit).
    max_watches: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpoolSection {
    /// Bound on the spool's size on disk.
    max_size: Option<String>,
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentConfig {
    pub baseline: PathBuf,
    pub root: PathBuf,
    pub state_dir: PathBuf,
    pub public_key: Option<PathBuf>,
    pub collector: Option<String>,
    pub listen: Option<SocketAddr>,
    pub rescan_interval: Duration,
    pub full_hash_every: u32,
    pub degraded_interval: Duration,
    /// Bytes per second; 0 = unlimited.
    pub hash_rate: u64,
    pub coalesce: Duration,
    pub max_watches: Option<u64>,
    pub spool_max_bytes: u64,
}

/// Every problem in a configuration, each with its key.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: invalid configuration:{}", .problems.iter().map(|(k, m)| format!("\n  {k}: {m}")).collect::<String>())]
pub struct ConfigError {
    pub origin: String,
    pub problems: Vec<(String, String)>,
}

pub const DEFAULT_STATE_DIR: &str = "/var/lib/driftwatch";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7471";

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
                let text = std::fs::read_to_string(path)
                    .map_err(|e| fail("", format!("cannot read: {e}")))?;
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
        let collector = overrides
            .collector
            .clone()
            .or(file.collector)
            .filter(|c| !c.is_empty());
        if let Some(c) = &collector {
            if !(c.starts_with("http://") || c.starts_with("https://")) {
                bad(
                    "collector",
                    format!("{c:?} must start with http:// or https://"),
                );
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
            rescan_interval,
            full_hash_every,
            degraded_interval,
            hash_rate,
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
        self.state_dir.join("ledger.json")
    }

    /// Where the running agent writes its listener address, for `status`.
    pub fn status_addr_path(state_dir: &Path) -> PathBuf {
        state_dir.join("status.addr")
    }
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
        bad(key, e);
        default
    })
}

/// Parses sizes like `64MiB`, `1G`, `512k`, `1048576` (binary multiples).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like \"64MiB\""))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use B, KiB, MiB, GiB)"
            ));
        }
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
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
                "collector",
                "rescan.interval",
                "hashing.rate"
            ]
        );
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
        assert_eq!(config.rescan_interval, Duration::from_secs(6 * 3600));
    }
}
