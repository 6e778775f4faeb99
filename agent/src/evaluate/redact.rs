//! Redaction: secret values in captured content are replaced before the content is baked into
//! a baseline or shown in a diff, so a secret never leaves the host.
//!
//! # What is a secret
//!
//! Built-in patterns, plus the rules' `[content] redact` regexes (each redacts its named group
//! `value`, or its whole match without one):
//!
//! - assignments whose key names a password, passwd, passphrase, secret, token, API key,
//!   private key, access key, credential, auth key or key data, as `key = value`, `key: value`,
//!   `KEY=value`, `export KEY=value`, `- key: value`, quoted or not, also commented out
//!   (`#password=…`): the value to the end of the line (quotes excepted). A quoted key with a
//!   quoted value (`"private_key": "…"`, JSON) and an inline `password=…` (connection strings)
//!   are found anywhere on a line;
//! - the password of a URL with credentials (`scheme://user:pass@host`);
//! - the body of a PEM private key block (`-----BEGIN … PRIVATE KEY-----` to its `END` line, or
//!   to the end of the content when the block is cut short);
//! - AWS access key ids (`AKIA…`/`ASIA…` and 16 upper-case letters or digits).
//!
//! Values that are plainly not secret (`yes`, `no`, `true`, `false`, `on`, `off`) stay, so
//! `PasswordAuthentication=no` still diffs; `passwd: files` (nsswitch.conf) is not a password.
//! Patterns err on the side of redacting: `token_ttl = 3600` shows as redacted.
//!
//! # Two forms of a redacted value
//!
//! - **Baked** — `[redacted]`, no hash: what a baseline holds. A baseline is built in an image
//!   pipeline with no host key, and it travels widely; a hash of the value in it (salted or
//!   not) could be brute-forced for a weak password, so it holds none.
//! - **Keyed** — `[redacted 1a2b3c4d]`: the first 8 hex digits of HMAC-SHA256 of the value,
//!   keyed with the host's [`RedactKey`] (32 random bytes, `redact.key` in the state directory,
//!   mode 0600). Equal values have equal tags on one host, so a second change of a secret is a
//!   new diff; without the key, which never leaves the host, the collector cannot test guesses.
//!
//! # Comparing with a baseline ([`prepare`])
//!
//! The baseline's side of a diff is baked: its secret values are unknown. The current side is
//! read on the host. To tell whether the secrets are unchanged, the agent puts the current
//! values into the baseline's `[redacted]` slots, in order, and hashes the result: equal to the
//! baseline's SHA-256 of the file means every secret is unchanged, and both sides are shown
//! baked, so an unchanged secret line is an unchanged line. Otherwise at least one secret
//! changed: the current side is shown keyed, so its secret lines show as changed. Limits: with
//! several secrets in one file, all of its secret lines then show as changed, not only the one
//! that did; `baseline diff` of two baselines cannot see a secret's change at all (both sides
//! are baked); a baseline built before redaction holds clear values, which the agent redacts
//! keyed on both sides, exactly.
//!
//! Known limit: a baseline holds, for a captured file, its redacted text *and* the SHA-256 of
//! the whole file, so whoever holds the baseline can test guesses of a low-entropy secret in
//! it (the agent uses the same property above). A file whose secret is guessable belongs in
//! `[content] deny`: its content is then never captured, only hashed.

use std::borrow::Cow;
use std::fs::{self, File};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::bytes::Regex;
use sha2::{Digest as _, Sha256};

use crate::rules::Rules;

/// A value in a baseline: redacted, no hash.
pub const MARKER: &str = "[redacted]";
/// The key file's name in the state directory.
pub const KEY_FILE: &str = "redact.key";
const KEY_LEN: usize = 32;
const TAG_BYTES: usize = 4;

/// Key names that mark a secret value (a regex alternation, matched case-insensitively).
const SECRET_KEYWORDS: &str = r"passw(?:or)?d|passphrase|secret|token|api[_\-]?key|private[_\-]?key|access[_\-]?key|credentials?|auth[_\-]?key|key[_\-]?data|client[_\-]?key";
/// A quoted value: double quotes with backslash escapes, or single quotes.
const QUOTED: &str = r#""(?:[^"\\\r\n]|\\.)*"|'[^'\r\n]*'"#;

