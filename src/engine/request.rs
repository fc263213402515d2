//! Builds upstream requests from an operation spec and the caller's inputs. Pure, no I/O.
//!
//! Inputs are keyed by the spec's PascalCase names (`PaymentIntentId`, `ReturnUrl`) or by Stripe's
//! own names (`return_url`). Every input is checked before any upstream call: unknown names, wrong
//! types and missing required parameters each become a field violation. Empty values (`null`,
//! `{}`, `[]`, `""`) are sent only where the parameter's request schema has an empty form, and
//! never for a required parameter.

use serde_json::{Map, Value};

use super::error::FieldViolation;
use super::input_check;
use crate::spec::model::{BodyEncoding, HttpMethod, OperationSpec, ParamLocation, ParamSpec};
use crate::upstream::form;

/// A request ready to send: method, concrete path, query pairs, and the body as form pairs or a
/// JSON object (by the operation's body encoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRequest {
    pub method: HttpMethod,
    /// Concrete path, e.g. `/v1/payment_intents/pi_123/confirm`.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// The body of a form-encoded POST.
    pub form: Vec<(String, String)>,
    /// The body of a JSON POST (`None` for form-encoded operations).
    pub json: Option<Map<String, Value>>,
    /// Stripe's operationId, for traces.
    pub operation_id: String,
    /// The path before ids were put in, e.g. `/v1/payment_intents/{intent}/confirm`: what traces
    /// show, never the ids.
    pub path_template: String,
}

/// The violation of an input naming no parameter (a dialect may explain it: `Dialect::withheld`).
pub const UNKNOWN_PARAMETER: &str = "unknown parameter";

/// Finds the parameter an input key names: by PascalCase name or by Stripe's name.
pub fn find_param<'a>(op: &'a OperationSpec, key: &str) -> Option<&'a ParamSpec> {
    op.params
        .iter()
        .find(|p| p.name == key)
        .or_else(|| op.params.iter().find(|p| p.source == key))
}

/// Whether a value says "nothing": it would travel as `key=`, which Stripe reads as an unset.
fn is_empty(value: &Value) -> bool {
    form::encodes_as_empty(value) || value.as_str() == Some("")
}

/// Characters left as they are in a path segment; everything else is percent-encoded.
fn encode_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Builds the request. `path_values` supplies placeholders the caller does not give as inputs
/// (an entity's own id and parent ids, from its resource name), by Stripe's placeholder name.
pub fn build(
    op: &OperationSpec,
    inputs: &Map<String, Value>,
    path_values: &[(&str, &str)],
) -> Result<UpstreamRequest, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    let mut parts = Parts {
        placeholders: path_values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        query: Vec::new(),
        form: Vec::new(),
        json: (op.body == BodyEncoding::Json).then(Map::new),
    };
    let mut seen: Vec<&str> = Vec::new();
    for (key, value) in inputs {
        let Some(param) = find_param(op, key) else {
            violations.push(FieldViolation::new(key, UNKNOWN_PARAMETER.to_owned()));
            continue;
        };
        if seen.contains(&param.source.as_str()) {
            violations.push(FieldViolation::new(
                key,
                format!("given twice (as {} and {})", param.name, param.source),
            ));
            continue;
        }
        seen.push(&param.source);
        check_value(param, value, &mut violations);
        parts.place(op, param, value, &mut violations);
    }
    for param in op.params.iter().filter(|p| p.required) {
        let given = seen.contains(&param.source.as_str())
            || (param.location == ParamLocation::Path
                && parts.placeholder(&param.source).is_some());
        if !given {
            violations.push(FieldViolation::new(&param.name, "is required".to_owned()));
        }
    }
    let path = parts.fill_path(op, &mut violations);
    if !violations.is_empty() {
        return Err(violations);
    }
    Ok(UpstreamRequest {
        method: op.method,
        path,
        query: parts.query,
        form: parts.form,
        json: parts.json.filter(|_| op.method == HttpMethod::Post),
        operation_id: op.operation_id.clone(),
        path_template: op.path.clone(),
    })
}

/// One input's value against its parameter: its schema, and no empty value for a required
/// parameter unless the schema has an empty form.
fn check_value(param: &ParamSpec, value: &Value, violations: &mut Vec<FieldViolation>) {
    let before = violations.len();
    input_check::check(&param.name, &param.json_schema, value, violations);
    if violations.len() == before
        && param.required
        && param.location != ParamLocation::Path
        && is_empty(value)
        && !form::declares_unset(&param.json_schema)
    {
        violations.push(FieldViolation::new(
            &param.name,
            format!(
                "is required and cannot be empty; give {}",
                input_check::describe(&param.json_schema)
            ),
        ));
    }
}

/// The request's parts as the inputs are placed.
struct Parts {
    /// Path placeholder values by Stripe's placeholder name.
    placeholders: Vec<(String, String)>,
    query: Vec<(String, String)>,
    form: Vec<(String, String)>,
    json: Option<Map<String, Value>>,
}

