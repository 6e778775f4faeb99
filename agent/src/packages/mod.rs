//! The package inventory of a root filesystem, and its diff against a baseline.
//!
//! # Databases read
//!
//! - **dpkg**, `/var/lib/dpkg/status`: RFC-822-style stanzas separated by blank lines (a line of
//!   only spaces and tabs counts as blank); a line starting with a space or a tab continues the
//!   previous field (`Description`, `Conffiles`, …) and is skipped. Field names are
//!   case-insensitive. Only stanzas whose `Status` has `installed` as its third word
//!   (`install ok installed`, `hold ok installed`) count; `deinstall ok config-files`,
//!   `install ok unpacked` and the like are not installed. `Package`, `Version` and
//!   `Architecture` give the name, version and arch.
//! - **apk**, `/lib/apk/db/installed`: stanzas of `X:value` lines separated by blank lines;
//!   `P:` is the name, `V:` the version, `A:` the arch. Keys are case-sensitive (`p:` is
//!   "provides", not the name). Every stanza is an installed package.
//! - **rpm**: the database is binary (Berkeley DB, NDB or SQLite by rpm version), so it is
//!   read through `rpm -qa` — only when `/var/lib/rpm` or `/usr/lib/sysimage/rpm` is a
//!   non-empty directory under the root, and only if an `rpm` binary is on `PATH`. A version
//!   with an epoch is written `EPOCH:VERSION-RELEASE`. A database without an `rpm` binary is
//!   reported as an error.
//!
//! Both text formats are streamed line by line; CRLF line ends, a missing final newline and
//! invalid UTF-8 (replaced by U+FFFD) are tolerated. A malformed stanza is skipped and
//! reported; it never aborts the read.
//!
//! # Partial failure
//!
//! [`Inventory::sources`] lists the databases that were read to the end. A database that
//! could not be read completely (I/O error, `rpm` failing) contributes an error and **no**
//! packages, so a caller can restrict its comparison to [`Inventory::sources`] instead of
//! reporting every package of a half-read database as removed. A missing database is not an
//! error: a root may have none.
//!
//! # Roots other than `/`
//!
//! Database paths are resolved under the root the way a `chroot` would: an absolute symlink
//! inside the image (say `/var/lib/dpkg -> /data/dpkg`) is followed inside the root, never to
//! the host's own file.

use std::borrow::Cow;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read as _};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use driftwatch_proto::baseline::Package;
use driftwatch_proto::text::display_path;
use tracing::debug;

/// What was read from the package databases under a root.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Installed packages of every database read, sorted and without duplicates.
    pub packages: Vec<Package>,
    /// The databases that were found and read to the end, e.g. `["dpkg"]`.
    pub sources: Vec<String>,
    /// Human-readable problems: unreadable databases, skipped stanzas, a missing `rpm`.
    pub errors: Vec<String>,
}

/// Paths of the package databases, in absolute form relative to the root (join them under
/// the root before use), for watchers. The rpm entries are directories. dpkg replaces its
/// status file by renaming `status-new` over it, so watch the parent directory too.
pub const DATABASE_PATHS: &[&str] = &[DPKG_STATUS, APK_INSTALLED, RPM_DIRS[0], RPM_DIRS[1]];

const DPKG_STATUS: &str = "/var/lib/dpkg/status";
const APK_INSTALLED: &str = "/lib/apk/db/installed";
const RPM_DIRS: [&str; 2] = ["/var/lib/rpm", "/usr/lib/sysimage/rpm"];
/// `rpm` expands the `\t` and `\n` escapes itself.
const RPM_QUERY_FORMAT: &str = r"%{NAME}\t%{EPOCH}\t%{VERSION}-%{RELEASE}\t%{ARCH}\n";

/// Lines longer than this are not from a real database; they are skipped, not buffered.
const MAX_LINE_BYTES: u64 = 1 << 20;
/// Per database, so a garbage file yields a readable report, not one line per stanza.
const MAX_REPORTED_PROBLEMS: usize = 10;
/// Symlinks followed while resolving one database path, as Linux's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