/// The built-in patterns, compiled once. Each redacts its `value` group, or its whole match.
/// The three keyed by a secret's name (`key = value` and kin) are the slow ones (about 7 µs
/// each on 4 KiB); they run only where [`KEY_HINT`] (about 6 µs for all three) finds a part of
/// such a name, which most content has not.
struct Builtin {
    each: Vec<(Regex, Gate)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Gate {
    Always,
    KeyHint,
}

static BUILTIN: LazyLock<Builtin> = LazyLock::new(|| {
    let assignment = format!(
        r#"(?im-u)^[ \t]*(?:[#;]+[ \t]*)?(?:-[ \t]+)?(?:export[ \t]+)?["']?(?P<key>[a-z0-9_.\-]*(?:{SECRET_KEYWORDS})[a-z0-9_.\-]*)["']?[ \t]*(?P<sep>[=:])[ \t]*(?P<value>{QUOTED}|[^ \t\r\n"'][^\r\n]*?)[ \t]*\r?$"#
    );
    let quoted_key = format!(
        r#"(?i-u)["'](?P<key>[a-z0-9_.\-]*(?:{SECRET_KEYWORDS})[a-z0-9_.\-]*)["'][ \t]*[:=][ \t]*(?P<value>{QUOTED})"#
    );
    let inline = format!(
        r#"(?i-u)\b(?P<key>[a-z0-9_.\-]*(?:passw(?:or)?d|pwd|secret|token|api[_\-]?key))[ \t]*=[ \t]*(?P<value>{QUOTED}|[^\s"'&;,]+)"#
    );
    let patterns = [
        (
            r"(?s-u)-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----\r?\n?(?P<value>.*?)(?:\r?\n?-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)",
            Gate::Always,
        ),
        (&assignment, Gate::KeyHint),
        (&quoted_key, Gate::KeyHint),
        (&inline, Gate::KeyHint),
        (
            r#"(?i-u)\b[a-z][a-z0-9+.\-]*://[^\s:/@"'<>]*:(?P<value>[^\s@/"'<>]+)@"#,
            Gate::Always,
        ),
        (r"(?-u)\b(?:AKIA|ASIA)[A-Z0-9]{16}\b", Gate::Always),
    ];
    Builtin {
        each: patterns
            .iter()
            .map(|(p, gate)| {
                let re = Regex::new(p).expect("built-in redaction patterns are valid (tested)");
                (re, *gate)
            })
            .collect(),
    }
});

/// A part of every name [`SECRET_KEYWORDS`] (or the inline pattern's `pwd`) matches.
static KEY_HINT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i-u)pass|secret|token|key|credential|pwd").expect("valid hint pattern")
});

/// A marker already in the content (a baked baseline's): a secret whose value is unknown.
static MARKERS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?-u)\[redacted(?: [0-9a-f]{8})?\]").expect("valid marker pattern")
});

/// The host's redaction key: 32 random bytes, never written anywhere but its own file.
pub struct RedactKey([u8; KEY_LEN]);

impl std::fmt::Debug for RedactKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedactKey(..)")
    }
}

/// Why the redaction key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the redaction key {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot create the redaction key {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error(
        "redaction key {path} holds {len} bytes, expected {KEY_LEN} (delete it to make a new one)"
    )]
    Malformed { path: PathBuf, len: usize },
    #[error("no randomness for the redaction key: {0}")]
    Random(getrandom::Error),
}

impl RedactKey {
    /// A key from its bytes (tests, benchmarks).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> RedactKey {
        RedactKey(bytes)
    }

    /// A fresh random key that lives only as long as this process (`check` without a state
    /// directory): its tags compare within one output only.
    pub fn ephemeral() -> Result<RedactKey, KeyError> {
        let mut bytes = [0; KEY_LEN];
        getrandom::fill(&mut bytes).map_err(KeyError::Random)?;
        Ok(RedactKey(bytes))
    }

    /// The key in `state_dir`, created (mode 0600) on first use. Two processes creating it at
    /// once agree on one key: it is written to a temp file and hard-linked into place, which
    /// fails rather than replaces when the other got there first.
    pub fn load_or_create(state_dir: &Path) -> Result<RedactKey, KeyError> {
        let path = state_dir.join(KEY_FILE);
        match Self::read(&path) {
            Err(KeyError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        let key = Self::ephemeral()?;
        let create = |source| KeyError::Create {
            path: path.clone(),
            source,
        };
        let tmp = state_dir.join(format!(".{KEY_FILE}.{}", std::process::id()));
        let written = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&key.0)?;
            file.sync_all()?;
            fs::hard_link(&tmp, &path)
        })();
        let _ = fs::remove_file(&tmp);
        match written {
            Ok(()) => {
                if let Ok(dir) = File::open(state_dir) {
                    let _ = dir.sync_all();
                }
                Ok(key)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Self::read(&path),
            Err(e) => Err(create(e)),
        }
    }

    fn read(path: &Path) -> Result<RedactKey, KeyError> {
        let read = |source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(read)?;
        let mode = file.metadata().map_err(read)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "The redaction key is readable by others; it should be mode 0600."
            );
        }
        let mut bytes = Vec::with_capacity(KEY_LEN);
        file.take(KEY_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(read)?;
        let key: [u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Malformed {
                path: path.to_path_buf(),
                len: bytes.len(),
            })?;
        Ok(RedactKey(key))
    }

    /// The keyed form's tag of `value`: 8 hex digits of HMAC-SHA256(key, value).
    pub fn tag(&self, value: &[u8]) -> String {
        hex::encode(&hmac_sha256(&self.0, value)[..TAG_BYTES])
    }
}

