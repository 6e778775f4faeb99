//! Generates the collector's own gRPC servers (`driftwatch.v1`, with the pure-Rust `protox`):
//! the messages are `driftwatch_proto`'s, but the `Fleet` server answers `ListHosts` with
//! `query::listing::EncodedListHosts`, a listing encoded as it is made, which clients decode as
//! an ordinary `ListHostsResponse`.

fn main() {
    println!("cargo:rerun-if-changed=../proto/proto");
    let wire = protox::compile(["driftwatch/v1/fleet.proto"], ["../proto/proto"])
        .expect("the wire .proto files compile");
    tonic_prost_build::configure()
        .build_client(false)
        .extern_path(".driftwatch.v1", "::driftwatch_proto::v1")
        .extern_path(
            ".driftwatch.baseline.v1",
            "::driftwatch_proto::pb::baseline",
        )
        .extern_path(
            ".driftwatch.v1.ListHostsResponse",
            "crate::query::listing::EncodedListHosts",
        )
        .compile_fds(wire)
        .expect("tonic server generation");
}
