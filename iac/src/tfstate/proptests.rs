//! Property test: any valid state, raw v4 or `terraform show -json`, round-trips through the
//! allow-list without a secret surviving.
//!
//! A generated [`Model`] (modules with count/for_each keys, managed and data resources of the
//! types read and of others, tainted and deposed objects) is rendered to both JSON shapes,
//! together with what the parser must return for each. Every value that is not allow-listed
//! carries the case's marker (`SECRET-<hex>`): unknown attributes and unknown keys inside
//! allow-listed blocks, `sensitive_attributes`, `private`, `identity`, `instance_provider`,
//! `sensitive_values`, outputs, unknown keys at every level, every string of data sources and
//! of resource types not read, allow-listed attributes of a shape not read, and user data, of
//! which only the SHA-1 may survive.

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;

use super::resources::KnownType;
use super::*;
use crate::Tags;

mod render;

use render::build;

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn any_state_keeps_the_allow_list_and_nothing_else(model in model()) {
        for shape in [Shape::Raw, Shape::Show] {
            check(&model, shape)?;
        }
    }
}

fn check(model: &Model, shape: Shape) -> Result<(), TestCaseError> {
    let case = build(model, shape);
    let summary = parse_state(case.text.as_bytes())
        .map_err(|e| TestCaseError::fail(format!("{shape:?}: {e}\n{}", case.text)))?;

    // No secret in anything the parser returns, warnings included.
    let rendered = format!("{summary:?}\n{summary:#?}");
    for secret in std::iter::once(&case.marker).chain(&case.forbidden) {
        prop_assert!(
            !rendered.contains(secret.as_str()),
            "{shape:?}: {secret:?} survived:\n{summary:#?}\n{}",
            case.text
        );
    }

    prop_assert_eq!(
        &summary.terraform_version,
        &Some(model.terraform_version.clone())
    );
    match shape {
        Shape::Raw => {
            prop_assert_eq!(summary.kind, StateKind::Raw);
            prop_assert_eq!(summary.serial, Some(u64::from(model.serial)));
            prop_assert_eq!(&summary.lineage, &Some(model.lineage.clone()));
        }
        Shape::Show => {
            prop_assert_eq!(summary.kind, StateKind::ShowJson);
            prop_assert_eq!((summary.serial, &summary.lineage), (None, &None));
        }
    }
    // Data sources and types not read never become resources.
    for r in &summary.resources {
        prop_assert!(
            KnownType::from_type_name(&r.resource_type).is_some(),
            "{}",
            r.address
        );
    }
    prop_assert_eq!(summary.ignored_instances, case.ignored);
    let want_warnings = case.warnings.min(100) + usize::from(case.warnings > 100);
    prop_assert_eq!(
        summary.warnings.len(),
        want_warnings,
        "{:#?}",
        summary.warnings
    );
    prop_assert_eq!(&summary.resources, &case.resources, "{}", case.text);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The model: what a case is made of, before secrets are planted and JSON is written.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Raw,
    Show,
}

#[derive(Clone, Debug)]
struct Model {
    marker: u64,
    terraform_version: String,
    serial: u32,
    lineage: String,
    resources: Vec<Res>,
}

#[derive(Clone, Debug)]
struct Res {
    module: Vec<Segment>,
    data: bool,
    ty: Ty,
    /// Made unique by appending the resource's position.
    name: String,
    keys: Keys,
    provider_alias: bool,
    objects: Vec<Object>,
    /// Raw: `instances` before `mode`/`type`; show -json: `values` first. Either way the
    /// parser has to hold the value back until it knows the type.
    out_of_order: bool,
    /// show -json only: leave `address` out, so the parser computes it.
    without_address: bool,
}

/// `module.name[key]`.
type Segment = (String, Option<Key>);

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Int(i64),
    Str(String),
}

#[derive(Clone, Debug)]
enum Keys {
    None,
    Count,
    ForEach(Vec<String>),
}

