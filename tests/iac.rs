//! IaC correlation end to end: a Terraform state and a Packer manifest imported with the real
//! `driftwatch` CLI, real agents reporting the matching identities (through identity files),
//! and the flags, coverage and report the collector derives.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use driftwatch_tests::{Agent, Collector, TestDir};

const SETTLE: Duration = Duration::from_secs(30);
const USER_DATA: &str = "da39a3ee5e6b4b0d3255bfef95601890afd80709";
const OTHER_USER_DATA: &str = "0123456789abcdef0123456789abcdef01234567";

/// A raw v4 state: five `for_each` instances in a module, a ghost instance, an autoscaling
/// group with its launch template, and secrets that must never reach the collector.
fn state(serial: u64) -> String {
    let instance = |key: &str, id: &str, ip: &str| {
        format!(
            r#"{{"index_key": "{key}", "schema_version": 1, "attributes": {{
                "id": "{id}", "ami": "ami-good", "instance_state": "running",
                "private_ip": "{ip}", "user_data": "{USER_DATA}", "tags": {{"Name": "web-{key}"}},
                "password_data": "SECRET-password-data"}}, "sensitive_attributes": []}}"#
        )
    };
    format!(
        r#"{{"version": 4, "terraform_version": "1.9.5", "serial": {serial},
  "lineage": "e2e-lineage", "outputs": {{"db_password": {{"value": "SECRET-output", "type": "string"}}}},
  "resources": [
    {{"module": "module.web", "mode": "managed", "type": "aws_instance", "name": "app", "each": "map",
      "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
      "instances": [{a}, {b}, {c}, {d}, {e}]}},
    {{"mode": "managed", "type": "aws_instance", "name": "ghost",
      "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
      "instances": [{{"schema_version": 1, "attributes": {{"id": "i-ghost", "ami": "ami-good",
        "instance_state": "running"}}}}]}},
    {{"mode": "managed", "type": "aws_launch_template", "name": "web",
      "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
      "instances": [{{"schema_version": 0, "attributes": {{"id": "lt-0123", "name": "web",
        "image_id": "ami-good", "latest_version": 3, "default_version": 3}}}}]}},
    {{"mode": "managed", "type": "aws_autoscaling_group", "name": "web",
      "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
      "instances": [{{"schema_version": 1, "attributes": {{"id": "web-asg", "name": "web-asg",
        "launch_template": [{{"id": "lt-0123", "name": "web", "version": "$Latest"}}],
        "min_size": 1, "max_size": 3, "desired_capacity": 1}}}}]}},
    {{"mode": "managed", "type": "random_password", "name": "db",
      "provider": "provider[\"registry.terraform.io/hashicorp/random\"]",
      "instances": [{{"schema_version": 3, "attributes": {{"result": "SECRET-random"}}}}]}}
  ]}}"#,
        a = instance("a", "i-match", "10.0.0.1"),
        b = instance("b", "i-wrongami", "10.0.0.2"),
        c = instance("c", "i-userdata", "10.0.0.3"),
        d = instance("d", "i-tampered", "10.0.0.4"),
        e = instance("e", "i-twin", "10.0.0.5"),
    )
}

const MANIFEST: &str = r#"{"builds": [
  {"name": "web", "builder_type": "amazon-ebs", "build_time": 1700000000, "files": null,
   "artifact_id": "eu-west-1:ami-good,us-east-1:ami-good-us",
   "packer_run_uuid": "run-1", "custom_data": {"git_sha": "4c1e9a5"}}
], "last_run_uuid": "run-1"}"#;

/// One agent with a given cloud identity, on its own copy of the sample tree.
struct Host {
    dir: TestDir,
    _agent: Agent,
}

fn host(
    c: &Collector,
    baseline: &Path,
    instance_id: &str,
    ami: &str,
    extension: &str,
    machine_id: &str,
) -> Host {
    cloud_host(
        c,
        baseline,
        &format!(
            r#"{{"v1": {{"instance_id": "{instance_id}", "cloud_name": "aws", "region": "eu-west-1",
                 "local_hostname": "{instance_id}.internal"}},
                "ds": {{"meta_data": {{"ami-id": "{ami}"}}}},
                "driftwatch": {{{extension}}}}}"#
        ),
        machine_id,
    )
}

/// Once every host reported a clean tree: `iac status --json`, as text and parsed.
fn settled_status(c: &Collector, hosts: &[&str]) -> (String, serde_json::Value) {
    for h in hosts {
        c.wait_host_paths(h, SETTLE, |p| p.is_empty());
    }
    let out = c.cli().args(["iac", "status", "--json"]).ok();
    let status = serde_json::from_str(&out).unwrap();
    (out, status)
}

/// Host → its flags, as `flags_by_host` gives them.
fn expect_flags(expected: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    expected
        .iter()
        .map(|(h, f)| ((*h).to_owned(), f.iter().map(|f| (*f).to_owned()).collect()))
        .collect()
}

fn flags_by_host(status: &serde_json::Value) -> BTreeMap<String, Vec<String>> {
    status["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let flags = h["flags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["flag"].as_str().unwrap().to_owned())
                .collect();
            (h["host"].as_str().unwrap().to_owned(), flags)
        })
        .collect()
}

/// A collector, the image's baseline and a re-baked one (another build of the same tree:
/// another baseline id, as a re-baked image would have).
struct Setup {
    t: TestDir,
    _other: TestDir,
    baked: std::path::PathBuf,
    rebaked: std::path::PathBuf,
    c: Collector,
}

