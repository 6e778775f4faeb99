//! The rules file: which trees a baseline records, what is excluded, which attributes count,
//! which files have their content captured, and how drift is classified.
//!
//! The built-in defaults are `packaging/rules.toml`, compiled in verbatim, so the shipped file
//! and the defaults cannot disagree. Every error in a rules file is reported at once, each with
//! the file and the key it concerns.

use std::fmt;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use regex::bytes::{Regex, RegexBuilder};
use serde::Deserialize;

/// The default rules, identical to `packaging/rules.toml`.
pub const DEFAULT_RULES_TOML: &str = include_str!("../../packaging/rules.toml");
/// Where the default rules come from, for error messages.
pub const DEFAULT_RULES_ORIGIN: &str = "<built-in rules>";
const RULES_VERSION: i64 = 1;
const DEFAULT_MAX_CONTENT: u64 = 64 * 1024;

pub use driftwatch_proto::drift::{Attr, Severity};

/// A set of [`Attr`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttrSet(u16);

impl AttrSet {
    pub const ALL: AttrSet = AttrSet(0xff);

    pub fn contains(self, attr: Attr) -> bool {
        self.0 & (1 << attr as u16) != 0
    }

    fn from_attrs(attrs: &[Attr]) -> Self {
        AttrSet(attrs.iter().fold(0, |acc, a| acc | 1 << *a as u16))
    }
}

