//! Decoding Stripe's bracketed form encoding (`metadata[k]=v`, `items[0][price]=p`,
//! `expand[]=customer`) into JSON, with values coerced by each parameter's JSON schema and unknown
//! nested keys reported. Pure, no I/O.

use indexmap::IndexMap;
use serde_json::{Map, Number, Value};

use super::json_schema::{self, Child};

/// Why a form could not be decoded; each names the parameter at fault in Stripe's notation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FormError {
    #[error("Received unknown parameter: {0}")]
    Unknown(String),
    #[error("Invalid integer: {value}")]
    InvalidInteger { param: String, value: String },
    #[error("Invalid decimal: {value}")]
    InvalidNumber { param: String, value: String },
    #[error("Invalid boolean: {value}")]
    InvalidBoolean { param: String, value: String },
    #[error("Invalid {param}: it must be a hash or an array, not a string")]
    NotAString { param: String },
    #[error("Invalid {param}: a value and nested keys were both given")]
    Conflict { param: String },
    #[error("Invalid {param}: parameters nest at most {MAX_DEPTH} levels deep")]
    TooDeep { param: String },
}

/// Deepest bracket nesting accepted; Stripe's own parameters nest far less.
const MAX_DEPTH: usize = 8;

impl FormError {
    pub fn param(&self) -> &str {
        match self {
            Self::Unknown(param) => param,
            Self::InvalidInteger { param, .. }
            | Self::InvalidNumber { param, .. }
            | Self::InvalidBoolean { param, .. }
            | Self::NotAString { param }
            | Self::Conflict { param }
            | Self::TooDeep { param } => param,
        }
    }

    /// Stripe's error code for the failure.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unknown(_) => "parameter_unknown",
            Self::InvalidInteger { .. } => "parameter_invalid_integer",
            _ => "parameter_invalid_empty",
        }
    }
}

/// What the operation says about a top-level parameter.
pub(crate) enum Declared<'a> {
    /// Not a parameter of the operation.
    Unknown,
    /// Declared, with this schema (`Value::Null` for none).
    Schema(&'a Value),
}

enum Node {
    Leaf(String),
    Branch(IndexMap<String, Node>),
}

/// Decodes `application/x-www-form-urlencoded` input (a body or a query string).
pub(crate) fn decode<'a>(
    input: &[u8],
    declared: impl Fn(&str) -> Declared<'a>,
) -> Result<Map<String, Value>, FormError> {
    let mut root: IndexMap<String, Node> = IndexMap::new();
    for (key, value) in form_urlencoded::parse(input) {
        let segments = split_key(&key);
        if segments.len() > MAX_DEPTH {
            return Err(FormError::TooDeep {
                param: key.into_owned(),
            });
        }
        insert(&mut root, &segments, value.into_owned(), &key)?;
    }
    let mut out = Map::new();
    for (name, node) in root {
        let schema = match declared(&name) {
            Declared::Unknown => return Err(FormError::Unknown(name)),
            Declared::Schema(schema) => schema,
        };
        let value = convert(node, schema, &name)?;
        out.insert(name, value);
    }
    Ok(out)
}

/// `a[b][]` → `["a", "b", ""]`; an empty segment appends to an array.
fn split_key(key: &str) -> Vec<String> {
    let Some(open) = key.find('[') else {
        return vec![key.to_owned()];
    };
    if !key.ends_with(']') {
        return vec![key.to_owned()];
    }
    let mut segments = vec![key[..open].to_owned()];
    let inner = &key[open + 1..key.len() - 1];
    segments.extend(inner.split("][").map(str::to_owned));
    segments
}

fn insert(
    map: &mut IndexMap<String, Node>,
    segments: &[String],
    value: String,
    full_key: &str,
) -> Result<(), FormError> {
    let Some((first, rest)) = segments.split_first() else {
        return Ok(());
    };
    let key = if first.is_empty() {
        map.len().to_string()
    } else {
        first.clone()
    };
    if rest.is_empty() {
        match map.get(&key) {
            Some(Node::Branch(_)) if !value.is_empty() => {
                return Err(FormError::Conflict {
                    param: full_key.to_owned(),
                });
            }
            Some(Node::Branch(_)) => {}
            _ => {
                map.insert(key, Node::Leaf(value));
            }
        }
        return Ok(());
    }
    let entry = map
        .entry(key)
        .or_insert_with(|| Node::Branch(IndexMap::new()));
    if let Node::Leaf(existing) = entry {
        if !existing.is_empty() {
            return Err(FormError::Conflict {
                param: full_key.to_owned(),
            });
        }
        *entry = Node::Branch(IndexMap::new());
    }
    match entry {
        Node::Branch(children) => insert(children, rest, value, full_key),
        Node::Leaf(_) => Ok(()),
    }
}

