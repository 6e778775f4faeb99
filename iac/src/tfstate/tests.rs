use super::*;

const RAW: &str = include_str!("../testdata/prod-web.tfstate");
const SHOW: &str = include_str!("../testdata/prod-web.show.json");

/// Every secret value planted in the fixtures, including the encodings a careless parser might
/// keep (base64 user data, a bcrypt hash, key material).
const SECRETS: &[&str] = &[
    "SECRET",
    "IyEvYmluL2Jhc2gKZXhwb3J0IERCX1BBU1NXT1JE",
    "I2Nsb3VkLWNvbmZpZwpwYXNzd29yZDo",
    "PRIVATE KEY",
    "cloud-config",
    "eyJlMmJmYjczMC1lY2FhLTExZTYtOGY4OC0zNDM2M2JjN2M0YzAi",
];

fn parse(text: &str) -> StateSummary {
    parse_state(text.as_bytes()).unwrap()
}

fn find<'a>(summary: &'a StateSummary, address: &str) -> &'a Resource {
    let found: Vec<_> = summary
        .resources
        .iter()
        .filter(|r| r.address == address && r.status.is_current())
        .collect();
    assert_eq!(found.len(), 1, "{address} in {:#?}", addresses(summary));
    found[0]
}

fn addresses(summary: &StateSummary) -> Vec<&str> {
    summary
        .resources
        .iter()
        .map(|r| r.address.as_str())
        .collect()
}

fn aws(r: &Resource) -> &AwsInstance {
    match &r.kind {
        ResourceKind::AwsInstance(i) => i,
        other => panic!("{}: not an aws_instance: {other:?}", r.address),
    }
}

fn assert_no_secrets(text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret:?} retained in:\n{text}");
    }
}

#[test]
fn raw_state_header() {
    let s = parse(RAW);
    assert_eq!(s.kind, StateKind::Raw);
    assert_eq!(s.terraform_version.as_deref(), Some("1.12.2"));
    assert_eq!(s.serial, Some(42));
    assert_eq!(
        s.generation(),
        Some(("3f1c2b9e-7d4a-4c1e-9a55-0e6f2d8b1c77", 42))
    );
    // aws_db_instance, random_password, tls_private_key: one instance each, skipped unread.
    assert_eq!(s.ignored_instances, 3);
    assert!(s.warnings.is_empty(), "{:#?}", s.warnings);
}

