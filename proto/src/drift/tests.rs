use std::os::unix::ffi::OsStrExt as _;

use proptest::prelude::*;

use super::*;

fn facts(mode: u32) -> Facts {
    Facts {
        kind: FileKind::Regular,
        mode,
        owner: 0,
        group: 4,
        size: 12,
        sha256: Some([0xab; 32]),
        target: None,
        xattrs: vec![
            Xattr {
                name: "security.selinux".into(),
                value: b"system_u:object_r:etc_t:s0".to_vec(),
            },
            Xattr {
                name: "user.bin".into(),
                value: vec![0xff, 0x00],
            },
        ],
    }
}

fn file() -> DriftItem {
    DriftItem::File(Box::new(FileDrift {
        path: PathBuf::from(std::ffi::OsStr::from_bytes(b"/etc/caf\xe9 \\ \"x\"")),
        kind: DriftKind::Modified,
        changed: vec![Attr::Mode, Attr::Content],
        severity: Severity::Security,
        reason: "sudoers".into(),
        expected: Some(facts(0o440)),
        actual: Some(facts(0o4755)),
        diff: Some("--- a\n+++ b\n@@ -1 +1 @@\n-x\n+y\t\"q\"\n".into()),
    }))
}

fn package() -> DriftItem {
    DriftItem::Package(PackageDrift {
        name: "curl".into(),
        arch: "amd64".into(),
        kind: PackageChange::Installed,
        expected_version: None,
        actual_version: Some("8.1".into()),
        source: "dpkg".into(),
    })
}

#[test]
fn json_is_the_shape_check_prints() {
    let json = serde_json::to_string(&file()).unwrap();
    let facts_json = |mode: &str| {
        format!(
            r#"{{"type":"file","mode":"{mode}","owner":0,"group":4,"size":12,"sha256":"{}","xattrs":{{"security.selinux":"system_u:object_r:etc_t:s0","user.bin":"0xff00"}}}}"#,
            "ab".repeat(32)
        )
    };
    let want = format!(
        r#"{{"path":"/etc/caf\\xe9 \\\\ \"x\"","kind":"modified","changed":["mode","content"],"severity":"security","reason":"sudoers","expected":{},"actual":{},"diff":"--- a\n+++ b\n@@ -1 +1 @@\n-x\n+y\t\"q\"\n"}}"#,
        facts_json("0440"),
        facts_json("4755")
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&json).unwrap(),
        serde_json::from_str::<serde_json::Value>(&want).unwrap()
    );
    assert_eq!(
        serde_json::to_string(&package()).unwrap(),
        r#"{"name":"curl","arch":"amd64","kind":"installed","expected_version":null,"actual_version":"8.1","source":"dpkg"}"#
    );
    let added = DriftItem::File(Box::new(FileDrift {
        kind: DriftKind::Added,
        changed: vec![],
        expected: None,
        actual: Some(Facts {
            kind: FileKind::Symlink,
            sha256: None,
            target: Some("/tmp/x".into()),
            xattrs: vec![],
            ..facts(0o777)
        }),
        diff: None,
        ..file_drift()
    }));
    let value: serde_json::Value = serde_json::to_value(&added).unwrap();
    assert_eq!(value["expected"], serde_json::Value::Null);
    assert_eq!(value["diff"], serde_json::Value::Null);
    assert_eq!(
        value["actual"],
        serde_json::json!({"type": "symlink", "mode": "0777", "owner": 0, "group": 4, "size": 12, "target": "/tmp/x"})
    );
}

fn file_drift() -> FileDrift {
    match file() {
        DriftItem::File(f) => *f,
        DriftItem::Package(_) => unreachable!(),
    }
}

#[test]
fn items_and_events_survive_the_wire_and_json() {
    for item in [file(), package()] {
        let back = DriftItem::try_from(item.to_wire()).unwrap();
        assert_eq!(back, item);
        let json = serde_json::to_vec(&item).unwrap();
        assert_eq!(serde_json::from_slice::<DriftItem>(&json).unwrap(), item);
        let event = Event {
            seq: 7,
            transition: Transition::Changed,
            observed_at: "2026-12-03T10:00:00.123Z".into(),
            item: item.clone(),
        };
        assert_eq!(Event::try_from(event.to_wire()).unwrap(), event);
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["event"], "changed");
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), event);
    }
}

/// The canonical encoding is a contract with every collector and every other implementation:
/// this digest changes only with `drift.proto`'s definition.
#[test]
fn the_canonical_digest_is_stable() {
    let item = package();
    assert_eq!(
        hex::encode(item.canonical_encoding()),
        // DriftItem.package (field 2) { name "curl", arch "amd64", kind 1, actual "8.1",
        // source "dpkg" }.
        "121a0a046375726c1205616d6436341801".to_owned() + "2a03382e31" + "3204" + "64706b67"
    );
    assert_eq!(item.digest(), item_digest(&item.canonical_encoding()));
    // Re-encoding what was received gives the same bytes.
    let received = v1::DriftItem::decode(item.canonical_encoding().as_slice()).unwrap();
    assert_eq!(received.encode_to_vec(), item.canonical_encoding());
}

#[test]
fn set_digest_ignores_order_and_counts_every_item() {
    let (a, b) = (file().digest(), package().digest());
    assert_eq!(set_digest([&a, &b]), set_digest([&b, &a]));
    assert_ne!(set_digest([&a]), set_digest([&a, &b]));
    assert_eq!(
        set_digest(std::iter::empty()),
        <[u8; 32]>::from(Sha256::digest(b""))
    );
}