fn setup() -> Setup {
    let t = TestDir::new();
    t.populate();
    let baked = t.baseline();
    let other = TestDir::new();
    other.populate();
    let rebaked = other.baseline();
    let c = Collector::start(&t.path().join("collector"));
    Setup {
        t,
        _other: other,
        baked,
        rebaked,
        c,
    }
}

#[test]
fn imported_state_and_manifest_flag_exactly_the_hosts_that_disagree() {
    // `_other` holds the re-baked tree (and its baseline) until the test ends.
    let Setup {
        t,
        _other,
        baked,
        rebaked,
        c,
    } = setup();

    let state_file = t.path().join("terraform.tfstate");
    fs::write(&state_file, state(7)).unwrap();
    let out = c
        .cli()
        .args(["iac", "import", "--terraform-state"])
        .arg(&state_file)
        .args(["--name", "prod-web"])
        .ok();
    assert!(
        out.contains("prod-web") && out.contains("8 resources"),
        "{out}"
    );
    let manifest = t.path().join("packer-manifest.json");
    fs::write(&manifest, MANIFEST).unwrap();
    c.cli()
        .args(["iac", "import", "--packer-manifest"])
        .arg(&manifest)
        .arg("--baseline")
        .arg(&baked)
        .ok();

    let ud = format!(r#""user_data_sha1": "{USER_DATA}""#);
    let other_ud = format!(r#""user_data_sha1": "{OTHER_USER_DATA}""#);
    let asg = r#""tags": {"aws:autoscaling:groupName": "web-asg", "aws:ec2launchtemplate:id": "lt-0123"}"#;
    let hosts = [
        host(&c, &baked, "i-match", "ami-good", &ud, "11"),
        host(&c, &baked, "i-wrongami", "ami-rogue", &ud, "12"),
        host(&c, &baked, "i-unmanaged", "ami-good", "", "13"),
        host(&c, &baked, "i-asg-1", "ami-good", asg, "14"),
        host(&c, &baked, "i-userdata", "ami-good", &other_ud, "15"),
        host(&c, &rebaked, "i-tampered", "ami-good", &ud, "16"),
        host(&c, &baked, "i-twin", "ami-good", &ud, "16"),
    ];
    let (out, status) = settled_status(
        &c,
        &[
            "i-match",
            "i-wrongami",
            "i-unmanaged",
            "i-asg-1",
            "i-userdata",
            "i-tampered",
            "i-twin",
        ],
    );
    let expected = expect_flags(&[
        (
            "i-wrongami",
            &["image_differs_from_state", "image_not_in_catalog"],
        ),
        ("i-unmanaged", &["unmanaged"]),
        ("i-userdata", &["userdata_mismatch"]),
        ("i-tampered", &["baseline_mismatch", "duplicate_machine_id"]),
        ("i-twin", &["duplicate_machine_id"]),
    ]);
    assert_eq!(flags_by_host(&status), expected, "{out}");
    let ghosts: Vec<&str> = status["ghosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["address"].as_str().unwrap())
        .collect();
    assert_eq!(ghosts, ["aws_instance.ghost"], "{out}");
    assert_eq!(
        status["coverage"],
        serde_json::json!({"reporting_hosts": 7, "correlated_hosts": 6,
                           "state_instances": 6, "covered_instances": 5})
    );
    assert_eq!(status["flag_counts"]["ghost"], 1);
    assert!(
        !out.contains("SECRET"),
        "a secret of the state reached the collector: {out}"
    );

    // `hosts --json` carries the link and the flag names.
    let listed = c.hosts();
    let by_host: BTreeMap<&str, &serde_json::Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["host"].as_str().unwrap(), h))
        .collect();
    assert_eq!(
        by_host["i-match"]["iac"],
        serde_json::json!({"address": "module.web.aws_instance.app[\"a\"]", "state": "prod-web",
                           "confidence": "high",
                           "correlation_path": "instance_id i-match = module.web.aws_instance.app[\"a\"]"})
    );
    assert_eq!(by_host["i-match"]["flags"], serde_json::json!([]));
    assert_eq!(by_host["i-unmanaged"]["iac"], serde_json::Value::Null);
    assert_eq!(
        by_host["i-unmanaged"]["flags"],
        serde_json::json!(["unmanaged"])
    );
    assert_eq!(
        by_host["i-asg-1"]["iac"]["address"],
        "aws_autoscaling_group.web"
    );

    // The same sudoers edit on two hosts of different resources, and one on the unmanaged one.
    for h in [&hosts[0], &hosts[3], &hosts[2]] {
        h.dir.write_by_rename(
            "/etc/sudoers",
            "root ALL=(ALL:ALL) ALL\nops ALL=(ALL) NOPASSWD: ALL\n",
        );
    }
    for h in ["i-match", "i-asg-1", "i-unmanaged"] {
        c.wait_host_paths(h, SETTLE, |p| p == ["/etc/sudoers"]);
    }
    let md = c.cli().args(["report", "--format", "markdown"]).ok();
    for want in [
        "# Drift reconciliation report",
        "Reporting hosts owned by an IaC resource: 6 of 7 (86%)",
        "### `module.web.aws_instance.app[\"a\"]` — image `ami-good` (Packer build web)",
        "### `aws_autoscaling_group.web` — image `ami-good` (Packer build web)",
        "### Hosts no IaC resource owns — image `ami-good` (Packer build web)",
        "#### [security] modified `/etc/sudoers` (size, content) — 1 host",
        "Hosts: i-match (the same change on 2 more hosts elsewhere in this report: i-asg-1, i-unmanaged)",
        "+ops ALL=(ALL) NOPASSWD: ALL",
        "| i-wrongami | module.web.aws_instance.app[\"b\"] | `image_differs_from_state` |",
        "| i-tampered | module.web.aws_instance.app[\"d\"] | `baseline_mismatch` |",
        "| aws_instance.ghost | prod-web | i-ghost |",
    ] {
        assert!(md.contains(want), "the report lacks {want:?}:\n{md}");
    }
    let json = c.cli().args(["report", "--format", "json"]).ok();
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let groups = report["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 3, "{json}");
    for g in groups {
        assert_eq!(g["causes"][0]["path"], "/etc/sudoers");
        assert!(
            g["causes"][0]["example"]["diff"]
                .as_str()
                .unwrap()
                .contains("NOPASSWD")
        );
    }

    // An older copy of the state is refused and changes nothing; a newer one replaces it.
    fs::write(&state_file, state(6)).unwrap();
    let err = c
        .cli()
        .args(["iac", "import", "--terraform-state"])
        .arg(&state_file)
        .stderr_with_code(1);
    assert!(
        err.contains("serial 7") && err.contains("serial 6"),
        "{err}"
    );
    let after: serde_json::Value =
        serde_json::from_str(&c.cli().args(["iac", "status", "--json"]).ok()).unwrap();
    assert_eq!(after["states"][0]["serial"], 7);
}

#[test]
fn bad_inputs_are_refused_and_import_nothing() {
    let t = TestDir::new();
    let c = Collector::start(&t.path().join("collector"));
    let cases: &[(&str, &str, &str)] = &[
        (
            "truncated.tfstate",
            r#"{"version": 4, "serial": 1, "resources": [{"mode""#,
            "truncated",
        ),
        (
            "html.tfstate",
            "<html>502 Bad Gateway</html>",
            "not valid JSON",
        ),
        (
            "v3.tfstate",
            r#"{"version": 3, "serial": 1, "modules": []}"#,
            "version 3",
        ),
        (
            "encrypted.tfstate",
            r#"{"meta": {"key_provider.pbkdf2.main": "x"}, "encrypted_data": "AAAA", "encryption_version": "v0"}"#,
            "encrypted",
        ),
    ];
    for (name, text, want) in cases {
        let file = t.path().join(name);
        fs::write(&file, text).unwrap();
        let err = c
            .cli()
            .args(["iac", "import", "--terraform-state"])
            .arg(&file)
            .stderr_with_code(1);
        assert!(
            err.contains(want) && err.contains(name),
            "{name}: expected {want:?} in: {err}"
        );
    }
    // A state over the size limit is refused without being read whole.
    let big = t.path().join("big.tfstate");
    let mut text = String::from(r#"{"version": 4, "serial": 1, "lineage": "x", "resources": ["#);
    text.push_str(&" ".repeat(3 << 20));
    text.push_str("]}");
    fs::write(&big, text).unwrap();
    let err = c
        .cli()
        .args(["iac", "import", "--max-mib", "2", "--terraform-state"])
        .arg(&big)
        .stderr_with_code(1);
    assert!(err.contains("larger than the limit"), "{err}");
    // A manifest of an unexpected shape.
    let manifest = t.path().join("manifest.json");
    fs::write(
        &manifest,
        r#"{"builds": [{"name": "web", "builder_type": "amazon-ebs", "artifact_id": 7}]}"#,
    )
    .unwrap();
    let err = c
        .cli()
        .args(["iac", "import", "--packer-manifest"])
        .arg(&manifest)
        .stderr_with_code(1);
    assert!(err.contains("artifact_id"), "{err}");
    // Flags that do not go together: a usage error, 1 like any error (2 means drift).
    c.cli()
        .args(["iac", "import", "--name", "x", "--packer-manifest"])
        .arg(&manifest)
        .stderr_with_code(1);

    let status: serde_json::Value =
        serde_json::from_str(&c.cli().args(["iac", "status", "--json"]).ok()).unwrap();
    assert_eq!(status["states"], serde_json::json!([]));
    assert_eq!(status["catalog_images"], 0);
}

#[test]
fn the_collector_follows_a_state_file_and_keeps_the_last_good_import() {
    let t = TestDir::new();
    let state_file = t.path().join("followed.tfstate");
    fs::write(&state_file, state(3)).unwrap();
    let source = format!("prod-web={}", state_file.display());
    let c = Collector::start_with_args(
        &t.path().join("collector"),
        &["--state-source", &source, "--state-poll", "200ms"],
    );
    let serial = |c: &Collector| -> serde_json::Value {
        let status: serde_json::Value =
            serde_json::from_str(&c.cli().args(["iac", "status", "--json"]).ok()).unwrap();
        status["states"][0]["serial"].clone()
    };
    let wait_serial = |want: u64| {
        let deadline = std::time::Instant::now() + SETTLE;
        while serial(&c) != want {
            assert!(
                std::time::Instant::now() < deadline,
                "serial {want} never imported; log:\n{}",
                c.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_serial(3);
    // A newer state replaces it; a broken write and an older copy are refused and logged once.
    fs::write(&state_file, state(4)).unwrap();
    wait_serial(4);
    fs::write(
        &state_file,
        r#"{"version": 4, "serial": 5, "resources": [{"#,
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    fs::write(&state_file, state(2)).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(serial(&c), 4);
    let log = c.log_text();
    assert_eq!(log.matches("truncated").count(), 1, "{log}");
    let line = log.lines().find(|l| l.contains("truncated")).unwrap();
    assert!(line.contains("keeping the last import"), "{line}");
    assert_eq!(log.matches("older than the one stored").count(), 1, "{log}");
    assert!(!log.contains("SECRET"), "{log}");
    fs::write(&state_file, state(5)).unwrap();
    wait_serial(5);
}

/// `python3 -m http.server` serving `dir` on a free port, stopped on drop.
struct HttpServer(std::process::Child);

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_collector_polls_a_state_over_http() {
    let t = TestDir::new();
    let served = t.path().join("served");
    fs::create_dir_all(&served).unwrap();
    fs::write(served.join("web.tfstate"), state(8)).unwrap();
    let port = driftwatch_tests::free_port();
    let child = std::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(&served)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 runs");
    let _server = HttpServer(child);
    let source = format!("web=http://127.0.0.1:{port}/web.tfstate");
    let missing = format!("nothing=http://127.0.0.1:{port}/missing.tfstate");
    let c = Collector::start_with_args(
        &t.path().join("collector"),
        &[
            "--state-source",
            &source,
            "--state-source",
            &missing,
            "--state-poll",
            "200ms",
        ],
    );
    let deadline = std::time::Instant::now() + SETTLE;
    loop {
        let status: serde_json::Value =
            serde_json::from_str(&c.cli().args(["iac", "status", "--json"]).ok()).unwrap();
        if status["states"][0]["serial"] == 8 {
            assert_eq!(status["states"].as_array().unwrap().len(), 1);
            assert_eq!(status["states"][0]["name"], "web");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the HTTP state was never imported: {status}\n{}",
            c.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The missing one is reported (HTTP 404: the backend holds no state yet), once.
    std::thread::sleep(Duration::from_millis(600));
    let log = c.log_text();
    assert_eq!(log.matches("holds no state yet").count(), 1, "{log}");
    // Nothing was ever imported from it: nothing is kept, and the log does not pretend so.
    let line = log
        .lines()
        .find(|l| l.contains("holds no state yet"))
        .unwrap();
    assert!(
        line.contains("nothing imported from it yet") && !line.contains("keeping the last"),
        "{line}"
    );
}

/// A state with one machine of each cloud and an autoscaling group built from a launch
/// configuration; the clouds' own spellings of image ids.
const THREE_CLOUDS: &str = r#"{"version": 4, "terraform_version": "1.9.5", "serial": 3,
  "lineage": "clouds-lineage", "outputs": {},
  "resources": [
    {"mode": "managed", "type": "google_compute_instance", "name": "web",
     "provider": "provider[\"registry.terraform.io/hashicorp/google\"]",
     "instances": [{"schema_version": 6, "attributes": {"instance_id": "4567890123456789012",
       "name": "web-1", "zone": "europe-west1-b", "current_status": "RUNNING",
       "boot_disk": [{"initialize_params": [{"image": "https://www.googleapis.com/compute/v1/projects/acme-images/global/images/web-20240501"}],
                      "disk_encryption_key_raw": "SECRET-disk-key"}],
       "network_interface": [{"network_ip": "10.132.0.7"}]}}]},
    {"mode": "managed", "type": "google_compute_instance", "name": "api",
     "provider": "provider[\"registry.terraform.io/hashicorp/google\"]",
     "instances": [{"schema_version": 6, "attributes": {"instance_id": "4567890123456789013",
       "name": "api-1", "zone": "europe-west1-b", "current_status": "RUNNING",
       "boot_disk": [{"initialize_params": [{"image": "https://www.googleapis.com/compute/v1/projects/acme-images/global/images/web-20240501"}]}],
       "network_interface": [{"network_ip": "10.132.0.8"}]}}]},
    {"mode": "managed", "type": "azurerm_linux_virtual_machine", "name": "web",
     "provider": "provider[\"registry.terraform.io/hashicorp/azurerm\"]",
     "instances": [{"schema_version": 0, "attributes": {
       "id": "/subscriptions/8a1c3e5f-0000-4b2d-9c1e-2f3a4b5c6d7e/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/web-vm-1",
       "virtual_machine_id": "3c5a5b1e-1d9f-2b4e-8c7a-6d5e4f3a2b1c", "name": "web-vm-1",
       "location": "westeurope", "private_ip_address": "10.0.0.4",
       "source_image_id": "/subscriptions/8a1c3e5f-0000-4b2d-9c1e-2f3a4b5c6d7e/resourceGroups/rg-images/providers/Microsoft.Compute/images/web-20240601",
       "admin_password": "SECRET-admin-password"}}]},
    {"mode": "managed", "type": "aws_instance", "name": "legacy",
     "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
     "instances": [{"schema_version": 1, "attributes": {"id": "i-legacy", "ami": "ami-old",
       "instance_state": "running", "private_ip": "172.31.5.5"}}]},
    {"mode": "managed", "type": "aws_launch_configuration", "name": "old",
     "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
     "instances": [{"schema_version": 0, "attributes": {"id": "old-lc-1", "name": "old-lc-1",
       "image_id": "ami-old"}}]},
    {"mode": "managed", "type": "aws_autoscaling_group", "name": "old",
     "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
     "instances": [{"schema_version": 1, "attributes": {"id": "old-asg", "name": "old-asg",
       "launch_configuration": "old-lc-1", "min_size": 1, "max_size": 2}}]}
  ]}"#;

/// Cloud images of each cloud, and artifacts of two qemu builds and a docker build, which are
/// not cloud images.
const THREE_CLOUDS_MANIFEST: &str = r#"{"builds": [
  {"name": "gce-web", "builder_type": "googlecompute", "build_time": 1714557600,
   "artifact_id": "web-20240501", "packer_run_uuid": "run-1", "custom_data": null},
  {"name": "azure-web", "builder_type": "azure-arm", "build_time": 1717236300,
   "artifact_id": "/subscriptions/8a1c3e5f-0000-4b2d-9c1e-2f3a4b5c6d7e/resourceGroups/rg-images/providers/Microsoft.Compute/images/web-20240601",
   "packer_run_uuid": "run-1", "custom_data": {}},
  {"name": "local-a", "builder_type": "qemu", "build_time": 1717236400, "artifact_id": "VM",
   "packer_run_uuid": "run-1"},
  {"name": "local-b", "builder_type": "qemu", "build_time": 1717236500, "artifact_id": "VM",
   "packer_run_uuid": "run-1"},
  {"name": "container", "builder_type": "docker", "build_time": 1717236600,
   "artifact_id": "sha256:9b2a1d0c8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b",
   "packer_run_uuid": "run-1"}
], "last_run_uuid": "run-1"}"#;

/// One agent whose identity file is `identity` (cloud-init's instance data of its cloud).
fn cloud_host(c: &Collector, baseline: &Path, identity: &str, machine_id: &str) -> Host {
    let dir = TestDir::new();
    dir.populate();
    // /etc/machine-id is excluded from drift by the default rules: it legitimately differs.
    dir.write("/etc/machine-id", format!("{machine_id}\n"));
    let file = dir.path().join("identity.json");
    fs::write(&file, identity).unwrap();
    let config = format!(
        "[collector]\nurl = {:?}\nheartbeat = \"1s\"\nidentity_file = {:?}\n",
        c.url, file
    );
    let agent = dir.start_agent(baseline, &config);
    Host { dir, _agent: agent }
}

/// GCE's instance data (no image in it: the metadata server has it, or, here, the identity
/// file's `driftwatch.image_id`).
fn gce_identity(id: &str, image: &str) -> String {
    format!(
        r#"{{"v1": {{"cloud_name": "gce", "instance_id": "{id}", "region": "europe-west1",
             "availability_zone": "europe-west1-b", "local_hostname": "gce-{id}"}},
            "ds": {{"meta_data": {{"instance-id": "{id}", "availability-zone": "europe-west1-b",
                                  "local-hostname": "gce-{id}.c.acme.internal"}}}},
            "driftwatch": {{"image_id": "{image}"}}}}"#
    )
}

/// Azure's instance data: cloud-init's instance id is the SMBIOS UUID; IMDS's answer is under
/// `ds.meta_data.imds`, with the vmId Terraform records and the image reference.
fn azure_identity(smbios: &str, vm_id: &str, ip: &str, image: &str) -> String {
    format!(
        r#"{{"v1": {{"cloud_name": "azure", "instance_id": "{smbios}", "region": "westeurope",
             "local_hostname": "az-{vm_id}"}},
            "ds": {{"meta_data": {{"instance-id": "{smbios}", "imds": {{
              "compute": {{"vmId": "{vm_id}", "location": "westeurope",
                          "storageProfile": {{"imageReference": {{"id": "{image}",
                            "publisher": "", "offer": "", "sku": "", "version": ""}}}}}},
              "network": {{"interface": [{{"ipv4": {{"ipAddress": [{{"privateIpAddress": "{ip}"}}]}}}}]}}}}}}}}}}"#
    )
}

