//! The visitors that read a state in one pass: the top level of either shape, raw `resources`
//! and their instances, show -json modules and their resources. See the parent module for what
//! is read and why; this file is the how.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::resources::{AttrsSeed, KnownType, RawAttrs};
use super::{
    IndexKey, InstanceStatus, Resource, SUPPORTED_STATE_VERSION, StateError, instance_address,
};
use crate::Warnings;
use crate::lenient::{Field, Notes};

/// Where the visitors put what they keep.
#[derive(Default)]
pub(super) struct Sink {
    pub(super) resources: Vec<Resource>,
    pub(super) ignored: u64,
    pub(super) warnings: Warnings,
}

/// One instance object as read, before its address is known.
struct Instance {
    index: Option<IndexKey>,
    tainted: bool,
    deposed: Option<String>,
    attrs: Field<RawAttrs>,
}

/// Where an instance sits, known once its resource (and module) object is read completely.
struct Placement<'a> {
    module: Option<&'a str>,
    /// Given by show -json; computed for raw state.
    address: Option<String>,
    resource_type: &'a str,
    name: &'a str,
    provider: Option<&'a str>,
    kind: KnownType,
}

impl Sink {
    fn push(&mut self, at: Placement<'_>, instance: Instance) {
        let address = at.address.unwrap_or_else(|| {
            instance_address(
                at.module,
                at.resource_type,
                at.name,
                instance.index.as_ref(),
            )
        });
        let mut notes = Notes {
            address: &address,
            warnings: &mut self.warnings,
        };
        let attrs = notes
            .take("attributes", instance.attrs)
            .unwrap_or_else(|| RawAttrs::empty(at.kind));
        let kind = attrs.convert(&mut notes);
        self.resources.push(Resource {
            module: at.module.map(str::to_owned),
            resource_type: at.resource_type.to_owned(),
            name: at.name.to_owned(),
            index: instance.index,
            provider: at.provider.map(str::to_owned),
            status: InstanceStatus {
                tainted: instance.tainted,
                deposed: instance.deposed,
            },
            kind,
            address,
        });
    }
}

/// Which resources to read: managed ones of a known type.
fn known_managed(mode: &str, resource_type: &str) -> Option<KnownType> {
    if mode == "managed" {
        KnownType::from_type_name(resource_type)
    } else {
        None
    }
}

/// Reads a JSON object with the visitor `V`. The visitors below are used through this and
/// [`Array`], so the kind of JSON each expects is named where it is read.
pub(super) struct Object<V>(pub(super) V);

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for Object<V> {
    type Value = V::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        d.deserialize_map(self.0)
    }
}

/// Reads a JSON array with the visitor `V`.
struct Array<V>(V);

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for Array<V> {
    type Value = V::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        d.deserialize_seq(self.0)
    }
}

/// Reads a value held back as raw text (see the module docs) with `seed`.
fn read_deferred<T, V, E>(raw: &RawValue, seed: T, context: &str) -> Result<V, E>
where
    T: for<'a> DeserializeSeed<'a, Value = V>,
    E: de::Error,
{
    let mut de = serde_json::Deserializer::from_str(raw.get());
    seed.deserialize(&mut de).map_err(|e| {
        let message = crate::classify(e).to_string();
        E::custom(format_args!("{context}: {message}"))
    })
}

/// Reads the top-level object of either shape.
pub(super) struct TopVisitor<'a> {
    /// Set when the visitor stops on purpose (an encrypted state, another version): the
    /// caller reports this instead of the JSON error the stop produces.
    pub(super) refusal: &'a mut Option<StateError>,
    pub(super) sink: &'a mut Sink,
}

/// The top-level fields kept.
#[derive(Default)]
pub(super) struct Top {
    pub(super) version: Option<u64>,
    pub(super) format_version: Option<String>,
    pub(super) terraform_version: Option<String>,
    pub(super) serial: Option<u64>,
    pub(super) lineage: Option<String>,
}

