//! Turns Stripe objects into entity fields and action result rows. Pure, no I/O.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::spec::model::{EntitySpec, ResultShape};
// Names fields the spec does not list.
use crate::spec::naming::pascal_case;

/// An entity's fields under PascalCase names, with native JSON values, moved out of the object.
/// Members the spec does not know (a newer API version) are kept under a derived PascalCase name
/// rather than dropped.
pub fn entity_fields(entity: &EntitySpec, mut object: Map<String, Value>) -> Map<String, Value> {
    let mut fields = Map::with_capacity(object.len());
    for field in &entity.fields {
        if let Some(value) = object.remove(&field.source) {
            fields.insert(field.name.clone(), value);
        }
    }
    for (key, value) in object {
        fields.entry(pascal_case(&key)).or_insert(value);
    }
    fields
}

/// A value type an entity's fields can be decoded into straight from the upstream's JSON text
/// (see [`decode_entity_fields`]): a caller that hands entities on in another representation
/// (protobuf) skips the JSON tree.
pub trait FieldValue: Sized {
    /// Decodes one member's value from the JSON text.
    fn decode<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error>;
    /// A string value (a parent id added to the fields).
    fn string(text: String) -> Self;
    /// The text of a string value.
    fn as_str(&self) -> Option<&str>;
    /// Whether this is the boolean `true`.
    fn is_true(&self) -> bool;
}

impl FieldValue for Value {
    fn decode<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer)
    }
    fn string(text: String) -> Self {
        Value::String(text)
    }
    fn as_str(&self) -> Option<&str> {
        Value::as_str(self)
    }
    fn is_true(&self) -> bool {
        *self == Value::Bool(true)
    }
}

/// Decodes one member's value as `V`.
struct MemberValue<V>(PhantomData<V>);

impl<'de, V: FieldValue> DeserializeSeed<'de> for MemberValue<V> {
    type Value = V;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<V, D::Error> {
        V::decode(deserializer)
    }
}

/// An object's members decoded by [`decode_entity_fields`].
#[derive(Debug)]
pub struct DecodedFields<V> {
    /// Fields under the names [`entity_fields`] gives them.
    pub fields: BTreeMap<String, V>,
    /// The object's `id`, when it is a string.
    pub id: Option<String>,
    /// The member named `stub_field` was `true`.
    pub stub: bool,
}

/// [`entity_fields`] applied while the JSON text of one object is parsed: each member is
/// decoded as `V` and filed under its field name, with no intermediate JSON tree. `stub_field`
/// names the member whose `true` marks a deleted stub (the dialect's).
pub fn decode_entity_fields<V: FieldValue>(
    entity: &EntitySpec,
    json: &[u8],
    stub_field: Option<&str>,
) -> Result<DecodedFields<V>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let decoded = EntityObject {
        entity,
        stub_field,
        value: PhantomData,
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(decoded)
}

struct EntityObject<'a, V> {
    entity: &'a EntitySpec,
    stub_field: Option<&'a str>,
    value: PhantomData<V>,
}

impl<'de, V: FieldValue> DeserializeSeed<'de> for EntityObject<'_, V> {
    type Value = DecodedFields<V>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, V: FieldValue> Visitor<'de> for EntityObject<'_, V> {
    type Value = DecodedFields<V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Self::Value, A::Error> {
        let known = &self.entity.fields;
        let mut fields = BTreeMap::new();
        let (mut id, mut stub) = (None, false);
        // Upstream objects list their members mostly in the spec's order: each search starts
        // after the last match, so a lookup is usually one comparison.
        let mut next = 0;
        while let Some(Key(key)) = members.next_key::<Key<'de>>()? {
            let value = members.next_value_seed(MemberValue::<V>(PhantomData))?;
            if key == "id" {
                id = value.as_str().map(str::to_owned);
            }
            if self.stub_field == Some(key.as_ref()) && value.is_true() {
                stub = true;
            }
            let found = (0..known.len())
                .map(|i| (next + i) % known.len())
                .find(|&i| known[i].source == key);
            match found {
                Some(i) => {
                    next = i + 1;
                    fields.insert(known[i].name.clone(), value);
                }
                None => {
                    fields.entry(pascal_case(&key)).or_insert(value);
                }
            }
        }
        Ok(DecodedFields { fields, id, stub })
    }
}