fn convert(node: Node, schema: &Value, path: &str) -> Result<Value, FormError> {
    match node {
        Node::Leaf(text) => coerce(text, schema, path),
        Node::Branch(children) => {
            let types = json_schema::types(schema);
            let all_indices = children
                .keys()
                .all(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()));
            let wants_array = types.contains(&"array") || (types.is_empty() && all_indices);
            if all_indices && wants_array {
                let item_schema = json_schema::items(schema).unwrap_or(&Value::Null);
                let mut indexed: Vec<(usize, Node)> = children
                    .into_iter()
                    .map(|(k, v)| (k.parse::<usize>().unwrap_or(usize::MAX), v))
                    .collect();
                indexed.sort_by_key(|(index, _)| *index);
                let mut items = Vec::with_capacity(indexed.len());
                for (index, child) in indexed {
                    items.push(convert(child, item_schema, &format!("{path}[{index}]"))?);
                }
                return Ok(Value::Array(items));
            }
            let mut object = Map::new();
            for (key, child) in children {
                let child_path = format!("{path}[{key}]");
                let child_schema = if schema.is_null() {
                    &Value::Null
                } else {
                    match json_schema::child(schema, &key) {
                        Child::Known(found) => found,
                        Child::Free => &Value::Null,
                        Child::Unknown => return Err(FormError::Unknown(child_path)),
                    }
                };
                object.insert(key, convert(child, child_schema, &child_path)?);
            }
            Ok(Value::Object(object))
        }
    }
}

