//! Conversions between protobuf's `Struct`/`Value` and serde_json. Pure.

use prost_types::value::Kind;
use serde_json::{Map, Number, Value};

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