/// HMAC-SHA256 (RFC 2104) over SHA-256's 64-byte blocks.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// A piece of content: plain text, or a secret (its bytes, and whether they are a real value
/// or a marker already in the content).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a [u8]),
    Secret { bytes: &'a [u8], known: bool },
}

/// Content cut into plain text and secrets.
#[derive(Debug)]
pub struct Redacted<'a> {
    pieces: Vec<Piece<'a>>,
}

impl<'a> Redacted<'a> {
    /// Finds the secrets in `content` with the built-in patterns and the rules'.
    pub fn find(content: &'a [u8], rules: &Rules) -> Redacted<'a> {
        let mut spans: Vec<(usize, usize)> = Vec::new();
        let hint = KEY_HINT.is_match(content);
        let builtin = BUILTIN
            .each
            .iter()
            .filter(|(_, gate)| *gate == Gate::Always || hint)
            .map(|(re, _)| re);
        for re in builtin.chain(rules.redact_patterns()) {
            for caps in re.captures_iter(content) {
                let Some(m) = caps.name("value").or_else(|| caps.get(0)) else {
                    continue;
                };
                let (start, end) = unquote(content, m.start(), m.end());
                if start == end || is_not_secret(&caps, &content[start..end]) {
                    continue;
                }
                spans.push((start, end));
            }
        }
        spans.extend(MARKERS.find_iter(content).map(|m| (m.start(), m.end())));
        spans.sort_unstable();
        let mut pieces = Vec::new();
        let mut at = 0;
        let mut i = 0;
        while i < spans.len() {
            let (start, mut end) = spans[i];
            i += 1;
            while i < spans.len() && spans[i].0 < end {
                end = end.max(spans[i].1);
                i += 1;
            }
            if start > at {
                pieces.push(Piece::Text(&content[at..start]));
            }
            let bytes = &content[start..end];
            let known = !is_marker(bytes);
            pieces.push(Piece::Secret { bytes, known });
            at = end;
        }
        if at < content.len() {
            pieces.push(Piece::Text(&content[at..]));
        }
        Redacted { pieces }
    }

    /// Whether any secret (or marker) was found.
    pub fn has_secrets(&self) -> bool {
        self.secrets().next().is_some()
    }

    fn secrets(&self) -> impl Iterator<Item = (&'a [u8], bool)> + '_ {
        self.pieces.iter().filter_map(|p| match *p {
            Piece::Secret { bytes, known } => Some((bytes, known)),
            Piece::Text(_) => None,
        })
    }

    /// The baked form: every secret is `[redacted]`.
    pub fn baked(&self) -> Vec<u8> {
        self.render(|_| Cow::Borrowed(MARKER))
    }

    /// The keyed form: every known value is `[redacted <tag>]`; markers stay `[redacted]`.
    pub fn keyed(&self, key: &RedactKey) -> Vec<u8> {
        self.render(|(bytes, known)| {
            if known {
                Cow::Owned(format!("[redacted {}]", key.tag(bytes)))
            } else {
                Cow::Borrowed(MARKER)
            }
        })
    }

    fn render(&self, mut secret: impl FnMut((&[u8], bool)) -> Cow<'static, str>) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in &self.pieces {
            match *piece {
                Piece::Text(t) => out.extend_from_slice(t),
                Piece::Secret { bytes, known } => {
                    out.extend_from_slice(secret((bytes, known)).as_bytes())
                }
            }
        }
        out
    }

    /// This content with its markers replaced, in order, by `other`'s secret values: what a
    /// baked file was if its secrets were `other`'s. `None` when the counts differ or this
    /// content has known values (it is not baked).
    fn filled_with(&self, other: &Redacted<'_>) -> Option<Vec<u8>> {
        if self.secrets().any(|(_, known)| known)
            || self.secrets().count() != other.secrets().count()
        {
            return None;
        }
        let mut values = other.secrets().map(|(bytes, _)| bytes);
        let mut out = Vec::new();
        for piece in &self.pieces {
            match *piece {
                Piece::Text(t) => out.extend_from_slice(t),
                Piece::Secret { .. } => out.extend_from_slice(values.next()?),
            }
        }
        Some(out)
    }
}

/// Whether `bytes` are exactly a marker (`[redacted]` or `[redacted 1a2b3c4d]`).
fn is_marker(bytes: &[u8]) -> bool {
    MARKERS.find(bytes).is_some_and(|m| m.len() == bytes.len())
}

/// Shrinks a span to the inside of its quotes.
fn unquote(content: &[u8], start: usize, end: usize) -> (usize, usize) {
    let v = &content[start..end];
    if v.len() >= 2 && (v[0] == b'"' || v[0] == b'\'') && v[v.len() - 1] == v[0] {
        (start + 1, end - 1)
    } else {
        (start, end)
    }
}

/// Matches that name a secret's key but whose value is plainly not one.
fn is_not_secret(caps: &regex::bytes::Captures<'_>, value: &[u8]) -> bool {
    const PLAIN: [&[u8]; 6] = [b"yes", b"no", b"true", b"false", b"on", b"off"];
    if PLAIN.iter().any(|p| value.eq_ignore_ascii_case(p)) {
        return true;
    }
    // nsswitch.conf: `passwd: files systemd` names where accounts come from.
    caps.name("key")
        .is_some_and(|k| k.as_bytes().eq_ignore_ascii_case(b"passwd"))
        && caps.name("sep").is_some_and(|s| s.as_bytes() == b":")
}

/// The baked form of captured content, for a baseline: `None` when it holds no secret (keep
/// the content as it is).
pub fn bake(content: &[u8], rules: &Rules) -> Option<Vec<u8>> {
    let found = Redacted::find(content, rules);
    found.has_secrets().then(|| found.baked())
}

/// One side of a content comparison: `None` when that side has no content.
pub type Side<'a> = Option<Cow<'a, [u8]>>;

/// The two sides of a content comparison made safe to compare and show (see the module docs):
/// `expected` is the baseline's content and its SHA-256, `actual` the content read now.
/// Content without secrets is returned as it is.
pub fn prepare<'a>(
    expected: Option<(&'a [u8], Option<[u8; 32]>)>,
    actual: Option<&'a [u8]>,
    rules: &Rules,
    key: &RedactKey,
) -> (Side<'a>, Side<'a>) {
    let old = expected.map(|(c, _)| Redacted::find(c, rules));
    let new = actual.map(|c| Redacted::find(c, rules));
    let secrets = |r: &Option<Redacted<'_>>| r.as_ref().is_some_and(Redacted::has_secrets);
    if !secrets(&old) && !secrets(&new) {
        return (
            expected.map(|(c, _)| Cow::Borrowed(c)),
            actual.map(Cow::Borrowed),
        );
    }
    let unchanged = match (&old, &new, expected.and_then(|(_, sha)| sha)) {
        (Some(o), Some(n), Some(sha)) => o
            .filled_with(n)
            .is_some_and(|original| Sha256::digest(&original)[..] == sha[..]),
        _ => false,
    };
    let show = |r: &Redacted<'_>| -> Cow<'a, [u8]> {
        Cow::Owned(if unchanged { r.baked() } else { r.keyed(key) })
    };
    (old.as_ref().map(show), new.as_ref().map(show))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> RedactKey {
        RedactKey::from_bytes([byte; KEY_LEN])
    }

    fn rules() -> Rules {
        Rules::builtin()
    }

    fn baked(text: &str) -> String {
        String::from_utf8(Redacted::find(text.as_bytes(), &rules()).baked()).unwrap()
    }

    fn keyed(text: &str, k: &RedactKey) -> String {
        String::from_utf8(Redacted::find(text.as_bytes(), &rules()).keyed(k)).unwrap()
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 and test case 6 (a key longer than a block).
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn redact_assignments_in_every_form() {
        for (line, shown) in [
            ("password=hunter2", "password=[redacted]"),
            ("password = hunter2", "password = [redacted]"),
            ("  db_password:  hunter2  ", "  db_password:  [redacted]  "),
            ("DB_PASSWORD=hunter2", "DB_PASSWORD=[redacted]"),
            ("export API_TOKEN=abc123", "export API_TOKEN=[redacted]"),
            (
                "export AWS_SECRET_ACCESS_KEY=\"wJalrXUt/K7MDENG\"",
                "export AWS_SECRET_ACCESS_KEY=\"[redacted]\"",
            ),
            (
                "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG",
                "aws_secret_access_key = [redacted]",
            ),
            ("- passphrase: 'x y z'", "- passphrase: '[redacted]'"),
            ("#password=old-one", "#password=[redacted]"),
            (
                "spring.datasource.password=hunter2",
                "spring.datasource.password=[redacted]",
            ),
            (
                "    client-key-data: LS0tLS1CRUdJTi",
                "    client-key-data: [redacted]",
            ),
            ("Credentials = abc", "Credentials = [redacted]"),
            ("apikey: k-123", "apikey: [redacted]"),
            (
                r#"  "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEv\n-----END PRIVATE KEY-----\n","#,
                r#"  "private_key": "[redacted]","#,
            ),
            (
                r#"{"user": "app", "password": "hunter2", "port": 5432}"#,
                r#"{"user": "app", "password": "[redacted]", "port": 5432}"#,
            ),
            (
                "conn = host=db user=app password=hunter2 dbname=x",
                "conn = host=db user=app password=[redacted] dbname=x",
            ),
        ] {
            assert_eq!(baked(line), shown, "{line}");
        }
    }

    #[test]
    fn leaves_what_is_not_a_secret() {
        for line in [
            "PasswordAuthentication no",
            "PasswordAuthentication=no",
            "passwd:         files systemd",
            "password\trequisite\tpam_pwquality.so retry=3",
            "Defaults passwd_tries=3",
            "password=",
            "worker_processes 2;",
            "url = https://example.com:8443/path",
            "see http://host/a@b",
            "AKIAIOSFODNN7EXAMPL",
            "XAKIAIOSFODNN7EXAMPLE",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n",
        ] {
            assert_eq!(baked(line), line, "{line:?} was redacted");
        }
    }

    #[test]
    fn redact_urls_keys_and_pem_blocks() {
        assert_eq!(
            baked("upstream = https://user:s3cr3t@db.example:5432/x\n"),
            "upstream = https://user:[redacted]@db.example:5432/x\n"
        );
        assert_eq!(
            baked("REDIS=redis://:pw@h\n"),
            "REDIS=redis://:[redacted]@h\n"
        );
        assert_eq!(
            baked("key_id AKIAIOSFODNN7EXAMPLE\nASIAABCDEFGHIJKLMNOP,"),
            "key_id [redacted]\n[redacted],"
        );
        let pem = "subject=x\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n\
                   -----BEGIN RSA PRIVATE KEY-----\nMIIEow\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(
            baked(pem),
            "subject=x\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n\
             -----BEGIN RSA PRIVATE KEY-----\n[redacted]\n-----END RSA PRIVATE KEY-----\n"
        );
        assert_eq!(
            baked(
                "-----BEGIN OPENSSH PRIVATE KEY-----\r\nb3Bl\r\n-----END OPENSSH PRIVATE KEY-----"
            ),
            "-----BEGIN OPENSSH PRIVATE KEY-----\r\n[redacted]\r\n-----END OPENSSH PRIVATE KEY-----"
        );
        // Cut short: redacted to the end.
        assert_eq!(
            baked("-----BEGIN PRIVATE KEY-----\nMIIE\nAAAA"),
            "-----BEGIN PRIVATE KEY-----\n[redacted]"
        );
    }

    #[test]
    fn baking_is_idempotent() {
        for text in [
            "password = hunter2 # old\nx=1\n",
            "a AKIAIOSFODNN7EXAMPLE\n",
            "-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----\n",
            "u = ftp://me:pw@host/\n",
        ] {
            let once = baked(text);
            assert_eq!(baked(&once), once);
            assert!(
                !Redacted::find(once.as_bytes(), &rules())
                    .secrets()
                    .any(|(_, known)| known)
            );
        }
    }

    #[test]
    fn keyed_tags_are_equal_for_equal_values_under_one_key() {
        let (k1, k2) = (key(1), key(2));
        let a = keyed("password=hunter2\n", &k1);
        assert!(
            a.starts_with("password=[redacted ") && a.ends_with("]\n"),
            "{a}"
        );
        assert_eq!(a.len(), "password=[redacted 12345678]\n".len());
        assert!(!a.contains("hunter2"));
        assert_eq!(a, keyed("password=hunter2\n", &k1));
        assert_eq!(
            a.trim_start_matches("password="),
            keyed("token: hunter2\n", &k1).trim_start_matches("token: ")
        );
        assert_ne!(a, keyed("password=hunter3\n", &k1));
        assert_ne!(a, keyed("password=hunter2\n", &k2));
        // A marker already there has no value to tag.
        assert_eq!(keyed("password=[redacted]\n", &k1), "password=[redacted]\n");
    }

    #[test]
    fn rules_add_patterns_with_or_without_a_value_group() {
        let rules = Rules::parse(
            "version = 1\n[scan]\npaths = [\"/etc\"]\n[content]\nredact = [\
             '^requirepass (?P<value>\\S+)', 'sk_live_[0-9a-z]+']\n",
            "r",
        )
        .unwrap();
        let text = b"requirepass foobared\nstripe sk_live_abc123 x\n";
        let out = Redacted::find(text, &rules).baked();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "requirepass [redacted]\nstripe [redacted] x\n"
        );
    }