pub use driftwatch_proto::drift::{PackageChange, PackageDrift};

/// Reads every package database found under `root`. Never fails: problems are in
/// [`Inventory::errors`].
pub fn read_inventory(root: &Path) -> Inventory {
    let mut inventory = Inventory::default();
    match fs::metadata(root) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            inventory
                .errors
                .push(format!("{}: root is not a directory", display_path(root)));
            return inventory;
        }
        Err(error) => {
            inventory
                .errors
                .push(format!("{}: cannot read root: {error}", display_path(root)));
            return inventory;
        }
    }
    read_text_database(root, DPKG_STATUS, "dpkg", parse_dpkg_status, &mut inventory);
    read_text_database(
        root,
        APK_INSTALLED,
        "apk",
        parse_apk_installed,
        &mut inventory,
    );
    read_rpm(root, which::which("rpm").ok().as_deref(), &mut inventory);
    inventory.packages.sort_unstable();
    inventory.packages.dedup();
    debug!(
        root = %display_path(root),
        packages = inventory.packages.len(),
        sources = ?inventory.sources,
        errors = inventory.errors.len(),
        "Read package inventory."
    );
    inventory
}

/// Compares two package lists keyed by `(name, arch)`, in that order.
///
/// Both lists should be sorted (as [`Inventory::packages`] and a normalized baseline are);
/// an unsorted list is sorted on a copy first. A key present several times on one side
/// (rpm keeps several `kernel` versions installed) is matched version by version: equal
/// versions cancel out, the rest pair up as version changes, and any surplus is
/// installed or removed.
pub fn diff(expected: &[Package], actual: &[Package]) -> Vec<PackageDrift> {
    let expected = sorted(expected);
    let actual = sorted(actual);
    let mut drift = Vec::new();
    let (mut i, mut j) = (0, 0);
    loop {
        let next = match (expected.get(i), actual.get(j)) {
            (Some(e), Some(a)) => key(e).min(key(a)),
            (Some(e), None) => key(e),
            (None, Some(a)) => key(a),
            (None, None) => break,
        };
        let e_end = i + expected[i..].iter().take_while(|p| key(p) == next).count();
        let a_end = j + actual[j..].iter().take_while(|p| key(p) == next).count();
        diff_group(&expected[i..e_end], &actual[j..a_end], &mut drift);
        (i, j) = (e_end, a_end);
    }
    drift
}

fn key(p: &Package) -> (&str, &str) {
    (&p.name, &p.arch)
}

fn sorted(packages: &[Package]) -> Cow<'_, [Package]> {
    if packages.is_sorted() {
        Cow::Borrowed(packages)
    } else {
        let mut owned = packages.to_vec();
        owned.sort_unstable();
        Cow::Owned(owned)
    }
}

/// Diffs the packages of one `(name, arch)` key; either side may be empty.
fn diff_group(expected: &[Package], actual: &[Package], drift: &mut Vec<PackageDrift>) {
    let mut unmatched_actual: Vec<&Package> = actual.iter().collect();
    let mut unmatched_expected = Vec::new();
    for e in expected {
        match unmatched_actual.iter().position(|a| a.version == e.version) {
            Some(found) => {
                unmatched_actual.remove(found);
            }
            None => unmatched_expected.push(e),
        }
    }
    let paired = unmatched_expected.len().min(unmatched_actual.len());
    for (e, a) in unmatched_expected.iter().zip(&unmatched_actual) {
        drift.push(PackageDrift {
            name: a.name.clone(),
            arch: a.arch.clone(),
            kind: PackageChange::VersionChanged,
            expected_version: Some(e.version.clone()),
            actual_version: Some(a.version.clone()),
            source: a.source.clone(),
        });
    }
    for e in &unmatched_expected[paired..] {
        drift.push(PackageDrift {
            name: e.name.clone(),
            arch: e.arch.clone(),
            kind: PackageChange::Removed,
            expected_version: Some(e.version.clone()),
            actual_version: None,
            source: e.source.clone(),
        });
    }
    for a in &unmatched_actual[paired..] {
        drift.push(PackageDrift {
            name: a.name.clone(),
            arch: a.arch.clone(),
            kind: PackageChange::Installed,
            expected_version: None,
            actual_version: Some(a.version.clone()),
            source: a.source.clone(),
        });
    }
}

