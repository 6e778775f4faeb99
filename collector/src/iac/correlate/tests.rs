use super::*;

const NOW: Millis = 1_800_000_000_000;
const MIN: Millis = 60_000;

fn host(id: &str) -> HostFacts {
    HostFacts {
        host: id.into(),
        hostname: format!("{id}.internal"),
        instance_id: id.into(),
        image_id: "ami-good".into(),
        region: "eu-west-1".into(),
        baseline_id: "bl-1".into(),
        last_seen: NOW,
        ..HostFacts::default()
    }
}

fn instance(address: &str, id: &str, ami: &str) -> (String, Resource) {
    (
        "prod".into(),
        Resource {
            address: address.into(),
            resource_type: "aws_instance".into(),
            role: role::INSTANCE.into(),
            key: id.into(),
            image_id: ami.into(),
            status: "running".into(),
            ..Default::default()
        },
    )
}

fn data(resources: Vec<(String, Resource)>) -> IacData {
    IacData {
        states: vec![StateInfo {
            name: "prod".into(),
            serial: Some(7),
            imported_at: NOW - 3 * 60 * MIN,
            ..Default::default()
        }],
        resources,
        images: vec![Image {
            region: "eu-west-1".into(),
            image_id: "ami-good".into(),
            build: "web".into(),
            baseline_id: "bl-1".into(),
            ..Default::default()
        }],
    }
}

fn flags(c: &Correlation, host: &str) -> Vec<String> {
    c.hosts[host].flag_names()
}

#[test]
fn instance_ids_match_with_high_confidence_and_a_clean_host_has_no_flags() {
    let iac = data(vec![instance("aws_instance.web", "i-1", "ami-good")]);
    let c = correlate(&[host("i-1")], &iac, NOW, DEFAULT_GHOST_AFTER);
    let link = c.hosts["i-1"].iac.clone().unwrap();
    assert_eq!(link.address, "aws_instance.web");
    assert_eq!(link.confidence, "high");
    assert_eq!(link.correlation_path, "instance_id i-1 = aws_instance.web");
    assert!(flags(&c, "i-1").is_empty());
    assert_eq!(c.coverage.correlated_hosts, 1);
    assert_eq!(c.coverage.covered_instances, 1);
    assert!(c.ghosts.is_empty());
}

#[test]
fn every_flag_has_its_case() {
    let mut wrong_ami = host("i-2");
    wrong_ami.image_id = "ami-rogue".into();
    let unmanaged = host("i-3");
    let mut tampered = host("i-4");
    tampered.baseline_id = "bl-other".into();
    tampered.user_data_sha1 = "aaaa".into();
    let mut twin_a = host("i-5");
    twin_a.machine_id_hash = "same".into();
    let mut twin_b = host("i-6");
    twin_b.machine_id_hash = "same".into();
    let mut silent = host("i-7");
    silent.last_seen = NOW - 60 * MIN;
    let mut with_userdata = instance("aws_instance.t", "i-4", "ami-good");
    with_userdata.1.user_data_sha1 = "BBBB".into();
    let iac = data(vec![
        instance("aws_instance.wrong", "i-2", "ami-good"),
        with_userdata,
        instance("aws_instance.twin[0]", "i-5", "ami-good"),
        instance("aws_instance.twin[1]", "i-6", "ami-good"),
        instance("aws_instance.silent", "i-7", "ami-good"),
        instance("aws_instance.nobody", "i-9", "ami-good"),
    ]);
    let hosts = [wrong_ami, unmanaged, tampered, twin_a, twin_b, silent];
    let c = correlate(&hosts, &iac, NOW, DEFAULT_GHOST_AFTER);
    assert_eq!(
        flags(&c, "i-2"),
        ["image_differs_from_state", "image_not_in_catalog"]
    );
    let reason = &c.hosts["i-2"].flags[0].reason;
    assert!(
        reason.contains("serial 7")
            && reason.contains(&rfc3339(NOW - 3 * 60 * MIN))
            && reason.contains("stale"),
        "{reason}"
    );
    assert_eq!(flags(&c, "i-3"), ["unmanaged"]);
    assert_eq!(flags(&c, "i-4"), ["userdata_mismatch", "baseline_mismatch"]);
    assert_eq!(flags(&c, "i-5"), ["duplicate_machine_id"]);
    assert!(c.hosts["i-5"].flags[0].reason.contains("i-6"));
    assert_eq!(flags(&c, "i-7"), ["ghost"]);
    let ghosts: Vec<&str> = c.ghosts.iter().map(|g| g.address.as_str()).collect();
    assert_eq!(ghosts, ["aws_instance.silent", "aws_instance.nobody"]);
    assert_eq!(
        c.coverage,
        v1::Coverage {
            reporting_hosts: 6,
            correlated_hosts: 5,
            state_instances: 6,
            covered_instances: 4,
        }
    );
    let counts = c.flag_counts();
    assert_eq!(counts["ghost"], 3, "one silent host, two ghost instances");
    assert_eq!(counts["duplicate_machine_id"], 2);

    // Listings show what the verdict says, from the columns encoded ahead.
    let matching = Matching::new(&hosts, iac);
    for h in &hosts {
        let listed = matching
            .listed(&h.host, h.last_seen, NOW, DEFAULT_GHOST_AFTER)
            .unwrap();
        let mut shown = v1::Host::decode(&listed.encoded[..]).unwrap();
        if listed.ghost {
            shown.flags.insert(0, flag::GHOST.to_owned());
        }
        let verdict = &c.hosts[&h.host];
        assert_eq!(
            (shown.flags, shown.iac),
            (verdict.flag_names(), verdict.iac.clone())
        );
    }
    assert!(
        matching
            .listed("i-unknown", NOW, NOW, DEFAULT_GHOST_AFTER)
            .is_none()
    );
    assert!(matching.lists_any());
}

