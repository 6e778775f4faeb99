//! Unified diffs as the agent writes them (`--- a/PATH`, `+++ b/PATH`, `@@ -a,b +c,d @@`
//! hunks, `\ No newline at end of file`), parsed and applied exactly: a hunk applies at the
//! line its header names or not at all — no fuzz, no offset. The content a diff is applied to
//! is the baseline's own (its SHA-256 is checked first), so a hunk that does not match is a
//! diff that cannot be trusted, not one to place elsewhere.
//!
//! Also here: rendering a file's change as a git patch (`--dry-run`), and finding the agent's
//! redaction markers (`[redacted]`, `[redacted 1a2b3c4d]`) in a diff.

use std::fmt;

/// One line of a hunk: its text with its newline (none on a last line that has none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    Context(String),
    Removed(String),
    Added(String),
}

impl Line {
    fn text(&self) -> &str {
        match self {
            Line::Context(t) | Line::Removed(t) | Line::Added(t) => t,
        }
    }

    fn text_mut(&mut self) -> &mut String {
        match self {
            Line::Context(t) | Line::Removed(t) | Line::Added(t) => t,
        }
    }

    fn sign(&self) -> char {
        match self {
            Line::Context(_) => ' ',
            Line::Removed(_) => '-',
            Line::Added(_) => '+',
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hunk {
    /// 1-based; for an empty old side, the line after which the new lines go (0: the start).
    pub old_start: usize,
    pub old_len: usize,
    pub new_start: usize,
    pub new_len: usize,
    pub lines: Vec<Line>,
}

/// Why a diff could not be read or applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatchError {
    /// The text holds no hunk.
    NoHunks,
    /// A line of the diff is not what a unified diff holds there (1-based line of the diff).
    Malformed { line: usize, why: &'static str },
    /// A hunk's context or removed line differs from the content (1-based hunk and line).
    Mismatch { hunk: usize, line: usize },
    /// A hunk starts before the previous one ended, or past the end of the content.
    OutOfPlace { hunk: usize },
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatchError::NoHunks => f.write_str("the diff holds no hunk"),
            PatchError::Malformed { line, why } => {
                write!(f, "line {line} of the diff is malformed: {why}")
            }
            PatchError::Mismatch { hunk, line } => {
                write!(f, "hunk {hunk} does not match the file at line {line}")
            }
            PatchError::OutOfPlace { hunk } => {
                write!(
                    f,
                    "hunk {hunk} starts before the previous one ends or past the end of the file"
                )
            }
        }
    }
}

impl std::error::Error for PatchError {}

/// Parses a unified diff of one file. Header lines before the first hunk are ignored.
pub fn parse(diff: &str) -> Result<Vec<Hunk>, PatchError> {
    let lines: Vec<&str> = diff.split_inclusive('\n').collect();
    let mut hunks: Vec<Hunk> = Vec::new();
    let mut i = 0;
    // Header: everything before the first `@@`.
    while i < lines.len() && !lines[i].starts_with("@@") {
        i += 1;
    }
    while i < lines.len() {
        let header = lines[i];
        let n = i + 1;
        if header.trim_end().is_empty() && i + 1 == lines.len() {
            break;
        }
        let (old_start, old_len, new_start, new_len) =
            hunk_header(header).ok_or(PatchError::Malformed {
                line: n,
                why: "expected a hunk header `@@ -a,b +c,d @@`",
            })?;
        i += 1;
        let (mut old_left, mut new_left) = (old_len, new_len);
        let mut body: Vec<Line> = Vec::new();
        while old_left > 0 || new_left > 0 {
            let Some(&line) = lines.get(i) else {
                return Err(PatchError::Malformed {
                    line: i + 1,
                    why: "the diff ends inside a hunk",
                });
            };
            let (sign, text) = match line.chars().next() {
                Some(c @ (' ' | '-' | '+')) => (c, &line[1..]),
                // Some tools write an empty context line without its space.
                Some('\n') => (' ', line),
                Some('\\') => {
                    no_newline(&mut body, i + 1)?;
                    i += 1;
                    continue;
                }
                _ => {
                    return Err(PatchError::Malformed {
                        line: i + 1,
                        why: "a hunk line starts with none of ' ', '-', '+'",
                    });
                }
            };
            let text = text.to_owned();
            match sign {
                ' ' if old_left > 0 && new_left > 0 => {
                    old_left -= 1;
                    new_left -= 1;
                    body.push(Line::Context(text));
                }
                '-' if old_left > 0 => {
                    old_left -= 1;
                    body.push(Line::Removed(text));
                }
                '+' if new_left > 0 => {
                    new_left -= 1;
                    body.push(Line::Added(text));
                }
                _ => {
                    return Err(PatchError::Malformed {
                        line: i + 1,
                        why: "more lines than the hunk header counts",
                    });
                }
            }
            i += 1;
        }
        // A last line without a newline is marked after it, even after the hunk's count.
        while let Some(line) = lines.get(i)
            && line.starts_with('\\')
        {
            no_newline(&mut body, i + 1)?;
            i += 1;
        }
        hunks.push(Hunk {
            old_start,
            old_len,
            new_start,
            new_len,
            lines: body,
        });
    }
    if hunks.is_empty() {
        return Err(PatchError::NoHunks);
    }
    Ok(hunks)
}

/// `\ No newline at end of file`: the line before it has no newline.
fn no_newline(body: &mut [Line], line: usize) -> Result<(), PatchError> {
    let Some(last) = body.last_mut() else {
        return Err(PatchError::Malformed {
            line,
            why: "a `\\ No newline` marker before any line",
        });
    };
    let text = last.text_mut();
    if text.ends_with('\n') {
        text.pop();
    }
    Ok(())
}

/// `@@ -a[,b] +c[,d] @@[ section]` → (a, b, c, d); a missing count is 1.
fn hunk_header(line: &str) -> Option<(usize, usize, usize, usize)> {
    let rest = line.strip_prefix("@@ -")?;
    let (ranges, _) = rest.split_once(" @@")?;
    let (old, new) = ranges.split_once(" +")?;
    let range = |r: &str| -> Option<(usize, usize)> {
        match r.split_once(',') {
            Some((start, len)) => Some((start.parse().ok()?, len.parse().ok()?)),
            None => Some((r.parse().ok()?, 1)),
        }
    };
    let (a, b) = range(old)?;
    let (c, d) = range(new)?;
    Some((a, b, c, d))
}

/// Applies `hunks` to `old`, exactly. Content that is not UTF-8 cannot match a diff's text
/// where a hunk touches it.
pub fn apply(old: &[u8], hunks: &[Hunk]) -> Result<Vec<u8>, PatchError> {
    let old_lines: Vec<&[u8]> = old.split_inclusive(|b| *b == b'\n').collect();
    let mut out: Vec<u8> = Vec::with_capacity(old.len() + 256);
    let mut cursor = 0usize;
    for (h, hunk) in hunks.iter().enumerate() {
        let n = h + 1;
        // An empty old side inserts after line `old_start`; otherwise the hunk starts there.
        let start = if hunk.old_len == 0 {
            hunk.old_start
        } else {
            hunk.old_start
                .checked_sub(1)
                .ok_or(PatchError::OutOfPlace { hunk: n })?
        };
        if start < cursor || start > old_lines.len() {
            return Err(PatchError::OutOfPlace { hunk: n });
        }
        for line in &old_lines[cursor..start] {
            out.extend_from_slice(line);
        }
        let mut at = start;
        for line in &hunk.lines {
            match line {
                Line::Context(text) | Line::Removed(text) => {
                    if old_lines.get(at).copied() != Some(text.as_bytes()) {
                        return Err(PatchError::Mismatch {
                            hunk: n,
                            line: at + 1,
                        });
                    }
                    if let Line::Context(_) = line {
                        out.extend_from_slice(text.as_bytes());
                    }
                    at += 1;
                }
                Line::Added(text) => out.extend_from_slice(text.as_bytes()),
            }
        }
        cursor = at;
    }
    for line in &old_lines[cursor..] {
        out.extend_from_slice(line);
    }
    Ok(out)
}

/// The hunks of a diff as text, `\ No newline at end of file` where a line has none.
pub fn render_hunks(hunks: &[Hunk]) -> String {
    let mut out = String::new();
    for hunk in hunks {
        out.push_str(&format!(
            "@@ -{} +{} @@\n",
            range(hunk.old_start, hunk.old_len),
            range(hunk.new_start, hunk.new_len)
        ));
        for line in &hunk.lines {
            out.push(line.sign());
            out.push_str(line.text());
            if !line.text().ends_with('\n') {
                out.push_str("\n\\ No newline at end of file\n");
            }
        }
    }
    out
}

fn range(start: usize, len: usize) -> String {
    if len == 1 {
        start.to_string()
    } else {
        format!("{start},{len}")
    }
}

/// One hunk removing every line of `content` (a deleted file's patch); `None` when it is not
/// text.
pub fn removal(content: &[u8]) -> Option<Vec<Hunk>> {
    let text = std::str::from_utf8(content).ok()?;
    if text.contains('\0') {
        return None;
    }
    let lines: Vec<Line> = text
        .split_inclusive('\n')
        .map(|l| Line::Removed(l.to_owned()))
        .collect();
    if lines.is_empty() {
        return Some(Vec::new());
    }
    Some(vec![Hunk {
        old_start: 1,
        old_len: lines.len(),
        new_start: 0,
        new_len: 0,
        lines,
    }])
}

/// Whether `text` holds a redaction marker the agent writes: `[redacted]` (a baseline's) or
/// `[redacted 1a2b3c4d]` (a host's, keyed).
pub fn has_redaction_marker(text: &str) -> bool {
    let mut rest = text;
    while let Some(i) = rest.find("[redacted") {
        let after = &rest[i + "[redacted".len()..];
        if after.starts_with(']') {
            return true;
        }
        if let Some(tag) = after.strip_prefix(' ')
            && tag.len() >= 9
            && tag.as_bytes()[..8].iter().all(u8::is_ascii_hexdigit)
            && tag.as_bytes()[8] == b']'
        {
            return true;
        }
        rest = after;
    }
    false
}

/// Whether any line of the hunks (context, removed or added) holds a redaction marker.
pub fn hunks_redacted(hunks: &[Hunk]) -> bool {
    hunks
        .iter()
        .flat_map(|h| &h.lines)
        .any(|l| has_redaction_marker(l.text()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A diff as the agent writes it (`similar`'s unified diff, radius 3).
    fn agent_diff(old: &str, new: &str) -> String {
        similar::TextDiff::from_lines(old, new)
            .unified_diff()
            .context_radius(3)
            .header("a/etc/x", "b/etc/x")
            .to_string()
    }

    fn round_trip(old: &str, new: &str) {
        let diff = agent_diff(old, new);
        let hunks = parse(&diff).unwrap_or_else(|e| panic!("{e}:\n{diff}"));
        let applied = apply(old.as_bytes(), &hunks).unwrap_or_else(|e| panic!("{e}:\n{diff}"));
        assert_eq!(String::from_utf8(applied).unwrap(), new, "{diff}");
        // Rendered again, the hunks are the agent's own text.
        let body = diff
            .split_inclusive('\n')
            .skip_while(|l| !l.starts_with("@@"))
            .collect::<String>();
        assert_eq!(render_hunks(&hunks), body);
    }

    #[test]
    fn the_agent_s_diffs_apply_back_to_the_host_s_content() {
        let long: String = (1..=40).map(|i| format!("line {i}\n")).collect();
        let cases: Vec<(String, String)> = vec![
            ("a\nb\nc\n".into(), "a\nB\nc\n".into()),
            ("a\nb\nc\n".into(), "a\nb\nc\nd\n".into()),
            ("a\nb\nc\n".into(), "z\na\nb\nc\n".into()),
            ("a\nb\nc\n".into(), "".into()),
            ("".into(), "new\nfile\n".into()),
            // No newline at the end, on either side.
            ("a\nb".into(), "a\nb\n".into()),
            ("a\nb\n".into(), "a\nc".into()),
            ("a\nb".into(), "a\nc".into()),
            // Several hunks, far apart.
            (
                long.clone(),
                long.replace("line 3\n", "LINE 3\n")
                    .replace("line 30\n", "")
                    .replace("line 40\n", "line 40\nline 41\n"),
            ),
            // Lines that look like diff headers inside a hunk.
            ("--- a\n+++ b\nx\n".into(), "-- a\n++++ b\nx\n".into()),
            ("x\n\ny\n".into(), "x\n\n\ny\n".into()),
            // Windows line ends are content.
            ("a\r\nb\r\n".into(), "a\r\nB\r\n".into()),
        ];
        for (old, new) in cases {
            round_trip(&old, &new);
        }
    }

    #[test]
    fn a_hunk_that_does_not_match_is_refused_not_placed_elsewhere() {
        let diff = agent_diff("a\nb\nc\n", "a\nB\nc\n");
        let hunks = parse(&diff).unwrap();
        assert_eq!(
            apply(b"a\nX\nc\n", &hunks),
            Err(PatchError::Mismatch { hunk: 1, line: 2 })
        );
        // The same lines one line further down do not match either: no offset.
        assert!(matches!(
            apply(b"0\na\nb\nc\n", &hunks),
            Err(PatchError::Mismatch { .. })
        ));
        // A file shorter than the hunk's place.
        let far = parse("@@ -10,1 +10,1 @@\n-x\n+y\n").unwrap();
        assert_eq!(apply(b"x\n", &far), Err(PatchError::OutOfPlace { hunk: 1 }));
    }

    #[test]
    fn malformed_diffs_are_errors_not_panics() {
        for bad in [
            "",
            "--- a/x\n+++ b/x\n",
            "@@ -1 +1 @@\n",
            "@@ -1,2 +1,2 @@\n a\n",
            "@@ -x +1 @@\n-a\n+b\n",
            "@@ -1 +1 @@\n-a\n+b\n+c\n",
            "@@ -1 +1 @@\n\\ No newline at end of file\n-a\n+b\n",
            "@@ -1 +1 @@\n*a\n+b\n",
        ] {
            let result = parse(bad).and_then(|h| apply(b"a\n", &h));
            assert!(result.is_err(), "{bad:?} gave {result:?}");
        }
    }

    #[test]
    fn redaction_markers_are_found_in_both_forms() {
        assert!(has_redaction_marker("password = [redacted]\n"));
        assert!(has_redaction_marker("password = [redacted 1a2b3c4d]\n"));
        assert!(has_redaction_marker("x [redacted y [redacted]"));
        assert!(!has_redaction_marker("# [redacted later]\n"));
        assert!(!has_redaction_marker("[redacted 1a2b3c4]"));
        assert!(!has_redaction_marker("plain\n"));
        let hunks = parse(&agent_diff(
            "a\npassword = [redacted]\n",
            "a\npassword = [redacted 0011aabb]\n",
        ))
        .unwrap();
        assert!(hunks_redacted(&hunks));
    }

    #[test]
    fn a_removed_file_is_one_hunk_of_every_line() {
        let hunks = removal(b"a\nb").unwrap();
        assert_eq!(
            render_hunks(&hunks),
            "@@ -1,2 +0,0 @@\n-a\n-b\n\\ No newline at end of file\n"
        );
        assert_eq!(apply(b"a\nb", &hunks).unwrap(), b"");
        assert!(removal(b"\xff\xfe").is_none());
    }
}