#[derive(Clone, Copy, Debug)]
enum Ty {
    Ec2,
    Lt,
    Lc,
    Asg,
    Gce,
    Azure,
    Unknown(&'static str),
}

/// Near misses included: a type not read must be skipped however close its name is.
const UNKNOWN_TYPES: &[&str] = &[
    "aws_db_instance",
    "random_password",
    "tls_private_key",
    "aws_instances",
    "aws_instance_",
    "AWS_INSTANCE",
    "azurerm_windows_virtual_machine",
    "google_compute_instance_template",
];

#[derive(Clone, Debug)]
struct Object {
    /// Which index key (under count or for_each) the object belongs to.
    slot: usize,
    deposed: Option<u16>,
    status: Status,
    identity: bool,
    instance_provider: bool,
    attrs: Attrs,
}

#[derive(Clone, Copy, Debug)]
enum Status {
    Omitted,
    Empty,
    Tainted,
}

#[derive(Clone, Debug)]
enum Attrs {
    Ec2(Ec2),
    Lt(Lt),
    Lc(Lc),
    Asg(Asg),
    Gce(Gce),
    Azure(Azure),
}

/// The ways an attribute is absent: left out, `null`, or empty (`""`, `{}`, `[]`).
#[derive(Clone, Copy, Debug)]
enum Absent {
    Omit,
    Null,
    Empty,
}

/// A string attribute as written.
#[derive(Clone, Debug)]
enum Str {
    Absent(Absent),
    Text(String),
    /// Some ids are numbers in one provider version and strings in another.
    Number(u32),
    Odd(Odd),
}

/// An allow-listed attribute of a shape the parser does not read: skipped with a warning.
#[derive(Clone, Copy, Debug)]
enum Odd {
    Object,
    Array,
    Bool,
    Negative,
    Fraction,
}

#[derive(Clone, Debug)]
enum Num {
    Absent(Absent),
    Int(u32),
    /// `"7"`: some providers store numbers as text.
    Text(u32),
    /// A string that is not a number (the marker): a warning.
    Odd,
}

#[derive(Clone, Debug)]
enum TagsAttr {
    Absent(Absent),
    Map(BTreeMap<String, TagVal>),
    /// An array: a warning.
    Odd,
}

#[derive(Clone, Debug)]
enum TagVal {
    Str(String),
    Num(u32),
    Bool(bool),
    /// An object: that entry is skipped, silently.
    Object,
}

/// `aws_instance.user_data`.
#[derive(Clone, Debug)]
enum UserData {
    Absent(Absent),
    /// AWS provider < 6: the hex SHA-1 itself, kept as is.
    Digest([u8; 20]),
    /// Provider ≥ 6: clear text (with the marker, so never valid base64), hashed as text.
    Clear(String),
    /// Clear text that is valid base64: hashed decoded, like the provider does.
    Base64(String),
}

/// `user_data_base64`, `aws_launch_template.user_data`.
#[derive(Clone, Debug)]
enum B64 {
    Absent(Absent),
    Data(String),
    /// Not base64 (the marker): a warning.
    Odd,
}

/// A list block: Terraform writes nested blocks as arrays of objects.
#[derive(Clone, Debug)]
enum List<T> {
    Absent(Absent),
    Items(Vec<T>),
}

#[derive(Clone, Debug)]
struct LtSpec {
    id: Str,
    name: Str,
    version: Str,
}

#[derive(Clone, Debug)]
struct Ec2 {
    id: Str,
    ami: Str,
    instance_state: Str,
    availability_zone: Str,
    private_ip: Str,
    private_dns: Str,
    public_ip: Str,
    tags: TagsAttr,
    tags_all: TagsAttr,
    user_data: UserData,
    user_data_base64: B64,
    launch_template: List<LtSpec>,
}

#[derive(Clone, Debug)]
struct Lt {
    id: Str,
    name: Str,
    latest_version: Num,
    default_version: Num,
    image_id: Str,
    tags: TagsAttr,
    tags_all: TagsAttr,
    user_data: B64,
}

#[derive(Clone, Debug)]
struct Lc {
    id: Str,
    name: Str,
    image_id: Str,
    user_data: UserData,
    user_data_base64: B64,
}

#[derive(Clone, Debug)]
struct AsgTagModel {
    key: String,
    value: String,
    propagate: bool,
}

#[derive(Clone, Debug)]
struct Asg {
    id: Str,
    name: Str,
    launch_template: List<LtSpec>,
    launch_configuration: Str,
    mixed_instances_policy: List<LtSpec>,
    min_size: Num,
    max_size: Num,
    desired_capacity: Num,
    tag: List<AsgTagModel>,
    legacy_tags: List<AsgTagModel>,
}

#[derive(Clone, Debug)]
struct Gce {
    instance_id: Str,
    name: Str,
    project: Str,
    zone: Str,
    current_status: Str,
    boot_disk: List<List<Str>>,
    network_interface: List<Str>,
    labels: TagsAttr,
    effective_labels: TagsAttr,
}

#[derive(Clone, Debug)]
struct ImageRef {
    publisher: Str,
    offer: Str,
    sku: Str,
    version: Str,
}

#[derive(Clone, Debug)]
struct Azure {
    id: Str,
    name: Str,
    virtual_machine_id: Str,
    location: Str,
    resource_group_name: Str,
    source_image_id: Str,
    source_image_reference: List<ImageRef>,
    private_ip_address: Str,
    public_ip_address: Str,
    tags: TagsAttr,
}

// ---------------------------------------------------------------------------------------------
// Strategies.

prop_compose! {
    fn model()(
        marker in any::<u64>(),
        terraform_version in "1\\.[0-9]{1,2}\\.[0-9]",
        serial in any::<u32>(),
        lineage in "[0-9a-f]{8}-[0-9a-f]{4}",
        resources in vec(resource(), 0..6),
    ) -> Model {
        Model { marker, terraform_version, serial, lineage, resources }
    }
}

fn ty() -> impl Strategy<Value = Ty> {
    prop_oneof![
        Just(Ty::Ec2),
        Just(Ty::Lt),
        Just(Ty::Lc),
        Just(Ty::Asg),
        Just(Ty::Gce),
        Just(Ty::Azure),
        select(UNKNOWN_TYPES).prop_map(Ty::Unknown),
    ]
}

prop_compose! {
    fn resource()(ty in ty())(
        ty in Just(ty),
        module in module_path(),
        data in prop::bool::weighted(0.2),
        name in "[a-z_][a-z0-9_-]{0,6}",
        keys in keys(),
        provider_alias in any::<bool>(),
        objects in vec(object(ty), 0..4),
        out_of_order in prop::bool::weighted(0.2),
        without_address in prop::bool::weighted(0.2),
    ) -> Res {
        Res { module, data, ty, name, keys, provider_alias, objects, out_of_order, without_address }
    }
}

/// Characters that need care in an address: quotes, backslashes, template introducers, control
/// and non-printing characters.
const KEY_CHARS: &[char] = &[
    'a', 'b', '0', ' ', '.', '-', '/', '"', '\\', '$', '%', '{', '}', '\n', '\t', '\r', 'ü',
    '\u{1}', '\u{7f}', '\u{a0}',
];

/// Keys Terraform must escape, for the generator to hit often.
const AWKWARD_KEYS: &[&str] = &["${x}", "%{if a}", "a\"b", "c\\d", "$${y}", "", "0"];

fn key_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,5}",
        select(AWKWARD_KEYS).prop_map(String::from),
        vec(select(KEY_CHARS), 0..6).prop_map(|chars| chars.into_iter().collect()),
    ]
}