#[test]
fn a_fleet_without_iac_lists_nothing_of_it_and_one_host_in_state_lists_something() {
    let hosts = [host("i-1"), host("i-2")];
    let none = Matching::new(&hosts, IacData::default());
    assert!(
        !none.lists_any(),
        "no state, no images: the listing skips the lookups"
    );
    for h in &hosts {
        let listed = none
            .listed(&h.host, NOW - 1000 * MIN, NOW, DEFAULT_GHOST_AFTER)
            .unwrap();
        assert!(listed.encoded.is_empty() && !listed.ghost);
    }

    // A clean host matched by its instance shows its IaC link.
    let one = Matching::new(
        &hosts,
        data(vec![instance("aws_instance.web", "i-1", "ami-good")]),
    );
    assert!(one.lists_any());
}

#[test]
fn autoscaled_hosts_match_their_group_and_are_checked_against_its_template() {
    let group = (
        "prod".to_owned(),
        Resource {
            address: "module.web.aws_autoscaling_group.web".into(),
            role: role::GROUP.into(),
            key: "web-asg".into(),
            template: "lt-1".into(),
            ..Default::default()
        },
    );
    let template = (
        "prod".to_owned(),
        Resource {
            address: "module.web.aws_launch_template.web".into(),
            role: role::TEMPLATE.into(),
            key: "lt-1".into(),
            name: "web".into(),
            image_id: "ami-new".into(),
            ..Default::default()
        },
    );
    let mut member = host("i-a");
    member.tags.insert(ASG_TAG.into(), "web-asg".into());
    member
        .tags
        .insert(LAUNCH_TEMPLATE_TAG.into(), "lt-1".into());
    let c = correlate(
        &[member],
        &data(vec![group, template]),
        NOW,
        DEFAULT_GHOST_AFTER,
    );
    let link = c.hosts["i-a"].iac.clone().unwrap();
    assert_eq!(link.address, "module.web.aws_autoscaling_group.web");
    assert_eq!(link.confidence, "high");
    assert!(link.correlation_path.contains("launch template"));
    assert_eq!(flags(&c, "i-a"), ["image_differs_from_state"]);
    // Groups are not instances: no ghosts, nothing to cover.
    assert!(c.ghosts.is_empty());
    assert_eq!(c.coverage.state_instances, 0);
}

