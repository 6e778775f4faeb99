//! The allow-listed attributes of each type read: written with secrets planted around them,
//! and what the parser must keep of them.

use super::*;

impl Cx {
    fn lt_spec(&mut self, spec: &LtSpec) -> (J, LaunchTemplateRef) {
        let mut f = Fields::default();
        let want = LaunchTemplateRef {
            id: self.string(&mut f, "id", &spec.id),
            name: self.string(&mut f, "name", &spec.name),
            version: self.string(&mut f, "version", &spec.version),
        };
        self.plant(&mut f, &["x_future_field"]);
        (f.done(), want)
    }

    /// The `attributes` (raw) or `values` (show -json) object and what the parser keeps of it.
    pub(super) fn attrs(&mut self, a: &Attrs) -> (J, ResourceKind) {
        let mut f = Fields::default();
        let kind = match a {
            Attrs::Ec2(m) => {
                let user_data = self.user_data(&mut f, &m.user_data);
                let user_data_base64 =
                    self.base64_data(&mut f, "user_data_base64", &m.user_data_base64);
                let launch_template = self
                    .list(&mut f, "launch_template", &m.launch_template, Self::lt_spec)
                    .into_iter()
                    .next();
                self.plant(
                    &mut f,
                    &[
                        "password",
                        "root_block_device",
                        "metadata_options",
                        "private_key_pem",
                    ],
                );
                ResourceKind::AwsInstance(AwsInstance {
                    id: self.string(&mut f, "id", &m.id),
                    ami: self.string(&mut f, "ami", &m.ami),
                    instance_state: self.string(&mut f, "instance_state", &m.instance_state),
                    availability_zone: self.string(
                        &mut f,
                        "availability_zone",
                        &m.availability_zone,
                    ),
                    private_ip: self.string(&mut f, "private_ip", &m.private_ip),
                    private_dns: self.string(&mut f, "private_dns", &m.private_dns),
                    public_ip: self.string(&mut f, "public_ip", &m.public_ip),
                    tags: self.tags(&mut f, "tags", &m.tags),
                    tags_all: self.tags(&mut f, "tags_all", &m.tags_all),
                    user_data_sha1: user_data.or(user_data_base64),
                    launch_template,
                })
            }
            Attrs::Lt(m) => {
                self.plant(
                    &mut f,
                    &["block_device_mappings", "network_interfaces", "description"],
                );
                ResourceKind::AwsLaunchTemplate(AwsLaunchTemplate {
                    id: self.string(&mut f, "id", &m.id),
                    name: self.string(&mut f, "name", &m.name),
                    latest_version: self.number(&mut f, "latest_version", &m.latest_version),
                    default_version: self.number(&mut f, "default_version", &m.default_version),
                    image_id: self.string(&mut f, "image_id", &m.image_id),
                    tags: self.tags(&mut f, "tags", &m.tags),
                    tags_all: self.tags(&mut f, "tags_all", &m.tags_all),
                    user_data_sha1: self.base64_data(&mut f, "user_data", &m.user_data),
                })
            }
            Attrs::Lc(m) => {
                let user_data = self.user_data(&mut f, &m.user_data);
                let user_data_base64 =
                    self.base64_data(&mut f, "user_data_base64", &m.user_data_base64);
                self.plant(&mut f, &["root_block_device", "security_groups"]);
                let id = self.string(&mut f, "id", &m.id);
                let name = self.string(&mut f, "name", &m.name);
                ResourceKind::AwsLaunchConfiguration(AwsLaunchConfiguration {
                    name: name.or(id),
                    image_id: self.string(&mut f, "image_id", &m.image_id),
                    user_data_sha1: user_data.or(user_data_base64),
                })
            }
            Attrs::Asg(m) => {
                let id = self.string(&mut f, "id", &m.id);
                let name = self.string(&mut f, "name", &m.name);
                let direct = self
                    .list(&mut f, "launch_template", &m.launch_template, Self::lt_spec)
                    .into_iter()
                    .next();
                let mixed = self
                    .list(
                        &mut f,
                        "mixed_instances_policy",
                        &m.mixed_instances_policy,
                        |cx, spec| {
                            let mut f = Fields::default();
                            let want = LaunchTemplateRef {
                                id: cx.string(&mut f, "launch_template_id", &spec.id),
                                name: cx.string(&mut f, "launch_template_name", &spec.name),
                                version: cx.string(&mut f, "version", &spec.version),
                            };
                            let policy = obj([
                                (
                                    "instances_distribution",
                                    J::Arr(vec![obj([("x", cx.secret("distribution"))])]),
                                ),
                                (
                                    "launch_template",
                                    J::Arr(vec![obj([
                                        ("launch_template_specification", J::Arr(vec![f.done()])),
                                        (
                                            "override",
                                            J::Arr(vec![obj([(
                                                "instance_type",
                                                cx.secret("override"),
                                            )])]),
                                        ),
                                    ])]),
                                ),
                            ]);
                            (policy, want)
                        },
                    )
                    .into_iter()
                    .next();
                let mut tags = self.list(&mut f, "tag", &m.tag, |cx, t| {
                    let json = obj([
                        ("key", s(t.key.clone())),
                        ("value", s(t.value.clone())),
                        ("propagate_at_launch", J::Bool(t.propagate)),
                        ("x_future_field", cx.secret("tag")),
                    ]);
                    (json, asg_tag_want(t))
                });
                // AWS provider < 5: string maps, booleans as text.
                tags.extend(self.list(&mut f, "tags", &m.legacy_tags, |_, t| {
                    let json = obj([
                        ("key", s(t.key.clone())),
                        ("value", s(t.value.clone())),
                        ("propagate_at_launch", s(t.propagate.to_string())),
                    ]);
                    (json, asg_tag_want(t))
                }));
                self.plant(&mut f, &["initial_lifecycle_hook", "warm_pool", "arn"]);
                let launch_configuration =
                    self.string(&mut f, "launch_configuration", &m.launch_configuration);
                ResourceKind::AwsAutoscalingGroup(AwsAutoscalingGroup {
                    name: name.or(id),
                    launch_template: direct.or(mixed),
                    launch_configuration,
                    min_size: self.number(&mut f, "min_size", &m.min_size),
                    max_size: self.number(&mut f, "max_size", &m.max_size),
                    desired_capacity: self.number(&mut f, "desired_capacity", &m.desired_capacity),
                    tags,
                })
            }
            Attrs::Gce(m) => {
                let boot_image = self
                    .list(&mut f, "boot_disk", &m.boot_disk, |cx, params| {
                        let mut disk = Fields::default();
                        let image = cx
                            .list(&mut disk, "initialize_params", params, |cx, image| {
                                let mut p = Fields::default();
                                let want = cx.string(&mut p, "image", image);
                                cx.plant(&mut p, &["labels"]);
                                (p.done(), want)
                            })
                            .into_iter()
                            .next()
                            .flatten();
                        cx.plant(&mut disk, &["disk_encryption_key_raw"]);
                        (disk.done(), image)
                    })
                    .into_iter()
                    .next()
                    .flatten();
                let network_ip = self
                    .list(
                        &mut f,
                        "network_interface",
                        &m.network_interface,
                        |cx, ip| {
                            let mut n = Fields::default();
                            let want = cx.string(&mut n, "network_ip", ip);
                            cx.plant(&mut n, &["access_config"]);
                            (n.done(), want)
                        },
                    )
                    .into_iter()
                    .next()
                    .flatten();
                self.plant(
                    &mut f,
                    &["metadata", "service_account", "metadata_startup_script"],
                );
                ResourceKind::GoogleComputeInstance(GoogleComputeInstance {
                    instance_id: self.string(&mut f, "instance_id", &m.instance_id),
                    name: self.string(&mut f, "name", &m.name),
                    project: self.string(&mut f, "project", &m.project),
                    zone: self.string(&mut f, "zone", &m.zone),
                    current_status: self.string(&mut f, "current_status", &m.current_status),
                    boot_image,
                    network_ip,
                    labels: self.tags(&mut f, "labels", &m.labels),
                    effective_labels: self.tags(&mut f, "effective_labels", &m.effective_labels),
                })
            }
            Attrs::Azure(m) => {
                let source_image_reference = self
                    .list(
                        &mut f,
                        "source_image_reference",
                        &m.source_image_reference,
                        |cx, r| {
                            let mut f = Fields::default();
                            let want = AzureImageReference {
                                publisher: cx.string(&mut f, "publisher", &r.publisher),
                                offer: cx.string(&mut f, "offer", &r.offer),
                                sku: cx.string(&mut f, "sku", &r.sku),
                                version: cx.string(&mut f, "version", &r.version),
                            };
                            cx.plant(&mut f, &["x_future_field"]);
                            (f.done(), want)
                        },
                    )
                    .into_iter()
                    .next();
                self.plant(
                    &mut f,
                    &["custom_data", "admin_ssh_key", "admin_password", "os_disk"],
                );
                ResourceKind::AzureLinuxVm(AzureLinuxVm {
                    id: self.string(&mut f, "id", &m.id),
                    name: self.string(&mut f, "name", &m.name),
                    virtual_machine_id: self.string(
                        &mut f,
                        "virtual_machine_id",
                        &m.virtual_machine_id,
                    ),
                    location: self.string(&mut f, "location", &m.location),
                    resource_group_name: self.string(
                        &mut f,
                        "resource_group_name",
                        &m.resource_group_name,
                    ),
                    source_image_id: self.string(&mut f, "source_image_id", &m.source_image_id),
                    source_image_reference,
                    private_ip_address: self.string(
                        &mut f,
                        "private_ip_address",
                        &m.private_ip_address,
                    ),
                    public_ip_address: self.string(
                        &mut f,
                        "public_ip_address",
                        &m.public_ip_address,
                    ),
                    tags: self.tags(&mut f, "tags", &m.tags),
                })
            }
        };
        (f.done(), kind)
    }
}

fn asg_tag_want(t: &AsgTagModel) -> AsgTag {
    AsgTag {
        key: t.key.clone(),
        value: t.value.clone(),
        propagate_at_launch: t.propagate,
    }
}
