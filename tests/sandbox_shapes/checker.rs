//! Compares a sandbox object with Stripe's sample object of its type (`fixtures3.json`) and the
//! response schema of the OpenAPI description (`spec3.json`), both from `../shared/stripe-openapi`:
//! the same top-level keys as the sample (fields Stripe returns only when expanded are absent unless
//! expanded), every value of the schema's type, null only where the schema says nullable, nested
//! objects with the schema's required keys and no others, and no `""` placeholders.

use std::path::PathBuf;

use serde_json::{Map, Value};

/// Stripe's OpenAPI description and sample objects.
pub struct Stripe {
    pub schemas: Map<String, Value>,
    pub samples: Map<String, Value>,
}

fn stripe_openapi_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/stripe-openapi")
}

fn read_json(name: &str) -> Value {
    let path = stripe_openapi_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "{} is needed to compare the sandbox with Stripe: {error}",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("Stripe's OpenAPI files are JSON")
}

impl Stripe {
    pub fn load() -> Self {
        let spec = read_json("spec3.json");
        let fixtures = read_json("fixtures3.json");
        Self {
            schemas: spec["components"]["schemas"]
                .as_object()
                .expect("component schemas")
                .clone(),
            samples: fixtures["resources"]
                .as_object()
                .expect("sample resources")
                .clone(),
        }
    }

