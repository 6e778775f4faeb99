//! Enrollment: join tokens, identities bound to keys, certificates and their revocation.

use super::super::{EnrollRefusal, Enrollment, Issued, JoinToken, NewJoinToken, Store, StoreError};
use super::T0;

fn join_token(name: &str, secret: u8, uses: u32, image: Option<&str>) -> NewJoinToken {
    NewJoinToken {
        name: name.into(),
        sha256: [secret; 32],
        created_at: T0,
        expires_at: T0 + 60_000,
        uses,
        image: image.map(str::to_owned),
        created_by: "ana (admin)".into(),
    }
}

fn issued(host: &str, key: u8, serial: &str, at: i64) -> Issued {
    Issued {
        host: host.into(),
        key_sha256: [key; 32],
        serial: serial.into(),
        issued_at: at,
        not_after: at + 3_600_000,
    }
}

fn enroll(
    store: &dyn Store,
    secret: u8,
    image: &str,
    cert: &Issued,
) -> Result<String, EnrollRefusal> {
    store
        .enroll(&Enrollment {
            token_sha256: &[secret; 32],
            image_id: image,
            image_name: "",
            certificate: cert,
        })
        .unwrap()
}

pub fn a_join_token_enrolls_as_many_hosts_as_it_allows_until_it_expires(store: &dyn Store) {
    store
        .create_join_token(&join_token("fleet", 1, 2, None))
        .unwrap();
    assert!(matches!(
        store.create_join_token(&join_token("fleet", 9, 1, None)),
        Err(StoreError::Rejected(m)) if m.contains("\"fleet\"")
    ));
    assert_eq!(
        enroll(store, 1, "", &issued("i-1", 1, "01", T0)),
        Ok("fleet".into())
    );
    assert_eq!(
        enroll(store, 1, "ami-1", &issued("i-2", 2, "02", T0)),
        Ok("fleet".into())
    );
    assert_eq!(
        enroll(store, 1, "", &issued("i-3", 3, "03", T0)),
        Err(EnrollRefusal::TokenUsedUp {
            name: "fleet".into(),
            uses: 2
        })
    );
    assert_eq!(
        enroll(store, 7, "", &issued("i-3", 3, "03", T0)),
        Err(EnrollRefusal::UnknownToken)
    );
    store
        .create_join_token(&join_token("late", 2, 5, None))
        .unwrap();
    assert_eq!(
        enroll(store, 2, "", &issued("i-3", 3, "03", T0 + 60_000)),
        Err(EnrollRefusal::TokenExpired("late".into()))
    );
    assert!(store.revoke_join_token("late", T0 + 1).unwrap());
    assert!(!store.revoke_join_token("late", T0 + 1).unwrap());
    assert_eq!(
        enroll(store, 2, "", &issued("i-3", 3, "03", T0 + 2)),
        Err(EnrollRefusal::TokenRevoked("late".into()))
    );
    let tokens = store.join_tokens().unwrap();
    assert_eq!(
        tokens[0],
        JoinToken {
            name: "fleet".into(),
            created_at: T0,
            expires_at: T0 + 60_000,
            uses: 2,
            used: 2,
            image: None,
            created_by: "ana (admin)".into(),
            revoked_at: None,
        }
    );
    assert_eq!(tokens[1].revoked_at, Some(T0 + 1));
    // Nothing refused was recorded.
    let hosts: Vec<String> = store
        .enrolled()
        .unwrap()
        .into_iter()
        .map(|h| h.host)
        .collect();
    assert_eq!(hosts, ["i-1", "i-2"]);
    assert_eq!(store.certificate("03").unwrap(), None);
}