/// What one text database yielded: its packages and the stanzas it had to skip.
#[derive(Debug, Default)]
struct Parsed {
    packages: Vec<Package>,
    problems: Vec<String>,
}

type Parser = fn(BufReader<File>, &str) -> io::Result<Parsed>;

/// Reads a dpkg- or apk-style database at `rel` under `root` into `inventory`.
fn read_text_database(
    root: &Path,
    rel: &str,
    source: &str,
    parse: Parser,
    inventory: &mut Inventory,
) {
    let opened = resolve_in_root(root, rel).and_then(|path| Ok((File::open(&path)?, path)));
    let (file, path) = match opened {
        Ok(opened) => opened,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return,
        Err(error) => {
            let shown = display_path(&root.join(rel.trim_start_matches('/')));
            inventory
                .errors
                .push(format!("{shown}: cannot open {source} database: {error}"));
            return;
        }
    };
    let shown = display_path(&path);
    match parse(BufReader::new(file), &shown) {
        Ok(parsed) => {
            debug!(path = %shown, packages = parsed.packages.len(), "Read package database.");
            inventory.packages.extend(parsed.packages);
            inventory.errors.extend(parsed.problems);
            inventory.sources.push(source.to_owned());
        }
        Err(error) => inventory.errors.push(format!(
            "{shown}: cannot read {source} database: {error}; its packages are left out"
        )),
    }
}

/// Parses a dpkg status file; `origin` names it in problem reports.
fn parse_dpkg_status<R: BufRead>(reader: R, origin: &str) -> io::Result<Parsed> {
    parse_stanzas(reader, origin, |stanza| {
        let field = |name: &str| stanza.field(|k| k.eq_ignore_ascii_case(name));
        let status = field("Status").ok_or("no Status field")?;
        match status.split_whitespace().collect::<Vec<_>>()[..] {
            [_want, _flag, "installed"] => {}
            [_, _, _] => return Ok(None),
            _ => return Err("Status is not `want flag status`"),
        }
        Ok(Some(Package {
            name: field("Package").ok_or("no Package field")?.to_owned(),
            arch: field("Architecture")
                .ok_or("no Architecture field")?
                .to_owned(),
            version: field("Version").ok_or("no Version field")?.to_owned(),
            source: "dpkg".to_owned(),
        }))
    })
}

/// Parses an apk installed database; `origin` names it in problem reports.
fn parse_apk_installed<R: BufRead>(reader: R, origin: &str) -> io::Result<Parsed> {
    parse_stanzas(reader, origin, |stanza| {
        let field = |name: &str| stanza.field(|k| k == name);
        Ok(Some(Package {
            name: field("P").ok_or("no P: (name) line")?.to_owned(),
            arch: field("A").ok_or("no A: (arch) line")?.to_owned(),
            version: field("V").ok_or("no V: (version) line")?.to_owned(),
            source: "apk".to_owned(),
        }))
    })
}

/// One blank-line-separated block of `Key: value` or `K:value` lines.
#[derive(Debug)]
struct Stanza {
    /// 1-based line number of its first line.
    line: usize,
    /// Fields in file order, values trimmed; continuation lines are not kept.
    fields: Vec<(String, String)>,
    /// Why the stanza is malformed, if it is; later lines are then ignored.
    problem: Option<String>,
}

impl Stanza {
    /// The first non-empty value of a field whose name matches.
    fn field(&self, matches: impl Fn(&str) -> bool) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| matches(k))
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn describe(&self) -> String {
        let name = self.field(|k| k.eq_ignore_ascii_case("Package") || k == "P");
        match name {
            Some(name) => format!("stanza of {name:?}"),
            None => "stanza".to_owned(),
        }
    }
}

