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
fn addresses_match_with_low_confidence_and_skip_image_checks() {
    let mut on_prem = host("machine-id:abc");
    on_prem.instance_id.clear();
    on_prem.private_ip = "10.0.0.5".into();
    on_prem.image_id.clear();
    let mut vm = instance("aws_instance.legacy", "i-x", "ami-other");
    vm.1.private_ip = "10.0.0.5".into();
    let c = correlate(&[on_prem], &data(vec![vm]), NOW, DEFAULT_GHOST_AFTER);
    let link = c.hosts["machine-id:abc"].iac.clone().unwrap();
    assert_eq!(link.confidence, "low");
    assert!(flags(&c, "machine-id:abc").is_empty());
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
