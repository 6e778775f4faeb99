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

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;

use super::resources::KnownType;
use super::*;
use crate::iac::Tags;

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
    Asg(Asg),
    Gce(Gce),
    Azure(Azure),
}

/// A string attribute as written.
#[derive(Clone, Debug)]
enum Str {
    Omit,
    Null,
    Empty,
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
    Omit,
    Null,
    Empty,
    Int(u32),
    /// `"7"`: some providers store numbers as text.
    Text(u32),
    /// A string that is not a number (the marker): a warning.
    Odd,
}

#[derive(Clone, Debug)]
enum TagsAttr {
    Omit,
    Null,
    Empty,
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
    Omit,
    Null,
    Empty,
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
    Omit,
    Null,
    Empty,
    Data(String),
    /// Not base64 (the marker): a warning.
    Odd,
}

/// A list block: Terraform writes nested blocks as arrays of objects.
#[derive(Clone, Debug)]
enum List<T> {
    Omit,
    Null,
    Empty,
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

fn model() -> impl Strategy<Value = Model> {
    (
        any::<u64>(),
        "1\\.[0-9]{1,2}\\.[0-9]",
        any::<u32>(),
        "[0-9a-f]{8}-[0-9a-f]{4}",
        vec(resource(), 0..6),
    )
        .prop_map(
            |(marker, terraform_version, serial, lineage, resources)| Model {
                marker,
                terraform_version,
                serial,
                lineage,
                resources,
            },
        )
}

fn resource() -> impl Strategy<Value = Res> {
    let ty = prop_oneof![
        Just(Ty::Ec2),
        Just(Ty::Lt),
        Just(Ty::Asg),
        Just(Ty::Gce),
        Just(Ty::Azure),
        select(UNKNOWN_TYPES).prop_map(Ty::Unknown),
    ];
    ty.prop_flat_map(|ty| {
        (
            module_path(),
            prop::bool::weighted(0.2),
            "[a-z_][a-z0-9_-]{0,6}",
            keys(),
            any::<bool>(),
            vec(object(ty), 0..4),
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.2),
        )
            .prop_map(
                move |(
                    module,
                    data,
                    name,
                    keys,
                    provider_alias,
                    objects,
                    out_of_order,
                    without_address,
                )| Res {
                    module,
                    data,
                    ty,
                    name,
                    keys,
                    provider_alias,
                    objects,
                    out_of_order,
                    without_address,
                },
            )
    })
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

fn object(ty: Ty) -> impl Strategy<Value = Object> {
    let status = prop_oneof![
        2 => Just(Status::Omitted),
        1 => Just(Status::Empty),
        1 => Just(Status::Tainted)
    ];
    (
        0usize..3,
        proptest::option::weighted(0.25, any::<u16>()),
        status,
        any::<bool>(),
        any::<bool>(),
        attrs(ty),
    )
        .prop_map(
            |(slot, deposed, status, identity, instance_provider, attrs)| Object {
                slot,
                deposed,
                status,
                identity,
                instance_provider,
                attrs,
            },
        )
}

fn attrs(ty: Ty) -> BoxedStrategy<Attrs> {
    match ty {
        Ty::Ec2 => ec2().prop_map(Attrs::Ec2).boxed(),
        Ty::Lt => lt().prop_map(Attrs::Lt).boxed(),
        Ty::Asg => asg().prop_map(Attrs::Asg).boxed(),
        Ty::Gce => gce().prop_map(Attrs::Gce).boxed(),
        Ty::Azure => azure().prop_map(Attrs::Azure).boxed(),
        // A type not read, with attributes of any shape, allow-listed names included.
        Ty::Unknown(_) => prop_oneof![
            ec2().prop_map(Attrs::Ec2),
            lt().prop_map(Attrs::Lt),
            asg().prop_map(Attrs::Asg),
            gce().prop_map(Attrs::Gce),
            azure().prop_map(Attrs::Azure),
        ]
        .boxed(),
    }
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
        2 => Just(Str::Omit),
        1 => Just(Str::Null),
        1 => Just(Str::Empty),
        10 => value.prop_map(Str::Text),
        1 => odd().prop_map(Str::Odd),
    ]
}

/// A string inside a nested block: well shaped (odd shapes there are `lenient`'s tests).
fn plain(value: impl Strategy<Value = String>) -> impl Strategy<Value = Str> {
    prop_oneof![
        1 => Just(Str::Omit),
        1 => Just(Str::Empty),
        6 => value.prop_map(Str::Text),
    ]
}