fn coerce(text: String, schema: &Value, path: &str) -> Result<Value, FormError> {
    let types = json_schema::types(schema);
    if types.is_empty() {
        return Ok(Value::String(text));
    }
    let has = |t: &str| types.contains(&t);
    if text.is_empty() {
        let structured =
            has("object") || has("array") || has("integer") || has("number") || has("boolean");
        return Ok(if json_schema::is_emptyable(schema) || structured {
            Value::Null
        } else {
            Value::String(text)
        });
    }
    if has("integer")
        && let Ok(n) = text.parse::<i64>()
    {
        return Ok(Value::Number(n.into()));
    }
    if has("number")
        && let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64)
    {
        return Ok(Value::Number(n));
    }
    if has("boolean") {
        match text.as_str() {
            "true" => return Ok(Value::Bool(true)),
            "false" => return Ok(Value::Bool(false)),
            _ => {}
        }
    }
    if has("string") {
        return Ok(Value::String(text));
    }
    let param = path.to_owned();
    if has("integer") {
        Err(FormError::InvalidInteger { param, value: text })
    } else if has("number") {
        Err(FormError::InvalidNumber { param, value: text })
    } else if has("boolean") {
        Err(FormError::InvalidBoolean { param, value: text })
    } else {
        Err(FormError::NotAString { param })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schemas() -> Value {
        json!({
            "amount": {"type": "integer"},
            "confirm": {"type": "boolean"},
            "metadata": {"anyOf": [{"type": "object", "additionalProperties": {"type": "string"}}, {"type": "string", "enum": [""]}]},
            "expand": {"type": "array", "items": {"type": "string"}},
            "items": {"type": "array", "items": {"type": "object", "properties": {"price": {"type": "string"}, "quantity": {"type": "integer"}}}},
            "created": {"anyOf": [{"type": "object", "properties": {"gt": {"type": "integer"}, "lte": {"type": "integer"}}}, {"type": "integer"}]},
            "description": {"anyOf": [{"type": "string"}, {"type": "string", "enum": [""]}]},
            "name": {"type": "string"}
        })
    }

    fn run(input: &str) -> Result<Map<String, Value>, FormError> {
        let all = schemas();
        decode(input.as_bytes(), |name| match all.get(name) {
            Some(schema) => Declared::Schema(schema),
            None => Declared::Unknown,
        })
    }

    #[test]
    fn brackets_build_nested_objects_and_arrays_with_coerced_values() {
        let out = run("amount=1500&confirm=true&metadata[order]=42&items[0][price]=price_1&items[0][quantity]=2&items[1][price]=price_2&expand[]=customer&expand[]=latest_charge").unwrap();
        assert_eq!(
            Value::Object(out),
            json!({
                "amount": 1500, "confirm": true, "metadata": {"order": "42"},
                "items": [{"price": "price_1", "quantity": 2}, {"price": "price_2"}],
                "expand": ["customer", "latest_charge"]
            })
        );
    }

    #[test]
    fn range_filters_decode_into_objects_and_plain_integers_stay_integers() {
        assert_eq!(
            run("created[gt]=10&created[lte]=20").unwrap()["created"],
            json!({"gt": 10, "lte": 20})
        );
        assert_eq!(run("created=15").unwrap()["created"], json!(15));
    }

    #[test]
    fn empty_values_unset_emptyable_fields_but_stay_empty_strings_in_metadata() {
        let out = run("description=&metadata[gone]=").unwrap();
        assert_eq!(out["description"], Value::Null);
        assert_eq!(out["metadata"], json!({"gone": ""}));
        assert_eq!(run("metadata=").unwrap()["metadata"], Value::Null);
    }

    #[test]
    fn unknown_parameters_are_named_in_stripe_notation() {
        assert_eq!(
            run("colour=red").unwrap_err(),
            FormError::Unknown("colour".into())
        );
        assert_eq!(
            run("items[0][colour]=red").unwrap_err(),
            FormError::Unknown("items[0][colour]".into())
        );
        assert_eq!(
            run("created[between]=1").unwrap_err(),
            FormError::Unknown("created[between]".into())
        );
    }

    #[test]
    fn non_numeric_integers_are_rejected() {
        let error = run("amount=lots").unwrap_err();
        assert_eq!(error.param(), "amount");
        assert_eq!(error.code(), "parameter_invalid_integer");
    }

    #[test]
    fn absurdly_deep_nesting_is_refused_not_recursed() {
        let key = format!("name{}", "[a]".repeat(10_000));
        let input = format!(
            "{}=1",
            form_urlencoded::byte_serialize(key.as_bytes()).collect::<String>()
        );
        assert!(matches!(run(&input), Err(FormError::TooDeep { .. })));
    }

    #[test]
    fn a_value_and_nested_keys_for_one_name_conflict() {
        assert!(matches!(
            run("name=x&name[y]=z"),
            Err(FormError::Conflict { .. })
        ));
    }

    #[test]
    fn undeclared_schemas_keep_strings_and_index_keys_become_arrays() {
        let out = decode(b"x[0]=a&x[1]=b&y[k]=1", |_| Declared::Schema(&Value::Null)).unwrap();
        assert_eq!(out["x"], json!(["a", "b"]));
        assert_eq!(out["y"], json!({"k": "1"}));
    }

    fn random_value(rng: &mut rand::rngs::StdRng, depth: usize) -> Value {
        use rand::Rng;
        let word = |rng: &mut rand::rngs::StdRng| -> String {
            (0..rng.random_range(1..6))
                .map(|_| char::from(b"abcxyz_ &=%[]"[rng.random_range(0..13)]))
                .collect()
        };
        match (depth, rng.random_range(0..3)) {
            (0, _) | (_, 0) => Value::String(word(rng)),
            (_, 1) => Value::Array(
                (0..rng.random_range(1..4))
                    .map(|_| random_value(rng, depth - 1))
                    .collect(),
            ),
            _ => {
                let mut map = Map::new();
                for _ in 0..rng.random_range(1..4) {
                    let key: String = (0..rng.random_range(1..5))
                        .map(|_| char::from(b"abcdefgh"[rng.random_range(0..8)]))
                        .collect();
                    map.insert(key, random_value(rng, depth - 1));
                }
                Value::Object(map)
            }
        }
    }

    #[test]
    fn decoding_inverts_the_engines_bracket_encoding() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..500 {
            let Value::Object(original) = random_value(&mut rng, 3) else {
                continue;
            };
            let original = Value::Object(original);
            let mut pairs = Vec::new();
            for (key, value) in original.as_object().into_iter().flatten() {
                crate::upstream::form::flatten_into(key, value, &mut pairs);
            }
            let encoded = crate::upstream::form::encode(&pairs);
            let decoded = decode(encoded.as_bytes(), |_| Declared::Schema(&Value::Null)).unwrap();
            assert_eq!(Value::Object(decoded), original, "{encoded}");
        }
    }

    #[test]
    fn arbitrary_input_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let all = schemas();
        for _ in 0..2000 {
            let input: Vec<u8> = (0..rng.random_range(0..40))
                .map(|_| b"amount[]=&%5B5D0metadataexpand"[rng.random_range(0..30)])
                .collect();
            let _ = decode(&input, |name| match all.get(name) {
                Some(schema) => Declared::Schema(schema),
                None => Declared::Schema(&Value::Null),
            });
        }
    }
}