/// Issue 15: image checks on all three clouds, weak evidence that claims nothing, one
/// instance in two imported states, launch configurations, and Packer artifacts that are not
/// cloud images.
#[test]
fn every_cloud_reports_its_image_and_weak_evidence_never_claims_a_resource() {
    // `_other` holds the re-baked tree (and its baseline) until the test ends.
    let Setup {
        t,
        _other,
        baked,
        rebaked,
        c,
    } = setup();

    let state_file = t.path().join("clouds.tfstate");
    fs::write(&state_file, THREE_CLOUDS).unwrap();
    // The same state under a name and under its lineage: one set of machines.
    c.cli()
        .args(["iac", "import", "--name", "clouds", "--terraform-state"])
        .arg(&state_file)
        .ok();
    let out = c
        .cli()
        .args(["iac", "import", "--terraform-state"])
        .arg(&state_file)
        .ok();
    assert!(
        out.contains("clouds-lineage") && out.contains("6 resources"),
        "{out}"
    );
    let manifest = t.path().join("packer-manifest.json");
    fs::write(&manifest, THREE_CLOUDS_MANIFEST).unwrap();
    let out = c
        .cli()
        .args(["iac", "import", "--packer-manifest"])
        .arg(&manifest)
        .arg("--baseline")
        .arg(&baked)
        .output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("imported 2 images"), "{stdout}");
    assert!(
        stderr.contains("local-a")
            && stderr.contains("container")
            && stderr.contains("not a cloud image"),
        "{stderr}"
    );

    let gce_image = "projects/acme-images/global/images/web-20240501";
    let arm = "/subscriptions/8A1C3E5F-0000-4B2D-9C1E-2F3A4B5C6D7E/resourceGroups/RG-IMAGES/providers/Microsoft.Compute/images/web-20240601";
    let _hosts = [
        cloud_host(
            &c,
            &baked,
            &gce_identity("4567890123456789012", gce_image),
            "21",
        ),
        cloud_host(
            &c,
            &rebaked,
            &gce_identity(
                "4567890123456789013",
                "projects/acme-images/global/images/rogue",
            ),
            "22",
        ),
        cloud_host(
            &c,
            &rebaked,
            &azure_identity(
                "1E5B5C3A-0000-0000-0000-000000000001",
                "3c5a5b1e-1d9f-2b4e-8c7a-6d5e4f3a2b1c",
                "10.0.0.4",
                arm,
            ),
            "23",
        ),
        // An AWS host at the Azure VM's address (10.0.0.4, Azure's first subnet address).
        cloud_host(
            &c,
            &baked,
            r#"{"v1": {"cloud_name": "aws", "instance_id": "i-aws-at-10-0-0-4", "region": "eu-west-1"},
                "ds": {"meta_data": {"ami-id": "ami-old", "local-ipv4": "10.0.0.4"}}}"#,
            "24",
        ),
        // A host off the clouds in AWS's default VPC range, at the address of an instance
        // nobody reports: a possible match, never an owner.
        cloud_host(
            &c,
            &baked,
            r#"{"v1": {"instance_id": "rack-7"}, "ds": {"meta_data": {"local-ipv4": "172.31.5.5"}}}"#,
            "26",
        ),
        // A member of the launch configuration's group, on another image.
        host(
            &c,
            &baked,
            "i-lc-member",
            "ami-new",
            r#""tags": {"aws:autoscaling:groupName": "old-asg"}"#,
            "25",
        ),
    ];
    let azure_host = "1E5B5C3A-0000-0000-0000-000000000001";
    let (out, status) = settled_status(
        &c,
        &[
            "4567890123456789012",
            "4567890123456789013",
            azure_host,
            "i-aws-at-10-0-0-4",
            "rack-7",
            "i-lc-member",
        ],
    );
    let expected = expect_flags(&[
        (
            "4567890123456789013",
            &["image_differs_from_state", "image_not_in_catalog"],
        ),
        (azure_host, &["baseline_mismatch"]),
        ("i-aws-at-10-0-0-4", &["unmanaged", "image_not_in_catalog"]),
        ("rack-7", &["unmanaged"]),
        (
            "i-lc-member",
            &["image_differs_from_state", "image_not_in_catalog"],
        ),
    ]);
    assert_eq!(flags_by_host(&status), expected, "{out}");
    assert!(!out.contains("SECRET"), "{out}");
    // Two states, one set of machines: no ghost for the copies, three instances covered; the
    // instance the rack host only shares an address with stays a ghost, listed once.
    let ghosts = status["ghosts"].as_array().unwrap();
    assert_eq!(ghosts.len(), 1, "{out}");
    assert_eq!(ghosts[0]["address"], "aws_instance.legacy");
    assert_eq!(ghosts[0]["also"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(
        status["coverage"],
        serde_json::json!({"reporting_hosts": 6, "correlated_hosts": 4,
                           "state_instances": 4, "covered_instances": 3})
    );
    let rack = status["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "rack-7")
        .unwrap();
    assert_eq!(rack["iac"], serde_json::Value::Null, "{rack}");
    assert_eq!(
        rack["candidates"][0]["address"], "aws_instance.legacy",
        "{rack}"
    );
    assert_eq!(rack["candidates"][0]["confidence"], "candidate", "{rack}");
    assert!(
        rack["flags"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("possible match: aws_instance.legacy"),
        "{rack}"
    );
    assert_eq!(status["catalog_images"], 2);
    // The AWS host at the Azure VM's address holds nothing and is offered nothing.
    let aws = status["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "i-aws-at-10-0-0-4")
        .unwrap();
    assert_eq!(aws["iac"], serde_json::Value::Null, "{aws}");
    assert!(aws.get("candidates").is_none(), "{aws}");

    let listed = c.hosts();
    let by_host: BTreeMap<&str, &serde_json::Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["host"].as_str().unwrap(), h))
        .collect();
    let gce = &by_host["4567890123456789012"];
    assert_eq!(gce["image_id"], gce_image);
    assert_eq!(gce["flags"], serde_json::json!([]), "{gce}");
    assert_eq!(gce["iac"]["confidence"], "high");
    assert_eq!(gce["iac"]["also"].as_array().unwrap().len(), 1, "{gce}");
    assert_eq!(
        by_host["rack-7"]["candidates"][0]["address"],
        "aws_instance.legacy"
    );
    assert!(
        by_host["i-lc-member"]["iac"]["correlation_path"]
            .as_str()
            .unwrap()
            .contains("launch configuration aws_launch_configuration.old"),
        "{}",
        by_host["i-lc-member"]
    );

    // States are listed honestly: two, each with its serial.
    let text = c.cli().args(["iac", "status"]).ok();
    assert!(text.contains("clouds (serial 3, 6 resources"), "{text}");
    let detail = c.cli().args(["host", "rack-7"]).ok();
    assert!(
        detail.contains("Possible  aws_instance.legacy in state clouds"),
        "{detail}"
    );
}

/// A `pulumi stack export` of two AWS instances and a GCE one, with secrets where Pulumi puts
/// them (secret outputs, inputs, the secrets provider's state, a random password).
const PULUMI_EXPORT: &str = r#"{"version": 3, "deployment": {
  "manifest": {"time": "2024-06-01T10:15:30.123456789Z", "magic": "0f1e", "version": "v3.117.0"},
  "secrets_providers": {"type": "passphrase", "state": {"salt": "v1:SECRET-salt"}},
  "resources": [
    {"urn": "urn:pulumi:dev::web::pulumi:pulumi:Stack::web-dev", "custom": false,
     "type": "pulumi:pulumi:Stack",
     "outputs": {"db": {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
                        "ciphertext": "v1:SECRET-output"}}},
    {"urn": "urn:pulumi:dev::web::aws:ec2/instance:Instance::web-a", "custom": true,
     "id": "i-pulumi-a", "type": "aws:ec2/instance:Instance",
     "inputs": {"ami": "ami-good", "userData": "SECRET-input-user-data"},
     "outputs": {"id": "i-pulumi-a", "ami": "ami-good", "instanceState": "running",
                 "privateIp": "10.0.1.10", "tags": {"Name": "web-a"},
                 "passwordData": "SECRET-password-data"}},
    {"urn": "urn:pulumi:dev::web::aws:ec2/instance:Instance::web-b", "custom": true,
     "id": "i-pulumi-b", "type": "aws:ec2/instance:Instance",
     "outputs": {"id": "i-pulumi-b", "ami": "ami-good", "instanceState": "running",
                 "privateIp": {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
                               "ciphertext": "v1:SECRET-ip"}}},
    {"urn": "urn:pulumi:dev::web::gcp:compute/instance:Instance::vm", "custom": true,
     "id": "projects/acme/zones/europe-west1-b/instances/vm", "type": "gcp:compute/instance:Instance",
     "outputs": {"instanceId": "4567890123456789099", "name": "vm", "zone": "europe-west1-b",
                 "bootDisk": {"diskEncryptionKeyRaw": "SECRET-disk-key",
                   "initializeParams": {"image": "https://www.googleapis.com/compute/v1/projects/acme-images/global/images/web-20240501"}},
                 "networkInterfaces": [{"networkIp": "10.1.0.5"}],
                 "metadata": {"ssh-keys": "SECRET-ssh-keys"}}},
    {"urn": "urn:pulumi:dev::web::random:index/randomPassword:RandomPassword::db", "custom": true,
     "id": "none", "type": "random:index/randomPassword:RandomPassword",
     "outputs": {"result": "SECRET-random"}}
  ]}}"#;