fn module_path() -> impl Strategy<Value = Vec<Segment>> {
    let key = prop_oneof![
        (0i64..3).prop_map(Key::Int),
        key_string().prop_map(Key::Str)
    ];
    let segment = ("[a-z][a-z0-9_]{0,4}", proptest::option::of(key));
    prop_oneof![Just(Vec::new()), vec(segment, 1..3)]
}

fn keys() -> impl Strategy<Value = Keys> {
    prop_oneof![
        Just(Keys::None),
        Just(Keys::Count),
        vec(key_string(), 1..4).prop_map(Keys::ForEach),
    ]
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        2 => Just(Status::Omitted),
        1 => Just(Status::Empty),
        1 => Just(Status::Tainted)
    ]
}

prop_compose! {
    fn object(ty: Ty)(
        slot in 0usize..3,
        deposed in proptest::option::weighted(0.25, any::<u16>()),
        status in status(),
        identity in any::<bool>(),
        instance_provider in any::<bool>(),
        attrs in attrs(ty),
    ) -> Object {
        Object { slot, deposed, status, identity, instance_provider, attrs }
    }
}

fn attrs(ty: Ty) -> BoxedStrategy<Attrs> {
    match ty {
        Ty::Ec2 => ec2().prop_map(Attrs::Ec2).boxed(),
        Ty::Lt => lt().prop_map(Attrs::Lt).boxed(),
        Ty::Lc => lc().prop_map(Attrs::Lc).boxed(),
        Ty::Asg => asg().prop_map(Attrs::Asg).boxed(),
        Ty::Gce => gce().prop_map(Attrs::Gce).boxed(),
        Ty::Azure => azure().prop_map(Attrs::Azure).boxed(),
        // A type not read, with attributes of any shape, allow-listed names included.
        Ty::Unknown(_) => prop_oneof![
            ec2().prop_map(Attrs::Ec2),
            lt().prop_map(Attrs::Lt),
            lc().prop_map(Attrs::Lc),
            asg().prop_map(Attrs::Asg),
            gce().prop_map(Attrs::Gce),
            azure().prop_map(Attrs::Azure),
        ]
        .boxed(),
    }
}