#[test]
fn an_address_alone_is_a_candidate_never_an_owner() {
    let mut on_prem = host("machine-id:abc");
    on_prem.instance_id.clear();
    on_prem.private_ip = "10.0.0.5".into();
    on_prem.image_id.clear();
    let mut vm = instance("aws_instance.legacy", "i-x", "ami-other");
    vm.1.private_ip = "10.0.0.5".into();
    let c = correlate(&[on_prem], &data(vec![vm]), NOW, DEFAULT_GHOST_AFTER);
    let verdict = &c.hosts["machine-id:abc"];
    assert_eq!(verdict.iac, None);
    assert_eq!(flags(&c, "machine-id:abc"), ["unmanaged"]);
    assert_eq!(verdict.candidates.len(), 1);
    assert_eq!(verdict.candidates[0].address, "aws_instance.legacy");
    assert_eq!(verdict.candidates[0].confidence, "candidate");
    let reason = &verdict.flags[0].reason;
    assert!(
        reason.contains("possible match: aws_instance.legacy in state prod"),
        "{reason}"
    );
    assert_eq!(c.coverage.correlated_hosts, 0);
    // The instance is still nobody's: a ghost.
    assert_eq!(c.ghosts.len(), 1);
    assert_eq!(c.coverage.covered_instances, 0);
}

fn azure_vm(address: &str, vm_id: &str, ip: &str) -> (String, Resource) {
    (
        "azure".into(),
        Resource {
            address: address.into(),
            resource_type: "azurerm_linux_virtual_machine".into(),
            role: role::INSTANCE.into(),
            key: vm_id.into(),
            private_ip: ip.into(),
            image_id: "/subscriptions/S/resourceGroups/rg/providers/Microsoft.Compute/images/web-1"
                .into(),
            ..Default::default()
        },
    )
}

fn state(name: &str, imported_at: Millis) -> StateInfo {
    StateInfo {
        name: name.into(),
        kind: "state".into(),
        serial: Some(1),
        imported_at,
        ..Default::default()
    }
}

/// The first case: an AWS host whose private IP equals an Azure VM's (10.0.0.4, the
/// first address of Azure's default subnet), while another host holds that VM by its id.
#[test]
fn an_address_never_claims_a_resource_of_another_cloud_or_one_held_by_id() {
    let mut aws = host("i-aws");
    aws.cloud = "aws".into();
    aws.private_ip = "10.0.0.4".into();
    let mut azure = host("3f2a9c1e-0000-4000-8000-000000000001");
    azure.cloud = "azure".into();
    azure.image_id =
        "/subscriptions/s/resourcegroups/RG/providers/microsoft.compute/images/web-1".into();
    azure.private_ip = "10.0.0.4".into();
    // A third host off the clouds shares the address too.
    let mut on_prem = host("machine-id:x");
    on_prem.instance_id.clear();
    on_prem.private_ip = "10.0.0.4".into();
    let iac = IacData {
        states: vec![state("azure", NOW - MIN)],
        resources: vec![azure_vm(
            "azurerm_linux_virtual_machine.web",
            "3F2A9C1E-0000-4000-8000-000000000001",
            "10.0.0.4",
        )],
        images: vec![],
    };
    let hosts = [aws, azure, on_prem];
    let c = correlate(&hosts, &iac, NOW, DEFAULT_GHOST_AFTER);
    let owner = c.hosts["3f2a9c1e-0000-4000-8000-000000000001"]
        .iac
        .clone()
        .unwrap();
    assert_eq!(
        (owner.address.as_str(), owner.confidence.as_str()),
        ("azurerm_linux_virtual_machine.web", "high")
    );
    for other in ["i-aws", "machine-id:x"] {
        let v = &c.hosts[other];
        assert_eq!(v.iac, None, "{other}");
        assert!(v.candidates.is_empty(), "{other}: {:?}", v.candidates);
        assert_eq!(v.flag_names(), ["unmanaged"], "{other}");
    }
    assert_eq!(c.coverage.correlated_hosts, 1);
    assert_eq!(c.coverage.covered_instances, 1);
    assert!(c.ghosts.is_empty());

    // Nobody holds it: still no candidate for the AWS host, one for the host off the clouds.
    let c = correlate(
        &[hosts[0].clone(), hosts[2].clone()],
        &iac,
        NOW,
        DEFAULT_GHOST_AFTER,
    );
    assert!(c.hosts["i-aws"].candidates.is_empty());
    assert_eq!(c.hosts["machine-id:x"].candidates.len(), 1);
    assert_eq!(c.ghosts.len(), 1, "a candidate does not cover the VM");
}

