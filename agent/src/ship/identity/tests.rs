//! Identity sources with real files in temp dirs, and a fake metadata service on loopback.

use super::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const EC2: &str = r#"{
  "ds": {
    "dynamic": {"instance-identity": {"document": {"accountId": "123456789012"}}},
    "meta_data": {
      "ami-id": "ami-0abc", "instance-id": "i-0123", "local-hostname": "ip-10-0-0-5",
      "local-ipv4": "10.0.0.5",
      "tags": {"instance": {"aws:autoscaling:groupName": "web-asg", "Name": "web"}}
    }
  },
  "v1": {
    "cloud_name": "aws", "instance_id": "i-0123", "region": "eu-west-1",
    "availability_zone": "eu-west-1a", "local_hostname": "ip-10-0-0-5", "platform": "ec2"
  }
}"#;

fn root_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

fn sources(root: &Path) -> Sources {
    Sources {
        root: root.to_path_buf(),
        identity_file: None,
        metadata_service: None,
    }
}

#[tokio::test]
async fn cloud_init_instance_data_names_the_host() {
    let root = root_with(&[
        (CLOUD_INIT_INSTANCE_DATA, EC2),
        ("/etc/machine-id", "0123456789abcdef0123456789abcdef\n"),
        ("/etc/hostname", "ignored\n"),
    ]);
    let id = resolve(&sources(root.path())).await.unwrap();
    assert_eq!(id.host, "i-0123");
    assert_eq!(id.source, "cloud_init");
    assert_eq!(
        (
            id.cloud.as_str(),
            id.region.as_str(),
            id.availability_zone.as_str()
        ),
        ("aws", "eu-west-1", "eu-west-1a")
    );
    assert_eq!(
        (id.image_id.as_str(), id.private_ip.as_str()),
        ("ami-0abc", "10.0.0.5")
    );
    assert_eq!(id.hostname, "ip-10-0-0-5");
    assert_eq!(id.account_id, "123456789012");
    assert_eq!(id.tags["aws:autoscaling:groupName"], "web-asg");
    // The machine-id hash travels too, keyed, never the raw value.
    assert_eq!(id.machine_id_hash.len(), 64);
    assert!(!id.machine_id_hash.contains("0123456789abcdef"));
}

#[tokio::test]
async fn machine_id_when_there_is_no_cloud() {
    let root = root_with(&[
        ("/etc/machine-id", "0123456789abcdef0123456789abcdef\n"),
        ("/etc/hostname", "# comment\nbuild-7\n"),
    ]);
    let id = resolve(&sources(root.path())).await.unwrap();
    // sha256("driftwatch-machine-id-v1\0" || id), computed independently.
    let mut h = Sha256::new();
    h.update(b"driftwatch-machine-id-v1\x000123456789abcdef0123456789abcdef");
    let want = hex::encode(h.finalize());
    assert_eq!(id.host, format!("machine-id:{want}"));
    assert_eq!(id.machine_id_hash, want);
    assert_eq!(id.source, "machine_id");
    assert_eq!(id.hostname, "build-7");
    assert_eq!(id.instance_id, "");
    // A generic image's empty or uninitialized machine-id is not an identity.
    for blank in ["", "uninitialized\n"] {
        let root = root_with(&[("/etc/machine-id", blank), ("/etc/hostname", "h1\n")]);
        let id = resolve(&sources(root.path())).await.unwrap();
        assert_eq!(
            (id.host.as_str(), id.source.as_str()),
            ("hostname:h1", "hostname")
        );
        assert_eq!(id.machine_id_hash, "");
    }
}

#[tokio::test]
async fn a_malformed_or_placeholder_cloud_init_file_falls_through() {
    for bad in [
        "{not json",
        r#"{"v1": "x"}"#,
        r#"{"v1": {"instance_id": 7}}"#,
        r#"{"v1": {"instance_id": "iid-datasource-none", "cloud_name": "none"}}"#,
    ] {
        let root = root_with(&[
            (CLOUD_INIT_INSTANCE_DATA, bad),
            ("/etc/machine-id", "abc\n"),
        ]);
        let id = resolve(&sources(root.path())).await.unwrap();
        assert_eq!(id.source, "machine_id", "{bad}");
    }
}