impl Parts {
    fn placeholder(&self, name: &str) -> Option<&str> {
        self.placeholders
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Puts one input where its parameter travels: the path, the query or the body.
    fn place(
        &mut self,
        op: &OperationSpec,
        param: &ParamSpec,
        value: &Value,
        violations: &mut Vec<FieldViolation>,
    ) {
        match param.location {
            ParamLocation::Path => match value {
                Value::String(s) if !s.is_empty() => {
                    self.placeholders.retain(|(k, _)| k != &param.source);
                    self.placeholders.push((param.source.clone(), s.clone()));
                }
                _ => violations.push(FieldViolation::new(
                    &param.name,
                    "expected a non-empty id".to_owned(),
                )),
            },
            ParamLocation::Query => form::flatten_into(&param.source, value, &mut self.query),
            // Stripe reads the parameters of a GET or DELETE from the query string, as its SDKs send them.
            ParamLocation::Body if op.method != HttpMethod::Post => {
                form::flatten_into(&param.source, value, &mut self.query)
            }
            ParamLocation::Body => match self.json.as_mut() {
                Some(object) => {
                    object.insert(param.source.clone(), value.clone());
                }
                None => form::flatten_into(&param.source, value, &mut self.form),
            },
        }
    }

    /// The concrete path: each `{placeholder}` replaced by its value, percent-encoded; one without
    /// a value is a required parameter missing.
    fn fill_path(&self, op: &OperationSpec, violations: &mut Vec<FieldViolation>) -> String {
        let mut path = String::with_capacity(op.path.len() + 32);
        let mut rest = op.path.as_str();
        while let Some(start) = rest.find('{') {
            path.push_str(&rest[..start]);
            let Some(len) = rest[start..].find('}') else {
                break;
            };
            let name = &rest[start + 1..start + len];
            match self.placeholder(name) {
                Some(value) => path.push_str(&encode_segment(value)),
                None => {
                    let field = op
                        .params
                        .iter()
                        .find(|p| p.source == name)
                        .map_or(name, |p| p.name.as_str());
                    if !violations.iter().any(|v| v.field == field) {
                        violations.push(FieldViolation::new(field, "is required".to_owned()));
                    }
                }
            }
            rest = &rest[start + len + 1..];
        }
        path.push_str(rest);
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::model::DataType;
    use serde_json::json;

    fn param(
        name: &str,
        source: &str,
        location: ParamLocation,
        required: bool,
        schema: Value,
    ) -> ParamSpec {
        ParamSpec {
            name: name.to_owned(),
            source: source.to_owned(),
            location,
            required,
            data_type: DataType::Varchar,
            json_schema: schema.into(),
        }
    }

    fn confirm() -> OperationSpec {
        OperationSpec {
            method: HttpMethod::Post,
            path: "/v1/payment_intents/{intent}/confirm".to_owned(),
            operation_id: "PostPaymentIntentsIntentConfirm".to_owned(),
            params: vec![
                param(
                    "PaymentIntentId",
                    "intent",
                    ParamLocation::Path,
                    true,
                    json!({"type": "string"}),
                ),
                param(
                    "ReturnUrl",
                    "return_url",
                    ParamLocation::Body,
                    false,
                    json!({"type": "string"}),
                ),
                param(
                    "ErrorOnRequiresAction",
                    "error_on_requires_action",
                    ParamLocation::Body,
                    false,
                    json!({"type": "boolean"}),
                ),
                param(
                    "Metadata",
                    "metadata",
                    ParamLocation::Body,
                    false,
                    json!({"type": "object", "additionalProperties": {"type": "string"}}),
                ),
            ],
            body: BodyEncoding::Form,
        }
    }

    fn inputs(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn builds_the_seed_confirm_request() {
        let request = build(
            &confirm(),
            &inputs(json!({"ReturnUrl": "http://google.com/", "PaymentIntentId": "pi_3OggwFANHgX3SHp71AVrNtT3"})),
            &[],
        )
        .unwrap();
        assert_eq!(
            request.path,
            "/v1/payment_intents/pi_3OggwFANHgX3SHp71AVrNtT3/confirm"
        );
        assert_eq!(
            request.form,
            vec![("return_url".to_owned(), "http://google.com/".to_owned())]
        );
    }

    #[test]
    fn accepts_stripe_names_and_nests_maps() {
        let request = build(
            &confirm(),
            &inputs(json!({"intent": "pi_1", "metadata": {"order": "7"}, "error_on_requires_action": true})),
            &[],
        )
        .unwrap();
        assert_eq!(
            request.form,
            vec![
                ("metadata[order]".to_owned(), "7".to_owned()),
                ("error_on_requires_action".to_owned(), "true".to_owned())
            ]
        );
    }

    #[test]
    fn reports_every_violation_at_once() {
        let violations = build(
            &confirm(),
            &inputs(json!({"ReturnUrl": 5, "Bogus": 1})),
            &[],
        )
        .unwrap_err();
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, vec!["ReturnUrl", "Bogus", "PaymentIntentId"]);
    }

    #[test]
    fn percent_encodes_ids_in_paths() {
        let request = build(
            &confirm(),
            &inputs(json!({"PaymentIntentId": "pi_1/../x"})),
            &[],
        )
        .unwrap();
        assert_eq!(request.path, "/v1/payment_intents/pi_1%2F..%2Fx/confirm");
    }

    #[test]
    fn path_values_fill_placeholders_not_given_as_inputs() {
        let request = build(&confirm(), &Map::new(), &[("intent", "pi_9")]).unwrap();
        assert_eq!(request.path, "/v1/payment_intents/pi_9/confirm");
    }
}