pub fn a_token_for_an_image_enrolls_only_hosts_of_that_image(store: &dyn Store) {
    store
        .create_join_token(&join_token("web", 1, 5, Some("ami-web")))
        .unwrap();
    assert_eq!(
        enroll(store, 1, "ami-db", &issued("i-1", 1, "01", T0)),
        Err(EnrollRefusal::WrongImage {
            name: "web".into(),
            image: "ami-web".into(),
            reported: "ami-db".into()
        })
    );
    assert!(matches!(
        enroll(store, 1, "", &issued("i-1", 1, "01", T0)),
        Err(EnrollRefusal::WrongImage { .. })
    ));
    assert_eq!(
        enroll(store, 1, "ami-web", &issued("i-1", 1, "01", T0)),
        Ok("web".into())
    );
    // The image name the baseline was baked for counts too.
    let by_name = store
        .enroll(&Enrollment {
            token_sha256: &[1; 32],
            image_id: "ami-0123",
            image_name: "ami-web",
            certificate: &issued("i-2", 2, "02", T0),
        })
        .unwrap();
    assert_eq!(by_name, Ok("web".into()));
    assert_eq!(store.join_tokens().unwrap()[0].used, 2);
}

pub fn an_identity_is_bound_to_its_key_until_revoked(store: &dyn Store) {
    store
        .create_join_token(&join_token("fleet", 1, 10, None))
        .unwrap();
    enroll(store, 1, "", &issued("i-1", 1, "01", T0)).unwrap();
    // Another key for the same identity: refused, and no use spent.
    assert_eq!(
        enroll(store, 1, "", &issued("i-1", 2, "02", T0)),
        Err(EnrollRefusal::IdentityTaken("i-1".into()))
    );
    assert_eq!(store.join_tokens().unwrap()[0].used, 1);
    // The same key again (its certificate was lost): a new certificate.
    enroll(store, 1, "", &issued("i-1", 1, "03", T0 + 1)).unwrap();

    // Renewals: with a live certificate of the host, for the same key.
    assert_eq!(
        store.renew("03", &issued("i-1", 1, "04", T0 + 2)).unwrap(),
        Ok(())
    );
    assert_eq!(
        store.renew("04", &issued("i-1", 2, "05", T0 + 3)).unwrap(),
        Err(EnrollRefusal::KeyChanged("i-1".into()))
    );
    assert_eq!(
        store.renew("ff", &issued("i-1", 1, "05", T0 + 3)).unwrap(),
        Err(EnrollRefusal::NotEnrolled("i-1".into()))
    );
    let listed = store.enrolled().unwrap();
    assert_eq!(listed.len(), 1);
    let h = &listed[0];
    assert_eq!(
        (
            h.host.as_str(),
            h.token.as_str(),
            h.serial.as_str(),
            h.certificates,
            h.enrolled_at
        ),
        ("i-1", "fleet", "04", 3, T0)
    );
    assert_eq!(h.key_sha256, [1; 32]);

    // Revoking the host revokes every certificate and frees the identity.
    assert_eq!(
        store.revoke_host("i-1", "ana (admin)", T0 + 10).unwrap(),
        (true, 3)
    );
    assert_eq!(
        store.revoke_host("i-1", "ana (admin)", T0 + 11).unwrap(),
        (false, 0)
    );
    let c = store.certificate("04").unwrap().unwrap();
    assert_eq!((c.host.as_str(), c.revoked_at), ("i-1", Some(T0 + 10)));
    assert_eq!(c.revoked_by.as_deref(), Some("ana (admin)"));
    assert_eq!(
        store.renew("04", &issued("i-1", 1, "06", T0 + 12)).unwrap(),
        Err(EnrollRefusal::NotEnrolled("i-1".into()))
    );
    assert!(store.enrolled().unwrap().is_empty());
    enroll(store, 1, "", &issued("i-1", 2, "07", T0 + 13)).unwrap();
    assert_eq!(store.enrolled().unwrap()[0].key_sha256, [2; 32]);
    assert_eq!(store.certificate("07").unwrap().unwrap().revoked_at, None);
    assert_eq!(store.certificate("99").unwrap(), None);

    // Many at once (heartbeats of enrolled agents), as one by one: revoked, live, unknown,
    // one asked twice.
    let serials: Vec<String> = ["04", "99", "07", "04"].map(String::from).into();
    let one_by_one: Vec<_> = serials
        .iter()
        .map(|s| store.certificate(s).unwrap())
        .collect();
    assert_eq!(store.certificates(&serials).unwrap(), one_by_one);
    assert!(one_by_one[0].as_ref().unwrap().revoked_at.is_some());
    assert_eq!(store.certificates(&[]).unwrap(), Vec::new());
}
