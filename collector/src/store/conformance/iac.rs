//! Cases: IaC imports (states and manifests) and host identities for correlation.

use super::*;

fn state(name: &str, lineage: &str, serial: u64, addresses: &[&str]) -> v1::ImportStateRequest {
    v1::ImportStateRequest {
        name: name.into(),
        source: format!("{name}.tfstate"),
        kind: "state".into(),
        lineage: lineage.into(),
        serial: Some(serial),
        terraform_version: "1.9.0".into(),
        resources: addresses
            .iter()
            .enumerate()
            .map(|(i, a)| v1::IacResource {
                address: (*a).into(),
                r#type: "aws_instance".into(),
                role: "instance".into(),
                key: format!("i-{i}"),
                image_id: "ami-1".into(),
                status: "running".into(),
                ..Default::default()
            })
            .collect(),
        ignored_instances: 3,
    }
}

/// Imports as the server does, from a request as received.
fn import_state(
    store: &dyn Store,
    r: &v1::ImportStateRequest,
    now: Millis,
) -> Result<super::super::ImportOutcome> {
    store.import_state(&crate::iac::state_import(r.clone()), now)
}

fn import_manifest(
    store: &dyn Store,
    r: &v1::ImportManifestRequest,
    now: Millis,
) -> Result<super::super::ImportOutcome> {
    store.import_manifest(&crate::iac::manifest_import(r.clone()).0, now)
}

fn addresses(store: &dyn Store) -> Vec<(String, String)> {
    store
        .iac()
        .unwrap()
        .resources
        .into_iter()
        .map(|(s, r)| (s, r.address))
        .collect()
}