/// An on-premises host in AWS's default VPC range (172.31.0.0/16) does not take an AWS
/// instance, and a host with an instance id of the same cloud is no candidate for another id.
#[test]
fn an_address_does_not_override_an_id_that_contradicts_it() {
    let mut other = host("i-other");
    other.cloud = "aws".into();
    other.private_ip = "172.31.5.5".into();
    let mut vm = instance("aws_instance.web", "i-web", "ami-good");
    vm.1.private_ip = "172.31.5.5".into();
    let c = correlate(&[other], &data(vec![vm]), NOW, DEFAULT_GHOST_AFTER);
    assert!(c.hosts["i-other"].candidates.is_empty());
    assert_eq!(flags(&c, "i-other"), ["unmanaged"]);
    assert_eq!(c.ghosts.len(), 1);
}

/// One state imported twice (under `--name` and under its lineage), or two states that
/// overlap: one instance, with both addresses, and no ghost for the copy.
#[test]
fn one_instance_in_two_states_is_one_instance_with_both_addresses() {
    let mut in_a = instance("aws_instance.web", "i-1", "ami-good");
    in_a.0 = "prod-web".into();
    let mut in_b = instance("module.web.aws_instance.this", "I-1", "ami-good");
    in_b.0 = "0b8c1f0e-lineage".into();
    let iac = IacData {
        states: vec![
            state("prod-web", NOW - 2 * MIN),
            state("0b8c1f0e-lineage", NOW - MIN),
        ],
        resources: vec![in_a, in_b],
        images: vec![],
    };
    let c = correlate(&[host("i-1")], &iac, NOW, DEFAULT_GHOST_AFTER);
    let link = c.hosts["i-1"].iac.clone().unwrap();
    // The newest import first, the other listed.
    assert_eq!(
        (link.state.as_str(), link.address.as_str()),
        ("0b8c1f0e-lineage", "module.web.aws_instance.this")
    );
    assert_eq!(
        link.also,
        [v1::IacPlace {
            state: "prod-web".into(),
            address: "aws_instance.web".into()
        }]
    );
    assert!(c.ghosts.is_empty(), "{:?}", c.ghosts);
    assert_eq!(
        (c.coverage.state_instances, c.coverage.covered_instances),
        (1, 1)
    );
    // Nobody reports: one ghost, naming both places.
    let c = correlate(&[], &iac, NOW, DEFAULT_GHOST_AFTER);
    assert_eq!(c.ghosts.len(), 1);
    assert_eq!(c.ghosts[0].also.len(), 1);
    assert!(
        c.ghosts[0]
            .reason
            .contains("also aws_instance.web in state prod-web"),
        "{}",
        c.ghosts[0].reason
    );
}

#[test]
fn launch_configurations_are_group_templates() {
    let group = (
        "prod".to_owned(),
        Resource {
            address: "aws_autoscaling_group.old".into(),
            resource_type: "aws_autoscaling_group".into(),
            role: role::GROUP.into(),
            key: "old-asg".into(),
            template: "old-lc-2024".into(),
            ..Default::default()
        },
    );
    let lc = (
        "prod".to_owned(),
        Resource {
            address: "aws_launch_configuration.old".into(),
            resource_type: "aws_launch_configuration".into(),
            role: role::TEMPLATE.into(),
            key: "old-lc-2024".into(),
            name: "old-lc-2024".into(),
            image_id: "ami-lc".into(),
            user_data_sha1: "cccc".into(),
            ..Default::default()
        },
    );
    let mut member = host("i-m");
    member.tags.insert(ASG_TAG.into(), "old-asg".into());
    member.user_data_sha1 = "dddd".into();
    let c = correlate(&[member], &data(vec![group, lc]), NOW, DEFAULT_GHOST_AFTER);
    let link = c.hosts["i-m"].iac.clone().unwrap();
    assert!(
        link.correlation_path
            .contains("launch configuration aws_launch_configuration.old"),
        "{}",
        link.correlation_path
    );
    assert_eq!(
        flags(&c, "i-m"),
        ["image_differs_from_state", "userdata_mismatch"]
    );
}