/// Streams stanzas through `to_package` (`Ok(None)`: not installed; `Err`: malformed).
fn parse_stanzas<R: BufRead>(
    reader: R,
    origin: &str,
    to_package: impl Fn(&Stanza) -> Result<Option<Package>, &'static str>,
) -> io::Result<Parsed> {
    let mut parsed = Parsed::default();
    let mut skipped = 0usize;
    for_each_stanza(reader, |stanza| {
        let problem = match (&stanza.problem, to_package(&stanza)) {
            (Some(problem), _) => problem.clone(),
            (None, Ok(package)) => {
                parsed.packages.extend(package);
                return;
            }
            (None, Err(problem)) => problem.to_owned(),
        };
        skipped += 1;
        if skipped <= MAX_REPORTED_PROBLEMS {
            let what = stanza.describe();
            parsed.problems.push(format!(
                "{origin}:{}: {what} skipped: {problem}",
                stanza.line
            ));
        }
    })?;
    if skipped > MAX_REPORTED_PROBLEMS {
        let more = skipped - MAX_REPORTED_PROBLEMS;
        parsed
            .problems
            .push(format!("{origin}: {more} more malformed stanzas skipped"));
    }
    Ok(parsed)
}

fn for_each_stanza<R: BufRead>(mut reader: R, mut each: impl FnMut(Stanza)) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    let mut current: Option<Stanza> = None;
    loop {
        buf.clear();
        if (&mut reader)
            .take(MAX_LINE_BYTES + 1)
            .read_until(b'\n', &mut buf)?
            == 0
        {
            break;
        }
        line_no += 1;
        let too_long = buf.len() as u64 > MAX_LINE_BYTES && buf.last() != Some(&b'\n');
        if too_long {
            reader.skip_until(b'\n')?;
        }
        let bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let line = String::from_utf8_lossy(bytes);

        if line.trim_matches([' ', '\t']).is_empty() {
            if let Some(stanza) = current.take() {
                each(stanza);
            }
            continue;
        }
        let stanza = current.get_or_insert_with(|| Stanza {
            line: line_no,
            fields: Vec::new(),
            problem: None,
        });
        if stanza.problem.is_some() {
            continue;
        }
        if too_long {
            stanza.problem = Some(format!(
                "line {line_no} is longer than {MAX_LINE_BYTES} bytes"
            ));
        } else if line.starts_with([' ', '\t']) {
            if stanza.fields.is_empty() {
                stanza.problem = Some(format!("line {line_no} continues no field"));
            }
        } else {
            match line.split_once(':') {
                Some((k, v)) if !k.is_empty() && !k.contains(char::is_whitespace) => {
                    stanza.fields.push((k.to_owned(), v.trim().to_owned()));
                }
                _ => stanza.problem = Some(format!("line {line_no} is not a field")),
            }
        }
    }
    if let Some(stanza) = current.take() {
        each(stanza);
    }
    Ok(())
}

