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
