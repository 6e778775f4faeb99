//! The packages: packaging/build-packages.sh run on the binaries the test command just built
//! (dev profile, `--no-build --fast`), the .deb and .rpm inspected with `dpkg-deb`, `rpm` and
//! `lintian`; then the agent's .deb installed into a real Debian 12 root (debootstrap,
//! cached), provisioned with the image pipeline's own script (packaging/packer/provision.sh),
//! checked, and purged.

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use driftwatch_tests::{Cmd, TestDir, bin, describe, is_root};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .to_path_buf()
}

/// The tools these tests run; tests/setup.sh installs them.
fn require_tools() {
    for tool in [
        "cargo-deb",
        "cargo-generate-rpm",
        "dpkg-deb",
        "rpm",
        "lintian",
        "strip",
    ] {
        assert!(
            which(tool),
            "{tool} is missing: run tests/setup.sh (as root) first"
        );
    }
}

fn which(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The four packages, built once per run into `<target>/package-tests/`.
struct Packages {
    agent_deb: PathBuf,
    collector_deb: PathBuf,
    agent_rpm: PathBuf,
    collector_rpm: PathBuf,
}

fn packages() -> &'static Packages {
    static PACKAGES: OnceLock<Packages> = OnceLock::new();
    PACKAGES.get_or_init(|| {
        require_tools();
        // target/<profile>/driftwatch-agent: package the binaries of this test's profile.
        let bins = bin("driftwatch-agent").parent().unwrap().to_path_buf();
        let profile = match bins.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev".to_owned(),
            Some(other) => other.to_owned(),
            None => panic!("no profile directory in {}", bins.display()),
        };
        let out = bins.parent().unwrap().join("package-tests");
        let _ = fs::remove_dir_all(&out);
        Cmd::system(repo().join("packaging/build-packages.sh").to_str().unwrap())
            .args(["--profile", &profile, "--no-build", "--fast", "--out"])
            .arg(&out)
            .ok();
        let find = |suffix: &str| {
            let found: Vec<PathBuf> = fs::read_dir(&out)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect();
            assert_eq!(
                found.len(),
                1,
                "one *{suffix} in {}: {found:?}",
                out.display()
            );
            found.into_iter().next().unwrap()
        };
        Packages {
            agent_deb: find("driftwatch-agent_0.2.0-1_amd64.deb"),
            collector_deb: find("driftwatch-collector_0.2.0-1_amd64.deb"),
            agent_rpm: find("driftwatch-agent-0.2.0-1.x86_64.rpm"),
            collector_rpm: find("driftwatch-collector-0.2.0-1.x86_64.rpm"),
        }
    })
}

fn run(program: &str, args: &[&str], file: &Path) -> String {
    Cmd::system(program).args(args).arg(file).ok()
}

/// `dpkg-deb -c`'s paths, without the leading `.`.
fn deb_files(deb: &Path) -> Vec<String> {
    run("dpkg-deb", &["-c"], deb)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_owned())
        .collect()
}

/// A member of a .deb's control archive (`conffiles`, `postinst`, …), as `dpkg-deb -I` prints it.
fn control(deb: &Path, member: &str) -> String {
    Cmd::system("dpkg-deb").arg("-I").arg(deb).arg(member).ok()
}

/// What both agent packages hold (each format adds its own documentation paths).
const AGENT_FILES: &[&str] = &[
    "/usr/bin/driftwatch-agent",
    "/usr/lib/systemd/system/driftwatch-agent.service",
    "/usr/lib/sysusers.d/driftwatch.conf",
    "/usr/lib/tmpfiles.d/driftwatch-agent.conf",
    "/etc/driftwatch/agent.toml",
    "/etc/driftwatch/rules.toml",
    "/usr/share/man/man1/driftwatch-agent.1.gz",
    "/usr/share/bash-completion/completions/driftwatch-agent",
];

fn assert_contains(list: &[String], wanted: &[&str], what: &str) {
    let missing: Vec<&&str> = wanted
        .iter()
        .filter(|w| !list.iter().any(|l| l == **w))
        .collect();
    assert!(
        missing.is_empty(),
        "{what} lacks {missing:?}; it has:\n{list:#?}"
    );
}

