//! Paths are raw bytes on Linux; people and JSON need text. Valid UTF-8 is kept as is, every
//! byte that is not part of valid UTF-8 is written as `\xNN` (as `git` and `ls -b` do), and a
//! backslash as `\\`, so a non-UTF-8 name is shown unambiguously, never silently replaced by
//! U+FFFD, and [`unescape_bytes`] gives back the exact bytes.

use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Renders raw bytes as text, escaping invalid UTF-8 bytes as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for (i, part) in chunk.valid().split('\\').enumerate() {
            if i > 0 {
                out.push_str("\\\\");
            }
            out.push_str(part);
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Renders a path as text, escaping invalid UTF-8 bytes as `\xNN`.
pub fn display_path(path: &Path) -> String {
    escape_bytes(path.as_os_str().as_bytes())
}

/// Inverts [`escape_bytes`]. Malformed escapes are kept literally.
pub fn unescape_bytes(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
                continue;
            }
            if bytes.get(i + 1) == Some(&b'x')
                && let Some(b) = text
                    .get(i + 2..i + 4)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Inverts [`display_path`].
pub fn parse_path(text: &str) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStringExt;
    std::ffi::OsString::from_vec(unescape_bytes(text)).into()
}

/// Serde for paths as [`display_path`] text: `#[serde(with = "driftwatch_proto::text::path_text")]`
/// (or `serialize_with = "…::serialize"`).
pub mod path_text {
    use std::path::{Path, PathBuf};

    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::display_path(path))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        Ok(super::parse_path(&String::deserialize(d)?))
    }
}

/// Text that came from a host (a path, a diff line, a hostname) made safe to print on a
/// terminal: control characters are shown as escapes instead of acting — `\n`, `\r`, `\t`,
/// `\e` (escape), `\xNN` for the other C0 controls and DEL, `\u{NN}` for C1 controls and for
/// the invisible characters that reorder or hide text (bidirectional overrides and isolates,
/// zero-width marks) — the way `ls -b` and git quote names. A forged name cannot break a line,
/// move the cursor, recolour or retitle the terminal. Everything else is kept; paths from
/// [`display_path`] already show a backslash as `\\`, so their escapes stay unambiguous.
/// JSON output never goes through this: it is exact.
pub fn terminal(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x1b' => out.push_str("\\e"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// A count with its noun, for people: `1 host`, `2 hosts`, `0 hosts`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_of_one_is_singular() {
        assert_eq!(count(1, "entry", "entries"), "1 entry");
        assert_eq!(count(0, "host", "hosts"), "0 hosts");
        assert_eq!(count(2, "host", "hosts"), "2 hosts");
    }

    #[test]
    fn control_characters_are_shown_not_acted_on() {
        assert_eq!(terminal("/etc/häst"), "/etc/häst");
        assert!(matches!(terminal("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(
            terminal("/tmp/x\n[security] removed /etc/sudoers"),
            "/tmp/x\\n[security] removed /etc/sudoers"
        );
        assert_eq!(
            terminal("\x1b]0;pwned\x07\x1b[31mred\r\t\x7f\u{9b}"),
            "\\e]0;pwned\\x07\\e[31mred\\r\\t\\x7f\\u{9b}"
        );
        assert_eq!(terminal("abc\u{202e}fdp.exe"), "abc\\u{202e}fdp.exe");
    }

    #[test]
    fn utf8_is_kept_and_invalid_bytes_are_escaped() {
        assert_eq!(escape_bytes("/etc/häst".as_bytes()), "/etc/häst");
        assert_eq!(escape_bytes(b"/tmp/a\xffb\xc3"), "/tmp/a\\xffb\\xc3");
        assert_eq!(escape_bytes(b"/a\\xff"), "/a\\\\xff");
    }

    proptest::proptest! {
        #[test]
        fn escaping_round_trips(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            proptest::prop_assert_eq!(unescape_bytes(&escape_bytes(&bytes)), bytes);
        }
    }
}