fn absent() -> impl Strategy<Value = Absent> {
    prop_oneof![
        2 => Just(Absent::Omit),
        1 => Just(Absent::Null),
        1 => Just(Absent::Empty)
    ]
}

fn odd() -> impl Strategy<Value = Odd> {
    select(
        &[
            Odd::Object,
            Odd::Array,
            Odd::Bool,
            Odd::Negative,
            Odd::Fraction,
        ][..],
    )
}

/// A top-level string attribute: sometimes absent in each way, rarely of an odd shape.
fn string(value: impl Strategy<Value = String>) -> impl Strategy<Value = Str> {
    prop_oneof![
        4 => absent().prop_map(Str::Absent),
        10 => value.prop_map(Str::Text),
        1 => odd().prop_map(Str::Odd),
    ]
}

/// A string inside a nested block: well shaped (odd shapes there are `lenient`'s tests).
fn plain(value: impl Strategy<Value = String>) -> impl Strategy<Value = Str> {
    prop_oneof![
        2 => absent().prop_map(Str::Absent),
        6 => value.prop_map(Str::Text),
    ]
}

fn number() -> impl Strategy<Value = Num> {
    prop_oneof![
        4 => absent().prop_map(Num::Absent),
        6 => (0u32..100).prop_map(Num::Int),
        2 => (0u32..100).prop_map(Num::Text),
        1 => Just(Num::Odd),
    ]
}

fn tags() -> impl Strategy<Value = TagsAttr> {
    let value = prop_oneof![
        6 => "[a-zA-Z0-9 _.-]{0,8}".prop_map(TagVal::Str),
        1 => any::<u32>().prop_map(TagVal::Num),
        1 => any::<bool>().prop_map(TagVal::Bool),
        1 => Just(TagVal::Object),
    ];
    prop_oneof![
        4 => absent().prop_map(TagsAttr::Absent),
        6 => btree_map("[A-Za-z][A-Za-z0-9:_./-]{0,8}", value, 1..4).prop_map(TagsAttr::Map),
        1 => Just(TagsAttr::Odd),
    ]
}

fn list<T: std::fmt::Debug + Clone>(
    item: impl Strategy<Value = T>,
    max: usize,
) -> impl Strategy<Value = List<T>> {
    prop_oneof![
        4 => absent().prop_map(List::Absent),
        4 => vec(item, 1..=max).prop_map(List::Items),
    ]
}

fn user_data() -> impl Strategy<Value = UserData> {
    prop_oneof![
        4 => absent().prop_map(UserData::Absent),
        2 => any::<[u8; 20]>().prop_map(UserData::Digest),
        3 => "[ -~\n]{0,20}".prop_map(UserData::Clear),
        2 => "[ -~\n]{0,20}".prop_map(UserData::Base64),
    ]
}

fn base64_data() -> impl Strategy<Value = B64> {
    prop_oneof![
        4 => absent().prop_map(B64::Absent),
        4 => "[ -~\n]{0,20}".prop_map(B64::Data),
        1 => Just(B64::Odd),
    ]
}

fn word() -> &'static str {
    "[a-z][a-z0-9-]{0,10}"
}

fn ip() -> &'static str {
    "10\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}"
}

fn lt_version() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("$Latest".to_owned()),
        Just("$Default".to_owned()),
        "[1-9][0-9]?"
    ]
}

fn lt_spec() -> impl Strategy<Value = LtSpec> {
    (plain("lt-[0-9a-f]{17}"), plain(word()), plain(lt_version()))
        .prop_map(|(id, name, version)| LtSpec { id, name, version })
}