#[test]
fn the_agent_deb_holds_the_binary_unit_user_config_man_pages_and_completions() {
    let p = packages();
    let files = deb_files(&p.agent_deb);
    assert_contains(&files, AGENT_FILES, "the agent .deb");
    assert_contains(
        &files,
        &[
            "/usr/share/man/man1/driftwatch-agent-baseline-build.1.gz",
            "/usr/share/man/man1/driftwatch-agent-check.1.gz",
            "/usr/share/zsh/vendor-completions/_driftwatch-agent",
            "/usr/share/fish/vendor_completions.d/driftwatch-agent.fish",
            "/usr/share/doc/driftwatch-agent/copyright",
            "/usr/share/doc/driftwatch-agent/changelog.Debian.gz",
        ],
        "the agent .deb",
    );
    let info = run("dpkg-deb", &["-I"], &p.agent_deb);
    assert!(info.contains("Package: driftwatch-agent"), "{info}");
    assert!(info.contains("Depends: libc6"), "{info}");
    assert!(info.contains("systemd (>= 247)"), "{info}");
    let conffiles = control(&p.agent_deb, "conffiles");
    assert_eq!(
        conffiles.lines().collect::<Vec<_>>(),
        ["/etc/driftwatch/agent.toml", "/etc/driftwatch/rules.toml"]
    );
    // The maintainer scripts: the user, enabled but never started, state removed on purge only.
    let postinst = control(&p.agent_deb, "postinst");
    assert!(postinst.contains("systemd-sysusers"), "{postinst}");
    assert!(
        postinst.contains("deb-systemd-helper enable driftwatch-agent.service"),
        "{postinst}"
    );
    assert!(
        !postinst.contains("deb-systemd-invoke start"),
        "the agent must not start before its baseline exists:\n{postinst}"
    );
    let postrm = control(&p.agent_deb, "postrm");
    assert!(postrm.contains("rm -rf /var/lib/driftwatch"), "{postrm}");
    // The unit waits for the baseline.
    let unit = fs::read_to_string(repo().join("packaging/systemd/driftwatch-agent.service"))
        .expect("the agent unit");
    assert!(unit.contains("ConditionPathExists=/var/lib/driftwatch/baseline.dwb"));
}

#[test]
fn the_collector_deb_holds_the_collector_the_cli_and_their_unit() {
    let p = packages();
    let files = deb_files(&p.collector_deb);
    assert_contains(
        &files,
        &[
            "/usr/bin/driftwatch-collector",
            "/usr/bin/driftwatch",
            "/usr/lib/systemd/system/driftwatch-collector.service",
            "/usr/lib/sysusers.d/driftwatch-collector.conf",
            "/etc/driftwatch/collector.env",
            "/usr/share/man/man1/driftwatch-collector-serve.1.gz",
            "/usr/share/man/man1/driftwatch-hosts.1.gz",
            "/usr/share/bash-completion/completions/driftwatch",
            "/usr/share/bash-completion/completions/driftwatch-collector",
        ],
        "the collector .deb",
    );
    assert!(
        !files.iter().any(|f| f.contains("driftwatch-agent")),
        "the collector package ships nothing of the agent: {files:#?}"
    );
    let conffiles = control(&p.collector_deb, "conffiles");
    assert_eq!(conffiles.trim(), "/etc/driftwatch/collector.env");
}

#[test]
fn the_rpms_hold_the_same_files_config_marked_with_their_scriptlets() {
    let p = packages();
    let agent: Vec<String> = run("rpm", &["-qlp"], &p.agent_rpm)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_contains(&agent, AGENT_FILES, "the agent .rpm");
    let config = run("rpm", &["-qcp"], &p.agent_rpm);
    assert_eq!(
        config.lines().collect::<Vec<_>>(),
        ["/etc/driftwatch/agent.toml", "/etc/driftwatch/rules.toml"]
    );
    let scripts = run("rpm", &["-qp", "--scripts"], &p.agent_rpm);
    assert!(
        scripts.contains("systemd-sysusers driftwatch.conf")
            && scripts.contains("systemctl enable driftwatch-agent.service")
            && scripts.contains("systemctl disable --now driftwatch-agent.service"),
        "{scripts}"
    );
    let collector: Vec<String> = run("rpm", &["-qlp"], &p.collector_rpm)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_contains(
        &collector,
        &[
            "/usr/bin/driftwatch-collector",
            "/usr/bin/driftwatch",
            "/usr/lib/systemd/system/driftwatch-collector.service",
            "/usr/lib/sysusers.d/driftwatch-collector.conf",
            "/etc/driftwatch/collector.env",
        ],
        "the collector .rpm",
    );
    let info = run("rpm", &["-qip"], &p.collector_rpm);
    assert!(info.contains("Version     : 0.2.0"), "{info}");
}

#[test]
fn lintian_finds_no_error_in_either_deb() {
    let p = packages();
    for deb in [&p.agent_deb, &p.collector_deb] {
        let out = Cmd::system("lintian").arg("--no-cfg").arg(deb).output();
        let text = String::from_utf8_lossy(&out.stdout);
        let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E:")).collect();
        assert!(
            errors.is_empty(),
            "lintian errors in {}:\n{}",
            deb.display(),
            describe(&out)
        );
        // Exit 0 or 2 (warnings only); anything else is lintian failing to run.
        assert!(
            matches!(out.status.code(), Some(0 | 2)),
            "lintian failed on {}:\n{}",
            deb.display(),
            describe(&out)
        );
    }
}