impl<'de> Visitor<'de> for TopVisitor<'_> {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Terraform state (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let TopVisitor { refusal, sink } = self;
        // Stops reading right away: the rest of a refused input is never looked at.
        let mut refuse = |error: StateError| -> Result<Top, A::Error> {
            *refusal = Some(error);
            Err(de::Error::custom("refused"))
        };
        let mut top = Top::default();
        let mut encrypted = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "version" => {
                    let found: u64 = map.next_value()?;
                    if found != SUPPORTED_STATE_VERSION {
                        return refuse(StateError::UnsupportedVersion { found });
                    }
                    top.version = Some(found);
                }
                "format_version" => top.format_version = Some(map.next_value()?),
                "terraform_version" => top.terraform_version = map.next_value()?,
                "serial" => top.serial = Some(map.next_value()?),
                "lineage" => top.lineage = Some(map.next_value()?),
                "resources" => {
                    map.next_value_seed(Array(RawResourcesVisitor { sink: &mut *sink }))?
                }
                "values" => map.next_value_seed(Object(ShowValuesVisitor { sink: &mut *sink }))?,
                // The ciphertext itself is skipped; `encryption_version` names the scheme.
                "encrypted_data" => {
                    map.next_value::<IgnoredAny>()?;
                    encrypted = true;
                }
                "encryption_version" => {
                    let encryption_version: Option<String> = map.next_value()?;
                    return refuse(StateError::Encrypted { encryption_version });
                }
                "planned_values" | "resource_changes" | "prior_state" => {
                    return refuse(StateError::Plan);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if encrypted {
            return refuse(StateError::Encrypted {
                encryption_version: None,
            });
        }
        Ok(top)
    }
}

/// A raw state's `resources` array.
struct RawResourcesVisitor<'a> {
    sink: &'a mut Sink,
}

impl<'de> Visitor<'de> for RawResourcesVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`resources`: an array of resources")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut position = 0;
        while seq
            .next_element_seed(Object(RawResourceVisitor {
                sink: &mut *self.sink,
                position,
            }))?
            .is_some()
        {
            position += 1;
        }
        Ok(())
    }
}

/// One element of a raw state's `resources`.
struct RawResourceVisitor<'a> {
    sink: &'a mut Sink,
    position: usize,
}

impl<'de> Visitor<'de> for RawResourceVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "resources[{}]: a resource object", self.position)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let position = self.position;
        let mut module: Option<String> = None;
        let mut mode: Option<String> = None;
        let mut resource_type: Option<String> = None;
        let mut name: Option<String> = None;
        let mut provider: Option<String> = None;
        let mut instances: Option<Vec<Instance>> = None;
        let mut deferred: Option<Box<RawValue>> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "module" => module = map.next_value()?,
                "mode" => mode = Some(map.next_value()?),
                "type" => resource_type = Some(map.next_value()?),
                "name" => name = Some(map.next_value()?),
                "provider" => provider = map.next_value()?,
                "instances" => match (&mode, &resource_type) {
                    (Some(mode), Some(t)) => {
                        instances = Some(match known_managed(mode, t) {
                            Some(kind) => {
                                map.next_value_seed(Array(InstancesVisitor { kind, position }))?
                            }
                            None if mode == "managed" => {
                                self.sink.ignored += map.next_value_seed(Array(CountVisitor))?;
                                Vec::new()
                            }
                            None => {
                                map.next_value::<IgnoredAny>()?;
                                Vec::new()
                            }
                        });
                    }
                    _ => deferred = Some(map.next_value()?),
                },
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let missing = |field: &str| -> A::Error {
            de::Error::custom(format_args!("resources[{position}] has no `{field}`"))
        };
        let mode = mode.ok_or_else(|| missing("mode"))?;
        let resource_type = resource_type.ok_or_else(|| missing("type"))?;
        let name = name.ok_or_else(|| missing("name"))?;
        let Some(kind) = known_managed(&mode, &resource_type) else {
            if mode == "managed"
                && let Some(raw) = deferred
            {
                let context = format!("resources[{position}].instances");
                self.sink.ignored +=
                    read_deferred::<_, _, A::Error>(&raw, Array(CountVisitor), &context)?;
            }
            return Ok(());
        };
        let instances = match (instances, deferred) {
            (Some(instances), _) => instances,
            (None, Some(raw)) => read_deferred(
                &raw,
                Array(InstancesVisitor { kind, position }),
                &format!("resources[{position}].instances"),
            )?,
            (None, None) => Vec::new(),
        };
        for instance in instances {
            let at = Placement {
                module: module.as_deref(),
                address: None,
                resource_type: &resource_type,
                name: &name,
                provider: provider.as_deref(),
                kind,
            };
            self.sink.push(at, instance);
        }
        Ok(())
    }
}

