//! Compiles the .proto files with the pure-Rust `protox`, so building needs no system `protoc`.

use prost::Message as _;

/// Query messages that are also the collector's JSON API (serialized with serde).
const JSON_MESSAGES: &[&str] = &[
    "ListHostsResponse",
    "Host",
    "HostDetail",
    "ListPathsResponse",
    "PathSummary",
    "ListCausesResponse",
    "Cause",
    "HistoryResponse",
    "HistoryEvent",
    "IacLink",
    "IacPlace",
    "ImportResult",
    "Flag",
    "FlaggedHost",
    "Ghost",
    "Coverage",
    "StateInfo",
    "IacStatus",
    "ReportGroup",
    "IacReport",
    "JoinToken",
    "EnrolledHost",
    "Certificate",
];

/// Fields holding drift items, serialized as `check --json` writes items.
const DRIFT_ITEM_FIELDS: &[(&str, &str)] = &[
    ("HostDetail.drift", "crate::json::items"),
    ("Cause.example", "crate::json::item"),
    ("HistoryEvent.item", "crate::json::item"),
];

fn main() {
    println!("cargo:rerun-if-changed=proto");
    let baseline = protox::compile(["driftwatch/baseline/v1/baseline.proto"], ["proto"])
        .expect("the baseline .proto compiles");
    prost_build::Config::new()
        .compile_fds(baseline)
        .expect("prost code generation");

    let wire = protox::compile(
        [
            "driftwatch/v1/drift.proto",
            "driftwatch/v1/agent.proto",
            "driftwatch/v1/fleet.proto",
            "driftwatch/v1/iac.proto",
            "driftwatch/v1/enroll.proto",
        ],
        ["proto"],
    )
    .expect("the wire .proto files compile");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out.join("driftwatch_v1.bin"), wire.encode_to_vec())
        .expect("write the descriptor set");
    // Messages, clients and servers. Maps in sorted order, so JSON answers are stable.
    let mut builder = tonic_prost_build::configure()
        .codec_path("crate::codec::Codec")
        .extern_path(".driftwatch.baseline.v1", "crate::pb::baseline")
        .btree_map(".driftwatch.v1.IacStatus");
    for m in JSON_MESSAGES {
        builder =
            builder.message_attribute(format!(".driftwatch.v1.{m}"), "#[derive(serde::Serialize)]");
    }
    builder = builder.field_attribute(".driftwatch.v1.HostDetail.host", "#[serde(flatten)]");
    // Lists added in 0.3, left out of JSON when empty: answers without them read as before.
    for field in [
        "IacLink.also",
        "Ghost.also",
        "Host.candidates",
        "FlaggedHost.candidates",
    ] {
        builder = builder.field_attribute(
            format!(".driftwatch.v1.{field}"),
            "#[serde(skip_serializing_if = \"Vec::is_empty\")]",
        );
    }
    for (field, with) in DRIFT_ITEM_FIELDS {
        builder = builder.field_attribute(
            format!(".driftwatch.v1.{field}"),
            format!("#[serde(serialize_with = \"{with}\")]"),
        );
    }
    builder.compile_fds(wire).expect("tonic code generation");
}
