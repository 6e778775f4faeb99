//! Operator tokens.

use super::super::{NewToken, OperatorToken, Role, Store, StoreError};
use super::T0;

fn new_token(name: &str, role: Role, secret: u8) -> NewToken {
    NewToken {
        name: name.into(),
        role,
        sha256: [secret; 32],
        created_at: T0,
        expires_at: None,
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
        expires_at: None,
        revoked_at: None,
    };
    assert_eq!(store.token(&[1; 32], T0).unwrap(), Some(ci.clone()));
    assert_eq!(
        store.token(&[2; 32], T0).unwrap().unwrap().role,
        Role::Admin
    );
    assert_eq!(store.token(&[3; 32], T0).unwrap(), None);

    // A live name is taken; a revoked one is free again, and a revoked token finds nothing.
    assert!(matches!(
        store.create_token(&new_token("ci", Role::Operator, 4)),
        Err(StoreError::Rejected(m)) if m.contains("\"ci\"")
    ));
    assert!(store.revoke_token("ci", T0 + 5).unwrap());
    assert!(!store.revoke_token("ci", T0 + 6).unwrap());
    assert!(!store.revoke_token("nobody", T0 + 6).unwrap());
    assert_eq!(store.token(&[1; 32], T0).unwrap(), None);
    store
        .create_token(&new_token("ci", Role::Operator, 4))
        .unwrap();
    assert_eq!(
        store.token(&[4; 32], T0).unwrap().unwrap().role,
        Role::Operator
    );

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

pub fn a_token_expires(store: &dyn Store) {
    let token = NewToken {
        expires_at: Some(T0 + 1_000),
        ..new_token("short", Role::Reader, 7)
    };
    store.create_token(&token).unwrap();
    assert!(store.token(&[7; 32], T0 + 999).unwrap().is_some());
    assert_eq!(store.token(&[7; 32], T0 + 1_000).unwrap(), None);
    assert_eq!(store.tokens().unwrap()[0].expires_at, Some(T0 + 1_000));
}