/// A raw resource's `instances` array, for a known type.
struct InstancesVisitor {
    kind: KnownType,
    position: usize,
}

impl<'de> Visitor<'de> for InstancesVisitor {
    type Value = Vec<Instance>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "resources[{}].instances: an array", self.position)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut instances = Vec::new();
        while let Some(instance) = seq.next_element_seed(Object(InstanceVisitor {
            kind: self.kind,
            position: self.position,
            instance: instances.len(),
        }))? {
            instances.push(instance);
        }
        Ok(instances)
    }
}

/// One raw instance object.
struct InstanceVisitor {
    kind: KnownType,
    position: usize,
    instance: usize,
}

impl<'de> Visitor<'de> for InstanceVisitor {
    type Value = Instance;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "resources[{}].instances[{}]: an instance object",
            self.position, self.instance
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Instance, A::Error> {
        let mut instance = Instance {
            index: None,
            tainted: false,
            deposed: None,
            attrs: Field::Absent,
        };
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "index_key" => instance.index = map.next_value()?,
                "status" => {
                    let status: Option<String> = map.next_value()?;
                    instance.tainted = status.as_deref() == Some("tainted");
                }
                "deposed" => {
                    let deposed: Option<String> = map.next_value()?;
                    instance.deposed = deposed.filter(|d| !d.is_empty());
                }
                "attributes" => instance.attrs = map.next_value_seed(AttrsSeed(self.kind))?,
                // `attributes_flat` (pre-0.12 providers), `sensitive_attributes`, `private`,
                // `identity`, `instance_provider`, …: never read.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(instance)
    }
}

impl<'de> de::Deserialize<'de> for IndexKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = IndexKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an instance key: an integer (count) or a string (for_each)")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IndexKey, E> {
                Ok(IndexKey::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IndexKey, E> {
                i64::try_from(v)
                    .map(IndexKey::Int)
                    .map_err(|_| E::custom("an instance key out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<IndexKey, E> {
                // Integral floats (`1.0`) are what some JSON writers make of integers.
                if v.fract() == 0.0 && v.abs() < 9.0e15 {
                    Ok(IndexKey::Int(v as i64))
                } else {
                    Err(E::custom("an instance key that is not an integer"))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IndexKey, E> {
                Ok(IndexKey::Str(v.to_owned()))
            }
        }
        d.deserialize_any(KeyVisitor)
    }
}

/// show -json's `values` object.
struct ShowValuesVisitor<'a> {
    sink: &'a mut Sink,
}

impl<'de> Visitor<'de> for ShowValuesVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`values`: an object with `root_module`")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "root_module" {
                map.next_value_seed(Object(ModuleVisitor {
                    sink: &mut *self.sink,
                }))?;
            } else {
                // `outputs`, whose values may be secrets.
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// A show -json module: `resources`, `address` (absent for the root), `child_modules`.
struct ModuleVisitor<'a> {
    sink: &'a mut Sink,
}

impl<'de> Visitor<'de> for ModuleVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a module object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut address: Option<String> = None;
        // Terraform writes a module's `address` after its `resources`.
        let mut pending: Vec<ShowResource> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "address" => address = map.next_value()?,
                "resources" => map.next_value_seed(Array(ShowResourcesVisitor {
                    out: &mut pending,
                    ignored: &mut self.sink.ignored,
                }))?,
                "child_modules" => map.next_value_seed(Array(ChildModulesVisitor {
                    sink: &mut *self.sink,
                }))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        for r in pending {
            let at = Placement {
                module: address.as_deref(),
                address: r.address,
                resource_type: &r.resource_type,
                name: &r.name,
                provider: r.provider.as_deref(),
                kind: r.kind,
            };
            self.sink.push(at, r.instance);
        }
        Ok(())
    }
}