prop_compose! {
    fn ec2()(
        id in string("i-[0-9a-f]{8,17}"),
        ami in string("ami-[0-9a-f]{8,17}"),
        instance_state in string(select(&["pending", "running", "stopped"][..]).prop_map(String::from)),
        availability_zone in string("[a-z]{2}-[a-z]{4,7}-[1-3][a-c]"),
        private_ip in string(ip()),
        private_dns in string("ip-10-[0-9]{1,3}-[0-9]{1,3}\\.ec2\\.internal"),
        public_ip in string("52\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}"),
        tags in tags(),
        tags_all in tags(),
        user_data in user_data(),
        user_data_base64 in base64_data(),
        launch_template in list(lt_spec(), 1),
    ) -> Ec2 {
        Ec2 { id, ami, instance_state, availability_zone, private_ip, private_dns, public_ip,
              tags, tags_all, user_data, user_data_base64, launch_template }
    }
}

prop_compose! {
    fn lt()(
        id in string("lt-[0-9a-f]{17}"),
        name in string(word()),
        latest_version in number(),
        default_version in number(),
        image_id in string("ami-[0-9a-f]{8,17}"),
        tags in tags(),
        tags_all in tags(),
        user_data in base64_data(),
    ) -> Lt {
        Lt { id, name, latest_version, default_version, image_id, tags, tags_all, user_data }
    }
}

prop_compose! {
    fn lc()(
        id in string(word()),
        name in string(word()),
        image_id in string("ami-[0-9a-f]{8,17}"),
        user_data in user_data(),
        user_data_base64 in base64_data(),
    ) -> Lc {
        Lc { id, name, image_id, user_data, user_data_base64 }
    }
}

fn asg_tag() -> impl Strategy<Value = AsgTagModel> {
    (
        "[A-Za-z][A-Za-z0-9:_-]{0,8}",
        "[a-z0-9 ]{0,6}",
        any::<bool>(),
    )
        .prop_map(|(key, value, propagate)| AsgTagModel {
            key,
            value,
            propagate,
        })
}

prop_compose! {
    fn asg()(
        id in string(word()),
        name in string(word()),
        launch_template in list(lt_spec(), 1),
        launch_configuration in string(word()),
        mixed_instances_policy in list(lt_spec(), 1),
        min_size in number(),
        max_size in number(),
        desired_capacity in number(),
        tag in list(asg_tag(), 3),
        legacy_tags in list(asg_tag(), 2),
    ) -> Asg {
        Asg { id, name, launch_template, launch_configuration, mixed_instances_policy, min_size,
              max_size, desired_capacity, tag, legacy_tags }
    }
}

prop_compose! {
    fn gce()(
        instance_id in prop_oneof![
            3 => string("[1-9][0-9]{5,18}"),
            1 => any::<u32>().prop_map(Str::Number),
        ],
        name in string(word()),
        project in string(word()),
        zone in string("[a-z]{6}-[a-z]{4}[1-4]-[a-c]"),
        current_status in string(select(&["RUNNING", "TERMINATED"][..]).prop_map(String::from)),
        boot_disk in list(list(plain("projects/[a-z]{3,8}/global/images/[a-z0-9-]{3,12}"), 1), 1),
        network_interface in list(plain(ip()), 2),
        labels in tags(),
        effective_labels in tags(),
    ) -> Gce {
        Gce { instance_id, name, project, zone, current_status, boot_disk, network_interface,
              labels, effective_labels }
    }
}

prop_compose! {
    fn azure()(
        id in string("/subscriptions/[0-9a-f]{8}/resourceGroups/[a-z]{2,6}/providers/Microsoft\\.Compute/virtualMachines/[a-z]{2,6}"),
        name in string(word()),
        virtual_machine_id in string("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
        location in string("[a-z]{6,10}"),
        resource_group_name in string(word()),
        source_image_id in string("/subscriptions/[0-9a-f]{8}/images/[a-z]{2,6}"),
        source_image_reference in list(
            (plain(word()), plain(word()), plain(word()), plain(word())).prop_map(
                |(publisher, offer, sku, version)| ImageRef { publisher, offer, sku, version },
            ),
            1,
        ),
        private_ip_address in string(ip()),
        public_ip_address in string(ip()),
        tags in tags(),
    ) -> Azure {
        Azure { id, name, virtual_machine_id, location, resource_group_name, source_image_id,
                source_image_reference, private_ip_address, public_ip_address, tags }
    }
}
