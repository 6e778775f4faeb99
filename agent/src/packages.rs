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
use std::os::unix::fs::PermissionsExt as _;
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

/// How an installed package changed between the baseline and the host.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageChange {
    /// On the host, not in the baseline.
    Installed,
    /// In the baseline, not on the host.
    Removed,
    /// On both, with another version.
    VersionChanged,
}

/// One package that differs from the baseline.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackageDrift {
    pub name: String,
    pub arch: String,
    pub kind: PackageChange,
    /// The baseline's version; `None` when [`PackageChange::Installed`].
    pub expected_version: Option<String>,
    /// The host's version; `None` when [`PackageChange::Removed`].
    pub actual_version: Option<String>,
    /// The database the package was found in (the host's, unless it was removed).
    pub source: String,
}

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
    read_rpm(root, find_on_path("rpm").as_deref(), &mut inventory);
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

/// The first executable file called `name` in a `PATH` directory.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
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
mod tests {
    use super::*;

    fn pkg(name: &str, arch: &str, version: &str, source: &str) -> Package {
        Package {
            name: name.into(),
            arch: arch.into(),
            version: version.into(),
            source: source.into(),
        }
    }

    fn dpkg(text: &str) -> Parsed {
        parse_dpkg_status(text.as_bytes(), "status").unwrap()
    }

