//! Conversions between protobuf's `Struct`/`Value` and serde_json. Pure.

use prost_types::value::Kind;
use serde_json::{Map, Number, Value};

use crate::engine::FieldValue;

/// JSON value → protobuf value. Integers beyond 2^53 lose precision in protobuf's double, as in
/// every Struct-based API; Stripe's amounts stay well inside it.
pub fn to_proto_value(value: &Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(to_proto_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(to_proto_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// JSON value → protobuf Value, moving strings and keys instead of copying them.
pub fn into_proto_value(value: Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(into_proto_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(into_proto_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A protobuf value decoded straight from JSON text (no intermediate `serde_json::Value`), with
/// the same result as [`into_proto_value`] of the parsed JSON.
#[derive(Debug, Clone, PartialEq)]
struct ProtoValue(prost_types::Value);

impl ProtoValue {
    fn of(kind: Kind) -> Self {
        Self(prost_types::Value { kind: Some(kind) })
    }
}

impl<'de> serde::Deserialize<'de> for ProtoValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ProtoValueVisitor)
    }
}

struct ProtoValueVisitor;

impl<'de> serde::de::Visitor<'de> for ProtoValueVisitor {
    type Value = ProtoValue;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a JSON value")
    }
    fn visit_unit<E>(self) -> Result<ProtoValue, E> {
        Ok(ProtoValue::of(Kind::NullValue(0)))
    }
    fn visit_none<E>(self) -> Result<ProtoValue, E> {
        Ok(ProtoValue::of(Kind::NullValue(0)))
    }
    fn visit_bool<E>(self, b: bool) -> Result<ProtoValue, E> {
        Ok(ProtoValue::of(Kind::BoolValue(b)))
    }
    fn visit_i64<E>(self, n: i64) -> Result<ProtoValue, E> {
        Ok(ProtoValue::of(Kind::NumberValue(n as f64)))
    }
    fn visit_u64<E>(self, n: u64) -> Result<ProtoValue, E> {
        Ok(ProtoValue::of(Kind::NumberValue(n as f64)))
    }
    fn visit_f64<E>(self, n: f64) -> Result<ProtoValue, E> {
        Ok(ProtoValue::of(Kind::NumberValue(n)))
    }
    fn visit_str<E>(self, s: &str) -> Result<ProtoValue, E> {
        Ok(ProtoValue::of(Kind::StringValue(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<ProtoValue, E> {
        Ok(ProtoValue::of(Kind::StringValue(s)))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ProtoValue, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(ProtoValue(value)) = seq.next_element()? {
            values.push(value);
        }
        Ok(ProtoValue::of(Kind::ListValue(prost_types::ListValue {
            values,
        })))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ProtoValue, A::Error> {
        let mut fields = std::collections::BTreeMap::new();
        while let Some((key, ProtoValue(value))) = map.next_entry::<String, ProtoValue>()? {
            fields.insert(key, value);
        }
        Ok(ProtoValue::of(Kind::StructValue(prost_types::Struct {
            fields,
        })))
    }
}

/// Entity fields decode straight into protobuf values, so a decoded entity's fields are already
/// a protobuf `Struct`'s.
impl FieldValue for prost_types::Value {
    fn decode<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::Deserialize::deserialize(deserializer).map(|ProtoValue(value)| value)
    }
    fn string(text: String) -> Self {
        prost_types::Value {
            kind: Some(Kind::StringValue(text)),
        }
    }
    fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Some(Kind::StringValue(s)) => Some(s),
            _ => None,
        }
    }
    fn is_true(&self) -> bool {
        self.kind == Some(Kind::BoolValue(true))
    }
}

/// JSON object → protobuf Struct, moved.
pub fn into_proto_struct(map: Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map
            .into_iter()
            .map(|(k, v)| (k, into_proto_value(v)))
            .collect(),
    }
}

/// JSON object → protobuf Struct.
pub fn to_proto_struct(map: &Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), to_proto_value(v)))
            .collect(),
    }
}

/// Protobuf value → JSON value. Integral doubles become JSON integers, so `1500.0` reads as `1500`.
pub fn from_proto_value(value: &prost_types::Value) -> Value {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                Value::from(*n as i64)
            } else {
                Number::from_f64(*n).map_or(Value::Null, Value::Number)
            }
        }
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::ListValue(list)) => {
            Value::Array(list.values.iter().map(from_proto_value).collect())
        }
        Some(Kind::StructValue(s)) => Value::Object(from_proto_struct(s)),
    }
}