#[tokio::test]
async fn the_configured_file_wins_and_a_bad_one_is_an_error() {
    let root = root_with(&[
        (CLOUD_INIT_INSTANCE_DATA, EC2),
        ("/etc/machine-id", "abc\n"),
    ]);
    let file = root.path().join("identity.json");
    std::fs::write(
        &file,
        r#"{"v1": {"instance_id": "vm-42", "cloud_name": "onprem"}}"#,
    )
    .unwrap();
    let id = resolve(&Sources {
        identity_file: Some(file.clone()),
        ..sources(root.path())
    })
    .await
    .unwrap();
    assert_eq!(
        (id.host.as_str(), id.source.as_str()),
        ("vm-42", "identity_file")
    );
    assert_eq!(id.cloud, "onprem");
    for (text, want) in [
        ("[]", "not a JSON object"),
        ("{}", "v1: missing"),
        (r#"{"v1": {"region": "x"}}"#, "v1.instance_id: missing"),
        (
            r#"{"v1": {"instance_id": "i-1", "region": 3}}"#,
            "v1.region: expected a string",
        ),
        ("{", "not JSON"),
        (
            r#"{"v1": {"instance_id": "i-1"}, "driftwatch": {"user_data_sha1": "xyz"}}"#,
            "driftwatch.user_data_sha1: expected 40 hex digits",
        ),
        (
            r#"{"v1": {"instance_id": "i-1"}, "driftwatch": {"userdata": "x"}}"#,
            "unknown field `userdata`",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let err = resolve(&Sources {
            identity_file: Some(file.clone()),
            ..sources(root.path())
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(want) && err.contains("identity.json"),
            "{text}: {err}"
        );
    }
    // The driftwatch extension adds what cloud-init's instance data does not hold.
    std::fs::write(
        &file,
        r#"{"v1": {"instance_id": "i-7"}, "ds": {"meta_data": {"ami-id": "ami-1"}},
            "driftwatch": {"user_data_sha1": "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709",
                           "tags": {"aws:autoscaling:groupName": "web-asg"}}}"#,
    )
    .unwrap();
    let id = read_identity_file(&file).unwrap();
    assert_eq!(
        id.user_data_sha1,
        "da39a3ee5e6b4b0d3255bfef95601890afd80709"
    );
    assert_eq!(id.tags["aws:autoscaling:groupName"], "web-asg");
    assert_eq!(id.image_id, "ami-1");
    let missing = read_identity_file(&root.path().join("nope.json")).unwrap_err();
    assert!(missing.to_string().contains("cannot read"), "{missing}");
}

/// A fake metadata service on loopback: answers by path, records what it was asked.
async fn fake_imds(
    token_status: u16,
    routes: Vec<(&'static str, &'static str)>,
) -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0; 4096];
            let n = conn.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            let first = request.lines().next().unwrap_or_default().to_owned();
            let path = first
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            // Header names are case-insensitive (HTTP/1.1 clients send them lowercase).
            let token_ok = request
                .to_ascii_lowercase()
                .contains("x-aws-ec2-metadata-token: tok");
            let flavor = request
                .to_ascii_lowercase()
                .contains("metadata-flavor: google");
            seen.lock()
                .unwrap()
                .push(format!("{first} flavor={flavor} token={token_ok}"));
            let (status, body) = if first.starts_with("PUT /latest/api/token") {
                (token_status, "tok".to_owned())
            } else if token_status == 200 && !token_ok {
                (401, String::new())
            } else if let Some((_, body)) = routes.iter().find(|(p, _)| *p == path) {
                (200, (*body).to_owned())
            } else {
                (404, String::new())
            };
            // Bodies of two routes are sent chunked, to cover that decoding.
            let response = if path.ends_with("local-hostname") || path.ends_with("user-data") {
                format!(
                    "HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                    body.len()
                )
            } else {
                format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            };
            let _ = conn.write_all(response.as_bytes()).await;
        }
    });
    (addr, log)
}