    /// Follows `$ref`s to the schema they name.
    pub fn resolve<'a>(&'a self, mut schema: &'a Value) -> &'a Value {
        while let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let name = reference.rsplit('/').next().unwrap_or_default();
            match self.schemas.get(name) {
                Some(found) => schema = found,
                None => break,
            }
        }
        schema
    }

    fn branches<'a>(&'a self, schema: &'a Value) -> Vec<&'a Value> {
        let schema = self.resolve(schema);
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(Value::Array(alternatives)) = schema.get(key) {
                return alternatives
                    .iter()
                    .flat_map(|alternative| self.branches(alternative))
                    .collect();
            }
        }
        vec![schema]
    }

    fn nullable(&self, schema: &Value) -> bool {
        let flag = |s: &Value| s.get("nullable").and_then(Value::as_bool) == Some(true);
        flag(schema) || flag(self.resolve(schema)) || self.branches(schema).into_iter().any(flag)
    }

    /// Every way `object` differs from Stripe's shape of `object_type`; `expanded` names the
    /// top-level fields the request asked for.
    pub fn differences(&self, object_type: &str, object: &Value, expanded: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        let (Some(sample), Some(schema)) = (
            self.samples.get(object_type).and_then(Value::as_object),
            self.schemas.get(object_type),
        ) else {
            return vec![format!("{object_type}: Stripe has no sample or schema")];
        };
        let Some(map) = object.as_object() else {
            return vec![format!("{object_type}: not an object: {object}")];
        };
        for key in sample.keys() {
            if !map.contains_key(key) {
                out.push(format!(
                    "{object_type}.{key}: missing (Stripe's sample has it)"
                ));
            }
        }
        for key in map.keys() {
            if !sample.contains_key(key) && !expanded.contains(&key.as_str()) {
                out.push(format!(
                    "{object_type}.{key}: present (Stripe returns it only when expanded or applicable)"
                ));
            }
        }
        self.check(
            object,
            schema,
            Some(&Value::Object(sample.clone())),
            object_type,
            &mut out,
        );
        out
    }

    fn check(
        &self,
        value: &Value,
        schema: &Value,
        sample: Option<&Value>,
        path: &str,
        out: &mut Vec<String>,
    ) {
        if value.is_null() {
            if !self.nullable(schema) {
                out.push(format!(
                    "{path}: null, but the schema says it is never null"
                ));
            }
            return;
        }
        if value.as_str() == Some("") {
            let allowed = self.branches(schema).into_iter().any(|b| {
                b.get("enum")
                    .and_then(Value::as_array)
                    .is_some_and(|e| e.iter().any(|v| v.as_str() == Some("")))
            });
            if !allowed {
                out.push(format!("{path}: \"\" placeholder"));
            }
            return;
        }
        let mut best: Option<Vec<String>> = None;
        for branch in self.branches(schema) {
            let mut found = Vec::new();
            self.check_branch(value, branch, sample, path, &mut found);
            if found.is_empty() {
                return;
            }
            if best.as_ref().is_none_or(|b| found.len() < b.len()) {
                best = Some(found);
            }
        }
        out.extend(best.unwrap_or_default());
    }

    fn check_branch(
        &self,
        value: &Value,
        branch: &Value,
        sample: Option<&Value>,
        path: &str,
        out: &mut Vec<String>,
    ) {
        let declared = branch.get("type").and_then(Value::as_str);
        let kind = declared.or(branch.get("properties").map(|_| "object"));
        match kind {
            Some("string") => match value.as_str() {
                None => out.push(format!("{path}: {value} is not a string")),
                Some(text) => {
                    if let Some(options) = branch.get("enum").and_then(Value::as_array)
                        && !options.iter().any(|o| o.as_str() == Some(text))
                    {
                        out.push(format!("{path}: {text:?} is not one of {options:?}"));
                    }
                }
            },
            Some("integer") if !value.is_i64() && !value.is_u64() => {
                out.push(format!("{path}: {value} is not an integer"));
            }
            Some("number") if !value.is_number() => {
                out.push(format!("{path}: {value} is not a number"));
            }
            Some("boolean") if !value.is_boolean() => {
                out.push(format!("{path}: {value} is not a boolean"));
            }
            Some("array") => match value.as_array() {
                None => out.push(format!("{path}: {value} is not an array")),
                Some(items) => {
                    let item_schema = branch.get("items").cloned().unwrap_or(Value::Null);
                    for (index, item) in items.iter().enumerate() {
                        let sample_item = sample.and_then(|s| s.get(0));
                        self.check(
                            item,
                            &item_schema,
                            sample_item,
                            &format!("{path}[{index}]"),
                            out,
                        );
                    }
                }
            },
            Some("object") => self.check_object(value, branch, sample, path, out),
            _ => {}
        }
    }

    fn check_object(
        &self,
        value: &Value,
        branch: &Value,
        sample: Option<&Value>,
        path: &str,
        out: &mut Vec<String>,
    ) {
        let Some(map) = value.as_object() else {
            out.push(format!("{path}: {value} is not an object"));
            return;
        };
        let Some(properties) = branch.get("properties").and_then(Value::as_object) else {
            return;
        };
        if !path.contains('.') {
            // Top-level keys are compared with the sample in `differences`.
        } else {
            for key in map.keys() {
                let in_sample = sample.and_then(|s| s.get(key)).is_some();
                if !properties.contains_key(key) && !in_sample {
                    out.push(format!("{path}.{key}: not in the schema"));
                }
            }
            for key in branch
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(key) {
                    out.push(format!("{path}.{key}: required by the schema, missing"));
                }
            }
        }
        for (key, item) in map {
            if let Some(property) = properties.get(key) {
                let sample_item = sample.and_then(|s| s.get(key));
                self.check(item, property, sample_item, &format!("{path}.{key}"), out);
            }
        }
    }

    /// Characters after the prefix in the id of Stripe's sample object of `object_type`.
    pub fn id_length(&self, object_type: &str) -> Option<usize> {
        let id = self.samples.get(object_type)?.get("id")?.as_str()?;
        Some(id.len() - id.rfind('_')? - 1)
    }

    /// What `src/sandbox/shapes.json` holds, derived from the description and the samples: per
    /// object type, `omit` (schema fields absent from Stripe's sample) and `samples` (the sample's
    /// values of non-nullable text and object fields, used instead of empty placeholders).
    pub fn derive_shapes(&self) -> Value {
        let mut out = Map::new();
        for (object_type, sample) in &self.samples {
            let (Some(sample), Some(properties)) = (
                sample.as_object(),
                self.schemas
                    .get(object_type)
                    .and_then(|s| s.get("properties"))
                    .and_then(Value::as_object),
            ) else {
                continue;
            };
            let omit: Vec<Value> = properties
                .keys()
                .filter(|key| !sample.contains_key(*key))
                .map(|key| Value::String(key.clone()))
                .collect();
            let mut samples = Map::new();
            for (key, value) in sample {
                let Some(property) = properties.get(key) else {
                    continue;
                };
                if ["id", "object", "created", "livemode"].contains(&key.as_str()) {
                    continue;
                }
                let resolved = self.resolve(property);
                let flag = |s: &Value| s.get("nullable").and_then(Value::as_bool) == Some(true);
                if flag(property) || flag(resolved) {
                    continue;
                }
                let keep = match value {
                    Value::String(text) => !text.is_empty() && resolved.get("enum").is_none(),
                    Value::Object(inner) => {
                        inner.get("object").and_then(Value::as_str) != Some("list")
                    }
                    _ => false,
                };
                if keep {
                    samples.insert(key.clone(), value.clone());
                }
            }
            let mut shape = Map::new();
            shape.insert("omit".into(), Value::Array(omit));
            shape.insert("samples".into(), Value::Object(samples));
            out.insert(object_type.clone(), Value::Object(shape));
        }
        Value::Object(out)
    }
}