/// The debootstrap this root is made with; a cached root made otherwise is made again.
const DEBOOTSTRAP: &[&str] = &[
    "--variant=minbase",
    // systemd: sysusers, tmpfiles and systemd-analyze; procps: the unit's /bin/kill.
    "--include=systemd,procps",
    "bookworm",
];
const MIRROR: &str = "http://deb.debian.org/debian";
const CACHE: &str = "/var/cache/driftwatch-tests/debian12";

/// A Debian 12 root, made once with debootstrap (a few minutes, from deb.debian.org) and kept
/// in /var/cache/driftwatch-tests/debian12 for the next runs; the marker file inside says how
/// it was made.
fn debian_root() -> PathBuf {
    let cache = PathBuf::from(CACHE);
    let marker = cache.join(".driftwatch-complete");
    let recipe = format!("debootstrap {} {MIRROR}\n", DEBOOTSTRAP.join(" "));
    if fs::read_to_string(&marker).ok().as_deref() == Some(recipe.as_str()) {
        return cache;
    }
    assert!(
        which("debootstrap"),
        "debootstrap is missing: run tests/setup.sh (as root) first"
    );
    eprintln!("Making the Debian 12 root once, in {CACHE} ({recipe:?})...");
    let partial = cache.with_extension("partial");
    let _ = fs::remove_dir_all(&partial);
    let _ = fs::remove_dir_all(&cache);
    fs::create_dir_all(cache.parent().unwrap()).expect("mkdir /var/cache/driftwatch-tests");
    Cmd::system("debootstrap")
        .args(DEBOOTSTRAP)
        .arg(&partial)
        .arg(MIRROR)
        .ok();
    fs::write(partial.join(".driftwatch-complete"), &recipe).expect("write the marker");
    fs::rename(&partial, &cache).expect("rename the finished root into place");
    cache
}

/// Runs `sh -c script` chrooted into `root` with a clean environment plus `env`.
fn in_root(root: &Path, env: &[(&str, &str)], script: &str) -> Cmd {
    let mut cmd = Cmd::system("chroot").arg(root).args([
        "/usr/bin/env",
        "-i",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
    ]);
    for (k, v) in env {
        cmd = cmd.arg(format!("{k}={v}"));
    }
    cmd.args(["sh", "-c", script])
}

