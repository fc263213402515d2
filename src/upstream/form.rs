//! The bracketed `application/x-www-form-urlencoded` encoding of query strings and form bodies
//! (OpenAPI's `deepObject` style, arrays indexed), as Stripe and Rails-style APIs read it. Pure,
//! no I/O.
//!
//! `{"metadata": {"k": "v"}, "items": [{"price": "p"}], "expand": ["customer"]}` becomes
//! `metadata[k]=v&items[0][price]=p&expand[0]=customer`, the way Stripe's own SDKs encode it.
//!
//! A form has no way to say "null", "empty object" or "empty array": all three travel as `key=`,
//! an empty string, which such APIs read as "unset this value". The request schemas say where
//! that is allowed: a parameter that can be unset has an `anyOf` branch `{"enum": [""]}` (plain
//! strings take any string, the empty one included). [`accepts_empty_form`] answers that question
//! for a (compact) request schema, so the engine can refuse an empty value everywhere else before
//! anything is sent.

use serde_json::Value;

/// Whether a JSON value travels as the empty form `key=`: `null`, `{}` or `[]`.
pub fn encodes_as_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// Whether `key=` (an empty string) is a value the request schema accepts: a plain string, an
/// enum listing `""`, or a union with such a branch (`anyOf: [X, {"enum": [""]}]`, Stripe's way
/// of saying X can be unset).
pub fn accepts_empty_form(schema: &Value) -> bool {
    if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
        return branches.iter().any(accepts_empty_form);
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        return allowed.iter().any(|v| v.as_str() == Some(""));
    }
    schema.get("type").and_then(Value::as_str) == Some("string")
        && schema.get("format").and_then(Value::as_str) != Some("decimal")
}

/// Whether the schema names `""` itself (an enum or an `anyOf` branch listing it): the
/// parameter is one Stripe lets callers unset, as opposed to a string that happens to be empty.
pub fn declares_unset(schema: &Value) -> bool {
    if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
        return branches.iter().any(declares_unset);
    }
    schema
        .get("enum")
        .and_then(Value::as_array)
        .is_some_and(|allowed| allowed.iter().any(|v| v.as_str() == Some("")))
}

/// Flattens a JSON value into form pairs under `prefix`, in document order.
pub fn flatten_into(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            if map.is_empty() {
                // An empty object clears the field (e.g. `metadata=` removes all keys).
                out.push((prefix.to_owned(), String::new()));
            }
            for (key, inner) in map {
                flatten_into(&format!("{prefix}[{key}]"), inner, out);
            }
        }
        Value::Array(items) => {
            if items.is_empty() {
                out.push((prefix.to_owned(), String::new()));
            }
            for (index, inner) in items.iter().enumerate() {
                flatten_into(&format!("{prefix}[{index}]"), inner, out);
            }
        }
        Value::Null => out.push((prefix.to_owned(), String::new())),
        Value::Bool(b) => out.push((prefix.to_owned(), b.to_string())),
        Value::Number(n) => out.push((prefix.to_owned(), number_to_form(n))),
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
    }
}

/// Integral floats (`1500.0`, as JSON payloads from designers often carry) are sent as integers.
fn number_to_form(n: &serde_json::Number) -> String {
    if let Some(f) = n.as_f64().filter(|_| n.is_f64())
        && f.fract() == 0.0
        && f.abs() < 9.0e15
    {
        return format!("{}", f as i64);
    }
    n.to_string()
}

/// Encodes pairs as an `application/x-www-form-urlencoded` string.
pub fn encode(pairs: &[(String, String)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        serializer.append_pair(key, value);
    }
    serializer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(name: &str, value: Value) -> Vec<(String, String)> {
        let mut out = Vec::new();
        flatten_into(name, &value, &mut out);
        out
    }

    #[test]
    fn nested_objects_and_arrays_use_brackets() {
        assert_eq!(
            pairs("items", json!([{"price": "price_1", "quantity": 2}])),
            vec![
                ("items[0][price]".to_owned(), "price_1".to_owned()),
                ("items[0][quantity]".to_owned(), "2".to_owned())
            ]
        );
        assert_eq!(
            pairs("metadata", json!({"order": "42"})),
            vec![("metadata[order]".to_owned(), "42".to_owned())]
        );
    }

    #[test]
    fn integral_floats_are_sent_as_integers() {
        assert_eq!(
            pairs("amount", json!(1500.0)),
            vec![("amount".to_owned(), "1500".to_owned())]
        );
        assert_eq!(
            pairs("rate", json!(1.5)),
            vec![("rate".to_owned(), "1.5".to_owned())]
        );
    }

    #[test]
    fn null_and_empty_values_clear_the_field() {
        assert_eq!(
            pairs("description", Value::Null),
            vec![("description".to_owned(), String::new())]
        );
        assert_eq!(
            pairs("metadata", json!({})),
            vec![("metadata".to_owned(), String::new())]
        );
    }

    #[test]
    fn only_strings_and_declared_unset_branches_accept_the_empty_form() {
        assert!(accepts_empty_form(&json!({"type": "string"})));
        assert!(accepts_empty_form(
            &json!({"anyOf": [{"type": "object"}, {"type": "string", "enum": [""]}]})
        ));
        assert!(!accepts_empty_form(&json!({"type": "object"})));
        assert!(!accepts_empty_form(&json!({"type": "array"})));
        assert!(!accepts_empty_form(
            &json!({"type": "string", "enum": ["automatic", "manual"]})
        ));
        assert!(!accepts_empty_form(
            &json!({"anyOf": [{"type": "integer"}, {"type": "string", "enum": ["now"]}]})
        ));
        assert!(declares_unset(
            &json!({"anyOf": [{"type": "object"}, {"type": "string", "enum": [""]}]})
        ));
        assert!(!declares_unset(&json!({"type": "string"})));
    }

    #[test]
    fn encoding_escapes_brackets_and_spaces() {
        let encoded = encode(&[("metadata[k]".to_owned(), "a b&c".to_owned())]);
        assert_eq!(encoded, "metadata%5Bk%5D=a+b%26c");
    }
}
