//! Enrollment listings: join tokens and enrolled hosts.

use std::io::{self, Write};

use driftwatch_proto::v1;

use super::{dash, table};

pub fn join_tokens(out: &mut dyn Write, tokens: &[v1::JoinToken]) -> io::Result<()> {
    if tokens.is_empty() {
        return writeln!(
            out,
            "No join tokens (`driftwatch enroll token create` makes one)."
        );
    }
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                format!("{}/{}", t.used, t.uses),
                t.expires_at.clone(),
                dash(&t.image),
                t.created_by.clone(),
                dash(&t.revoked_at),
            ]
        })
        .collect();
    table(
        out,
        &["NAME", "USED", "EXPIRES", "IMAGE", "CREATED BY", "REVOKED"],
        &rows,
    )
}

pub fn enrolled(out: &mut dyn Write, hosts: &[v1::EnrolledHost]) -> io::Result<()> {
    if hosts.is_empty() {
        return writeln!(out, "No hosts enrolled.");
    }
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            vec![
                h.host.clone(),
                h.enrolled_at.clone(),
                h.token.clone(),
                h.not_after.clone(),
                h.certificates.to_string(),
                h.key_sha256.chars().take(16).collect(),
            ]
        })
        .collect();
    table(
        out,
        &[
            "HOST",
            "ENROLLED",
            "TOKEN",
            "EXPIRES",
            "CERTS",
            "KEY SHA-256",
        ],
        &rows,
    )
}