#[test]
fn the_agent_deb_installs_provisions_verifies_and_purges_in_a_debian_12_root() {
    if !is_root() {
        eprintln!("skipped: installing into a Debian root needs root (chroot)");
        return;
    }
    let p = packages();
    let t = TestDir::new();
    let root = t.path().join("debian12");
    Cmd::system("cp")
        .args(["-a", "--reflink=auto"])
        .arg(debian_root())
        .arg(&root)
        .ok();

    // What the pipeline uploads: the package, the keys, the collector's CA, a join token.
    let deb = root.join("tmp/driftwatch-agent.deb");
    fs::copy(&p.agent_deb, &deb).unwrap();
    fs::copy(
        repo().join("packaging/packer/provision.sh"),
        root.join("tmp/provision.sh"),
    )
    .unwrap();
    t.cmd("driftwatch-agent")
        .args(["baseline", "keygen", "--out"])
        .arg(root.join("tmp/ci"))
        .ok();
    let public_key = t.path().join("ci.pub");
    fs::copy(root.join("tmp/ci.pub"), &public_key).unwrap();
    Cmd::system("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=driftwatch test CA", "-keyout"])
        .arg(t.path().join("ca.key"))
        .arg("-out")
        .arg(root.join("tmp/collector-ca.pem"))
        .ok();
    fs::write(root.join("tmp/join-token"), "dwj_0123456789abcdef\n").unwrap();

    // The provisioner, exactly as the Packer template runs it (as root, on the machine).
    let out = in_root(
        &root,
        &[
            ("DRIFTWATCH_PACKAGE", "/tmp/driftwatch-agent.deb"),
            ("DRIFTWATCH_SIGNING_KEY", "/tmp/ci.key"),
            ("DRIFTWATCH_PUBLIC_KEY", "/tmp/ci.pub"),
            ("DRIFTWATCH_IMAGE_NAME", "web"),
            ("DRIFTWATCH_IMAGE_VERSION", "2026.12.1"),
            (
                "DRIFTWATCH_COLLECTOR_URL",
                "https://collector.internal:7470",
            ),
            ("DRIFTWATCH_COLLECTOR_CA", "/tmp/collector-ca.pem"),
            ("DRIFTWATCH_JOIN_TOKEN_FILE", "/tmp/join-token"),
            ("DRIFTWATCH_BASELINE_EXPORT", "/tmp/baseline.dwb"),
        ],
        "sh /tmp/provision.sh",
    )
    .ok();
    let summary: serde_json::Value = serde_json::from_str(
        &out[out.find('{').expect("the bake's JSON summary")..=out.rfind('}').unwrap()],
    )
    .unwrap_or_else(|e| panic!("the bake's summary ({e}):\n{out}"));
    assert_eq!(summary["signed"], true, "{summary:#}");
    assert!(
        !root.join("tmp/ci.key").exists(),
        "the signing key outlived the provisioner"
    );

    // The user, the enabled unit, the private state directory owned by the agent's user.
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
    let uid: u32 = passwd
        .lines()
        .find_map(|l| l.strip_prefix("driftwatch:x:"))
        .and_then(|rest| rest.split(':').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no driftwatch user in /etc/passwd:\n{passwd}"));
    let wants = root.join("etc/systemd/system/multi-user.target.wants/driftwatch-agent.service");
    assert!(
        wants.symlink_metadata().is_ok(),
        "the unit is not enabled: no {}",
        wants.display()
    );
    let state = fs::metadata(root.join("var/lib/driftwatch")).unwrap();
    assert_eq!(state.uid(), uid);
    assert_eq!(state.permissions().mode() & 0o7777, 0o700);
    assert_eq!(
        fs::metadata(root.join("etc/driftwatch/join-token"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // The baseline: there, signed by the pipeline's key, of this image, and the exported copy
    // is the same file.
    let baseline = root.join("var/lib/driftwatch/baseline.dwb");
    t.cmd("driftwatch-agent")
        .args(["baseline", "verify"])
        .arg(&baseline)
        .arg("--public-key")
        .arg(&public_key)
        .ok();
    let shown: serde_json::Value = serde_json::from_str(
        &t.cmd("driftwatch-agent")
            .args(["baseline", "show", "--json"])
            .arg(&baseline)
            .ok(),
    )
    .unwrap();
    assert_eq!(shown["baseline_id"], summary["baseline_id"], "{shown:#}");
    assert_eq!(
        fs::read(&baseline).unwrap(),
        fs::read(root.join("tmp/baseline.dwb")).unwrap()
    );
    let shown = shown.to_string();
    assert!(
        shown.contains("\"web\"") && shown.contains("2026.12.1"),
        "{shown}"
    );

    // The host as baked is clean: nothing the install or the configuration did shows up.
    t.cmd("driftwatch-agent")
        .args(["check", "--baseline"])
        .arg(&baseline)
        .arg("--root")
        .arg(&root)
        .arg("--public-key")
        .arg(&public_key)
        .ok();

    // Both units, with the root's paths (its /usr/bin binaries, its /bin/kill), the
    // collector's package installed alongside. Their Documentation= man pages are looked up
    // with the host's man, which does not see the root: checked as files instead.
    fs::copy(&p.collector_deb, root.join("tmp/driftwatch-collector.deb")).unwrap();
    in_root(&root, &[], "dpkg -i /tmp/driftwatch-collector.deb").ok();
    for unit in ["driftwatch-agent", "driftwatch-collector"] {
        let out = Cmd::system("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(format!("--root={}", root.display()))
            .arg(format!("/usr/lib/systemd/system/{unit}.service"))
            .output();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "systemd-analyze verify {unit}.service:\n{}",
            describe(&out)
        );
        assert!(
            root.join(format!("usr/share/man/man1/{unit}.1.gz"))
                .exists()
        );
    }
    assert!(
        fs::read_to_string(root.join("etc/passwd"))
            .unwrap()
            .contains("\ndriftwatch-collector:x:"),
        "no driftwatch-collector user"
    );

    // Remove keeps configuration and state; purge removes them (and leaves what the operator
    // added to /etc/driftwatch, and the user).
    in_root(&root, &[], "dpkg --remove driftwatch-agent").ok();
    assert!(!root.join("usr/bin/driftwatch-agent").exists());
    assert!(root.join("etc/driftwatch/agent.toml").exists());
    assert!(baseline.exists());
    in_root(&root, &[], "dpkg --purge driftwatch-agent").ok();
    for gone in [
        "var/lib/driftwatch",
        "etc/driftwatch/agent.toml",
        "etc/driftwatch/rules.toml",
        "usr/lib/systemd/system/driftwatch-agent.service",
        "etc/systemd/system/multi-user.target.wants/driftwatch-agent.service",
    ] {
        assert!(
            root.join(gone).symlink_metadata().is_err(),
            "/{gone} is still there after purge"
        );
    }
    assert!(root.join("etc/driftwatch/ci.pub").exists());
    assert!(root.join("etc/driftwatch/collector.env").exists());
    in_root(&root, &[], "dpkg --purge driftwatch-collector").ok();
    assert!(!root.join("etc/driftwatch/collector.env").exists());
    assert!(!root.join("var/lib/driftwatch-collector").exists());
}
