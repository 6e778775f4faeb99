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
    let summary: Vec<_> = found.iter().map(|d| (d.arch.as_str(), d.kind)).collect();
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