/// Every image flag on GCE and Azure, with each cloud's spelling of image ids.
#[test]
fn image_flags_work_on_gce_and_azure() {
    let gce_state = (
        "gcp".to_owned(),
        Resource {
            address: "google_compute_instance.web".into(),
            resource_type: "google_compute_instance".into(),
            role: role::INSTANCE.into(),
            key: "4567890123456789012".into(),
            image_id: "https://www.googleapis.com/compute/v1/projects/acme/global/images/web-1"
                .into(),
            status: "RUNNING".into(),
            ..Default::default()
        },
    );
    let mut gce = host("4567890123456789012");
    gce.cloud = "gce".into();
    gce.region = "europe-west1".into();
    gce.image_id = "projects/acme/global/images/web-2".into();
    let mut az = host("3f2a9c1e-0000-4000-8000-000000000001");
    az.cloud = "azure".into();
    az.region = "westeurope".into();
    az.image_id =
        "/subscriptions/s/resourceGroups/RG/providers/Microsoft.Compute/images/web-1".into();
    az.baseline_id = "bl-tampered".into();
    let iac = IacData {
        states: vec![state("gcp", NOW - MIN), state("azure", NOW - MIN)],
        resources: vec![
            gce_state,
            azure_vm(
                "azurerm_linux_virtual_machine.web",
                "3f2a9c1e-0000-4000-8000-000000000001",
                "10.0.0.4",
            ),
        ],
        images: vec![
            Image {
                image_id: "web-2".into(),
                build: "gce-web".into(),
                builder_type: "googlecompute".into(),
                baseline_id: "bl-1".into(),
                ..Default::default()
            },
            Image {
                image_id:
                    "/subscriptions/S/resourceGroups/rg/providers/Microsoft.Compute/images/web-1"
                        .into(),
                build: "azure-web".into(),
                builder_type: "azure-arm".into(),
                baseline_id: "bl-1".into(),
                ..Default::default()
            },
        ],
    };
    let c = correlate(&[gce.clone(), az.clone()], &iac, NOW, DEFAULT_GHOST_AFTER);
    // GCE: the state's self link names web-1, the host runs web-2 (in the catalog).
    assert_eq!(flags(&c, &gce.host), ["image_differs_from_state"]);
    assert_eq!(c.hosts[&gce.host].image_build.as_deref(), Some("gce-web"));
    // Azure: the same image in another letter case; the catalog knows it; the baseline differs.
    assert_eq!(flags(&c, &az.host), ["baseline_mismatch"]);
    assert_eq!(c.hosts[&az.host].image_build.as_deref(), Some("azure-web"));
    // Images outside the catalog, on both clouds.
    gce.image_id = "projects/acme/global/images/rogue".into();
    az.image_id = "Canonical:ubuntu-24_04-lts:server:24.04.202510010".into();
    let c = correlate(&[gce.clone(), az.clone()], &iac, NOW, DEFAULT_GHOST_AFTER);
    assert_eq!(
        flags(&c, &gce.host),
        ["image_differs_from_state", "image_not_in_catalog"]
    );
    assert_eq!(
        flags(&c, &az.host),
        ["image_differs_from_state", "image_not_in_catalog"]
    );
    assert!(
        c.hosts[&az.host].flags[1]
            .reason
            .contains("(2 images known)"),
        "{}",
        c.hosts[&az.host].flags[1].reason
    );
}

/// An Azure VM's state records no power state: a ghost is told so, not said to run.
#[test]
fn a_vm_without_a_recorded_power_state_is_not_said_to_run() {
    let iac = IacData {
        states: vec![state("azure", NOW - MIN)],
        resources: vec![azure_vm("azurerm_linux_virtual_machine.web", "vm-1", "")],
        images: vec![],
    };
    let c = correlate(&[], &iac, NOW, DEFAULT_GHOST_AFTER);
    assert_eq!(c.ghosts.len(), 1);
    let reason = &c.ghosts[0].reason;
    assert!(!reason.contains("runs"), "{reason}");
    assert!(reason.contains("records no power state"), "{reason}");
    let mut silent = host("vm-1");
    silent.cloud = "azure".into();
    silent.last_seen = NOW - 60 * MIN;
    let c = correlate(&[silent], &iac, NOW, DEFAULT_GHOST_AFTER);
    assert!(
        !c.ghosts[0].reason.contains("runs"),
        "{}",
        c.ghosts[0].reason
    );
    assert!(
        c.hosts["vm-1"].flags[0]
            .reason
            .contains("records no power state"),
        "{}",
        c.hosts["vm-1"].flags[0].reason
    );
}