/// Issue 15: a Pulumi stack is imported under `PROJECT/STACK`, its instances are correlated
/// with the hosts of their cloud ids (AWS and GCE), and a host on another image is flagged.
#[test]
fn a_pulumi_stack_export_correlates_its_instances_and_flags_a_wrong_image() {
    let Setup {
        t,
        _other,
        baked,
        rebaked: _,
        c,
    } = setup();
    let export = t.path().join("web-dev.json");
    fs::write(&export, PULUMI_EXPORT).unwrap();
    let out = c
        .cli()
        .args(["iac", "import", "--pulumi-stack"])
        .arg(&export)
        .output();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        stdout.trim(),
        "imported pulumi stack \"web/dev\", no serial: 3 resources (0 replaced)"
    );
    // The secret output of an allow-listed attribute is named, never shown.
    assert!(
        stderr.contains("web-b: attribute `privateIp` is marked secret: not read, not stored")
            && !stderr.contains("SECRET"),
        "{stderr}"
    );
    // A Terraform state given as a Pulumi stack is refused, saying what it is.
    let tfstate = t.path().join("terraform.tfstate");
    fs::write(&tfstate, state(1)).unwrap();
    let err = c
        .cli()
        .args(["iac", "import", "--pulumi-stack"])
        .arg(&tfstate)
        .stderr_with_code(1);
    assert!(
        err.contains("not a `pulumi stack export` document") && err.contains("--terraform-state"),
        "{err}"
    );

    let gce_image = "projects/acme-images/global/images/web-20240501";
    let _hosts = [
        host(&c, &baked, "i-pulumi-a", "ami-good", "", "31"),
        host(&c, &baked, "i-pulumi-b", "ami-rogue", "", "32"),
        cloud_host(
            &c,
            &baked,
            &gce_identity("4567890123456789099", gce_image),
            "33",
        ),
    ];
    let (out, status) = settled_status(&c, &["i-pulumi-a", "i-pulumi-b", "4567890123456789099"]);
    assert_eq!(
        flags_by_host(&status),
        expect_flags(&[("i-pulumi-b", &["image_differs_from_state"])]),
        "{out}"
    );
    assert_eq!(
        status["coverage"],
        serde_json::json!({"reporting_hosts": 3, "correlated_hosts": 3,
                           "state_instances": 3, "covered_instances": 3}),
        "{out}"
    );
    assert_eq!(status["states"][0]["kind"], "pulumi");
    assert_eq!(status["states"][0]["name"], "web/dev");
    let reason = status["hosts"][0]["flags"][0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("pulumi stack web/dev (no serial: a Pulumi stack export has none")
            && reason.contains("ami-good")
            && reason.contains("ami-rogue"),
        "{reason}"
    );
    let listed = c.hosts();
    let gce = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "4567890123456789099")
        .unwrap();
    assert_eq!(
        gce["iac"]["address"],
        "urn:pulumi:dev::web::gcp:compute/instance:Instance::vm"
    );
    let text = c.cli().args(["iac", "status"]).ok();
    assert!(
        text.contains(
            "pulumi stack web/dev (no serial: a Pulumi stack export has none, 3 resources"
        ),
        "{text}"
    );
    let report = c.cli().args(["report", "--format", "json"]).ok();
    let md = c.cli().args(["report", "--format", "markdown"]).ok();
    assert!(
        md.contains("- pulumi stack web/dev (no serial: a Pulumi stack export has none"),
        "{md}"
    );
    for out in [&out, &text, &report, &md, &listed.to_string()] {
        assert!(
            !out.contains("SECRET"),
            "a secret reached the collector: {out}"
        );
    }
}