fn number() -> impl Strategy<Value = Num> {
    prop_oneof![
        2 => Just(Num::Omit),
        1 => Just(Num::Null),
        1 => Just(Num::Empty),
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
        2 => Just(TagsAttr::Omit),
        1 => Just(TagsAttr::Null),
        1 => Just(TagsAttr::Empty),
        6 => btree_map("[A-Za-z][A-Za-z0-9:_./-]{0,8}", value, 1..4).prop_map(TagsAttr::Map),
        1 => Just(TagsAttr::Odd),
    ]
}

fn list<T: std::fmt::Debug + Clone>(
    item: impl Strategy<Value = T>,
    max: usize,
) -> impl Strategy<Value = List<T>> {
    prop_oneof![
        2 => Just(List::Omit),
        1 => Just(List::Null),
        1 => Just(List::Empty),
        4 => vec(item, 1..=max).prop_map(List::Items),
    ]
}

fn user_data() -> impl Strategy<Value = UserData> {
    prop_oneof![
        2 => Just(UserData::Omit),
        1 => Just(UserData::Null),
        1 => Just(UserData::Empty),
        2 => any::<[u8; 20]>().prop_map(UserData::Digest),
        3 => "[ -~\n]{0,20}".prop_map(UserData::Clear),
        2 => "[ -~\n]{0,20}".prop_map(UserData::Base64),
    ]
}