#[test]
fn malformed_wire_items_are_refused_with_a_reason() {
    let wire = |edit: &dyn Fn(&mut v1::FileDrift)| {
        let mut item = file().to_wire();
        if let Some(v1::drift_item::Item::File(f)) = &mut item.item {
            edit(f);
        }
        DriftItem::try_from(item).unwrap_err().to_string()
    };
    type Edit = dyn Fn(&mut v1::FileDrift);
    let cases: [(&Edit, &str); 8] = [
        (&|f| f.path = "etc/x".into(), "not absolute"),
        (&|f| f.path = "/etc/\\q".into(), "not escaped"),
        (&|f| f.severity = 0, "unknown severity 0"),
        (&|f| f.kind = 9, "unknown kind 9"),
        (&|f| f.changed.push(42), "unknown changed attribute 42"),
        (
            &|f| f.expected = None,
            "modified item without expected facts",
        ),
        (
            &|f| f.actual.as_mut().unwrap().sha256 = vec![1, 2],
            "actual.sha256 of 2 bytes",
        ),
        (
            &|f| f.actual.as_mut().unwrap().r#type = 0,
            "unknown file type 0",
        ),
    ];
    for (edit, want) in cases {
        let got = wire(edit);
        assert!(got.contains(want), "{want:?} not in {got:?}");
    }
    assert!(
        DriftItem::try_from(v1::DriftItem { item: None })
            .unwrap_err()
            .to_string()
            .contains("neither")
    );
    let mut event = Event {
        seq: 0,
        transition: Transition::Drifted,
        observed_at: String::new(),
        item: package(),
    }
    .to_wire();
    assert_eq!(Event::try_from(event.clone()), Err(DriftError::SeqZero));
    event.seq = 1;
    event.transition = 0;
    assert_eq!(
        Event::try_from(event),
        Err(DriftError::Unknown("transition", 0))
    );
}

fn arb_facts() -> impl Strategy<Value = Facts> {
    (
        0u32..0o10000,
        any::<u32>(),
        any::<u64>(),
        proptest::option::of(any::<[u8; 32]>()),
        proptest::option::of("[a-z/]{1,12}"),
        proptest::collection::btree_map(
            "[a-z.]{1,8}",
            proptest::collection::vec(any::<u8>(), 0..6),
            0..3,
        ),
    )
        .prop_map(|(mode, owner, size, sha256, target, xattrs)| Facts {
            kind: FileKind::Regular,
            mode,
            owner,
            group: owner / 2,
            size,
            sha256,
            target,
            xattrs: xattrs
                .into_iter()
                .map(|(name, value)| Xattr { name, value })
                .collect(),
        })
}

fn arb_item() -> impl Strategy<Value = DriftItem> {
    let file = (
        proptest::collection::vec(any::<u8>(), 1..20),
        0..3usize,
        proptest::sample::subsequence(Attr::ALL.to_vec(), 0..4),
        0..3usize,
        ".{0,20}",
        arb_facts(),
        arb_facts(),
        proptest::option::of(".{0,40}"),
    )
        .prop_map(|(path, kind, changed, severity, reason, e, a, diff)| {
            let mut bytes = b"/".to_vec();
            bytes.extend(path);
            let kind = [DriftKind::Added, DriftKind::Removed, DriftKind::Modified][kind];
            DriftItem::File(Box::new(FileDrift {
                path: PathBuf::from(std::ffi::OsStr::from_bytes(&bytes)),
                kind,
                changed,
                severity: Severity::ALL[severity],
                reason,
                expected: (kind != DriftKind::Added).then_some(e),
                actual: (kind != DriftKind::Removed).then_some(a),
                diff,
            }))
        });
    let package = (
        "[a-z0-9+.-]{1,12}",
        "[a-z0-9]{0,6}",
        0..3usize,
        proptest::option::of("[0-9.:~-]{1,8}"),
        proptest::option::of("[0-9.:~-]{1,8}"),
    )
        .prop_map(|(name, arch, kind, expected_version, actual_version)| {
            DriftItem::Package(PackageDrift {
                name,
                arch,
                kind: [
                    PackageChange::Installed,
                    PackageChange::Removed,
                    PackageChange::VersionChanged,
                ][kind],
                expected_version,
                actual_version,
                source: "rpm".into(),
            })
        });
    prop_oneof![file, package]
}

proptest! {
    #[test]
    fn every_item_round_trips_and_digests_alike_after_the_wire(item in arb_item()) {
        let wire = item.to_wire();
        let bytes = wire.encode_to_vec();
        let received = v1::DriftItem::decode(bytes.as_slice()).unwrap();
        prop_assert_eq!(received.encode_to_vec(), bytes.clone());
        prop_assert_eq!(DriftItem::try_from(received).unwrap(), item.clone());
        prop_assert_eq!(item_digest(&bytes), item.digest());
        let json = serde_json::to_vec(&item).unwrap();
        let back: DriftItem = serde_json::from_slice(&json).unwrap();
        // JSON loses nothing but a printable extended attribute's trailing NUL, which these
        // values do not have once they are printable: compare through the wire form.
        if let (DriftItem::File(a), DriftItem::File(b)) = (&back, &item) {
            prop_assert_eq!(&a.path, &b.path);
            prop_assert_eq!(&a.diff, &b.diff);
        } else {
            prop_assert_eq!(&back, &item);
        }
    }
}