/// A group records no status by nature: its silent member's ghost reason does not blame the
/// state for it.
#[test]
fn a_silent_group_member_is_a_ghost_without_a_power_state_note() {
    let group = (
        "prod".to_owned(),
        Resource {
            address: "aws_autoscaling_group.web".into(),
            resource_type: "aws_autoscaling_group".into(),
            role: role::GROUP.into(),
            key: "web-asg".into(),
            ..Default::default()
        },
    );
    let mut member = host("i-a");
    member.tags.insert(ASG_TAG.into(), "web-asg".into());
    member.last_seen = NOW - 60 * MIN;
    let c = correlate(&[member], &data(vec![group]), NOW, DEFAULT_GHOST_AFTER);
    let ghost = &c.hosts["i-a"].flags[0];
    assert_eq!(ghost.flag, "ghost");
    assert!(!ghost.reason.contains("power state"), "{}", ghost.reason);
}

/// `terraform show -json` carries no serial: reasons say so instead of leaving it out.
#[test]
fn a_show_json_state_is_said_to_have_no_serial() {
    let mut iac = data(vec![instance("aws_instance.web", "i-1", "ami-old")]);
    iac.states[0].serial = None;
    iac.states[0].kind = "show_json".into();
    let c = correlate(&[host("i-1")], &iac, NOW, DEFAULT_GHOST_AFTER);
    let reason = &c.hosts["i-1"].flags[0].reason;
    assert!(
        reason.contains("no serial: `terraform show -json`"),
        "{reason}"
    );
}

#[test]
fn without_imports_nothing_is_flagged_and_stopped_instances_are_no_ghosts() {
    let c = correlate(
        &[host("i-1")],
        &IacData::default(),
        NOW,
        DEFAULT_GHOST_AFTER,
    );
    assert!(flags(&c, "i-1").is_empty());
    let mut stopped = instance("aws_instance.off", "i-off", "ami-good");
    stopped.1.status = "stopped".into();
    let c = correlate(&[], &data(vec![stopped]), NOW, DEFAULT_GHOST_AFTER);
    assert!(c.ghosts.is_empty());
    assert_eq!(c.coverage.state_instances, 0);
}

/// Generated fleets and states: the invariants that keep correlation from being confidently
/// wrong, whatever the overlap of ids, addresses, clouds and states.
mod generated {
    use std::collections::HashSet;

    use proptest::prelude::*;
    use proptest::sample::select;

    use super::*;

    const CLOUDS: &[&str] = &["aws", "gce", "azure", ""];
    const TYPES: &[(&str, &str)] = &[
        ("aws", "aws_instance"),
        ("gce", "google_compute_instance"),
        ("azure", "azurerm_linux_virtual_machine"),
    ];
    const IDS: &[&str] = &["id-0", "ID-0", "id-1", "id-2", "id-3", ""];
    const IPS: &[&str] = &["10.0.0.4", "172.31.5.5", "10.0.0.9", ""];
    const STATUSES: &[&str] = &["running", "RUNNING", "stopped", ""];
    const STATES: &[&str] = &["prod", "prod-copy"];

    fn resource() -> impl Strategy<Value = (String, Resource)> {
        (
            select(TYPES),
            select(IDS),
            select(IPS),
            select(STATUSES),
            select(STATES),
        )
            .prop_map(|((_, ty), id, ip, status, state)| {
                (
                    state.to_owned(),
                    Resource {
                        resource_type: ty.into(),
                        role: role::INSTANCE.into(),
                        key: id.into(),
                        private_ip: ip.into(),
                        status: status.into(),
                        ..Default::default()
                    },
                )
            })
    }

    fn fleet_host() -> impl Strategy<Value = HostFacts> {
        (select(CLOUDS), select(IDS), select(IPS), any::<bool>()).prop_map(
            |(cloud, id, ip, silent)| HostFacts {
                cloud: cloud.into(),
                instance_id: id.into(),
                private_ip: ip.into(),
                last_seen: if silent { NOW - 60 * MIN } else { NOW },
                ..Default::default()
            },
        )
    }

    fn key_of(r: &Resource) -> (Option<&'static str>, String) {
        (cloud_of_type(&r.resource_type), r.key.to_ascii_lowercase())
    }