fn base64_data() -> impl Strategy<Value = B64> {
    prop_oneof![
        2 => Just(B64::Omit),
        1 => Just(B64::Null),
        1 => Just(B64::Empty),
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
        mixed_instances_policy in list(lt_spec(), 1),
        min_size in number(),
        max_size in number(),
        desired_capacity in number(),
        tag in list(asg_tag(), 3),
        legacy_tags in list(asg_tag(), 2),
    ) -> Asg {
        Asg { id, name, launch_template, mixed_instances_policy, min_size, max_size,
              desired_capacity, tag, legacy_tags }
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

// ---------------------------------------------------------------------------------------------
// JSON text, keys in the order given.

#[derive(Clone, Debug)]
enum J {
    Null,
    Bool(bool),
    Int(i64),
    /// Written as is: `1.5`.
    Literal(&'static str),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

fn s(text: impl Into<String>) -> J {
    J::Str(text.into())
}

fn obj<const N: usize>(entries: [(&str, J); N]) -> J {
    J::Obj(entries.map(|(k, v)| (k.to_owned(), v)).into())
}

impl J {
    fn write(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Int(n) => out.push_str(&n.to_string()),
            J::Literal(text) => out.push_str(text),
            J::Str(text) => out.push_str(&serde_json::to_string(text).unwrap()),
            J::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            J::Obj(entries) => {
                out.push('{');
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(key).unwrap());
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }

    /// Every string replaced by a secret: for what must be skipped whole.
    fn poisoned(&self, cx: &Cx) -> J {
        match self {
            J::Str(_) => cx.secret("poisoned"),
            J::Arr(items) => J::Arr(items.iter().map(|j| j.poisoned(cx)).collect()),
            J::Obj(entries) => J::Obj(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.poisoned(cx)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// An object under construction.
#[derive(Default)]
struct Fields(Vec<(String, J)>);

impl Fields {
    fn put(&mut self, key: &str, value: J) {
        self.0.push((key.to_owned(), value));
    }

    fn done(self) -> J {
        J::Obj(self.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Building a case: the JSON text and what the parser must make of it.

struct Case {
    text: String,
    marker: String,
    /// Encodings of secrets that must not survive either (base64 of user data).
    forbidden: Vec<String>,
    resources: Vec<Resource>,
    ignored: u64,
    warnings: usize,
}

struct Cx {
    marker: String,
    forbidden: Vec<String>,
    warnings: usize,
}

fn sha1_hex(bytes: &[u8]) -> String {
    use sha1::Digest as _;
    hex::encode(sha1::Sha1::digest(bytes))
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Cx {
    fn secret(&self, what: &str) -> J {
        s(format!("{}-{what}", self.marker))
    }

    /// Attributes no allow-list names, in the shapes they come in.
    fn plant(&self, f: &mut Fields, keys: &[&str]) {
        for (i, key) in keys.iter().enumerate() {
            let value = match i % 3 {
                0 => self.secret(key),
                1 => obj([
                    ("value", self.secret(key)),
                    ("nested", J::Arr(vec![obj([("deep", self.secret(key))])])),
                ]),
                _ => J::Arr(vec![self.secret(key), obj([("k", self.secret(key))])]),
            };
            f.put(key, value);
        }
    }

    fn odd(&mut self, f: &mut Fields, key: &str, odd: Odd) {
        self.warnings += 1;
        let value = match odd {
            Odd::Object => obj([("value", self.secret(key))]),
            Odd::Array => J::Arr(vec![self.secret(key)]),
            Odd::Bool => J::Bool(true),
            Odd::Negative => J::Int(-7),
            Odd::Fraction => J::Literal("1.5"),
        };
        f.put(key, value);
    }

    fn string(&mut self, f: &mut Fields, key: &str, a: &Str) -> Option<String> {
        match a {
            Str::Omit => None,
            Str::Null => {
                f.put(key, J::Null);
                None
            }
            Str::Empty => {
                f.put(key, s(""));
                None
            }
            Str::Text(text) => {
                f.put(key, s(text.clone()));
                Some(text.clone())
            }
            Str::Number(n) => {
                f.put(key, J::Int(i64::from(*n)));
                Some(n.to_string())
            }
            Str::Odd(odd) => {
                self.odd(f, key, *odd);
                None
            }
        }
    }

    fn number(&mut self, f: &mut Fields, key: &str, a: &Num) -> Option<u64> {
        match a {
            Num::Omit => None,
            Num::Null => {
                f.put(key, J::Null);
                None
            }
            Num::Empty => {
                f.put(key, s(""));
                None
            }
            Num::Int(n) => {
                f.put(key, J::Int(i64::from(*n)));
                Some(u64::from(*n))
            }
            Num::Text(n) => {
                f.put(key, s(n.to_string()));
                Some(u64::from(*n))
            }
            Num::Odd => {
                self.warnings += 1;
                f.put(key, self.secret(key));
                None
            }
        }
    }

    fn tags(&mut self, f: &mut Fields, key: &str, a: &TagsAttr) -> Tags {
        let mut want = Tags::new();
        let value = match a {
            TagsAttr::Omit => return want,
            TagsAttr::Null => J::Null,
            TagsAttr::Empty => obj([]),
            TagsAttr::Odd => {
                self.warnings += 1;
                J::Arr(vec![self.secret(key)])
            }
            TagsAttr::Map(map) => {
                let mut entries = Fields::default();
                for (k, v) in map {
                    let (json, kept) = match v {
                        TagVal::Str(text) => (s(text.clone()), Some(text.clone())),
                        TagVal::Num(n) => (J::Int(i64::from(*n)), Some(n.to_string())),
                        TagVal::Bool(b) => (J::Bool(*b), Some(b.to_string())),
                        TagVal::Object => (obj([("v", self.secret(key))]), None),
                    };
                    entries.put(k, json);
                    if let Some(kept) = kept {
                        want.insert(k.clone(), kept);
                    }
                }
                entries.done()
            }
        };
        f.put(key, value);
        want
    }

    /// Writes a list block; returns what its elements convert to.
    fn list<T, R>(
        &mut self,
        f: &mut Fields,
        key: &str,
        a: &List<T>,
        mut item: impl FnMut(&mut Self, &T) -> (J, R),
    ) -> Vec<R> {
        let (json, want) = match a {
            List::Omit => return Vec::new(),
            List::Null => (J::Null, Vec::new()),
            List::Empty => (J::Arr(Vec::new()), Vec::new()),
            List::Items(items) => {
                let (json, want) = items.iter().map(|i| item(self, i)).unzip();
                (J::Arr(json), want)
            }
        };
        f.put(key, json);
        want
    }

    fn user_data(&mut self, f: &mut Fields, a: &UserData) -> Option<String> {
        let (json, want) = match a {
            UserData::Omit => return None,
            UserData::Null => (J::Null, None),
            UserData::Empty => (s(""), None),
            UserData::Digest(digest) => {
                let hex = hex::encode(digest);
                (s(hex.clone()), Some(hex))
            }
            UserData::Clear(body) => {
                let text = format!("#!/bin/bash\n{body}\nexport DB_PASSWORD={}\n", self.marker);
                let want = sha1_hex(text.as_bytes());
                (s(text), Some(want))
            }
            UserData::Base64(body) => {
                let text = format!("#cloud-config\n{body}\npassword: {}\n", self.marker);
                let encoded = base64(text.as_bytes());
                self.forbidden.push(encoded.clone());
                (s(encoded), Some(sha1_hex(text.as_bytes())))
            }
        };
        f.put("user_data", json);
        want
    }

    fn base64_data(&mut self, f: &mut Fields, key: &str, a: &B64) -> Option<String> {
        let (json, want) = match a {
            B64::Omit => return None,
            B64::Null => (J::Null, None),
            B64::Empty => (s(""), None),
            B64::Data(body) => {
                let text = format!("#!/bin/sh\n{body}\necho {}\n", self.marker);
                let encoded = base64(text.as_bytes());
                self.forbidden.push(encoded.clone());
                (s(encoded), Some(sha1_hex(text.as_bytes())))
            }
            B64::Odd => {
                self.warnings += 1;
                (s(format!("{} is not base64!", self.marker)), None)
            }
        };
        f.put(key, json);
        want
    }

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
    fn attrs(&mut self, a: &Attrs) -> (J, ResourceKind) {
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
                ResourceKind::AwsAutoscalingGroup(AwsAutoscalingGroup {
                    name: name.or(id),
                    launch_template: direct.or(mixed),
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

/// Terraform's quoting of an instance key (`toHCLQuotedString`), written out for the characters
/// the generator uses.
fn quoted(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let mut out = String::from("\"");
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{1}' => out.push_str("\\u0001"),
            '\u{7f}' => out.push_str("\\u007f"),
            '\u{a0}' => out.push_str("\\u00a0"),
            '$' | '%' if chars.get(i + 1) == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn key_suffix(key: &Key) -> String {
    match key {
        Key::Int(i) => format!("[{i}]"),
        Key::Str(s) => format!("[{}]", quoted(s)),
    }
}

fn key_json(key: &Key) -> J {
    match key {
        Key::Int(i) => J::Int(*i),
        Key::Str(s) => J::Str(s.clone()),
    }
}

fn module_address(path: &[Segment]) -> Option<String> {
    if path.is_empty() {
        return None;
    }
    let parts: Vec<String> = path
        .iter()
        .map(|(name, key)| {
            format!(
                "module.{name}{}",
                key.as_ref().map(key_suffix).unwrap_or_default()
            )
        })
        .collect();
    Some(parts.join("."))
}

fn source(ty: Ty) -> &'static str {
    match ty {
        Ty::Ec2 | Ty::Lt | Ty::Asg => "registry.terraform.io/hashicorp/aws",
        Ty::Gce => "registry.terraform.io/hashicorp/google",
        Ty::Azure => "registry.terraform.io/hashicorp/azurerm",
        Ty::Unknown(_) => "registry.opentofu.org/hashicorp/random",
    }
}

fn type_name(ty: Ty) -> &'static str {
    match ty {
        Ty::Ec2 => "aws_instance",
        Ty::Lt => "aws_launch_template",
        Ty::Asg => "aws_autoscaling_group",
        Ty::Gce => "google_compute_instance",
        Ty::Azure => "azurerm_linux_virtual_machine",
        Ty::Unknown(name) => name,
    }
}

/// One instance object, placed: ready to be written in either shape.
struct Placed<'a> {
    res: &'a Res,
    name: String,
    index: Option<Key>,
    deposed: Option<String>,
    object: &'a Object,
    attrs: J,
    address: String,
}

fn build(model: &Model, shape: Shape) -> Case {
    let mut cx = Cx {
        marker: format!("SECRET-{:016x}", model.marker),
        forbidden: Vec::new(),
        warnings: 0,
    };
    let mut want = Vec::new();
    let mut ignored = 0;
    // Per resource, its objects in document order.
    let mut placed: Vec<Vec<Placed>> = Vec::new();
    for (position, res) in model.resources.iter().enumerate() {
        let name = format!("{}{position}", res.name);
        let module = module_address(&res.module);
        let type_name = type_name(res.ty);
        let read = !res.data && !matches!(res.ty, Ty::Unknown(_));
        let mut seen = BTreeSet::new();
        let mut objects = Vec::new();
        for object in &res.objects {
            let index = match &res.keys {
                Keys::None => None,
                Keys::Count => Some(Key::Int(object.slot as i64)),
                Keys::ForEach(keys) => Some(Key::Str(keys[object.slot % keys.len()].clone())),
            };
            // One current object per instance, deposed ones under distinct keys.
            if !seen.insert((index.clone(), object.deposed)) {
                continue;
            }
            let deposed = object.deposed.map(|d| format!("{d:08x}"));
            let mut address = String::new();
            if res.data {
                address.push_str("data.");
            }
            address.push_str(&format!("{type_name}.{name}"));
            if let Some(index) = &index {
                address.push_str(&key_suffix(index));
            }
            if let Some(module) = &module {
                address = format!("{module}.{address}");
            }
            let warnings_before = cx.warnings;
            let (attrs, kind) = cx.attrs(&object.attrs);
            let attrs = if read {
                want.push(Resource {
                    address: address.clone(),
                    module: module.clone(),
                    resource_type: type_name.to_owned(),
                    name: name.clone(),
                    index: index.as_ref().map(|k| match k {
                        Key::Int(i) => IndexKey::Int(*i),
                        Key::Str(s) => IndexKey::Str(s.clone()),
                    }),
                    provider: Some(match shape {
                        Shape::Raw => raw_provider(res),
                        Shape::Show => source(res.ty).to_owned(),
                    }),
                    status: InstanceStatus {
                        tainted: matches!(object.status, Status::Tainted),
                        deposed: deposed.clone(),
                    },
                    kind,
                });
                attrs
            } else {
                // Never read: nothing of it may survive, and it cannot warn.
                cx.warnings = warnings_before;
                if !res.data {
                    ignored += 1;
                }
                attrs.poisoned(&cx)
            };
            objects.push(Placed {
                res,
                name: name.clone(),
                index,
                deposed,
                object,
                attrs,
                address,
            });
        }
        placed.push(objects);
    }
    want.sort_by(|a, b| (&a.address, &a.status.deposed).cmp(&(&b.address, &b.status.deposed)));

    let top = match shape {
        Shape::Raw => raw_state(model, &cx, &placed),
        Shape::Show => show_state(model, &cx, &placed),
    };
    let mut text = String::new();
    top.write(&mut text);
    Case {
        text,
        marker: cx.marker,
        forbidden: cx.forbidden,
        resources: want,
        ignored,
        warnings: cx.warnings,
    }
}

fn raw_provider(res: &Res) -> String {
    let alias = if res.provider_alias { ".west" } else { "" };
    format!("provider[\"{}\"]{alias}", source(res.ty))
}

fn outputs(cx: &Cx) -> J {
    obj([(
        "db_password",
        obj([
            ("value", cx.secret("output")),
            ("type", s("string")),
            ("sensitive", J::Bool(true)),
        ]),
    )])
}

fn raw_state(model: &Model, cx: &Cx, placed: &[Vec<Placed>]) -> J {
    let mut resources = Vec::new();
    for (position, (res, objects)) in model.resources.iter().zip(placed).enumerate() {
        let instances = J::Arr(objects.iter().map(|p| raw_instance(cx, p)).collect());
        let mut f = Fields::default();
        if res.out_of_order {
            f.put("instances", instances.clone());
        }
        if let Some(module) = module_address(&res.module) {
            f.put("module", s(module));
        }
        f.put("mode", s(if res.data { "data" } else { "managed" }));
        f.put("type", s(type_name(res.ty)));
        f.put("name", s(format!("{}{position}", res.name)));
        match res.keys {
            Keys::None => {}
            Keys::Count => f.put("each", s("list")),
            Keys::ForEach(_) => f.put("each", s("map")),
        }
        f.put("provider", s(raw_provider(res)));
        if !res.out_of_order {
            f.put("instances", instances);
        }
        f.put("x_future_field", cx.secret("resource"));
        resources.push(f.done());
    }
    obj([
        ("version", J::Int(4)),
        ("terraform_version", s(model.terraform_version.clone())),
        ("serial", J::Int(i64::from(model.serial))),
        ("lineage", s(model.lineage.clone())),
        ("outputs", outputs(cx)),
        ("resources", J::Arr(resources)),
        (
            "check_results",
            J::Arr(vec![obj([
                ("object_kind", s("resource")),
                ("config_addr", cx.secret("check")),
            ])]),
        ),
        ("x_future_field", obj([("k", cx.secret("top"))])),
    ])
}

fn raw_instance(cx: &Cx, p: &Placed) -> J {
    let mut f = Fields::default();
    if let Some(index) = &p.index {
        f.put("index_key", key_json(index));
    }
    match p.object.status {
        Status::Omitted => {}
        Status::Empty => f.put("status", s("")),
        Status::Tainted => f.put("status", s("tainted")),
    }
    if let Some(deposed) = &p.deposed {
        f.put("deposed", s(deposed.clone()));
    }
    f.put("schema_version", J::Int(1));
    f.put("attributes", p.attrs.clone());
    f.put(
        "sensitive_attributes",
        J::Arr(vec![J::Arr(vec![
            obj([("type", s("get_attr")), ("value", s("password"))]),
            obj([
                ("type", s("index")),
                (
                    "value",
                    obj([("value", cx.secret("path")), ("type", s("string"))]),
                ),
            ]),
        ])]),
    );
    if p.object.identity {
        f.put("identity_schema_version", J::Int(0));
        f.put(
            "identity",
            obj([("id", cx.secret("identity")), ("region", s("eu-west-1"))]),
        );
    }
    let private = format!("{{\"schema_version\":\"1\",\"token\":\"{}\"}}", cx.marker);
    f.put("private", s(base64(private.as_bytes())));
    if p.object.instance_provider {
        f.put("instance_provider", cx.secret("instance-provider"));
    }
    f.put(
        "dependencies",
        J::Arr(vec![s("aws_security_group.web"), cx.secret("dependency")]),
    );
    f.put("create_before_destroy", J::Bool(true));
    f.done()
}

fn show_state(model: &Model, cx: &Cx, placed: &[Vec<Placed>]) -> J {
    // Module instance path → the resource entries directly in it.
    let mut modules: BTreeMap<Vec<Segment>, Vec<J>> = BTreeMap::new();
    modules.insert(Vec::new(), Vec::new());
    for (res, objects) in model.resources.iter().zip(placed) {
        for depth in 1..=res.module.len() {
            modules.entry(res.module[..depth].to_vec()).or_default();
        }
        let entries = modules.get_mut(&res.module).unwrap();
        entries.extend(objects.iter().map(|p| show_resource(cx, p)));
    }
    let root = show_module(&[], &modules);
    obj([
        ("format_version", s("1.0")),
        ("terraform_version", s(model.terraform_version.clone())),
        (
            "values",
            obj([("outputs", outputs(cx)), ("root_module", root)]),
        ),
        ("x_future_field", cx.secret("top")),
    ])
}

fn show_module(path: &[Segment], modules: &BTreeMap<Vec<Segment>, Vec<J>>) -> J {
    let mut f = Fields::default();
    let resources = &modules[path];
    if !resources.is_empty() {
        f.put("resources", J::Arr(resources.clone()));
    }
    if let Some(address) = module_address(path) {
        f.put("address", s(address));
    }
    let children: Vec<J> = modules
        .keys()
        .filter(|p| p.len() == path.len() + 1 && p.starts_with(path))
        .map(|p| show_module(p, modules))
        .collect();
    if !children.is_empty() {
        f.put("child_modules", J::Arr(children));
    }
    f.done()
}

fn show_resource(cx: &Cx, p: &Placed) -> J {
    let mut f = Fields::default();
    if p.res.out_of_order {
        f.put("values", p.attrs.clone());
    }
    if !p.res.without_address {
        f.put("address", s(p.address.clone()));
    }
    f.put("mode", s(if p.res.data { "data" } else { "managed" }));
    f.put("type", s(type_name(p.res.ty)));
    f.put("name", s(p.name.clone()));
    if let Some(index) = &p.index {
        f.put("index", key_json(index));
    }
    f.put("provider_name", s(source(p.res.ty)));
    f.put("schema_version", J::Int(1));
    if !p.res.out_of_order {
        f.put("values", p.attrs.clone());
    }
    f.put(
        "sensitive_values",
        obj([("password", J::Bool(true)), ("x", cx.secret("mask"))]),
    );
    if matches!(p.object.status, Status::Tainted) {
        f.put("tainted", J::Bool(true));
    }
    if let Some(deposed) = &p.deposed {
        f.put("deposed_key", s(deposed.clone()));
    }
    f.done()
}
