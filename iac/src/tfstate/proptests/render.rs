//! Rendering a [`Model`] as JSON text in either shape, with the case's secrets planted, and
//! working out what the parser must return for it.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;

use super::*;

mod attrs;

/// JSON, written with its keys in the order given (serde_json's map would sort them, and the
/// parser must be seen reading `instances` and `values` before and after `type`).
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

pub(super) struct Case {
    pub(super) text: String,
    pub(super) marker: String,
    /// Encodings of secrets that must not survive either (base64 of user data).
    pub(super) forbidden: Vec<String>,
    /// Sorted as the parser sorts them.
    pub(super) resources: Vec<Resource>,
    pub(super) ignored: u64,
    pub(super) warnings: usize,
}

struct Cx {
    marker: String,
    forbidden: Vec<String>,
    warnings: usize,
}

/// Writes an absent attribute; `empty` is the empty value of its kind.
fn absent(f: &mut Fields, key: &str, a: Absent, empty: J) {
    match a {
        Absent::Omit => {}
        Absent::Null => f.put(key, J::Null),
        Absent::Empty => f.put(key, empty),
    }
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
            Str::Absent(a) => {
                absent(f, key, *a, s(""));
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
            Num::Absent(a) => {
                absent(f, key, *a, s(""));
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
            TagsAttr::Absent(a) => {
                absent(f, key, *a, obj([]));
                return want;
            }
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
            List::Absent(a) => {
                absent(f, key, *a, J::Arr(Vec::new()));
                return Vec::new();
            }
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
            UserData::Absent(a) => {
                absent(f, "user_data", *a, s(""));
                return None;
            }
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
            B64::Absent(a) => {
                absent(f, key, *a, s(""));
                return None;
            }
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
        Ty::Ec2 | Ty::Lt | Ty::Lc | Ty::Asg => "registry.terraform.io/hashicorp/aws",
        Ty::Gce => "registry.terraform.io/hashicorp/google",
        Ty::Azure => "registry.terraform.io/hashicorp/azurerm",
        Ty::Unknown(_) => "registry.opentofu.org/hashicorp/random",
    }
}

fn type_name(ty: Ty) -> &'static str {
    match ty {
        Ty::Ec2 => "aws_instance",
        Ty::Lt => "aws_launch_template",
        Ty::Lc => "aws_launch_configuration",
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

pub(super) fn build(model: &Model, shape: Shape) -> Case {
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