const IMDS_ROUTES: &[(&str, &str)] = &[
    ("/latest/meta-data/instance-id", "i-0999"),
    ("/latest/meta-data/ami-id", "ami-0fff"),
    ("/latest/meta-data/placement/region", "us-east-1"),
    (
        "/latest/meta-data/placement/availability-zone",
        "us-east-1b",
    ),
    ("/latest/meta-data/local-ipv4", "10.1.2.3"),
    (
        "/latest/meta-data/local-hostname",
        "ip-10-1-2-3.ec2.internal",
    ),
    ("/latest/user-data", "#!/bin/sh\necho hi\n"),
    (
        "/latest/meta-data/tags/instance/aws:autoscaling:groupName",
        "api-asg",
    ),
    (
        "/latest/meta-data/tags/instance/aws:ec2launchtemplate:id",
        "lt-0abc",
    ),
    (
        "/latest/dynamic/instance-identity/document",
        r#"{"accountId": "210987654321"}"#,
    ),
];

#[tokio::test]
async fn imds_v2_names_the_host_with_tags_and_user_data_hash() {
    let (addr, log) = fake_imds(200, IMDS_ROUTES.to_vec()).await;
    let root = root_with(&[("/etc/machine-id", "abc\n")]);
    let id = resolve(&Sources {
        metadata_service: Some(addr),
        ..sources(root.path())
    })
    .await
    .unwrap();
    assert_eq!((id.host.as_str(), id.source.as_str()), ("i-0999", "imds"));
    assert_eq!(
        (id.cloud.as_str(), id.image_id.as_str()),
        ("aws", "ami-0fff")
    );
    assert_eq!(
        (id.region.as_str(), id.availability_zone.as_str()),
        ("us-east-1", "us-east-1b")
    );
    assert_eq!(
        (id.private_ip.as_str(), id.hostname.as_str()),
        ("10.1.2.3", "ip-10-1-2-3.ec2.internal")
    );
    assert_eq!(id.account_id, "210987654321");
    assert_eq!(id.tags.len(), 2, "{:?}", id.tags);
    assert_eq!(id.tags["aws:ec2launchtemplate:id"], "lt-0abc");
    // printf '#!/bin/sh\necho hi\n' | sha1sum
    use sha1::Digest as _;
    assert_eq!(
        id.user_data_sha1,
        hex::encode(sha1::Sha1::digest(b"#!/bin/sh\necho hi\n"))
    );
    assert!(!id.machine_id_hash.is_empty());
    let log = log.lock().unwrap().clone();
    assert!(log[0].starts_with("PUT /latest/api/token"), "{log:?}");
    assert!(
        log[1..].iter().all(|l| l.ends_with("token=true")),
        "{log:?}"
    );
}

#[tokio::test]
async fn imds_fills_what_cloud_init_lacks_and_v1_works_without_a_token() {
    let (addr, log) = fake_imds(403, IMDS_ROUTES.to_vec()).await;
    let root = root_with(&[(CLOUD_INIT_INSTANCE_DATA, EC2)]);
    let id = resolve(&Sources {
        metadata_service: Some(addr),
        ..sources(root.path())
    })
    .await
    .unwrap();
    // The instance ids differ (i-0123 vs i-0999): the identity source wins, IMDS is ignored.
    assert_eq!(
        (id.host.as_str(), id.source.as_str()),
        ("i-0123", "cloud_init")
    );
    assert_eq!(id.user_data_sha1, "");
    // Same instance: IMDS fills the gaps, never overrides.
    let (addr, _) = fake_imds(
        403,
        IMDS_ROUTES
            .iter()
            .map(|&(p, b)| (p, if b == "i-0999" { "i-0123" } else { b }))
            .collect(),
    )
    .await;
    let id = resolve(&Sources {
        metadata_service: Some(addr),
        ..sources(root.path())
    })
    .await
    .unwrap();
    assert_eq!(
        (id.host.as_str(), id.source.as_str()),
        ("i-0123", "cloud_init")
    );
    assert_eq!(id.region, "eu-west-1", "cloud-init's value kept");
    assert_eq!(id.account_id, "123456789012", "cloud-init's value kept");
    assert_eq!(
        id.tags["aws:autoscaling:groupName"], "web-asg",
        "cloud-init's value kept"
    );
    assert_eq!(
        id.tags["aws:ec2launchtemplate:id"], "lt-0abc",
        "filled from IMDS"
    );
    assert_eq!(id.tags["Name"], "web");
    assert!(!id.user_data_sha1.is_empty(), "filled from IMDS");
    assert!(
        log.lock()
            .unwrap()
            .iter()
            .skip(1)
            .all(|l| l.ends_with("token=false"))
    );
}