    fn write(root: &Path, rel: &str, content: &str) {
        let path = root.join(rel.trim_start_matches('/'));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    const DPKG_STATUS_FIXTURE: &str = "\
Package: bash
Essential: yes
Status: install ok installed
Priority: required
Section: shells
Installed-Size: 7164
Maintainer: Matthias Klose <doko@debian.org>
Architecture: amd64
Multi-Arch: foreign
Version: 5.2.15-2+b7
Replaces: bash-completion (<< 20060301-0), bash-doc (<= 2.05-1)
Depends: base-files (>= 2.1.12), debianutils (>= 5.6-0.1)
Pre-Depends: libc6 (>= 2.36), libtinfo6 (>= 6)
Recommends: bash-completion (>= 20060301-0)
Conffiles:
 /etc/bash.bashrc 89269e1298235f1b12b4c16e4065ad0d
 /etc/skel/.bash_logout 22bfb8c1dd94b5f3813a2b25da67463f
 /etc/skel/.bashrc 0fa2b7ed4e1b1b1ac3cd7f9a6d0e4b2e
Description: GNU Bourne Again SHell
 Bash is an sh-compatible command language interpreter that executes
 commands read from the standard input or from a file.
 .
 Package: this continuation line is not a field
Homepage: http://tiswww.case.edu/php/chet/bash/bashtop.html

Package: libc6
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 12987
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u4
Depends: libgcc-s1
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.

Package: libc6
Status: install ok installed
Priority: optional
Section: libs
Architecture: i386
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u4
Description: GNU C Library: Shared libraries

Package: old-daemon
Status: deinstall ok config-files
Priority: optional
Architecture: amd64
Version: 1.0-1
Conffiles:
 /etc/old-daemon.conf 1f2e3d4c5b6a79881f2e3d4c5b6a7988

Package: half-done
Status: install ok unpacked
Architecture: amd64
Version: 0.9-1

Package: tzdata
Status: hold ok installed
Architecture: all
Version: 2024a-0+deb12u1
Description: time zone and daylight-saving time data
";

    #[test]
    fn dpkg_status_keeps_only_installed_packages() {
        let parsed = dpkg(DPKG_STATUS_FIXTURE);
        assert_eq!(parsed.problems, Vec::<String>::new());
        assert_eq!(
            parsed.packages,
            vec![
                pkg("bash", "amd64", "5.2.15-2+b7", "dpkg"),
                pkg("libc6", "amd64", "2.36-9+deb12u4", "dpkg"),
                pkg("libc6", "i386", "2.36-9+deb12u4", "dpkg"),
                pkg("tzdata", "all", "2024a-0+deb12u1", "dpkg"),
            ]
        );
    }

    #[test]
    fn dpkg_status_tolerates_crlf_garbage_and_missing_final_newline() {
        let text = "Package: a\r\nStatus: install ok installed\r\nArchitecture: amd64\r\n\
                    Version: 1\r\n\r\n\
                    this is not a field\r\nPackage: ghost\r\n\r\n\
                    Package: noversion\r\nStatus: install ok installed\r\nArchitecture: amd64\r\n\
                    \r\n \t \r\n\r\n\
                    Package: weird\r\nStatus: installed\r\n\r\n\
                    \x20continuation first\r\n\r\n\
                    Package: b\r\nStatus: install ok installed\r\nArchitecture: arm64\r\n\
                    Version: 2:3.0";
        let parsed = dpkg(text);
        assert_eq!(
            parsed.packages,
            vec![
                pkg("a", "amd64", "1", "dpkg"),
                pkg("b", "arm64", "2:3.0", "dpkg")
            ]
        );
        assert_eq!(parsed.problems.len(), 4, "{:#?}", parsed.problems);
        assert!(parsed.problems[0].starts_with("status:6: stanza skipped: line 6 is not a field"));
        assert!(parsed.problems[1].contains("\"noversion\" skipped: no Version field"));
        assert!(parsed.problems[2].contains("\"weird\" skipped: Status is not"));
        assert!(parsed.problems[3].contains("line 18 continues no field"));
    }

    #[test]
    fn dpkg_status_invalid_utf8_is_replaced_not_fatal() {
        let mut bytes = b"Package: caf".to_vec();
        bytes.extend_from_slice(b"\xff\nStatus: install ok installed\nArchitecture: all\n");
        bytes.extend_from_slice(b"Version: 1\n");
        let parsed = parse_dpkg_status(&bytes[..], "status").unwrap();
        assert_eq!(
            parsed.packages,
            vec![pkg("caf\u{fffd}", "all", "1", "dpkg")]
        );
    }

    #[test]
    fn overlong_line_skips_its_stanza_only() {
        let long = "x".repeat(MAX_LINE_BYTES as usize + 10);
        let text = format!(
            "Package: big\nStatus: install ok installed\nDescription: {long}\nVersion: 1\n\
             Architecture: all\n\nPackage: small\nStatus: install ok installed\nVersion: 1\n\
             Architecture: all\n"
        );
        let parsed = dpkg(&text);
        assert_eq!(parsed.packages, vec![pkg("small", "all", "1", "dpkg")]);
        assert_eq!(parsed.problems.len(), 1);
        assert!(
            parsed.problems[0].contains("line 3 is longer than"),
            "{:?}",
            parsed.problems
        );
    }

    #[test]
    fn malformed_stanza_reports_are_capped() {
        let text = "garbage\n\n".repeat(MAX_REPORTED_PROBLEMS + 5);
        let parsed = dpkg(&text);
        assert!(parsed.packages.is_empty());
        assert_eq!(parsed.problems.len(), MAX_REPORTED_PROBLEMS + 1);
        assert_eq!(
            parsed.problems.last().unwrap(),
            "status: 5 more malformed stanzas skipped"
        );
    }

    const APK_FIXTURE: &str = "\
C:Q1sHu5iEkTsVQEMJqtRUFaOXDSpPY=
P:musl
V:1.2.5-r0
A:x86_64
S:410459
I:658180
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Natanael Copa <ncopa@alpinelinux.org>
t:1711375200
c:a66ca1ba5c0d27d9c1c2ddc0c4c4b5dbd8ab6ac5
p:so:libc.musl-x86_64.so.1=1
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1KNlVjDx7M9ztyVKSn9BYQ1R8Dz4=
R:libc.musl-x86_64.so.1
a:0:0:777
Z:Q17yJ3JFNypA4mxhJJr0ou6CzsJVI=

C:Q1aBc+G7a1Mh6NNo2Nn8kl3xvc0mo=
P:busybox
V:1.36.1-r15
A:x86_64
S:511584
I:928768
T:Size optimized toolbox of many common UNIX utilities
D:so:libc.musl-x86_64.so.1
p:/bin/sh cmd:busybox=1.36.1-r15
r:busybox-initscripts
F:bin
R:busybox
a:0:0:755
Z:Q1E9XwEVB8EyRtjuJkNQPnZ/GQpWg=

P:nover
A:noarch
";

    #[test]
    fn apk_installed_database() {
        let parsed = parse_apk_installed(APK_FIXTURE.as_bytes(), "installed").unwrap();
        assert_eq!(
            parsed.packages,
            vec![
                pkg("musl", "x86_64", "1.2.5-r0", "apk"),
                pkg("busybox", "x86_64", "1.36.1-r15", "apk"),
            ]
        );
        assert_eq!(
            parsed.problems,
            vec!["installed:38: stanza of \"nover\" skipped: no V: (version) line".to_owned()]
        );
    }

    #[test]
    fn rpm_output_with_and_without_epoch() {
        let out = "bash\t(none)\t5.2.26-3.fc40\tx86_64\n\
                   openssl-libs\t1\t3.2.2-3.fc40\tx86_64\n\
                   gpg-pubkey\t(none)\ta15b79cc-63d04c2c\t(none)\n\
                   truncated\tline\n";
        let parsed = parse_rpm_output(out);
        assert_eq!(
            parsed.packages,
            vec![
                pkg("bash", "x86_64", "5.2.26-3.fc40", "rpm"),
                pkg("openssl-libs", "x86_64", "1:3.2.2-3.fc40", "rpm"),
                pkg("gpg-pubkey", "", "a15b79cc-63d04c2c", "rpm"),
            ]
        );
        assert_eq!(parsed.problems.len(), 1);
        assert!(parsed.problems[0].contains("line 4"));
    }

    #[test]
    fn rpm_database_without_rpm_binary_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            "/usr/lib/sysimage/rpm/rpmdb.sqlite",
            "not really sqlite",
        );
        fs::create_dir_all(root.path().join("var/lib/rpm")).unwrap(); // empty: not a database
        let mut inventory = Inventory::default();
        read_rpm(root.path(), None, &mut inventory);
        assert!(inventory.sources.is_empty());
        assert_eq!(inventory.errors.len(), 1, "{:?}", inventory.errors);
        assert!(inventory.errors[0].contains("usr/lib/sysimage/rpm: rpm database found"));
        assert!(inventory.errors[0].contains("no `rpm` binary"));
    }

    /// Stands `echo` and `false` in for `rpm`: echo's output is the argv rpm would get.
    #[test]
    fn rpm_is_run_with_root_and_query_format_and_its_failure_is_reported() {
        let (echo, fail) = (Path::new("/bin/echo"), Path::new("/bin/false"));
        if !echo.exists() || !fail.exists() {
            eprintln!("skipped: no /bin/echo or /bin/false");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "/var/lib/rpm/rpmdb.sqlite", "");
        let mut inventory = Inventory::default();
        read_rpm(root.path(), Some(echo), &mut inventory);
        assert_eq!(inventory.sources, ["rpm"]);
        let argv = format!(
            "--root {} -qa --qf {RPM_QUERY_FORMAT}",
            display_path(root.path())
        );
        assert_eq!(inventory.errors.len(), 1, "{:?}", inventory.errors);
        assert!(
            inventory.errors[0].contains(&format!("{argv:?}")),
            "{:?}",
            inventory.errors
        );

        let mut inventory = Inventory::default();
        read_rpm(root.path(), Some(fail), &mut inventory);
        assert!(inventory.sources.is_empty());
        assert_eq!(inventory.errors.len(), 1, "{:?}", inventory.errors);
        assert!(
            inventory.errors[0].contains("`rpm -qa` under"),
            "{:?}",
            inventory.errors
        );
    }

    #[test]
    fn no_rpm_database_means_rpm_is_not_run() {
        let root = tempfile::tempdir().unwrap();
        let mut inventory = Inventory::default();
        read_rpm(
            root.path(),
            Some(Path::new("/nonexistent/rpm")),
            &mut inventory,
        );
        assert!(inventory.errors.is_empty() && inventory.sources.is_empty());
    }

    #[test]
    fn empty_root_has_no_sources_and_no_errors() {
        let root = tempfile::tempdir().unwrap();
        let inventory = read_inventory(root.path());
        assert!(inventory.packages.is_empty());
        assert!(inventory.sources.is_empty());
        assert!(inventory.errors.is_empty(), "{:?}", inventory.errors);
    }

    #[test]
    fn missing_root_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let inventory = read_inventory(&root.path().join("nope"));
        assert_eq!(inventory.errors.len(), 1);
        assert!(inventory.sources.is_empty());
    }

    #[test]
    fn reads_dpkg_and_apk_sorted_and_deduplicated() {
        let root = tempfile::tempdir().unwrap();
        let twice = format!("{DPKG_STATUS_FIXTURE}\n{DPKG_STATUS_FIXTURE}");
        write(root.path(), DPKG_STATUS, &twice);
        write(root.path(), APK_INSTALLED, APK_FIXTURE);
        let inventory = read_inventory(root.path());
        assert_eq!(inventory.sources, ["dpkg", "apk"]);
        assert_eq!(inventory.errors.len(), 1, "{:?}", inventory.errors); // apk "nover"
        let names: Vec<_> = inventory
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.arch.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("bash", "amd64"),
                ("busybox", "x86_64"),
                ("libc6", "amd64"),
                ("libc6", "i386"),
                ("musl", "x86_64"),
                ("tzdata", "all"),
            ]
        );
    }

    #[test]
    fn unreadable_database_is_an_error_and_not_a_source() {
        let root = tempfile::tempdir().unwrap();
        // A directory opens fine but fails on read (EISDIR), even when the tests run as root.
        fs::create_dir_all(root.path().join("var/lib/dpkg/status")).unwrap();
        let inventory = read_inventory(root.path());
        assert!(inventory.sources.is_empty());
        assert_eq!(inventory.errors.len(), 1, "{:?}", inventory.errors);
        assert!(inventory.errors[0].contains("cannot read dpkg database"));
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "/data/dpkg/status", DPKG_STATUS_FIXTURE);
        fs::create_dir_all(root.path().join("var/lib")).unwrap();
        std::os::unix::fs::symlink("/data/dpkg", root.path().join("var/lib/dpkg")).unwrap();
        // `lib -> ../../../usr/lib`: `..` must stop at the root, as in a chroot.
        write(root.path(), "/usr/lib/apk/db/installed", APK_FIXTURE);
        std::os::unix::fs::symlink("../../../usr/lib", root.path().join("lib")).unwrap();
        let inventory = read_inventory(root.path());
        assert_eq!(inventory.sources, ["dpkg", "apk"]);
        assert_eq!(inventory.packages.len(), 6);

        // A loop is reported, not followed forever.
        let looped = tempfile::tempdir().unwrap();
        fs::create_dir_all(looped.path().join("var/lib")).unwrap();
        std::os::unix::fs::symlink("/var/lib/dpkg", looped.path().join("var/lib/dpkg")).unwrap();
        let inventory = read_inventory(looped.path());
        assert_eq!(inventory.errors.len(), 1, "{:?}", inventory.errors);
        assert!(inventory.errors[0].contains("too many levels of symbolic links"));
    }

    fn drift(
        name: &str,
        kind: PackageChange,
        expected: Option<&str>,
        actual: Option<&str>,
    ) -> PackageDrift {
        PackageDrift {
            name: name.into(),
            arch: "amd64".into(),
            kind,
            expected_version: expected.map(Into::into),
            actual_version: actual.map(Into::into),
            source: "dpkg".into(),
        }
    }

    #[test]
    fn diff_finds_installed_removed_and_changed_and_skips_unchanged() {
        let expected = [
            pkg("bash", "amd64", "5.2", "dpkg"),
            pkg("curl", "amd64", "8.0", "dpkg"),
            pkg("openssl", "amd64", "3.0.11", "dpkg"),
            pkg("zlib", "amd64", "1.2", "dpkg"),
        ];
        let actual = [
            pkg("bash", "amd64", "5.2", "dpkg"),
            pkg("nmap", "amd64", "7.93", "dpkg"),
            pkg("openssl", "amd64", "3.0.13", "dpkg"),
            pkg("zlib", "amd64", "1.2", "dpkg"),
        ];
        use PackageChange::*;
        assert_eq!(
            diff(&expected, &actual),
            [
                drift("curl", Removed, Some("8.0"), None),
                drift("nmap", Installed, None, Some("7.93")),
                drift("openssl", VersionChanged, Some("3.0.11"), Some("3.0.13")),
            ]
        );
        assert!(diff(&expected, &expected).is_empty());
        assert!(diff(&[], &[]).is_empty());
        assert_eq!(diff(&expected[..1], &[])[0].kind, Removed);
        assert_eq!(diff(&[], &actual[..1])[0].kind, Installed);
    }

    #[test]
    fn diff_keys_on_name_and_arch() {
        let expected = [
            pkg("libc6", "amd64", "2.36", "dpkg"),
            pkg("libc6", "i386", "2.36", "dpkg"),
        ];
        let actual = [
            pkg("libc6", "amd64", "2.36", "dpkg"),
            pkg("libc6", "arm64", "2.36", "dpkg"),
        ];
        let found = diff(&expected, &actual);
        let summary: Vec<_> = found
            .iter()
            .map(|d| (d.arch.as_str(), d.kind.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                ("arm64", PackageChange::Installed),
                ("i386", PackageChange::Removed)
            ]
        );
    }

    #[test]
    fn diff_matches_repeated_keys_version_by_version_and_sorts_its_input() {
        let kernel = |v: &str| pkg("kernel", "x86_64", v, "rpm");
        // Unsorted on purpose.
        let expected = [kernel("6.2"), kernel("6.1"), kernel("6.0")];
        let actual = [kernel("6.3"), kernel("6.2")];
        let found = diff(&expected, &actual);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert_eq!(found[0].kind, PackageChange::VersionChanged);
        assert_eq!(found[0].expected_version.as_deref(), Some("6.0"));
        assert_eq!(found[0].actual_version.as_deref(), Some("6.3"));
        assert_eq!(found[1].kind, PackageChange::Removed);
        assert_eq!(found[1].expected_version.as_deref(), Some("6.1"));
    }

    #[test]
    fn drift_serializes_kind_in_snake_case() {
        let d = drift(
            "openssl",
            PackageChange::VersionChanged,
            Some("1"),
            Some("2"),
        );
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["kind"], "version_changed");
        assert_eq!(json["expected_version"], "1");
        let d = drift("curl", PackageChange::Removed, Some("1"), None);
        assert_eq!(
            serde_json::to_value(&d).unwrap()["actual_version"],
            serde_json::Value::Null
        );
    }

    /// Splits a status file into stanzas the way dpkg writes it (one blank line between).
    fn stanzas(text: &str) -> Vec<String> {
        text.split("\n\n")
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim_end().to_owned())
            .collect()
    }

    fn stanza_field<'a>(stanza: &'a str, name: &str) -> Option<&'a str> {
        stanza
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    }

    #[test]
    fn this_hosts_dpkg_status_round_trips_through_an_edit() {
        let Ok(real) = fs::read_to_string(DPKG_STATUS) else {
            eprintln!("skipped: no readable {DPKG_STATUS} on this machine");
            return;
        };
        let root = tempfile::tempdir().unwrap();
        write(root.path(), DPKG_STATUS, &real);
        let before = read_inventory(root.path());
        assert_eq!(before.sources, ["dpkg"]);
        assert!(before.errors.is_empty(), "{:?}", before.errors);
        assert!(
            before.packages.len() >= 2,
            "need two installed packages to edit"
        );

        // Remove the first installed stanza, bump the version of the second.
        let mut edited = stanzas(&real);
        let is_installed =
            |s: &String| stanza_field(s, "Status").is_some_and(|st| st.ends_with(" installed"));
        let first = edited.iter().position(is_installed).unwrap();
        let removed = edited.remove(first);
        let second = edited.iter().position(is_installed).unwrap();
        let old_version = stanza_field(&edited[second], "Version").unwrap().to_owned();
        let new_version = format!("{old_version}+drift1");
        edited[second] = edited[second]
            .lines()
            .map(|l| match l.starts_with("Version:") {
                true => format!("Version: {new_version}"),
                false => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        write(root.path(), DPKG_STATUS, &(edited.join("\n\n") + "\n"));
        let after = read_inventory(root.path());
        assert!(after.errors.is_empty(), "{:?}", after.errors);

        let changed = &edited[second];
        let expected_drift = [
            PackageDrift {
                name: stanza_field(&removed, "Package").unwrap().to_owned(),
                arch: stanza_field(&removed, "Architecture").unwrap().to_owned(),
                kind: PackageChange::Removed,
                expected_version: stanza_field(&removed, "Version").map(str::to_owned),
                actual_version: None,
                source: "dpkg".into(),
            },
            PackageDrift {
                name: stanza_field(changed, "Package").unwrap().to_owned(),
                arch: stanza_field(changed, "Architecture").unwrap().to_owned(),
                kind: PackageChange::VersionChanged,
                expected_version: Some(old_version),
                actual_version: Some(new_version),
                source: "dpkg".into(),
            },
        ];
        let mut found = diff(&before.packages, &after.packages);
        found.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
        let mut expected_drift = expected_drift.to_vec();
        expected_drift.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
        assert_eq!(found, expected_drift);
    }
}