/// Protobuf Struct → JSON object, keys in sorted order (protobuf maps carry no order).
pub fn from_proto_struct(s: &prost_types::Struct) -> Map<String, Value> {
    let mut keys: Vec<&String> = s.fields.keys().collect();
    keys.sort();
    keys.into_iter()
        .map(|k| (k.clone(), from_proto_value(&s.fields[k])))
        .collect()
}

/// Optional Struct → JSON object (absent = empty).
pub fn struct_or_empty(s: Option<&prost_types::Struct>) -> Map<String, Value> {
    s.map(from_proto_struct).unwrap_or_default()
}

/// The engine's consistency for the wire enum; unspecified (or unknown) is STRONG.
pub fn consistency(value: i32) -> crate::engine::tier::Consistency {
    use crate::engine::tier::Consistency;
    match super::pb::Consistency::try_from(value) {
        Ok(super::pb::Consistency::Eventual) => Consistency::Eventual,
        _ => Consistency::Strong,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entity_fields_decoded_straight_into_protobuf_equal_the_json_route() {
        use crate::engine::result::{decode_entity_fields, entity_fields};
        let spec = crate::spec::stripe_shared().unwrap();
        let customer = spec.entities.iter().find(|e| e.name == "Customer").unwrap();
        // Spec fields in and out of order, an unknown member, escapes in keys and strings,
        // nesting, every JSON type, integers past 2^53 and a key whose PascalCase collides
        // with a spec field's name.
        let text = r#"{"metadata": {"k\u00e9y": "v\"w", "n": [1, 2.5, -3, null, {"a": []}]},
            "id": "cus_1", "object": "customer", "balance": -1200, "email": "a@b.c",
            "address": null, "livemode": false, "created": 1700000000,
            "brand_new_member": {"x": true}, "Email": "shadow", "big": 18446744073709551615,
            "preferred_locales": ["en", "fr"], "tax_exempt": "none", "delinquent": true}"#;
        let decoded =
            decode_entity_fields::<prost_types::Value>(customer, text.as_bytes(), Some("deleted"))
                .unwrap();
        let json: Map<String, Value> = serde_json::from_str(text).unwrap();
        let expected = into_proto_struct(entity_fields(customer, json));
        assert_eq!(
            prost_types::Struct {
                fields: decoded.fields
            },
            expected
        );
        assert_eq!(
            (decoded.id.as_deref(), decoded.stub),
            (Some("cus_1"), false)
        );
        // The JSON value type takes the same route to the same fields.
        let as_json = decode_entity_fields::<Value>(customer, text.as_bytes(), None).unwrap();
        let json: Map<String, Value> = serde_json::from_str(text).unwrap();
        assert_eq!(
            Value::Object(as_json.fields.into_iter().collect()),
            Value::Object(entity_fields(customer, json))
        );
    }

    #[test]
    fn decoding_an_entity_finds_stubs_and_refuses_what_is_not_one_object() {
        use crate::engine::result::decode_entity_fields;
        let spec = crate::spec::stripe_shared().unwrap();
        let customer = spec.entities.iter().find(|e| e.name == "Customer").unwrap();
        let stub = br#"{"id": "cus_1", "object": "customer", "deleted": true}"#;
        let decoded =
            decode_entity_fields::<prost_types::Value>(customer, stub, Some("deleted")).unwrap();
        assert!(decoded.stub);
        let live = br#"{"id": "cus_1", "deleted": false}"#;
        assert!(
            !decode_entity_fields::<prost_types::Value>(customer, live, Some("deleted"))
                .unwrap()
                .stub
        );
        for bad in [&b"[1]"[..], b"null", b"", b"{\"id\": 1", b"{} {}", b"\"x\""] {
            assert!(
                decode_entity_fields::<prost_types::Value>(customer, bad, None).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let no_id =
            decode_entity_fields::<prost_types::Value>(customer, br#"{"id": 7}"#, None).unwrap();
        assert_eq!(no_id.id, None);
    }

    #[test]
    fn round_trips_json_objects() {
        let value = json!({"a": 1, "b": [true, null, "x"], "c": {"d": 1.5}});
        let map = value.as_object().unwrap();
        assert_eq!(
            Value::Object(from_proto_struct(&to_proto_struct(map))),
            value
        );
    }

    #[test]
    fn integral_doubles_read_as_integers() {
        let proto = prost_types::Value {
            kind: Some(Kind::NumberValue(1500.0)),
        };
        assert_eq!(from_proto_value(&proto), json!(1500));
    }
}
