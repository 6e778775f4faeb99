//! Paths are raw bytes on Linux; people and JSON need text. Valid UTF-8 is kept as is, every
//! byte that is not part of valid UTF-8 is written as `\xNN` (as `git` and `ls -b` do), so a
//! non-UTF-8 name is shown unambiguously and never silently replaced by U+FFFD.

use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Renders raw bytes as text, escaping invalid UTF-8 bytes as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_kept_and_invalid_bytes_are_escaped() {
        assert_eq!(escape_bytes("/etc/häst".as_bytes()), "/etc/häst");
        assert_eq!(escape_bytes(b"/tmp/a\xffb\xc3"), "/tmp/a\\xffb\\xc3");
    }
}