#[test]
fn addresses_follow_modules_count_and_for_each() {
    let s = parse(RAW);
    assert_eq!(
        addresses(&s),
        [
            "aws_autoscaling_group.web",
            "aws_instance.bastion",
            "aws_instance.bastion",
            r#"aws_instance.odd["$${x}"]"#,
            r#"aws_instance.odd["path\\to"]"#,
            r#"aws_instance.odd["we\"ird"]"#,
            "aws_instance.worker[0]",
            "aws_instance.worker[1]",
            "aws_launch_template.web",
            "module.a.module.b.aws_instance.x",
            r#"module.app["blue"].aws_instance.node[0]"#,
            "module.azure.azurerm_linux_virtual_machine.vm",
            "module.gcp.google_compute_instance.vm",
            r#"module.web.aws_instance.app["a"]"#,
            r#"module.web.aws_instance.app["b"]"#,
        ]
    );
    let app_b = find(&s, r#"module.web.aws_instance.app["b"]"#);
    assert_eq!(app_b.module.as_deref(), Some("module.web"));
    assert_eq!(app_b.resource_type, "aws_instance");
    assert_eq!(app_b.name, "app");
    assert_eq!(app_b.index, Some(IndexKey::Str("b".into())));
    assert_eq!(
        app_b.provider.as_deref(),
        Some(r#"provider["registry.terraform.io/hashicorp/aws"]"#)
    );
    let node = find(&s, r#"module.app["blue"].aws_instance.node[0]"#);
    assert_eq!(node.module.as_deref(), Some(r#"module.app["blue"]"#));
    assert_eq!(node.index, Some(IndexKey::Int(0)));
    let x = find(&s, "module.a.module.b.aws_instance.x");
    assert_eq!(
        (x.module.as_deref(), &x.index),
        (Some("module.a.module.b"), &None)
    );
    let odd = find(&s, r#"aws_instance.odd["we\"ird"]"#);
    assert_eq!(odd.index, Some(IndexKey::Str("we\"ird".into())));
}

#[test]
fn tainted_and_deposed_objects() {
    let s = parse(RAW);
    let b = find(&s, r#"module.web.aws_instance.app["b"]"#);
    assert!(b.status.tainted && b.status.is_current());
    let a = find(&s, r#"module.web.aws_instance.app["a"]"#);
    assert_eq!(a.status, InstanceStatus::default());
    let bastions: Vec<_> = s
        .resources
        .iter()
        .filter(|r| r.address == "aws_instance.bastion")
        .collect();
    assert_eq!(bastions.len(), 2);
    assert!(bastions[0].status.is_current(), "current sorts first");
    assert_eq!(aws(bastions[0]).id.as_deref(), Some("i-0b22a22b22c22d22e"));
    assert_eq!(bastions[1].status.deposed.as_deref(), Some("7b9c2e1f"));
    assert!(!bastions[1].status.tainted);
    assert_eq!(aws(bastions[1]).id.as_deref(), Some("i-0a11a11b11c11d11e"));
    assert_eq!(
        aws(bastions[1]).ami.as_deref(),
        Some("ami-0b00000000000old1")
    );
}

#[test]
fn aws_instance_attributes() {
    let s = parse(RAW);
    let bastion = aws(find(&s, "aws_instance.bastion"));
    let tags = |pairs: &[(&str, &str)]| -> crate::Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        bastion,
        &AwsInstance {
            id: Some("i-0b22a22b22c22d22e".into()),
            ami: Some("ami-0c55b159cbfafe1f0".into()),
            instance_state: Some("running".into()),
            availability_zone: Some("eu-west-1a".into()),
            private_ip: Some("10.20.1.10".into()),
            private_dns: Some("ip-10-20-1-10.eu-west-1.compute.internal".into()),
            public_ip: Some("52.18.10.10".into()),
            tags: tags(&[("Name", "bastion"), ("Role", "bastion")]),
            tags_all: tags(&[
                ("Env", "prod"),
                ("ManagedBy", "terraform"),
                ("Name", "bastion"),
                ("Role", "bastion"),
            ]),
            user_data_sha1: Some("7ab9e1ebee7aa7f6ab88b6001c017d19c3e27d14".into()),
            launch_template: None,
        }
    );
    let worker0 = aws(find(&s, "aws_instance.worker[0]"));
    assert_eq!(
        worker0.launch_template,
        Some(LaunchTemplateRef {
            id: Some("lt-0a1b2c3d4e5f67890".into()),
            name: Some("web-20240501".into()),
            version: Some("$Default".into()),
        })
    );
    assert_eq!(worker0.public_ip, None, "\"\" is absent");
    assert_eq!(worker0.user_data_sha1, None);
    let kind = &find(&s, "aws_instance.worker[0]").kind;
    assert_eq!(kind.instance_id(), Some("i-0c33c33d33e33f330"));
    assert_eq!(kind.image(), Some("ami-0c55b159cbfafe1f0"));
    assert_eq!(kind.private_ip(), Some("10.20.2.20"));
}

#[test]
fn user_data_is_kept_only_as_the_digest_the_agent_reports() {
    let s = parse(RAW);
    // AWS provider < 6: the state holds the digest itself.
    let bastion = aws(find(&s, "aws_instance.bastion"));
    assert_eq!(
        bastion.user_data_sha1.as_deref(),
        Some("7ab9e1ebee7aa7f6ab88b6001c017d19c3e27d14")
    );
    // Provider ≥ 6: clear text, hashed on reading.
    // printf '#cloud-config\nruncmd:\n  - echo SECRET-cleartext-ud-4410\n' | sha1sum
    let app_a = aws(find(&s, r#"module.web.aws_instance.app["a"]"#));
    assert_eq!(
        app_a.user_data_sha1.as_deref(),
        Some("4efffb2517212937833340e41f5a41ba70765c0c")
    );
    // `user_data_base64`: hashed decoded.
    // printf '#!/bin/bash\nexport DB_PASSWORD=SECRET-ud-b64-7731\n' | sha1sum
    let worker1 = aws(find(&s, "aws_instance.worker[1]"));
    assert_eq!(
        worker1.user_data_sha1.as_deref(),
        Some("77650f22cdb5f71f53e2a2e7b37c55c00a3a7fd7")
    );
    let app_b = aws(find(&s, r#"module.web.aws_instance.app["b"]"#));
    assert_eq!(app_b.user_data_sha1, None, "empty user data");
}

#[test]
fn launch_template_and_autoscaling_group() {
    let s = parse(RAW);
    let ResourceKind::AwsLaunchTemplate(lt) = &find(&s, "aws_launch_template.web").kind else {
        panic!("not a launch template")
    };
    assert_eq!(lt.id.as_deref(), Some("lt-0a1b2c3d4e5f67890"));
    assert_eq!(lt.name.as_deref(), Some("web-20240501"));
    assert_eq!((lt.latest_version, lt.default_version), (Some(7), Some(7)));
    assert_eq!(lt.image_id.as_deref(), Some("ami-0c55b159cbfafe1f0"));
    assert_eq!(lt.tags.get("Team").map(String::as_str), Some("web"));
    assert_eq!(lt.tags_all.len(), 2);
    // printf '#!/bin/sh\necho lt\n' | sha1sum
    assert_eq!(
        lt.user_data_sha1.as_deref(),
        Some("07c0f3b9d9e2ad71e6a5f8ead981296085701773")
    );

    let ResourceKind::AwsAutoscalingGroup(asg) = &find(&s, "aws_autoscaling_group.web").kind else {
        panic!("not an autoscaling group")
    };
    assert_eq!(
        asg,
        &AwsAutoscalingGroup {
            name: Some("web-asg".into()),
            launch_template: Some(LaunchTemplateRef {
                id: Some("lt-0a1b2c3d4e5f67890".into()),
                name: Some("web-20240501".into()),
                version: Some("$Latest".into()),
            }),
            launch_configuration: None,
            min_size: Some(2),
            max_size: Some(6),
            desired_capacity: Some(3),
            tags: vec![
                AsgTag {
                    key: "Env".into(),
                    value: "prod".into(),
                    propagate_at_launch: true,
                },
                AsgTag {
                    key: "Name".into(),
                    value: "web".into(),
                    propagate_at_launch: true,
                },
            ],
        }
    );
}

/// AWS provider < 5 wrote `tags` as a list of string maps; mixed instances policies name
/// their template three blocks deep.
#[test]
fn autoscaling_group_legacy_tags_and_mixed_instances_policy() {
    let state = r#"{"version": 4, "terraform_version": "0.14.11", "serial": 3,
      "lineage": "l", "outputs": {}, "resources": [{
        "mode": "managed", "type": "aws_autoscaling_group", "name": "spot",
        "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
        "instances": [{"schema_version": 0, "attributes": {
          "id": "spot-asg", "launch_template": [],
          "mixed_instances_policy": [{
            "instances_distribution": [{"spot_allocation_strategy": "lowest-price"}],
            "launch_template": [{
              "launch_template_specification": [{"launch_template_id": "lt-0spot",
                "launch_template_name": "spot", "version": "$Latest"}],
              "override": [{"instance_type": "m5.large"}]}]}],
          "tags": [{"key": "Name", "value": "spot", "propagate_at_launch": "true"},
                   {"key": "Empty", "value": "", "propagate_at_launch": "false"}],
          "tag": []}}]}]}"#;
    let s = parse(state);
    let ResourceKind::AwsAutoscalingGroup(asg) = &s.resources[0].kind else {
        panic!("not an autoscaling group")
    };
    assert_eq!(asg.name.as_deref(), Some("spot-asg"), "falls back to id");
    assert_eq!(
        asg.launch_template,
        Some(LaunchTemplateRef {
            id: Some("lt-0spot".into()),
            name: Some("spot".into()),
            version: Some("$Latest".into()),
        })
    );
    assert_eq!(asg.tags.len(), 2);
    assert!(asg.tags[0].propagate_at_launch);
    assert_eq!(
        (asg.tags[1].value.as_str(), asg.tags[1].propagate_at_launch),
        ("", false)
    );
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

#[test]
fn google_compute_instance() {
    let s = parse(RAW);
    let r = find(&s, "module.gcp.google_compute_instance.vm");
    let ResourceKind::GoogleComputeInstance(vm) = &r.kind else {
        panic!("not a GCE instance")
    };
    assert_eq!(vm.instance_id.as_deref(), Some("4962818273129318562"));
    assert_eq!(vm.name.as_deref(), Some("gce-web-1"));
    assert_eq!(vm.project.as_deref(), Some("acme-prod"));
    assert_eq!(vm.zone.as_deref(), Some("europe-west1-b"));
    assert_eq!(vm.current_status.as_deref(), Some("RUNNING"));
    assert_eq!(
        vm.boot_image.as_deref(),
        Some(
            "https://www.googleapis.com/compute/v1/projects/acme-images/global/images/web-20240501"
        )
    );
    assert_eq!(vm.network_ip.as_deref(), Some("10.132.0.7"));
    assert_eq!(vm.labels.len(), 1);
    assert_eq!(vm.effective_labels.len(), 2);
    assert_eq!(r.kind.instance_id(), Some("4962818273129318562"));
}

#[test]
fn azure_linux_virtual_machine() {
    let s = parse(RAW);
    let r = find(&s, "module.azure.azurerm_linux_virtual_machine.vm");
    let ResourceKind::AzureLinuxVm(vm) = &r.kind else {
        panic!("not an Azure VM")
    };
    assert!(
        vm.id
            .as_deref()
            .unwrap()
            .ends_with("/virtualMachines/az-web-1")
    );
    assert_eq!(vm.name.as_deref(), Some("az-web-1"));
    assert_eq!(
        vm.virtual_machine_id.as_deref(),
        Some("5c1f3e2a-8b7d-4e6f-a1b2-c3d4e5f60718")
    );
    assert_eq!(vm.location.as_deref(), Some("westeurope"));
    assert_eq!(vm.resource_group_name.as_deref(), Some("rg-web"));
    assert_eq!(vm.source_image_id, None);
    assert_eq!(
        vm.source_image_reference
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest")
    );
    assert_eq!(vm.private_ip_address.as_deref(), Some("10.1.0.4"));
    assert_eq!(vm.public_ip_address, None);
    assert_eq!(vm.tags.len(), 2);
    assert_eq!(r.kind.instance_id(), vm.virtual_machine_id.as_deref());
}

#[test]
fn secrets_are_never_retained() {
    // The check below is only as good as the fixtures: every marker must be planted in them.
    for secret in SECRETS {
        assert!(RAW.contains(secret), "{secret:?} is not in the raw fixture");
    }
    assert!(SHOW.contains("SECRET-db-password") && SHOW.contains("SECRET-cleartext-ud"));
    for text in [RAW, SHOW] {
        let s = parse(text);
        assert_no_secrets(&format!("{s:?}"));
        assert_no_secrets(&format!("{s:#?}"));
    }
}

/// Odd shapes for allow-listed attributes: a warning that names the attribute, never its value,
/// and the rest of the resource kept.
#[test]
fn unexpected_attribute_shapes_warn_without_values() {
    let state = r#"{"version": 4, "terraform_version": "1.9.0", "serial": 1, "lineage": "l",
      "resources": [{"mode": "managed", "type": "aws_instance", "name": "w",
        "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
        "instances": [{"attributes": {
          "id": "i-0123", "ami": {"secret": "SECRET-in-object"},
          "tags": ["SECRET-in-array"], "launch_template": "SECRET-in-string",
          "user_data_base64": "SECRET not base64!"}}]}]}"#;
    let s = parse(state);
    let i = aws(&s.resources[0]);
    assert_eq!(i.id.as_deref(), Some("i-0123"));
    assert_eq!(
        (&i.ami, i.tags.len(), &i.launch_template),
        (&None, 0, &None)
    );
    assert_eq!(s.warnings.len(), 4, "{:#?}", s.warnings);
    assert!(s.warnings.iter().any(|w| w
        == "aws_instance.w: attribute `ami` is an object, \
         not the shape driftwatch reads; ignored"));
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("`user_data_base64` is a string that is not base64"))
    );
    assert_no_secrets(&format!("{s:?}"));
}

#[test]
fn show_json_with_child_modules() {
    let s = parse(SHOW);
    assert_eq!(s.kind, StateKind::ShowJson);
    assert_eq!(s.terraform_version.as_deref(), Some("1.12.2"));
    assert_eq!(
        (s.serial, s.lineage.as_deref(), s.generation()),
        (None, None, None)
    );
    assert_eq!(s.ignored_instances, 1, "aws_db_instance.main");
    assert!(s.warnings.is_empty(), "{:#?}", s.warnings);
    assert_eq!(
        addresses(&s),
        [
            "aws_instance.bastion",
            "aws_instance.bastion",
            "aws_instance.worker[0]",
            "aws_instance.worker[1]",
            "module.a.module.b.aws_instance.x",
            r#"module.app["blue"].aws_instance.node[0]"#,
            r#"module.web.aws_instance.app["a"]"#,
            r#"module.web.aws_instance.app["b"]"#,
        ]
    );
    let x = find(&s, "module.a.module.b.aws_instance.x");
    assert_eq!(x.module.as_deref(), Some("module.a.module.b"));
    let node = find(&s, r#"module.app["blue"].aws_instance.node[0]"#);
    assert_eq!(node.module.as_deref(), Some(r#"module.app["blue"]"#));
    assert_eq!(node.index, Some(IndexKey::Int(0)));
    assert_eq!(
        node.provider.as_deref(),
        Some("registry.terraform.io/hashicorp/aws")
    );
    let b = find(&s, r#"module.web.aws_instance.app["b"]"#);
    assert!(b.status.tainted);
    assert_eq!(b.index, Some(IndexKey::Str("b".into())));
    let deposed = s.resources.iter().find(|r| !r.status.is_current()).unwrap();
    assert_eq!(deposed.status.deposed.as_deref(), Some("7b9c2e1f"));
    assert_eq!(aws(deposed).id.as_deref(), Some("i-0a11a11b11c11d11e"));
}

/// The same infrastructure read from either shape gives the same addresses, status and
/// attributes (as far as the show -json fixture repeats them).
#[test]
fn show_json_agrees_with_raw_state() {
    let raw = parse(RAW);
    let show = parse(SHOW);
    for r in &show.resources {
        let twin = raw
            .resources
            .iter()
            .find(|t| t.address == r.address && t.status == r.status)
            .unwrap_or_else(|| panic!("{} {:?} not in the raw state", r.address, r.status));
        assert_eq!((&twin.module, &twin.index), (&r.module, &r.index));
        let (a, b) = (aws(twin), aws(r));
        assert_eq!(
            (&a.id, &a.ami, &a.private_ip),
            (&b.id, &b.ami, &b.private_ip)
        );
        if b.user_data_sha1.is_some() {
            assert_eq!(a.user_data_sha1, b.user_data_sha1, "{}", r.address);
        }
    }
}

#[test]
fn address_given_by_show_json_wins_and_is_computed_when_missing() {
    let show = r#"{"format_version": "1.0", "values": {"root_module": {"child_modules": [
      {"address": "module.m[\"k\"]", "resources": [
        {"mode": "managed", "type": "aws_instance", "name": "n", "index": "a\nb",
         "values": {"id": "i-1"}}]}]}}}"#;
    let s = parse(show);
    assert_eq!(
        s.resources[0].address,
        r#"module.m["k"].aws_instance.n["a\nb"]"#
    );
}

/// Empty state, `terraform show -json` style: no `values` at all.
#[test]
fn empty_show_json() {
    let s = parse(r#"{"format_version":"1.0"}"#);
    assert_eq!((s.kind, s.resources.len()), (StateKind::ShowJson, 0));
    let s = parse(
        r#"{"version":4,"terraform_version":"1.9.8","serial":1,"lineage":"l","outputs":{},"resources":[],"check_results":null}"#,
    );
    assert_eq!((s.kind, s.resources.len()), (StateKind::Raw, 0));
}

/// Keys in another order than Terraform writes them (`instances` before `type`): the one
/// resource is held as raw text until its type is known, with the same result.
#[test]
fn keys_in_any_order() {
    let reordered = r#"{"resources": [
        {"instances": [{"attributes": {"id": "i-9", "password": "SECRET-late"},
                        "index_key": 2}],
         "name": "late", "type": "aws_instance", "mode": "managed"},
        {"instances": [{"attributes": {"password": "SECRET-ignored"}}, {}],
         "name": "db", "type": "aws_db_instance", "mode": "managed"},
        {"values": {"id": "ignored"}, "name": "d", "type": "aws_instance", "mode": "data"}],
      "lineage": "l", "serial": 9, "version": 4}"#;
    let s = parse(reordered);
    assert_eq!(addresses(&s), ["aws_instance.late[2]"]);
    assert_eq!(aws(&s.resources[0]).id.as_deref(), Some("i-9"));
    assert_eq!(s.ignored_instances, 2);
    assert_no_secrets(&format!("{s:?}"));

    let show = r#"{"values": {"root_module": {"resources": [
        {"values": {"id": "i-8"}, "address": "aws_instance.v", "name": "v",
         "type": "aws_instance", "mode": "managed"}]}}, "format_version": "1.0"}"#;
    let s = parse(show);
    assert_eq!(aws(&s.resources[0]).id.as_deref(), Some("i-8"));
}

#[test]
fn encrypted_opentofu_state_is_refused() {
    let encrypted = r#"{"meta":{"key_provider.pbkdf2.main":"eyJzYWx0IjoiWkdWaFpHSmxaV1k9IiwiaXRlcmF0aW9ucyI6NjAwMDAwfQ=="},
      "encrypted_data":"bXkgc2VjcmV0IHN0YXRlIGJ5dGVzIGdvIGhlcmU=","encryption_version":"v0"}"#;
    let err = parse_state(encrypted.as_bytes()).unwrap_err();
    assert!(
        matches!(&err, StateError::Encrypted { encryption_version: Some(v) } if v == "v0"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("encrypted by OpenTofu"), "{message}");
    assert!(message.contains("tofu state pull"), "{message}");
    // Without a version marker, the ciphertext alone is enough to refuse.
    let err = parse_state(&br#"{"encrypted_data":"AAAA"}"#[..]).unwrap_err();
    assert!(
        matches!(
            err,
            StateError::Encrypted {
                encryption_version: None
            }
        ),
        "{err:?}"
    );
}

#[test]
fn other_state_versions_are_refused() {
    // Terraform 0.11: `modules` instead of `resources`.
    let v3 = r#"{"version": 3, "terraform_version": "0.11.14", "serial": 7,
      "lineage": "l", "modules": [{"path": ["root"], "outputs": {}, "resources": {
        "aws_instance.web": {"type": "aws_instance", "primary": {"id": "i-1",
          "attributes": {"id": "i-1", "ami": "ami-1"}}}}}]}"#;
    let err = parse_state(v3.as_bytes()).unwrap_err();
    assert!(
        matches!(err, StateError::UnsupportedVersion { found: 3 }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("version 3"), "{message}");
    assert!(message.contains("reads version 4"), "{message}");
    assert!(message.contains("terraform show -json"), "{message}");

    let err = parse_state(&br#"{"format_version": "2.0", "values": {}}"#[..]).unwrap_err();
    assert!(
        matches!(err, StateError::UnsupportedFormatVersion { .. }),
        "{err:?}"
    );
}

/// The version is checked as soon as it is read: nothing after it is looked at.
#[test]
fn unsupported_version_stops_reading() {
    let err = parse_state(&br#"{"version": 5, "resources": [ this is not JSON"#[..]).unwrap_err();
    assert!(
        matches!(err, StateError::UnsupportedVersion { found: 5 }),
        "{err:?}"
    );
}

#[test]
fn not_a_state() {
    for (input, want) in [
        (&br#"{"builds": []}"#[..], "NotAState"),
        (
            br#"{"format_version": "1.2", "planned_values": {}, "resource_changes": []}"#,
            "Plan",
        ),
        (
            br#"{"version": 4, "lineage": "l", "resources": []}"#,
            "Incomplete",
        ),
        (
            br#"{"version": 4, "serial": 9223372036854775808, "lineage": "l", "resources": []}"#,
            "SerialOutOfRange(9223372036854775808)",
        ),
        (br#"[1, 2]"#, "Shape"),
    ] {
        let err = parse_state(input).unwrap_err();
        let got = format!("{err:?}");
        assert!(got.contains(want), "{want}: {got}");
    }
}

#[test]
fn truncated_state_says_where_and_leaks_nothing() {
    // Cut inside the database password.
    let cut = RAW
        .find("SECRET-db-password-9f8e\",\n            \"username")
        .unwrap()
        + 10;
    let err = parse_state(&RAW.as_bytes()[..cut]).unwrap_err();
    let StateError::Input(InputError::Truncated { line, column }) = &err else {
        panic!("{err:?}")
    };
    let line_of_cut = RAW[..cut].lines().count();
    assert_eq!(*line, line_of_cut);
    assert!(*column > 0);
    assert_no_secrets(&err.to_string());
    assert_no_secrets(&format!("{err:?}"));
}

#[test]
fn not_json_says_where() {
    let err = parse_state(&b"{\"version\": 4,\n  \"serial\": 1,\n  lineage: x}"[..]).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            err,
            StateError::Input(InputError::NotJson {
                line: 3,
                column: 3,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(message.contains("line 3, column 3"), "{message}");
    let err = parse_state(&b"PK\x03\x04 not a state"[..]).unwrap_err();
    assert!(
        matches!(err, StateError::Input(InputError::NotJson { .. })),
        "{err:?}"
    );
}

#[test]
fn wrong_shapes_name_the_resource() {
    let bad_key = r#"{"version": 4, "serial": 1, "lineage": "l", "resources": [
        {"mode": "managed", "type": "aws_instance", "name": "ok", "instances": []},
        {"mode": "managed", "type": "aws_instance", "name": "bad",
         "instances": [{"index_key": true, "attributes": {}}]}]}"#;
    let err = parse_state(bad_key.as_bytes()).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("an instance key"), "{message}");
    assert!(message.contains("line 4"), "{message}");

    let no_type = r#"{"version": 4, "serial": 1, "lineage": "l", "resources": [
        {"mode": "managed", "name": "x", "instances": []}]}"#;
    let message = parse_state(no_type.as_bytes()).unwrap_err().to_string();
    assert!(message.contains("resources[0] has no `type`"), "{message}");

    let not_array = r#"{"version": 4, "serial": 1, "lineage": "l", "resources": "nope"}"#;
    let message = parse_state(not_array.as_bytes()).unwrap_err().to_string();
    assert!(message.contains("unexpected structure"), "{message}");
}

#[test]
fn size_cap() {
    let len = RAW.len() as u64;
    let err = parse_state_limited(RAW.as_bytes(), 1024).unwrap_err();
    assert!(
        matches!(err, StateError::Input(InputError::TooLarge { limit: 1024 })),
        "{err:?}"
    );
    assert!(
        parse_state_limited(RAW.as_bytes(), len).is_ok(),
        "exactly the limit"
    );
    assert!(parse_state_limited(RAW.as_bytes(), len - 1).is_err());
}

/// Many resources of types not read, with bulky attributes: skipped without being kept.
#[test]
fn large_state_with_mostly_unknown_types() {
    let mut text = String::from(r#"{"version":4,"serial":1,"lineage":"l","resources":["#);
    let blob = "x".repeat(4096);
    for i in 0..2000 {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&format!(
            r#"{{"mode":"managed","type":"aws_security_group","name":"sg{i}","instances":[{{"attributes":{{"id":"sg-{i}","description":"{blob}"}}}}]}}"#
        ));
    }
    text.push_str(r#",{"mode":"managed","type":"aws_instance","name":"one","instances":[{"attributes":{"id":"i-1"}}]}]}"#);
    let s = parse_state_limited(text.as_bytes(), text.len() as u64).unwrap();
    assert_eq!((s.resources.len(), s.ignored_instances), (1, 2000));
}

#[test]
fn stale_serials_are_refused_within_a_lineage() {
    let s = parse(RAW); // lineage 3f1c…, serial 42
    let lineage = "3f1c2b9e-7d4a-4c1e-9a55-0e6f2d8b1c77";
    assert_eq!(check_not_stale(None, &s), Ok(()));
    assert_eq!(check_not_stale(Some((lineage, 41)), &s), Ok(()));
    assert_eq!(
        check_not_stale(Some((lineage, 42)), &s),
        Ok(()),
        "same state again"
    );
    let err = check_not_stale(Some((lineage, 43)), &s).unwrap_err();
    assert_eq!(
        err,
        StaleState {
            lineage: lineage.into(),
            stored_serial: 43,
            new_serial: 42,
        }
    );
    assert!(err.to_string().contains("serial 43"), "{err}");
    assert_eq!(
        check_not_stale(Some(("other-lineage", 1000)), &s),
        Ok(()),
        "a new state"
    );
    let show = parse(SHOW);
    assert_eq!(
        check_not_stale(Some((lineage, 1000)), &show),
        Ok(()),
        "nothing to compare"
    );
}

#[test]
fn index_keys_are_quoted_like_terraform() {
    let cases = [
        (IndexKey::Int(0), "[0]"),
        (IndexKey::Int(-1), "[-1]"),
        (IndexKey::Str("b".into()), r#"["b"]"#),
        (IndexKey::Str(String::new()), r#"[""]"#),
        (IndexKey::Str("a\"b\\c".into()), r#"["a\"b\\c"]"#),
        (IndexKey::Str("l1\nl2\tx\r".into()), r#"["l1\nl2\tx\r"]"#),
        (IndexKey::Str("${var}".into()), r#"["$${var}"]"#),
        (IndexKey::Str("%{if}$x%".into()), r#"["%%{if}$x%"]"#),
        (
            IndexKey::Str("eu-west-1 a.b/c:d".into()),
            r#"["eu-west-1 a.b/c:d"]"#,
        ),
        (IndexKey::Str("zürich".into()), r#"["zürich"]"#),
        (IndexKey::Str("\u{1}\u{a0}".into()), r#"["\u0001\u00a0"]"#),
    ];
    for (key, want) in cases {
        assert_eq!(key.to_string(), want, "{key:?}");
    }
    assert_eq!(
        instance_address(Some("module.a"), "aws_instance", "x", None),
        "module.a.aws_instance.x"
    );
}