/// An object key, borrowed from the JSON text when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an object key")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                key: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(key)))
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, key: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(key)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Google's connector shape: nested keys joined with dots, scalars as strings, nulls kept.
/// Empty lists and empty objects become null; non-empty lists become their JSON text, so no
/// value is lost.
pub fn flatten(object: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::with_capacity(object.len());
    for (key, value) in object {
        flatten_value(key, value, &mut out);
    }
    out
}

fn flatten_value(key: &str, value: &Value, out: &mut Map<String, Value>) {
    match value {
        Value::Object(map) if map.is_empty() => {
            out.insert(key.to_owned(), Value::Null);
        }
        Value::Object(map) => {
            for (inner_key, inner) in map {
                flatten_value(&format!("{key}.{inner_key}"), inner, out);
            }
        }
        Value::Array(items) if items.is_empty() => {
            out.insert(key.to_owned(), Value::Null);
        }
        Value::Array(_) => {
            out.insert(key.to_owned(), Value::String(value.to_string()));
        }
        Value::Null => {
            out.insert(key.to_owned(), Value::Null);
        }
        Value::Bool(b) => {
            out.insert(key.to_owned(), Value::String(b.to_string()));
        }
        Value::Number(n) => {
            out.insert(key.to_owned(), Value::String(n.to_string()));
        }
        Value::String(s) => {
            out.insert(key.to_owned(), Value::String(s.clone()));
        }
    }
}

/// Looks up a dotted path (`invoice`, `latest_charge.id`) in an object.
fn lookup<'a>(object: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut current = object.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

/// The result row of an action, shaped as the spec says.
pub fn action_row(shape: &ResultShape, object: &Map<String, Value>) -> Map<String, Value> {
    let mut row = Map::new();
    match shape {
        ResultShape::SuccessOnly => {
            row.insert("Success".to_owned(), Value::String("true".to_owned()));
        }
        ResultShape::Select { fields } => {
            for field in fields {
                let value = match lookup(object, &field.source) {
                    Some(Value::Object(expanded)) => {
                        expanded.get("id").cloned().unwrap_or(Value::Null)
                    }
                    Some(Value::Number(n)) => Value::String(n.to_string()),
                    Some(Value::Bool(b)) => Value::String(b.to_string()),
                    Some(other) => other.clone(),
                    None => Value::Null,
                };
                row.insert(field.name.clone(), value);
            }
            row.insert("Success".to_owned(), Value::String("true".to_owned()));
        }
        ResultShape::Flatten => {
            row.insert("Success".to_owned(), Value::String("true".to_owned()));
            row.extend(flatten(object));
        }
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::model::SelectedField;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn flattens_like_the_seed_output() {
        let pi = object(json!({
            "id": "pi_1", "amount": 33000, "livemode": false, "canceled_at": null,
            "payment_method_options": {"card": {"installments": null}},
            "payment_method_types": [], "metadata": {}
        }));
        let row = action_row(&ResultShape::Flatten, &pi);
        assert_eq!(
            Value::Object(row),
            json!({
                "Success": "true", "id": "pi_1", "amount": "33000", "livemode": "false", "canceled_at": null,
                "payment_method_options.card.installments": null, "payment_method_types": null, "metadata": null
            })
        );
    }

    #[test]
    fn keeps_non_empty_lists_as_json_text() {
        let row = flatten(&object(json!({"payment_method_types": ["card"]})));
        assert_eq!(row["payment_method_types"], json!("[\"card\"]"));
    }

    #[test]
    fn accept_quote_selects_the_invoice_id() {
        let shape = ResultShape::Select {
            fields: vec![SelectedField {
                name: "InvoiceId".to_owned(),
                source: "invoice".to_owned(),
            }],
        };
        let row = action_row(&shape, &object(json!({"id": "qt_1", "invoice": "in_9"})));
        assert_eq!(
            Value::Object(row),
            json!({"InvoiceId": "in_9", "Success": "true"})
        );
    }

    #[test]
    fn pascal_cases_snake_names() {
        assert_eq!(pascal_case("payment_method_types"), "PaymentMethodTypes");
        assert_eq!(pascal_case("id"), "Id");
    }
}
