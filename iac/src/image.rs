//! Cloud image ids as the three clouds spell them, and what makes two spellings the same image.
//!
//! A host, a state and a Packer manifest name one image differently:
//!
//! | cloud | host (metadata) | state | Packer `artifact_id` |
//! |---|---|---|---|
//! | AWS | `ami-0abc` | `ami-0abc` | `eu-west-1:ami-0abc` (split per region) |
//! | GCE | `projects/P/global/images/NAME` | `https://www.googleapis.com/compute/v1/projects/P/global/images/NAME` | `NAME` |
//! | Azure, own image | ARM id (any letter case) | ARM id | ARM id of the managed image |
//! | Azure, marketplace | `publisher:offer:sku:version` | `publisher:offer:sku:latest` | — |
//!
//! [`image_key`] reduces each to one key that the catalog is indexed by and that comparisons
//! use; [`same_image`] also accepts a marketplace reference whose version is `latest`. A GCE
//! image *family* (`family/debian-12`, `debian-cloud/debian-12`) names no one image: it has no
//! key, and nothing is compared against it.

/// The cloud a resource type belongs to, as cloud-init names it (`v1.cloud_name`): `aws`,
/// `gce`, `azure`; `None` for types of no known cloud. Types are spelled as each tool spells
/// them: Terraform's `aws_instance`, Pulumi's `aws:ec2/instance:Instance` (`gcp:`, `azure:`,
/// `azure-native:`), CloudFormation's `AWS::EC2::Instance`.
pub fn cloud_of_type(resource_type: &str) -> Option<&'static str> {
    const PREFIXES: [(&str, &str); 8] = [
        ("aws_", "aws"),
        ("aws:", "aws"),
        ("AWS::", "aws"),
        ("google_", "gce"),
        ("gcp:", "gce"),
        ("azurerm_", "azure"),
        ("azure:", "azure"),
        ("azure-native:", "azure"),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _)| resource_type.starts_with(prefix))
        .map(|&(_, cloud)| cloud)
}

/// The cloud a host's reported `cloud_name` stands for, in [`cloud_of_type`]'s terms: cloud-init
/// names AWS `aws` (also `aws-china`, `aws-gov` by region), GCE `gce`, Azure `azure`
/// (`azure-china`); `None` for anything else (on premises, another cloud, unknown).
pub fn host_cloud(cloud_name: &str) -> Option<&'static str> {
    let name = cloud_name.trim().to_ascii_lowercase();
    match name.as_str() {
        "aws" | "ec2" | "aws-china" | "aws-gov" => Some("aws"),
        "gce" | "gcp" | "google" => Some("gce"),
        "azure" | "azure-china" => Some("azure"),
        _ => None,
    }
}

/// The key an image id is compared and looked up by; `None` when the text names no single
/// image (empty, or a GCE image family).
pub fn image_key(id: &str) -> Option<String> {
    let id = id.trim().trim_end_matches('/');
    if id.is_empty() {
        return None;
    }
    let lower = id.to_ascii_lowercase();
    // Azure resource ids are case-insensitive.
    if lower.starts_with("/subscriptions/") {
        return Some(lower);
    }
    // GCE: a self link or a partial URL names the image after `images/`.
    if let Some(at) = lower.rfind("/images/").map(|i| i + "/images/".len()) {
        if lower.contains("/images/family/") {
            return None;
        }
        return Some(lower[at..].to_owned());
    }
    if lower.starts_with("family/") || lower.contains("/family/") {
        return None;
    }
    if is_marketplace(&lower) {
        return Some(lower);
    }
    // `PROJECT/NAME` (the provider's short form) is a family or an image; GCE names the image
    // itself in metadata, so only its last part can be compared.
    if !lower.starts_with("ami-") && lower.matches('/').count() == 1 {
        return None;
    }
    Some(id.to_owned())
}

/// `publisher:offer:sku:version`, an Azure marketplace image.
fn is_marketplace(id: &str) -> bool {
    let parts: Vec<&str> = id.split(':').collect();
    parts.len() == 4 && parts[..3].iter().all(|p| !p.is_empty())
}

/// Whether `recorded` (a state's or template's image) and `reported` (the host's) are the same
/// image; `None` when they cannot be compared (either names no single image).
pub fn same_image(recorded: &str, reported: &str) -> Option<bool> {
    let (a, b) = (image_key(recorded)?, image_key(reported)?);
    if a == b {
        return Some(true);
    }
    if is_marketplace(&a) && is_marketplace(&b) {
        let (a_base, a_version) = a.rsplit_once(':').unwrap_or((&a, ""));
        let (b_base, b_version) = b.rsplit_once(':').unwrap_or((&b, ""));
        return Some(a_base == b_base && (a_version == "latest" || b_version == "latest"));
    }
    Some(false)
}