/// A rules file that could not be used: every problem found, each with its key.
#[derive(Debug, thiserror::Error)]
pub struct RulesError {
    pub origin: String,
    pub problems: Vec<(String, String)>,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{}: {n} error{} in rules",
            self.origin,
            if n == 1 { "" } else { "s" }
        )?;
        for (key, message) in &self.problems {
            if key.is_empty() {
                write!(f, "\n  {}: {message}", self.origin)?;
            } else {
                write!(f, "\n  {}: {key}: {message}", self.origin)?;
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanSection {
    /// Trees to record.
    paths: Vec<String>,
    /// Globs never recorded or watched.
    #[serde(default)]
    exclude: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContentSection {
    /// Largest file whose content is captured, bytes.
    max_size: Option<u64>,
    /// Globs of files whose content is captured.
    #[serde(default)]
    include: Vec<String>,
    /// Globs of secret files: never captured.
    #[serde(default)]
    deny: Vec<String>,
    /// Regexes of secrets inside captured content: the named group `value`, or the whole
    /// match, is redacted.
    #[serde(default)]
    redact: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttributesRule {
    /// Globs this rule applies to.
    paths: Vec<String>,
    /// Attributes that count as drift for these paths.
    check: Vec<Attr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecuritySection {
    /// Where an added executable is `security` drift.
    #[serde(default)]
    new_executable_paths: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeverityRule {
    /// Severity of drift on these paths.
    level: Severity,
    /// Globs this rule applies to.
    paths: Vec<String>,
}

/// Compiled rules, ready to answer questions about paths.
#[derive(Clone)]
pub struct Rules {
    source: String,
    paths: Vec<PathBuf>,
    exclude: GlobSet,
    content_include: GlobSet,
    content_deny: GlobSet,
    redact: Vec<Regex>,
    max_content: u64,
    attributes: Vec<(GlobSet, AttrSet)>,
    new_executable: GlobSet,
    severity: Vec<(GlobSet, Severity)>,
}

impl fmt::Debug for Rules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rules")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl Rules {
    /// The built-in default rules.
    pub fn builtin() -> Rules {
        Rules::parse(DEFAULT_RULES_TOML, DEFAULT_RULES_ORIGIN)
            .expect("the built-in rules are valid (tested)")
    }

    /// Reads and compiles a rules file.
    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| RulesError {
            origin: origin.clone(),
            problems: vec![(String::new(), format!("cannot read: {e}"))],
        })?;
        Rules::parse(&text, &origin)
    }

    /// Parses and compiles rules from TOML text; `origin` names the text in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Rules, RulesError> {
        let mut problems = Problems::default();
        let table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                let message = e.to_string().trim_end().replace('\n', "\n    ");
                return Err(RulesError {
                    origin: origin.into(),
                    problems: vec![(String::new(), message)],
                });
            }
        };
        let mut version = None;
        let mut scan = None;
        let mut content = None;
        let mut security = None;
        let mut attributes = Vec::new();
        let mut severity = Vec::new();
        for (key, value) in table {
            match key.as_str() {
                "version" => version = Some(value),
                "scan" => scan = problems.section::<ScanSection>("scan", value),
                "content" => content = problems.section::<ContentSection>("content", value),
                "security" => security = problems.section::<SecuritySection>("security", value),
                "attributes" => attributes = problems.array::<AttributesRule>("attributes", value),
                "severity" => severity = problems.array::<SeverityRule>("severity", value),
                other => problems.push(
                    other,
                    "unknown key (expected version, scan, content, attributes, security, severity)",
                ),
            }
        }
        match version {
            None => problems.push(
                "version",
                format!("missing (this build reads version {RULES_VERSION})"),
            ),
            Some(toml::Value::Integer(RULES_VERSION)) => {}
            Some(v) => problems.push(
                "version",
                format!("unsupported value {v} (expected {RULES_VERSION})"),
            ),
        }

        let mut paths = Vec::new();
        let mut exclude = GlobSet::empty();
        match scan {
            None if !problems.has("scan") => problems.push("scan", "missing section [scan]"),
            None => {}
            Some(scan) => {
                if scan.paths.is_empty() {
                    problems.push("scan.paths", "must name at least one tree");
                }
                for (i, p) in scan.paths.iter().enumerate() {
                    let path = Path::new(p);
                    if !path.is_absolute() {
                        problems.push(
                            format!("scan.paths[{i}]"),
                            format!("{p:?} is not an absolute path"),
                        );
                    } else if path
                        .components()
                        .any(|c| c == std::path::Component::ParentDir)
                    {
                        problems.push(format!("scan.paths[{i}]"), format!("{p:?} contains \"..\""));
                    } else {
                        paths.push(normalize(path));
                    }
                }
                exclude = problems.globs("scan.exclude", &scan.exclude);
            }
        }
        // Nested trees would be walked twice; keep the outermost.
        paths.sort();
        paths.dedup();
        let mut outer: Vec<PathBuf> = Vec::new();
        for p in paths {
            if !outer.iter().any(|o| p.starts_with(o)) {
                outer.push(p);
            }
        }

        let content = content.unwrap_or(ContentSection {
            max_size: None,
            include: vec![],
            deny: vec![],
            redact: vec![],
        });
        let content_include = problems.globs("content.include", &content.include);
        let content_deny = problems.globs("content.deny", &content.deny);
        let redact = problems.regexes("content.redact", &content.redact);
        let attributes = attributes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                if r.check.is_empty() {
                    problems.push(
                        format!("attributes[{i}].check"),
                        "must name at least one attribute",
                    );
                }
                (
                    problems.globs(&format!("attributes[{i}].paths"), &r.paths),
                    AttrSet::from_attrs(&r.check),
                )
            })
            .collect();
        let new_executable = problems.globs(
            "security.new_executable_paths",
            security
                .as_ref()
                .map_or(&[][..], |s| &s.new_executable_paths),
        );
        let severity = severity
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    problems.globs(&format!("severity[{i}].paths"), &r.paths),
                    r.level,
                )
            })
            .collect();

        if !problems.0.is_empty() {
            return Err(RulesError {
                origin: origin.into(),
                problems: problems.0,
            });
        }
        Ok(Rules {
            source: text.to_owned(),
            paths: outer,
            exclude,
            content_include,
            content_deny,
            redact,
            max_content: content.max_size.unwrap_or(DEFAULT_MAX_CONTENT),
            attributes,
            new_executable,
            severity,
        })
    }

    /// The TOML these rules were compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The trees to record, outermost only, sorted.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Whether `path` is inside one of the recorded trees.
    pub fn in_scope(&self, path: &Path) -> bool {
        self.paths.iter().any(|p| path.starts_with(p)) && !self.is_excluded(path)
    }

    /// Whether `path` (or a directory above it) is excluded.
    pub fn is_excluded(&self, path: &Path) -> bool {
        self.exclude.is_match(path)
    }

    /// Whether `path` is a secret: its content is never captured or shown.
    pub fn is_secret(&self, path: &Path) -> bool {
        self.content_deny.is_match(path)
    }

    /// Whether the content of a regular file at `path` of `size` bytes should be captured.
    pub fn captures_content(&self, path: &Path, size: u64) -> bool {
        size <= self.max_content && self.content_include.is_match(path) && !self.is_secret(path)
    }

    /// The rules' own patterns of secrets inside captured content (the built-in ones are
    /// `evaluate::redact`'s).
    pub fn redact_patterns(&self) -> &[Regex] {
        &self.redact
    }

    /// The largest file whose content is captured.
    pub fn max_content(&self) -> u64 {
        self.max_content
    }

    /// The attributes that count as drift at `path`.
    pub fn attributes(&self, path: &Path) -> AttrSet {
        self.attributes
            .iter()
            .find(|(set, _)| set.is_match(path))
            .map_or(AttrSet::ALL, |(_, attrs)| *attrs)
    }

    /// The severity the path rules give `path`, if any rule matches.
    pub fn path_severity(&self, path: &Path) -> Option<Severity> {
        self.severity
            .iter()
            .find(|(set, _)| set.is_match(path))
            .map(|(_, s)| *s)
    }

    /// Whether an executable added at `path` is a new command in a system path.
    pub fn is_executable_path(&self, path: &Path) -> bool {
        self.new_executable.is_match(path)
    }
}