pub fn a_state_import_replaces_the_previous_one_and_refuses_older_serials(store: &dyn Store) {
    let first = state("prod", "L1", 5, &["aws_instance.a", "aws_instance.b"]);
    let outcome = import_state(store, &first, T0).unwrap();
    assert_eq!((outcome.stored, outcome.replaced), (2, 0));
    let second = state("prod", "L1", 6, &["aws_instance.c"]);
    let outcome = import_state(store, &second, T0 + 1).unwrap();
    assert_eq!((outcome.stored, outcome.replaced), (1, 2));
    assert_eq!(addresses(store), [("prod".into(), "aws_instance.c".into())]);
    let data = store.iac().unwrap();
    assert_eq!(data.states.len(), 1);
    assert_eq!(data.states[0].serial, Some(6));
    assert_eq!(data.states[0].resources, 1);
    assert_eq!(data.states[0].imported_at, T0 + 1);
    assert_eq!(
        data.resources[0].1,
        crate::iac::state_import(second.clone()).resources[0]
    );

    // An older copy of the same lineage, under any name, is refused and changes nothing.
    for name in ["prod", "other"] {
        let old = state(name, "L1", 5, &["aws_instance.z"]);
        match import_state(store, &old, T0 + 2) {
            Err(StoreError::Rejected(m)) => {
                assert!(m.contains("serial 6") && m.contains("serial 5"), "{m}")
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }
    assert_eq!(addresses(store), [("prod".into(), "aws_instance.c".into())]);
    // A serial past i64 is refused, not wrapped into a negative that every state is newer than.
    let huge = state("prod", "L1", 1 << 63, &["aws_instance.z"]);
    match import_state(store, &huge, T0 + 2) {
        Err(StoreError::Rejected(m)) => assert!(m.contains("out of range"), "{m}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(addresses(store), [("prod".into(), "aws_instance.c".into())]);
    // The same serial again is fine (a re-import), and so is another lineage.
    import_state(store, &state("prod", "L1", 6, &["aws_instance.c"]), T0 + 3).unwrap();
    import_state(
        store,
        &state("staging", "L2", 1, &["aws_instance.s"]),
        T0 + 3,
    )
    .unwrap();
    assert_eq!(addresses(store).len(), 2);
}

/// Issue 15: Pulumi stacks and CloudFormation stacks are states of their own kinds, without a
/// serial, read back as imported.
pub fn pulumi_and_cloudformation_stacks_are_stored_and_read_back(store: &dyn Store) {
    let stack = |name: &str, kind: &str, address: &str, ty: &str| v1::ImportStateRequest {
        name: name.into(),
        source: format!("{name}.json"),
        kind: kind.into(),
        lineage: String::new(),
        serial: None,
        terraform_version: if kind == "pulumi" { "v3.117.0" } else { "" }.into(),
        resources: vec![v1::IacResource {
            address: address.into(),
            r#type: ty.into(),
            role: "instance".into(),
            key: format!("i-{kind}"),
            image_id: "ami-1".into(),
            ..Default::default()
        }],
        ignored_instances: 0,
    };
    let pulumi = stack(
        "web/dev",
        "pulumi",
        "urn:pulumi:dev::web::aws:ec2/instance:Instance::web",
        "aws:ec2/instance:Instance",
    );
    let cfn = stack("web", "cloudformation", "WebA", "AWS::EC2::Instance");
    for (i, r) in [&pulumi, &cfn].into_iter().enumerate() {
        let outcome = import_state(store, r, T0 + i as i64).unwrap();
        assert_eq!((outcome.stored, outcome.replaced), (1, 0));
    }
    // Imported again: replaced, never refused as stale (there is no serial to compare).
    let outcome = import_state(store, &pulumi, T0 + 5).unwrap();
    assert_eq!((outcome.stored, outcome.replaced), (1, 1));
    let data = store.iac().unwrap();
    let kinds: Vec<(&str, &str, Option<u64>)> = data
        .states
        .iter()
        .map(|s| (s.name.as_str(), s.kind.as_str(), s.serial))
        .collect();
    assert_eq!(
        kinds,
        [("web", "cloudformation", None), ("web/dev", "pulumi", None)]
    );
    for (state, r) in [("web/dev", &pulumi), ("web", &cfn)] {
        let (_, stored) = data
            .resources
            .iter()
            .find(|(s, _)| s == state)
            .unwrap_or_else(|| panic!("{state}"));
        assert_eq!(*stored, crate::iac::state_import(r.clone()).resources[0]);
    }
}

pub fn a_failed_state_import_leaves_the_previous_one_whole(store: &dyn Store) {
    import_state(store, &state("prod", "L1", 1, &["aws_instance.a"]), T0).unwrap();
    // Two resources with one address: the second insert fails after the first succeeded.
    let broken = state("prod", "L1", 2, &["aws_instance.b", "aws_instance.b"]);
    assert!(matches!(
        import_state(store, &broken, T0 + 1),
        Err(StoreError::Database(_))
    ));
    assert_eq!(addresses(store), [("prod".into(), "aws_instance.a".into())]);
    assert_eq!(store.iac().unwrap().states[0].serial, Some(1));
}

pub fn manifest_imports_add_and_update_images(store: &dyn Store) {
    let image = |region: &str, id: &str, baseline: &str| v1::PackerImage {
        region: region.into(),
        image_id: id.into(),
        build: "web".into(),
        builder_type: "amazon-ebs".into(),
        run_uuid: "r1".into(),
        build_time: 1_700_000_000,
        baseline_id: baseline.into(),
    };
    let first = v1::ImportManifestRequest {
        source: "m.json".into(),
        images: vec![
            image("eu-west-1", "ami-1", "bl-1"),
            image("us-east-1", "ami-2", ""),
        ],
    };
    let outcome = import_manifest(store, &first, T0).unwrap();
    assert_eq!((outcome.stored, outcome.replaced), (2, 0));
    // Importing again updates; an empty baseline id does not erase a known one.
    let again = v1::ImportManifestRequest {
        source: "m.json".into(),
        images: vec![
            image("eu-west-1", "ami-1", ""),
            image("us-east-1", "ami-2", "bl-2"),
        ],
    };
    let outcome = import_manifest(store, &again, T0).unwrap();
    assert_eq!((outcome.stored, outcome.replaced), (2, 2));
    let images = store.iac().unwrap().images;
    let expected = v1::ImportManifestRequest {
        images: vec![
            image("eu-west-1", "ami-1", "bl-1"),
            image("us-east-1", "ami-2", "bl-2"),
        ],
        ..Default::default()
    };
    assert_eq!(images, crate::iac::manifest_import(expected).0.images);
}

pub fn host_facts_carry_the_hello_identity_and_the_generation_moves(store: &dyn Store) {
    let before = store.generation();
    let mut hello = info("i-1", "web-1");
    hello.identity.private_ip = "10.0.0.1".into();
    hello.identity.machine_id_hash = "mh".into();
    hello.identity.user_data_sha1 = "ud".into();
    hello.identity.region = "eu-west-1".into();
    hello.identity.cloud = "aws".into();
    hello
        .identity
        .tags
        .insert("aws:autoscaling:groupName".into(), "web-asg".into());
    store.hello(&hello, T0).unwrap();
    assert_ne!(
        store.generation(),
        before,
        "a hello may change what correlation reads"
    );
    let facts = store.host_facts().unwrap();
    assert_eq!(facts.len(), 1);
    let f = &facts[0];
    assert_eq!(
        (f.host.as_str(), f.hostname.as_str(), f.instance_id.as_str()),
        ("i-1", "web-1", "i-1")
    );
    assert_eq!(f.image_id, "ami-0abc");
    assert_eq!(f.private_ip, "10.0.0.1");
    assert_eq!(f.machine_id_hash, "mh");
    assert_eq!(f.user_data_sha1, "ud");
    assert_eq!(f.region, "eu-west-1");
    assert_eq!(f.cloud, "aws", "correlation never matches across clouds");
    assert_eq!(f.tags["aws:autoscaling:groupName"], "web-asg");
    assert_eq!(f.baseline_id, "b1");
    assert_eq!(f.last_seen, T0);
    store
        .apply(&[Write::Seen {
            host: "i-1".into(),
            at: T0 + 5,
        }])
        .unwrap();
    assert_eq!(store.last_seen().unwrap(), [("i-1".to_owned(), T0 + 5)]);
}
