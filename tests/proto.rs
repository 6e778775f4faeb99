//! The wire protocol and the baseline format are for everyone: every `.proto` file compiles
//! with a stock `protoc` (Debian's `protobuf-compiler`, installed by `tests/setup.sh`), so users
//! can generate clients in any language. (The build uses the pure-Rust `protox`, which is more
//! lenient: it once accepted a name clash `protoc` refuses.)

use std::path::{Path, PathBuf};
use std::process::Command;

use driftwatch_tests::{TestDir, describe};

fn proto_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read the proto directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            proto_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "proto") {
            found.push(path);
        }
    }
}

#[test]
fn stock_protoc_compiles_every_proto_file_for_other_languages() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/proto");
    let mut files = Vec::new();
    proto_files(&root, &mut files);
    files.sort();
    assert!(
        files.len() >= 5,
        "expected every .proto file, found {files:?}"
    );
    let t = TestDir::new();
    for (language, flag) in [("python", "--python_out"), ("C++", "--cpp_out")] {
        let out_dir = t.path().join(language);
        std::fs::create_dir_all(&out_dir).unwrap();
        let out = Command::new("protoc")
            .arg("-I")
            .arg(&root)
            .arg(format!("{flag}={}", out_dir.display()))
            .arg(format!(
                "--descriptor_set_out={}",
                t.path().join("set.pb").display()
            ))
            .args(&files)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run protoc ({e}): tests/setup.sh installs protobuf-compiler")
            });
        assert!(
            out.status.success(),
            "protoc refuses the .proto files ({language}):\n{}",
            describe(&out)
        );
    }
    let generated = t.path().join("python/driftwatch/v1/drift_pb2.py");
    assert!(generated.exists(), "no {}", generated.display());
}