    fn sha(content: &[u8]) -> Option<[u8; 32]> {
        Some(Sha256::digest(content).into())
    }

    fn show(old: &str, new: &str) -> (String, String) {
        let rules = rules();
        let baked = bake(old.as_bytes(), &rules).unwrap_or(old.as_bytes().to_vec());
        let (o, n) = prepare(
            Some((&baked, sha(old.as_bytes()))),
            Some(new.as_bytes()),
            &rules,
            &key(7),
        );
        let text = |c: Option<Cow<'_, [u8]>>| String::from_utf8(c.unwrap().into_owned()).unwrap();
        (text(o), text(n))
    }

    #[test]
    fn an_unchanged_secret_compares_equal_with_a_baked_baseline() {
        let old = "user=app\npassword=hunter2\nport=1\n";
        let (o, n) = show(old, "user=app\npassword=hunter2\nport=2\n");
        assert_eq!(o, "user=app\npassword=[redacted]\nport=1\n");
        assert_eq!(n, "user=app\npassword=[redacted]\nport=2\n");
    }

    #[test]
    fn a_changed_secret_shows_changed_without_its_value() {
        let (o, n) = show("password=hunter2\nport=1\n", "password=hunter3\nport=1\n");
        assert_eq!(o, "password=[redacted]\nport=1\n");
        assert!(
            n.starts_with("password=[redacted ") && !n.contains("hunter"),
            "{n}"
        );
        // A secret added where there was none.
        let (_, n) = show("port=1\n", "port=1\ntoken=abc\n");
        assert!(n.contains("token=[redacted ") && !n.contains("abc"), "{n}");
    }

