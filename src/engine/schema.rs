//! Checks JSON inputs against the compact JSON schemas of the connector spec. Pure, no I/O.
//!
//! Understands the subset the spec uses: `type`, `enum`, `nullable`, `anyOf`, `items`,
//! `properties` and `additionalProperties`. Numbers given for integer parameters must be integral
//! (`1500.0` is accepted as `1500`).

use serde_json::Value;

use super::error::FieldViolation;

/// Appends a violation for every way `value` fails `schema`, naming fields by `path`.
pub fn check(path: &str, schema: &Value, value: &Value, out: &mut Vec<FieldViolation>) {
    if let Err(description) = check_one(path, schema, value, out) {
        out.push(FieldViolation::new(path, description));
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integral(value: &Value) -> bool {
    match value {
        Value::Number(n) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

/// Returns Err(description) when the value fails at this level; nested failures go to `out`.
fn check_one(
    path: &str,
    schema: &Value,
    value: &Value,
    out: &mut Vec<FieldViolation>,
) -> Result<(), String> {
    let Some(schema) = schema.as_object() else {
        return Ok(());
    };
    if value.is_null() {
        let nullable = schema
            .get("nullable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        // Null clears a field upstream; accept it where the schema allows null or an empty string.
        return if nullable
            || schema.contains_key("anyOf")
            || schema.get("type").and_then(Value::as_str) == Some("string")
        {
            Ok(())
        } else {
            Err("must not be null".to_owned())
        };
    }
    if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
        let mut best: Option<Vec<FieldViolation>> = None;
        for branch in branches {
            let mut nested = Vec::new();
            if check_one(path, branch, value, &mut nested).is_ok() && nested.is_empty() {
                return Ok(());
            }
            if best.as_ref().is_none_or(|b| nested.len() < b.len()) && !nested.is_empty() {
                best = Some(nested);
            }
        }
        if let Some(nested) = best {
            out.extend(nested);
            return Ok(());
        }
        return Err(format!(
            "{} does not match any allowed form",
            type_name(value)
        ));
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let names: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
        return Err(format!("must be one of {}", names.join(", ")));
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("string") if !value.is_string() => {
            Err(format!("expected a string, got {}", type_name(value)))
        }
        Some("integer") if !is_integral(value) => {
            Err(format!("expected an integer, got {}", type_name(value)))
        }
        Some("number") if !value.is_number() => {
            Err(format!("expected a number, got {}", type_name(value)))
        }
        Some("boolean") if !value.is_boolean() => {
            Err(format!("expected a boolean, got {}", type_name(value)))
        }
        Some("array") => {
            let Some(items) = value.as_array() else {
                return Err(format!("expected an array, got {}", type_name(value)));
            };
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    check(&format!("{path}[{index}]"), item_schema, item, out);
                }
            }
            Ok(())
        }
        Some("object") => {
            let Some(members) = value.as_object() else {
                return Err(format!("expected an object, got {}", type_name(value)));
            };
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (key, member) in members {
                let member_path = format!("{path}.{key}");
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(member_schema), _) => check(&member_path, member_schema, member, out),
                    (None, Some(Value::Object(extra))) => {
                        check(&member_path, &Value::Object(extra.clone()), member, out)
                    }
                    (None, Some(Value::Bool(false))) => out.push(FieldViolation::new(
                        &member_path,
                        "unknown field".to_owned(),
                    )),
                    // A declared shape without this member: unknown unless the schema is open.
                    (None, None) if properties.is_some() => out.push(FieldViolation::new(
                        &member_path,
                        "unknown field".to_owned(),
                    )),
                    _ => {}
                }
            }
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for name in required.iter().filter_map(Value::as_str) {
                    if !members.contains_key(name) {
                        out.push(FieldViolation::new(
                            &format!("{path}.{name}"),
                            "is required".to_owned(),
                        ));
                    }
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn violations(schema: Value, value: Value) -> Vec<String> {
        let mut out = Vec::new();
        check("X", &schema, &value, &mut out);
        out.into_iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect()
    }

    #[test]
    fn accepts_integral_floats_for_integers() {
        assert!(violations(json!({"type": "integer"}), json!(1500.0)).is_empty());
        assert_eq!(
            violations(json!({"type": "integer"}), json!(1.5)),
            vec!["X: expected an integer, got number"]
        );
    }

    #[test]
    fn rejects_values_outside_an_enum() {
        let v = violations(
            json!({"type": "string", "enum": ["automatic", "manual"]}),
            json!("later"),
        );
        assert_eq!(v, vec![r#"X: must be one of "automatic", "manual""#]);
    }

    #[test]
    fn names_unknown_nested_fields() {
        let schema = json!({"type": "object", "properties": {"line1": {"type": "string"}}});
        assert_eq!(
            violations(schema, json!({"line1": "a", "lne2": "b"})),
            vec!["X.lne2: unknown field"]
        );
    }

    #[test]
    fn any_of_accepts_either_branch() {
        let schema = json!({"anyOf": [{"type": "string"}, {"type": "object", "properties": {"gt": {"type": "integer"}}}]});
        assert!(violations(schema.clone(), json!("x")).is_empty());
        assert!(violations(schema.clone(), json!({"gt": 3})).is_empty());
        assert!(!violations(schema, json!(true)).is_empty());
    }

    #[test]
    fn maps_take_their_value_schema_from_additional_properties() {
        let schema = json!({"type": "object", "additionalProperties": {"type": "string"}});
        assert!(violations(schema.clone(), json!({"k": "v"})).is_empty());
        assert_eq!(
            violations(schema, json!({"k": 1})),
            vec!["X.k: expected a string, got integer"]
        );
    }
}