/// Runs `rpm -qa` when an rpm database exists under `root`. `rpm` is the binary to run,
/// `None` when none is installed.
fn read_rpm(root: &Path, rpm: Option<&Path>, inventory: &mut Inventory) {
    let mut db_dir = None;
    for rel in RPM_DIRS {
        let entries = resolve_in_root(root, rel).and_then(|dir| Ok((fs::read_dir(&dir)?, dir)));
        match entries {
            Ok((mut entries, dir)) => {
                if entries.next().is_some() {
                    db_dir = Some(dir);
                    break;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                let shown = display_path(&root.join(rel.trim_start_matches('/')));
                inventory
                    .errors
                    .push(format!("{shown}: cannot list rpm database: {error}"));
            }
        }
    }
    let Some(db_dir) = db_dir else { return };
    let Some(rpm) = rpm else {
        inventory.errors.push(format!(
            "{}: rpm database found, but no `rpm` binary on PATH to read it; rpm packages are left out",
            display_path(&db_dir)
        ));
        return;
    };

    let mut command = Command::new(rpm);
    if root != Path::new("/") {
        // rpm resolves a relative --root against its own idea of `/`, not our cwd.
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        command.arg("--root").arg(root);
    }
    command
        .args(["-qa", "--qf", RPM_QUERY_FORMAT])
        .stdin(Stdio::null());
    let output = match command.output() {
        Ok(output) => output,
        Err(error) => {
            inventory
                .errors
                .push(format!("cannot run {}: {error}", display_path(rpm)));
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        inventory.errors.push(format!(
            "`rpm -qa` under {} failed ({}): {}; rpm packages are left out",
            display_path(root),
            output.status,
            stderr.trim()
        ));
        return;
    }
    if !stderr.trim().is_empty() {
        debug!(stderr = %stderr.trim(), "rpm -qa warned.");
    }
    let parsed = parse_rpm_output(&String::from_utf8_lossy(&output.stdout));
    inventory.packages.extend(parsed.packages);
    inventory.errors.extend(parsed.problems);
    inventory.sources.push("rpm".to_owned());
}

/// Parses the lines `rpm -qa --qf RPM_QUERY_FORMAT` prints.
fn parse_rpm_output(output: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut skipped = 0usize;
    for (index, line) in output.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, epoch, version_release, arch] = fields[..] else {
            skipped += 1;
            if skipped <= MAX_REPORTED_PROBLEMS {
                let n = index + 1;
                parsed
                    .problems
                    .push(format!("rpm -qa output line {n} skipped: {line:?}"));
            }
            continue;
        };
        let version = match epoch {
            "(none)" | "" => version_release.to_owned(),
            epoch => format!("{epoch}:{version_release}"),
        };
        // gpg-pubkey pseudo-packages have no arch.
        let arch = if arch == "(none)" { "" } else { arch };
        parsed.packages.push(Package {
            name: name.to_owned(),
            arch: arch.to_owned(),
            version,
            source: "rpm".to_owned(),
        });
    }
    if skipped > MAX_REPORTED_PROBLEMS {
        let more = skipped - MAX_REPORTED_PROBLEMS;
        parsed.problems.push(format!(
            "rpm -qa output: {more} more malformed lines skipped"
        ));
    }
    parsed
}

/// Resolves `rel` (absolute form, e.g. `/var/lib/dpkg/status`) under `root`, following
/// symlinks as if `root` were `/`: `..` stops at the root and absolute link targets restart
/// from it. A missing component is a `NotFound` error.
fn resolve_in_root(root: &Path, rel: &str) -> io::Result<PathBuf> {
    if root == Path::new("/") {
        return Ok(PathBuf::from(rel));
    }
    // Components still to walk, last one first.
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, Path::new(rel));
    let mut resolved = root.to_path_buf();
    let mut depth = 0usize;
    let mut links = 0usize;
    while let Some(component) = pending.pop() {
        if component == ".." {
            if depth > 0 {
                resolved.pop();
                depth -= 1;
            }
            continue;
        }
        resolved.push(&component);
        if !fs::symlink_metadata(&resolved)?.file_type().is_symlink() {
            depth += 1;
            continue;
        }
        links += 1;
        if links > MAX_SYMLINKS {
            let shown = display_path(&resolved);
            return Err(io::Error::other(format!(
                "{shown}: too many levels of symbolic links"
            )));
        }
        let target = fs::read_link(&resolved)?;
        resolved.pop();
        if target.has_root() {
            resolved = root.to_path_buf();
            depth = 0;
        }
        push_components(&mut pending, &target);
    }
    Ok(resolved)
}

/// Pushes the components of `path` onto a last-first stack, dropping `/` and `.`.
fn push_components(stack: &mut Vec<OsString>, path: &Path) {
    for component in path.components().rev() {
        match component {
            Component::Normal(name) => stack.push(name.to_owned()),
            Component::ParentDir => stack.push(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

#[cfg(test)]
mod tests;