#[tokio::test]
async fn an_unreachable_metadata_service_falls_through_quickly() {
    // A closed port on loopback: refused at once, retried, then machine-id.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let root = root_with(&[("/etc/machine-id", "abc\n")]);
    let started = std::time::Instant::now();
    let id = resolve(&Sources {
        metadata_service: Some(addr),
        ..sources(root.path())
    })
    .await
    .unwrap();
    assert_eq!(id.source, "machine_id");
    assert!(started.elapsed() < Duration::from_secs(5));
}

const AZURE: &str = include_str!("testdata/azure-instance-data.json");
const GCE: &str = include_str!("testdata/gce-instance-data.json");

/// Azure's instance data carries IMDS under `ds.meta_data.imds`: the VM id Terraform records
/// (not cloud-init's SMBIOS UUID, which stays the host key), the gallery image, the address.
#[tokio::test]
async fn azure_instance_data_gives_the_vm_id_and_the_image() {
    let root = root_with(&[(CLOUD_INIT_INSTANCE_DATA, AZURE)]);
    let id = resolve(&sources(root.path())).await.unwrap();
    assert_eq!(id.host, "1E5B5C3A-9F1D-4E2B-8C7A-6D5E4F3A2B1C");
    assert_eq!(id.instance_id, "3c5a5b1e-1d9f-2b4e-8c7a-6d5e4f3a2b1c");
    assert_eq!(id.cloud, "azure");
    assert!(
        id.image_id
            .ends_with("/galleries/web_gallery/images/web/versions/2024.6.1"),
        "{}",
        id.image_id
    );
    assert_eq!(id.private_ip, "10.0.0.4");
    assert_eq!(id.region, "westeurope");
    assert_eq!(id.tags["team"], "web");
    assert_eq!(id.account_id, "8a1c3e5f-0000-4b2d-9c1e-2f3a4b5c6d7e");

    // A marketplace image: publisher:offer:sku and the exact version that runs.
    let marketplace = AZURE.replace(
        r#""id": "/subscriptions/8a1c3e5f-0000-4b2d-9c1e-2f3a4b5c6d7e/resourceGroups/RG-IMAGES/providers/Microsoft.Compute/galleries/web_gallery/images/web/versions/2024.6.1",
              "offer": "",
              "publisher": "",
              "sku": "",
              "version": """#,
        r#""id": "", "offer": "ubuntu-24_04-lts", "publisher": "Canonical", "sku": "server",
              "version": "latest", "exactVersion": "24.04.202510010""#,
    );
    assert_ne!(marketplace, AZURE);
    let id = parse_instance_data(marketplace.as_bytes()).unwrap();
    assert_eq!(
        id.image_id,
        "Canonical:ubuntu-24_04-lts:server:24.04.202510010"
    );
}

/// cloud-init's GCE instance data holds no image: the metadata server gives it.
#[tokio::test]
async fn gce_gets_its_image_from_the_metadata_server() {
    let root = root_with(&[(CLOUD_INIT_INSTANCE_DATA, GCE)]);
    let id = resolve(&sources(root.path())).await.unwrap();
    assert_eq!(
        (id.host.as_str(), id.cloud.as_str(), id.image_id.as_str()),
        ("4567890123456789012", "gce", "")
    );
    let (addr, log) = fake_imds(
        404,
        vec![
            ("/computeMetadata/v1/instance/id", "4567890123456789012"),
            (
                "/computeMetadata/v1/instance/image",
                "projects/acme-images/global/images/web-20240501",
            ),
            (
                "/computeMetadata/v1/instance/zone",
                "projects/123456/zones/europe-west1-b",
            ),
            (
                "/computeMetadata/v1/instance/network-interfaces/0/ip",
                "10.132.0.7",
            ),
        ],
    )
    .await;
    let id = resolve(&Sources {
        metadata_service: Some(addr),
        ..sources(root.path())
    })
    .await
    .unwrap();
    assert_eq!(id.source, "cloud_init");
    assert_eq!(
        id.image_id,
        "projects/acme-images/global/images/web-20240501"
    );
    assert_eq!(id.private_ip, "10.132.0.7");
    let log = log.lock().unwrap().clone();
    assert!(
        log.iter()
            .all(|l| l.starts_with("GET /computeMetadata/v1/")),
        "only GCE's server is asked, the GCE way: {log:?}"
    );

    // Without cloud-init, the metadata server alone names the host.
    let bare = root_with(&[]);
    let (addr, _) = fake_imds(
        404,
        vec![
            ("/computeMetadata/v1/instance/id", "99"),
            (
                "/computeMetadata/v1/instance/image",
                "projects/p/global/images/x",
            ),
            (
                "/computeMetadata/v1/instance/zone",
                "projects/1/zones/us-east1-c",
            ),
        ],
    )
    .await;
    let gce = imds::query_metadata(addr, "gce").await.unwrap();
    assert_eq!(
        (
            gce.host.as_str(),
            gce.image_id.as_str(),
            gce.region.as_str()
        ),
        ("99", "projects/p/global/images/x", "us-east1")
    );
    drop(bare);
}

#[tokio::test]
async fn azure_imds_names_the_vm() {
    let imds = r#"{"compute": {"vmId": "vm-42", "name": "web-2", "location": "northeurope",
        "storageProfile": {"imageReference": {"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/web-1"}}},
        "network": {"interface": [{"ipv4": {"ipAddress": [{"privateIpAddress": "10.1.0.4"}]}}]}}"#;
    let (addr, _) = fake_imds(
        404,
        vec![("/metadata/instance?api-version=2021-02-01", imds)],
    )
    .await;
    let id = imds::query_metadata(addr, "azure").await.unwrap();
    assert_eq!(
        (id.host.as_str(), id.instance_id.as_str()),
        ("vm-42", "vm-42")
    );
    assert!(id.image_id.ends_with("/images/web-1"), "{}", id.image_id);
    assert_eq!(
        (
            id.private_ip.as_str(),
            id.region.as_str(),
            id.hostname.as_str()
        ),
        ("10.1.0.4", "northeurope", "web-2")
    );
}

/// Some cloud-init releases write EC2's datasource keys with underscores.
#[test]
fn ec2_keys_with_underscores_are_read_too() {
    let underscored = EC2
        .replace("ami-id", "ami_id")
        .replace("local-ipv4", "local_ipv4")
        .replace("instance-identity", "instance_identity");
    let id = parse_instance_data(underscored.as_bytes()).unwrap();
    assert_eq!(
        (
            id.image_id.as_str(),
            id.private_ip.as_str(),
            id.account_id.as_str()
        ),
        ("ami-0abc", "10.0.0.5", "123456789012")
    );
}

/// An identity file may name the image for a machine without a metadata service.
#[test]
fn the_identity_file_extension_names_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.json");
    let with_image = GCE.replacen(
        "{",
        r#"{"driftwatch": {"image_id": "projects/acme-images/global/images/web-20240501"},"#,
        1,
    );
    std::fs::write(&path, with_image).unwrap();
    let id = read_identity_file(&path).unwrap();
    assert_eq!(
        id.image_id,
        "projects/acme-images/global/images/web-20240501"
    );
}
