//! Operator tokens.

use super::super::{NewToken, OperatorToken, Role, Store, StoreError};
use super::T0;

fn new_token(name: &str, role: Role, secret: u8) -> NewToken {
    NewToken {
        name: name.into(),
        role,
        sha256: [secret; 32],
        created_at: T0,
    }
}

pub fn tokens_are_found_by_hash_until_revoked(store: &dyn Store) {
    store
        .create_token(&new_token("ci", Role::Reader, 1))
        .unwrap();
    store
        .create_token(&new_token("ana", Role::Admin, 2))
        .unwrap();
    let ci = OperatorToken {
        name: "ci".into(),
        role: Role::Reader,
        created_at: T0,
        revoked_at: None,
    };
    assert_eq!(store.token(&[1; 32]).unwrap(), Some(ci.clone()));
    assert_eq!(store.token(&[2; 32]).unwrap().unwrap().role, Role::Admin);
    assert_eq!(store.token(&[3; 32]).unwrap(), None);

    // A live name is taken; a revoked one is free again, and a revoked token finds nothing.
    assert!(matches!(
        store.create_token(&new_token("ci", Role::Operator, 4)),
        Err(StoreError::Rejected(m)) if m.contains("\"ci\"")
    ));
    assert!(store.revoke_token("ci", T0 + 5).unwrap());
    assert!(!store.revoke_token("ci", T0 + 6).unwrap());
    assert!(!store.revoke_token("nobody", T0 + 6).unwrap());
    assert_eq!(store.token(&[1; 32]).unwrap(), None);
    store
        .create_token(&new_token("ci", Role::Operator, 4))
        .unwrap();
    assert_eq!(store.token(&[4; 32]).unwrap().unwrap().role, Role::Operator);

    let listed: Vec<(String, Option<i64>)> = store
        .tokens()
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.revoked_at))
        .collect();
    assert_eq!(
        listed,
        [
            ("ci".into(), Some(T0 + 5)),
            ("ana".into(), None),
            ("ci".into(), None)
        ]
    );
}
