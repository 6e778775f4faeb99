//! Compiles the .proto files with the pure-Rust `protox`, so building needs no system `protoc`.

fn main() {
    let files = ["driftwatch/baseline/v1/baseline.proto"];
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(files, ["proto"]).expect("the .proto files compile");
    prost_build::Config::new()
        .compile_fds(fds)
        .expect("prost code generation");
}