    #[test]
    fn content_without_secrets_is_untouched() {
        let rules = rules();
        let (o, n) = prepare(
            Some((b"a=1\n", sha(b"a=1\n"))),
            Some(b"a=2\n"),
            &rules,
            &key(1),
        );
        assert!(matches!(o, Some(Cow::Borrowed(b"a=1\n"))));
        assert!(matches!(n, Some(Cow::Borrowed(b"a=2\n"))));
        assert_eq!(bake(b"a=1\n", &rules), None);
    }

    #[test]
    fn a_clear_value_in_an_old_baseline_is_tagged_on_both_sides() {
        let rules = rules();
        let (o, n) = prepare(
            Some((b"password=x\nport=1\n", None)),
            Some(b"password=x\nport=2\n"),
            &rules,
            &key(3),
        );
        let (o, n) = (o.unwrap(), n.unwrap());
        assert_eq!(
            o.split(|b| *b == b'\n').next(),
            n.split(|b| *b == b'\n').next()
        );
        assert!(!o.windows(10).any(|w| w == b"password=x"));
    }

    #[test]
    fn the_key_is_created_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = RedactKey::load_or_create(dir.path()).unwrap();
        let b = RedactKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.0, b.0);
        let meta = fs::metadata(dir.path().join(KEY_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), KEY_LEN as u64);
        fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        let err = RedactKey::load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("holds 5 bytes"), "{err}");
        assert_eq!(format!("{a:?}"), "RedactKey(..)");
    }
}