struct ChildModulesVisitor<'a> {
    sink: &'a mut Sink,
}

impl<'de> Visitor<'de> for ChildModulesVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`child_modules`: an array of modules")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Object(ModuleVisitor {
                sink: &mut *self.sink,
            }))?
            .is_some()
        {}
        Ok(())
    }
}

/// A show -json resource of a known type, waiting for its module's address.
struct ShowResource {
    address: Option<String>,
    resource_type: String,
    name: String,
    provider: Option<String>,
    kind: KnownType,
    instance: Instance,
}

struct ShowResourcesVisitor<'a> {
    out: &'a mut Vec<ShowResource>,
    ignored: &'a mut u64,
}

impl<'de> Visitor<'de> for ShowResourcesVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`resources`: an array of resources")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(entry) = seq.next_element_seed(Object(ShowResourceVisitor))? {
            match entry {
                ShowEntry::Kept(resource) => self.out.push(*resource),
                ShowEntry::Ignored => *self.ignored += 1,
                ShowEntry::Skipped => {}
            }
        }
        Ok(())
    }
}

/// What became of one show -json resource instance.
enum ShowEntry {
    Kept(Box<ShowResource>),
    /// A managed resource of a type not read.
    Ignored,
    /// A data source.
    Skipped,
}

/// One show -json resource instance.
struct ShowResourceVisitor;

impl<'de> Visitor<'de> for ShowResourceVisitor {
    type Value = ShowEntry;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a resource object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut address: Option<String> = None;
        let mut mode: Option<String> = None;
        let mut resource_type: Option<String> = None;
        let mut name: Option<String> = None;
        let mut provider: Option<String> = None;
        let mut index: Option<IndexKey> = None;
        let mut tainted = false;
        let mut deposed: Option<String> = None;
        let mut attrs: Field<RawAttrs> = Field::Absent;
        let mut deferred: Option<Box<RawValue>> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "address" => address = map.next_value()?,
                "mode" => mode = Some(map.next_value()?),
                "type" => resource_type = Some(map.next_value()?),
                "name" => name = Some(map.next_value()?),
                "provider_name" => provider = map.next_value()?,
                "index" => index = map.next_value()?,
                "tainted" => tainted = map.next_value::<Option<bool>>()?.unwrap_or(false),
                "deposed_key" => {
                    let key: Option<String> = map.next_value()?;
                    deposed = key.filter(|k| !k.is_empty());
                }
                "values" => match (&mode, &resource_type) {
                    (Some(mode), Some(t)) => match known_managed(mode, t) {
                        Some(kind) => attrs = map.next_value_seed(AttrsSeed(kind))?,
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    },
                    _ => deferred = Some(map.next_value()?),
                },
                // `sensitive_values` (a mask of booleans), `depends_on`, …
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let context = address.clone().unwrap_or_else(|| "a resource".to_owned());
        let missing = |field: &str| -> A::Error {
            de::Error::custom(format_args!("{context} has no `{field}`"))
        };
        let mode = mode.ok_or_else(|| missing("mode"))?;
        let resource_type = resource_type.ok_or_else(|| missing("type"))?;
        let name = name.ok_or_else(|| missing("name"))?;
        let Some(kind) = known_managed(&mode, &resource_type) else {
            return Ok(if mode == "managed" {
                ShowEntry::Ignored
            } else {
                ShowEntry::Skipped
            });
        };
        if let Some(raw) = deferred {
            attrs = read_deferred(&raw, AttrsSeed(kind), &format!("{context}.values"))?;
        }
        Ok(ShowEntry::Kept(Box::new(ShowResource {
            address,
            resource_type,
            name,
            provider,
            kind,
            instance: Instance {
                index,
                tainted,
                deposed,
                attrs,
            },
        })))
    }
}

/// Counts an array's elements while skipping them unread.
struct CountVisitor;

impl<'de> Visitor<'de> for CountVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_unit<E: de::Error>(self) -> Result<u64, E> {
        Ok(0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let mut n = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            n += 1;
        }
        Ok(n)
    }
}