/// Removes `.` components and trailing slashes.
fn normalize(path: &Path) -> PathBuf {
    path.components().collect()
}

/// Problems collected while compiling, so all are reported at once.
#[derive(Default)]
struct Problems(Vec<(String, String)>);

impl Problems {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push((key.into(), message.into()));
    }

    fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    fn section<T: for<'de> Deserialize<'de>>(
        &mut self,
        key: &str,
        value: toml::Value,
    ) -> Option<T> {
        if !value.is_table() {
            self.push(
                key,
                format!("must be a table ([{key}]), found {}", value.type_str()),
            );
            return None;
        }
        match value.try_into() {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(key, e.to_string().trim_end());
                None
            }
        }
    }

    fn array<T: for<'de> Deserialize<'de>>(&mut self, key: &str, value: toml::Value) -> Vec<T> {
        let toml::Value::Array(items) = value else {
            self.push(key, format!("must be an array of tables ([[{key}]])"));
            return Vec::new();
        };
        items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| self.section(&format!("{key}[{i}]"), item))
            .collect()
    }

    /// Compiles the redaction regexes (`^` and `$` match at line ends).
    fn regexes(&mut self, key: &str, patterns: &[String]) -> Vec<Regex> {
        let mut out = Vec::new();
        for (i, pattern) in patterns.iter().enumerate() {
            match RegexBuilder::new(pattern)
                .multi_line(true)
                .size_limit(1 << 20)
                .build()
            {
                Ok(re) if re.is_match(b"") => self.push(
                    format!("{key}[{i}]"),
                    format!(
                        "pattern {pattern:?} matches the empty string, so it would redact nothing"
                    ),
                ),
                Ok(re) => out.push(re),
                Err(e) => self.push(
                    format!("{key}[{i}]"),
                    format!(
                        "bad regex {pattern:?}: {}",
                        e.to_string().trim_end().replace('\n', "\n    ")
                    ),
                ),
            }
        }
        out
    }

    /// Compiles globs; each pattern matches the path itself and everything below it.
    fn globs(&mut self, key: &str, patterns: &[String]) -> GlobSet {
        let mut builder = GlobSetBuilder::new();
        for (i, pattern) in patterns.iter().enumerate() {
            if !(pattern.starts_with('/') || pattern.starts_with("**/")) {
                self.push(
                    format!("{key}[{i}]"),
                    format!("pattern {pattern:?} must start with \"/\" or \"**/\""),
                );
                continue;
            }
            let trimmed = pattern.trim_end_matches('/');
            for p in [trimmed.to_owned(), format!("{trimmed}/**")] {
                match GlobBuilder::new(&p)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                {
                    Ok(glob) => {
                        builder.add(glob);
                    }
                    Err(e) => {
                        self.push(
                            format!("{key}[{i}]"),
                            format!("bad pattern {pattern:?}: {}", e.kind()),
                        );
                        break;
                    }
                }
            }
        }
        builder.build().unwrap_or_else(|e| {
            self.push(key, e.to_string());
            GlobSet::empty()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rules_compile() {
        let rules = Rules::builtin();
        assert!(rules.paths().contains(&PathBuf::from("/etc")));
    }

    #[test]
    fn first_boot_files_are_excluded_by_default() {
        let rules = Rules::builtin();
        for p in [
            "/etc/machine-id",
            "/etc/hostname",
            "/etc/hosts",
            "/etc/resolv.conf",
            "/etc/ssh/ssh_host_ed25519_key",
            "/etc/ssh/ssh_host_rsa_key.pub",
            "/etc/netplan/50-cloud-init.yaml",
            "/usr/lib/python3/dist-packages/foo/__pycache__/x.cpython-311.pyc",
            "/etc/passwd-",
        ] {
            assert!(rules.is_excluded(Path::new(p)), "{p} should be excluded");
        }
        for p in [
            "/etc/ssh/sshd_config",
            "/etc/passwd",
            "/etc/hosts.allow",
            "/usr/bin/ls",
        ] {
            assert!(!rules.is_excluded(Path::new(p)), "{p} should be watched");
        }
    }

    #[test]
    fn secrets_are_never_captured() {
        let rules = Rules::builtin();
        for p in [
            "/etc/shadow",
            "/etc/ssl/private/web.key",
            "/etc/ssh/ssh_host_rsa_key",
            "/etc/app/db_password.conf",
        ] {
            assert!(
                !rules.captures_content(Path::new(p), 10),
                "{p} must not be captured"
            );
        }
        assert!(rules.captures_content(Path::new("/etc/ssh/sshd_config"), 3000));
        assert!(!rules.captures_content(Path::new("/etc/ssh/sshd_config"), 1 << 20));
        assert!(!rules.captures_content(Path::new("/usr/bin/ls"), 10));
    }

    #[test]
    fn severities_and_attribute_sets() {
        let rules = Rules::builtin();
        let sev = |p: &str| rules.path_severity(Path::new(p));
        assert_eq!(sev("/etc/sudoers.d/90-ops"), Some(Severity::Security));
        assert_eq!(sev("/etc/ssh/sshd_config"), Some(Severity::Security));
        assert_eq!(sev("/etc/motd"), Some(Severity::Cosmetic));
        assert_eq!(sev("/etc/nginx/nginx.conf"), None);
        assert!(
            !rules
                .attributes(Path::new("/etc/app/app.log"))
                .contains(Attr::Content)
        );
        assert!(
            rules
                .attributes(Path::new("/etc/app/app.conf"))
                .contains(Attr::Content)
        );
        assert!(rules.is_executable_path(Path::new("/usr/local/bin/tool")));
        assert!(!rules.is_executable_path(Path::new("/etc/tool")));
    }

    #[test]
    fn every_error_is_reported_with_its_key() {
        let text = r#"
version = 2
bogus = 1
[scan]
paths = ["etc", "/usr"]
exclude = ["*.tmp", "/a/[b"]
[content]
max_size = "big"
[[attributes]]
paths = ["/etc"]
check = ["mode", "colour"]
[[severity]]
level = "critical"
paths = ["/etc"]
[[severity]]
level = "security"
paths = ["/x"]
extra = true
"#;
        let err = Rules::parse(text, "rules.toml").unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|(k, _)| k.as_str()).collect();
        for key in [
            "version",
            "bogus",
            "scan.paths[0]",
            "scan.exclude[0]",
            "scan.exclude[1]",
            "content",
            "attributes[0]",
            "severity[0]",
            "severity[1]",
        ] {
            assert!(keys.contains(&key), "missing error for {key}: {err}");
        }
        let shown = err.to_string();
        assert!(
            shown.starts_with("rules.toml: 9 errors in rules"),
            "{shown}"
        );
        assert!(shown.contains("rules.toml: severity[0]"), "{shown}");
    }

    #[test]
    fn secret_bearing_files_are_never_captured() {
        let rules = Rules::builtin();
        for p in [
            "/etc/mysql/debian.cnf",
            "/etc/postfix/sasl_passwd",
            "/etc/apt/auth.conf",
            "/etc/apt/auth.conf.d/90-artifactory.conf",
            "/etc/kubernetes/admin.conf",
            "/etc/docker/key.json",
            "/etc/wpa_supplicant/wpa_supplicant-wlan0.conf",
            "/etc/wpa_supplicant.conf",
            "/etc/sssd/sssd.conf",
        ] {
            assert!(rules.is_secret(Path::new(p)), "{p} must be a secret");
        }
        assert!(rules.captures_content(Path::new("/etc/mysql/my.cnf"), 100));
        assert!(rules.captures_content(Path::new("/etc/ssl/certs/site.crt"), 100));
    }

    #[test]
    fn bad_redaction_patterns_are_reported_with_their_keys() {
        let text = "version = 1\n[scan]\npaths = [\"/etc\"]\n[content]\n\
                    redact = ['ok=(?P<value>\\S+)', 'bad(', 'x*']\n";
        let err = Rules::parse(text, "r.toml").unwrap_err();
        let shown = err.to_string();
        assert_eq!(err.problems.len(), 2, "{shown}");
        assert!(
            shown.contains("r.toml: content.redact[1]: bad regex \"bad(\""),
            "{shown}"
        );
        assert!(
            shown.contains("content.redact[2]: pattern \"x*\" matches the empty string"),
            "{shown}"
        );
        let rules = Rules::parse(&text.replace(", 'bad(', 'x*'", ""), "r.toml").unwrap();
        assert_eq!(rules.redact_patterns().len(), 1);
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = Rules::parse("version = 1\n[scan\n", "r.toml").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn nested_trees_are_walked_once() {
        let rules = Rules::parse(
            "version = 1\n[scan]\npaths = [\"/etc/\", \"/etc/ssh\", \"/usr/./bin\"]\n",
            "r",
        )
        .unwrap();
        assert_eq!(
            rules.paths(),
            [PathBuf::from("/etc"), PathBuf::from("/usr/bin")]
        );
    }
}