const STACK_RESOURCES: &str = r#"{"StackResources": [
  {"StackName": "web", "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/web/5b7e",
   "LogicalResourceId": "WebA", "PhysicalResourceId": "i-cfn-a", "ResourceType": "AWS::EC2::Instance",
   "Timestamp": "2024-06-01T10:20:31.123Z", "ResourceStatus": "CREATE_COMPLETE",
   "DriftInformation": {"StackResourceDriftStatus": "NOT_CHECKED"}},
  {"StackName": "web", "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/web/5b7e",
   "LogicalResourceId": "WebB", "PhysicalResourceId": "i-cfn-b", "ResourceType": "AWS::EC2::Instance",
   "Timestamp": "2024-06-01T10:20:31.123Z", "ResourceStatus": "CREATE_COMPLETE",
   "DriftInformation": {"StackResourceDriftStatus": "NOT_CHECKED"}},
  {"StackName": "web", "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/web/5b7e",
   "LogicalResourceId": "WebC", "PhysicalResourceId": "i-cfn-c", "ResourceType": "AWS::EC2::Instance",
   "Timestamp": "2024-06-01T10:20:31.123Z", "ResourceStatus": "CREATE_COMPLETE"},
  {"StackName": "web", "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/web/5b7e",
   "LogicalResourceId": "WebGroup", "PhysicalResourceId": "web-WebGroup-1A2B",
   "ResourceType": "AWS::AutoScaling::AutoScalingGroup", "ResourceStatus": "CREATE_COMPLETE"},
  {"StackName": "web", "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/web/5b7e",
   "LogicalResourceId": "DbSecret", "PhysicalResourceId": "arn:aws:secretsmanager:eu-west-1:1:secret:db",
   "ResourceType": "AWS::SecretsManager::Secret", "ResourceStatus": "CREATE_COMPLETE",
   "Description": "SECRET-description"}
]}"#;

