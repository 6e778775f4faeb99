//! `pulumi stack export` fixtures: what is kept, what never is, and wrong files.

use super::*;
use crate::import;

const FIXTURE: &[u8] = include_bytes!("../testdata/web-dev.pulumi.json");

fn fixture() -> StackExport {
    parse_export(FIXTURE).unwrap()
}

fn find<'a>(export: &'a StackExport, name: &str) -> &'a Resource {
    export
        .summary
        .resources
        .iter()
        .find(|r| r.name == name && r.status.is_current())
        .unwrap_or_else(|| panic!("{name} missing"))
}

#[test]
fn the_fixture_reads_as_machines_of_three_clouds() {
    let export = fixture();
    assert_eq!(export.summary.kind, StateKind::Pulumi);
    assert_eq!(
        (export.summary.serial, &export.summary.lineage),
        (None, &None)
    );
    assert_eq!(
        export.summary.terraform_version.as_deref(),
        Some("v3.117.0")
    );
    assert_eq!(
        (export.stack.as_deref(), export.project.as_deref()),
        (Some("dev"), Some("web"))
    );
    assert_eq!(export.default_name().as_deref(), Some("web/dev"));
    assert_eq!(
        export.time.as_deref(),
        Some("2024-06-01T10:15:30.123456789Z")
    );
    // The provider and the stack are not infrastructure; the random password is a resource
    // of a type not read.
    assert_eq!(export.summary.ignored_instances, 1);

    let ResourceKind::AwsInstance(a) = &find(&export, "web-a").kind else {
        panic!()
    };
    assert_eq!(a.id.as_deref(), Some("i-0a1b2c3d4e5f60001"));
    assert_eq!(a.ami.as_deref(), Some("ami-0aa11bb22cc33dd44"));
    assert_eq!(a.private_ip.as_deref(), Some("10.0.1.10"));
    assert_eq!(a.public_ip, None);
    assert_eq!(a.tags.get("Name").map(String::as_str), Some("web-a"));
    assert_eq!(a.tags_all.get("env").map(String::as_str), Some("dev"));
    assert_eq!(
        a.user_data_sha1.as_deref(),
        Some(crate::digest::user_data_sha1("#!/bin/sh\necho SECRET-user-data\n").as_str())
    );
    assert_eq!(
        a.launch_template.as_ref().and_then(|t| t.id.as_deref()),
        Some("lt-0a1b2c3d4e5f67890")
    );
    assert_eq!(
        find(&export, "web-a").address,
        "urn:pulumi:dev::web::aws:ec2/instance:Instance::web-a"
    );

    let ResourceKind::GoogleComputeInstance(g) =
        &by_type(&export, "gcp:compute/instance:Instance").kind
    else {
        panic!()
    };
    assert_eq!(g.instance_id.as_deref(), Some("4567890123456789012"));
    assert_eq!(
        g.boot_image.as_deref(),
        Some(
            "https://www.googleapis.com/compute/v1/projects/acme-images/global/images/web-20240501"
        )
    );
    assert_eq!(g.network_ip.as_deref(), Some("10.1.0.5"));
    check_azure(&export);
}

fn by_type<'a>(export: &'a StackExport, t: &str) -> &'a Resource {
    export
        .summary
        .resources
        .iter()
        .find(|r| r.resource_type == t)
        .unwrap_or_else(|| panic!("{t} missing"))
}

fn check_azure(export: &StackExport) {
    let ResourceKind::AzureLinuxVm(vm) = &by_type(
        export,
        "azure:compute/linuxVirtualMachine:LinuxVirtualMachine",
    )
    .kind
    else {
        panic!()
    };
    assert_eq!(
        vm.virtual_machine_id.as_deref(),
        Some("3c5a5b1e-1d9f-2b4e-8c7a-6d5e4f3a2b1c")
    );
    assert_eq!(
        vm.source_image_reference.as_ref().map(ToString::to_string),
        Some("Canonical:ubuntu-24_04-lts:server:latest".to_owned())
    );
    assert_eq!(vm.private_ip_address.as_deref(), Some("10.2.0.4"));
    let ResourceKind::AzureLinuxVm(native) =
        &by_type(export, "azure-native:compute:VirtualMachine").kind
    else {
        panic!()
    };
    assert_eq!(
        native.virtual_machine_id.as_deref(),
        Some("9d8c7b6a-0000-4000-8000-00000000000a")
    );
    assert!(
        native
            .source_image_id
            .as_deref()
            .is_some_and(|i| i.ends_with("/images/web-20240601"))
    );
    assert_eq!(native.source_image_reference, None);
}

#[test]
fn secrets_never_survive_and_secret_outputs_are_named_in_warnings() {
    let export = fixture();
    // Every value planted in the fixture that is not allow-listed holds `SECRET`.
    let rendered = format!("{export:?}");
    let request = import::state_request(export.summary.clone(), "web/dev", "dev.json");
    let sent = format!("{request:?}");
    assert!(!rendered.contains("SECRET"), "{rendered}");
    assert!(!sent.contains("SECRET"), "{sent}");
    // Neither the ciphertexts nor the secret marker's value are kept.
    assert!(!rendered.contains("v1:") && !rendered.contains("1b47061264138c4ac30d75fd1eb44270"));
    let b = find(&export, "web-b");
    let ResourceKind::AwsInstance(b_kind) = &b.kind else {
        panic!()
    };
    assert_eq!((b_kind.private_ip.as_ref(), b_kind.tags.len()), (None, 0));
    let warnings = export.summary.warnings.join("\n");
    assert!(
        warnings.contains("web-b: attribute `privateIp` is marked secret: not read, not stored")
            && warnings.contains("web-b: attribute `tags` is marked secret"),
        "{warnings}"
    );
}