    proptest! {
        #[test]
        fn correlation_is_never_confidently_wrong(
            resources in proptest::collection::vec(resource(), 0..10),
            hosts in proptest::collection::vec(fleet_host(), 0..8),
        ) {
            let resources: Vec<(String, Resource)> = resources
                .into_iter()
                .enumerate()
                .map(|(n, (state, mut r))| {
                    r.address = format!("{}.r{n}", r.resource_type);
                    (state, r)
                })
                .collect();
            let hosts: Vec<HostFacts> = hosts
                .into_iter()
                .enumerate()
                .map(|(n, h)| HostFacts { host: format!("h{n}"), ..h })
                .collect();
            let iac = IacData {
                states: vec![state("prod", NOW - 2 * MIN), state("prod-copy", NOW - MIN)],
                resources,
                images: vec![],
            };
            let c = correlate(&hosts, &iac, NOW, DEFAULT_GHOST_AFTER);
            let find = |state: &str, address: &str| {
                &iac.resources
                    .iter()
                    .find(|(s, r)| s == state && r.address == address)
                    .expect("a link names an imported resource")
                    .1
            };
            // Machines held by id, by whom.
            let mut held: HashSet<(Option<&'static str>, String)> = HashSet::new();
            let mut held_fresh: HashSet<(Option<&'static str>, String)> = HashSet::new();
            for h in &hosts {
                let v = &c.hosts[&h.host];
                if let Some(link) = &v.iac {
                    // Strong evidence only: the ids agree, within one cloud.
                    prop_assert_eq!(&link.confidence, "high");
                    let r = find(&link.state, &link.address);
                    prop_assert!(!h.instance_id.is_empty());
                    prop_assert!(r.key.eq_ignore_ascii_case(&h.instance_id));
                    prop_assert!(same_cloud(host_cloud(&h.cloud), cloud_of_type(&r.resource_type)));
                    prop_assert!(v.candidates.is_empty());
                    prop_assert!(!v.flag_names().contains(&flag::UNMANAGED.to_owned()));
                    held.insert(key_of(r));
                    if h.last_seen == NOW {
                        held_fresh.insert(key_of(r));
                    }
                    for place in &link.also {
                        let other = find(&place.state, &place.address);
                        prop_assert_eq!(key_of(other), key_of(r));
                    }
                } else {
                    prop_assert!(v.flag_names().contains(&flag::UNMANAGED.to_owned()));
                }
            }
            for h in &hosts {
                let v = &c.hosts[&h.host];
                for cand in &v.candidates {
                    prop_assert_eq!(&cand.confidence, "candidate");
                    let r = find(&cand.state, &cand.address);
                    prop_assert!(same_cloud(host_cloud(&h.cloud), cloud_of_type(&r.resource_type)),
                        "a candidate across clouds: {:?} for {:?}", r, h);
                    prop_assert!(r.key.is_empty() || !held.contains(&key_of(r)),
                        "a candidate another host holds by id: {:?}", r);
                    prop_assert!(h.private_ip == r.private_ip && !h.private_ip.is_empty());
                }
            }
            prop_assert_eq!(
                c.coverage.correlated_hosts,
                c.hosts.values().filter(|v| v.iac.is_some()).count() as u64
            );
            prop_assert_eq!(
                c.coverage.state_instances,
                c.coverage.covered_instances + c.ghosts.len() as u64
            );
            // One ghost per machine at most, and never one a fresh host holds by id.
            let mut ghost_keys = HashSet::new();
            for g in &c.ghosts {
                let r = find(&g.state, &g.address);
                if !r.key.is_empty() {
                    prop_assert!(ghost_keys.insert(key_of(r)), "two ghosts for {:?}", key_of(r));
                    prop_assert!(!held_fresh.contains(&key_of(r)));
                }
            }
            // Every keyed instance that is not down is counted exactly once.
            let keyed: HashSet<_> = iac
                .resources
                .iter()
                .filter(|(_, r)| !r.key.is_empty())
                .map(|(_, r)| key_of(r))
                .collect();
            let unkeyed = iac.resources.iter().filter(|(_, r)| r.key.is_empty()).count();
            prop_assert!(c.coverage.state_instances as usize <= keyed.len() + unkeyed);
        }
    }
}