/// Whether a Packer artifact id names a cloud image a host can run and report: an AMI, a GCE
/// image, an Azure image. Other builders' artifacts are not images of a cloud: qemu and
/// VirtualBox write `VM`, docker a `sha256:` digest, `file` and `null` a path or nothing.
pub fn is_cloud_image(builder_type: &str, image_id: &str) -> bool {
    let id = image_id.trim();
    if id.is_empty() {
        return false;
    }
    if id.starts_with("ami-") || id.to_ascii_lowercase().starts_with("/subscriptions/") {
        return true;
    }
    // Only AMIs and Azure resource ids are images of those builders.
    if builder_type.starts_with("amazon-") || builder_type.starts_with("azure-") {
        return false;
    }
    // A GCE image name: lowercase letters, digits and dashes, starting with a letter.
    builder_type == "googlecompute"
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cloud_spelling_reduces_to_one_key() {
        let gce = [
            "https://www.googleapis.com/compute/v1/projects/acme-images/global/images/web-20240501",
            "projects/acme-images/global/images/web-20240501",
            "web-20240501",
        ];
        for id in gce {
            assert_eq!(image_key(id).as_deref(), Some("web-20240501"), "{id}");
        }
        let arm =
            "/subscriptions/8A1C/resourceGroups/RG-Images/providers/Microsoft.Compute/images/web";
        assert_eq!(image_key(arm), image_key(&arm.to_ascii_lowercase()));
        assert_eq!(image_key("ami-0abc").as_deref(), Some("ami-0abc"));
        for no_single_image in [
            "",
            "debian-cloud/debian-12",
            "family/debian-12",
            "projects/debian-cloud/global/images/family/debian-12",
        ] {
            assert_eq!(image_key(no_single_image), None, "{no_single_image}");
        }
    }

    #[test]
    fn marketplace_latest_matches_any_version() {
        assert_eq!(
            same_image(
                "Canonical:ubuntu-24_04-lts:server:latest",
                "canonical:ubuntu-24_04-lts:server:24.04.202510010"
            ),
            Some(true)
        );
        assert_eq!(
            same_image(
                "Canonical:ubuntu-24_04-lts:server:24.04.1",
                "Canonical:ubuntu-24_04-lts:server:24.04.2"
            ),
            Some(false)
        );
        assert_eq!(same_image("ami-1", "ami-2"), Some(false));
        assert_eq!(same_image("debian-cloud/debian-12", "debian-12-x"), None);
    }

    #[test]
    fn only_cloud_images_are_images() {
        assert!(is_cloud_image("amazon-ebs", "ami-0abc"));
        assert!(is_cloud_image("googlecompute", "web-20240501-1714557000"));
        assert!(is_cloud_image(
            "azure-arm",
            "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Compute/images/web"
        ));
        assert!(!is_cloud_image("qemu", "VM"));
        assert!(!is_cloud_image("virtualbox-iso", "VM"));
        assert!(!is_cloud_image("docker", "sha256:9b2a1d0c"));
        assert!(!is_cloud_image("file", "build/output.img"));
        assert!(!is_cloud_image("amazon-ebs", "VM"));
        assert!(!is_cloud_image("googlecompute", "VM"));
    }

    #[test]
    fn clouds_of_types_and_hosts() {
        assert_eq!(cloud_of_type("aws_instance"), Some("aws"));
        assert_eq!(cloud_of_type("google_compute_instance"), Some("gce"));
        assert_eq!(
            cloud_of_type("azurerm_linux_virtual_machine"),
            Some("azure")
        );
        assert_eq!(cloud_of_type("random_id"), None);
        assert_eq!(cloud_of_type("aws:ec2/instance:Instance"), Some("aws"));
        assert_eq!(cloud_of_type("AWS::EC2::Instance"), Some("aws"));
        assert_eq!(cloud_of_type("gcp:compute/instance:Instance"), Some("gce"));
        assert_eq!(
            cloud_of_type("azure-native:compute:VirtualMachine"),
            Some("azure")
        );
        assert_eq!(cloud_of_type("random:index/randomId:RandomId"), None);
        assert_eq!(host_cloud("aws"), Some("aws"));
        assert_eq!(host_cloud("GCE"), Some("gce"));
        assert_eq!(host_cloud("azure"), Some("azure"));
        assert_eq!(host_cloud(""), None);
        assert_eq!(host_cloud("lxd"), None);
    }
}