const INSTANCES: &str = r#"{"Reservations": [{"ReservationId": "r-1", "OwnerId": "123456789012",
  "Instances": [
    {"InstanceId": "i-cfn-a", "ImageId": "ami-good", "PrivateIpAddress": "10.0.2.1",
     "State": {"Code": 16, "Name": "running"}, "KeyName": "SECRET-key",
     "Tags": [{"Key": "Name", "Value": "web-a"}]},
    {"InstanceId": "i-cfn-b", "ImageId": "ami-good", "PrivateIpAddress": "10.0.2.2",
     "State": {"Code": 16, "Name": "running"},
     "IamInstanceProfile": {"Arn": "arn:aws:iam::1:instance-profile/SECRET-profile"}}
  ]}]}"#;

/// Issue 15: a CloudFormation stack's instances take their images from `describe-instances`:
/// the host on another image is flagged, an autoscaled host is owned by the stack's group,
/// and an instance the instances file lacks is imported without an image, with a warning.
#[test]
fn a_cloudformation_stack_with_its_instances_flags_a_wrong_image() {
    let Setup {
        t,
        _other,
        baked,
        rebaked: _,
        c,
    } = setup();
    let resources = t.path().join("stack-resources.json");
    fs::write(&resources, STACK_RESOURCES).unwrap();
    let instances = t.path().join("instances.json");
    fs::write(&instances, INSTANCES).unwrap();
    // `--instances` goes with `--cloudformation`, `--baseline` with `--packer-manifest` only.
    let err = c
        .cli()
        .args(["iac", "import", "--instances"])
        .arg(&instances)
        .stderr_with_code(1);
    assert!(
        err.contains("required arguments were not provided"),
        "{err}"
    );
    let err = c
        .cli()
        .args(["iac", "import", "--cloudformation"])
        .arg(&resources)
        .arg("--baseline")
        .arg(&baked)
        .stderr_with_code(1);
    assert!(err.contains("cannot be used with"), "{err}");
    // The files swapped: each says what the other is.
    let err = c
        .cli()
        .args(["iac", "import", "--cloudformation"])
        .arg(&instances)
        .arg("--instances")
        .arg(&resources)
        .stderr_with_code(1);
    assert!(
        err.contains("not `aws ec2 describe-instances` output") && err.contains("--cloudformation"),
        "{err}"
    );
    let out = c
        .cli()
        .args(["iac", "import", "--cloudformation"])
        .arg(&resources)
        .arg("--instances")
        .arg(&instances)
        .output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        stdout.trim(),
        "imported cloudformation stack \"web\", no serial: 4 resources (0 replaced)"
    );
    assert!(
        stderr.contains("1 instance of the stack not in the instances file")
            && stderr.contains("(WebC)"),
        "{stderr}"
    );

    let asg = r#""tags": {"aws:autoscaling:groupName": "web-WebGroup-1A2B"}"#;
    let _hosts = [
        host(&c, &baked, "i-cfn-a", "ami-good", "", "41"),
        host(&c, &baked, "i-cfn-b", "ami-rogue", "", "42"),
        host(&c, &baked, "i-cfn-c", "ami-other", "", "43"),
        host(&c, &baked, "i-cfn-asg", "ami-good", asg, "44"),
    ];
    let (out, status) = settled_status(&c, &["i-cfn-a", "i-cfn-b", "i-cfn-c", "i-cfn-asg"]);
    // i-cfn-c's image is unknown to the import: nothing to compare, no flag.
    assert_eq!(
        flags_by_host(&status),
        expect_flags(&[("i-cfn-b", &["image_differs_from_state"])]),
        "{out}"
    );
    assert_eq!(status["states"][0]["kind"], "cloudformation");
    let listed = c.hosts();
    let address = |host: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == host)
            .map(|h| h["iac"]["address"].clone())
            .unwrap()
    };
    assert_eq!(address("i-cfn-a"), "WebA");
    assert_eq!(address("i-cfn-c"), "WebC");
    assert_eq!(address("i-cfn-asg"), "WebGroup");
    let text = c.cli().args(["iac", "status"]).ok();
    assert!(
        text.contains(
            "cloudformation stack web (no serial: CloudFormation stack resources have none, 4 resources"
        ),
        "{text}"
    );
    let report = c.cli().args(["report", "--format", "json"]).ok();
    for out in [&out, &text, &report, &listed.to_string()] {
        assert!(
            !out.contains("SECRET"),
            "a secret reached the collector: {out}"
        );
    }
}