#[test]
fn a_resource_pending_deletion_is_not_current_and_not_sent() {
    let export = fixture();
    let old = export
        .summary
        .resources
        .iter()
        .find(|r| r.name == "web-old")
        .unwrap();
    assert!(!old.status.is_current());
    let request = import::state_request(export.summary, "web/dev", "dev.json");
    import::validate_state(&request).unwrap();
    assert_eq!(request.kind, "pulumi");
    assert_eq!(request.serial, None);
    assert!(
        request
            .resources
            .iter()
            .all(|r| !r.address.ends_with("web-old"))
    );
    let group = request
        .resources
        .iter()
        .find(|r| r.r#type == "aws:autoscaling/group:Group")
        .unwrap();
    assert_eq!(
        (
            group.role.as_str(),
            group.key.as_str(),
            group.template.as_str()
        ),
        ("group", "web-asg", "lt-0a1b2c3d4e5f67890")
    );
    let template = request
        .resources
        .iter()
        .find(|r| r.role == "template")
        .unwrap();
    assert_eq!(
        (template.key.as_str(), template.image_id.as_str()),
        ("lt-0a1b2c3d4e5f67890", "ami-0aa11bb22cc33dd44")
    );
}

#[test]
fn outputs_before_type_are_read_the_same() {
    let doc = r#"{"version": 3, "deployment": {"manifest": {"time": "t", "version": "v3"},
      "resources": [{"outputs": {"ami": "ami-1", "secret": "SECRET-x"},
                     "urn": "urn:pulumi:s::p::aws:ec2/instance:Instance::a",
                     "id": "i-1", "type": "aws:ec2/instance:Instance"}]}}"#;
    let export = parse_export(doc.as_bytes()).unwrap();
    assert_eq!(export.summary.resources[0].kind.image(), Some("ami-1"));
    assert!(!format!("{export:?}").contains("SECRET"));
}

#[test]
fn versioned_azure_native_types_are_virtual_machines() {
    for t in [
        "azure-native:compute:VirtualMachine",
        "azure-native:compute/v20230301:VirtualMachine",
    ] {
        assert_eq!(
            KnownType::from_type_name(t),
            Some(KnownType::AzureNativeVm),
            "{t}"
        );
    }
    for t in [
        "azure-native:compute:VirtualMachineScaleSet",
        "azure-native:network:VirtualMachine",
        "aws:ec2/instance:InstanceProfile",
    ] {
        assert_eq!(KnownType::from_type_name(t), None, "{t}");
    }
}

#[test]
fn wrong_files_say_what_they_look_like() {
    let tfstate = include_bytes!("../testdata/prod-web.tfstate");
    let err = parse_export(&tfstate[..]).unwrap_err().to_string();
    assert!(
        err.contains("not a `pulumi stack export` document")
            && err.contains("Terraform/OpenTofu state")
            && err.contains("--terraform-state"),
        "{err}"
    );
    let cfn = br#"{"StackResources": []}"#;
    let err = parse_export(&cfn[..]).unwrap_err().to_string();
    assert!(err.contains("--cloudformation"), "{err}");
    let ec2 = br#"{"Reservations": []}"#;
    let err = parse_export(&ec2[..]).unwrap_err().to_string();
    assert!(err.contains("describe-instances"), "{err}");
    let manifest = include_bytes!("../testdata/packer-manifest.json");
    let err = parse_export(&manifest[..]).unwrap_err().to_string();
    assert!(err.contains("--packer-manifest"), "{err}");
    let random = br#"{"hello": "world"}"#;
    let err = parse_export(&random[..]).unwrap_err().to_string();
    assert_eq!(
        err,
        "not a `pulumi stack export` document: no top-level `deployment`"
    );
    let err = parse_export(&b"[1, 2]"[..]).unwrap_err().to_string();
    assert!(err.contains("a Pulumi stack export"), "{err}");
    // Another version's deployment is refused without being read.
    let old = br#"{"version": 1, "deployment": {"resources": "not even an array"}}"#;
    let err = parse_export(&old[..]).unwrap_err().to_string();
    assert!(err.contains("unsupported stack export version 1"), "{err}");
    let v4 = br#"{"version": 4, "features": ["refreshBeforeUpdate"],
                  "deployment": {"manifest": {}, "resources": []}}"#;
    parse_export(&v4[..]).unwrap();
    let unversioned = br#"{"deployment": {"resources": []}}"#;
    assert!(matches!(
        parse_export(&unversioned[..]),
        Err(ExportError::NoVersion)
    ));
}

#[test]
fn an_oversized_export_is_refused() {
    let err = parse_export_limited(FIXTURE, 100).unwrap_err();
    assert!(matches!(
        err,
        ExportError::Input(InputError::TooLarge { limit: 100 })
    ));
}
