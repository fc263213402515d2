//! A read-only view of Stripe's OpenAPI description: operations, parameters, schemas.
//!
//! Pure functions over a parsed JSON document; the only I/O is [`OpenApi::read`]. The generator
//! derives the connector spec through this view, and tests use it to check the committed spec
//! against the description.

use std::path::Path;

use serde_json::{Map, Value, json};

use super::SpecError;
use super::model::{BodyEncoding, DataType, HttpMethod, ParamLocation};

/// Stripe's `maxLength` on nearly every string: noise, so compact schemas drop it.
const DEFAULT_MAX_LENGTH: u64 = 5000;

/// A parsed OpenAPI 3 document.
#[derive(Debug, Clone)]
pub struct OpenApi {
    doc: Value,
}

/// One operation (`GET /v1/customers`) of the description.
#[derive(Debug, Clone, Copy)]
pub struct Operation<'a> {
    pub path: &'a str,
    pub method: HttpMethod,
    value: &'a Value,
}

/// One parameter an operation accepts, wherever it travels.
#[derive(Debug, Clone)]
pub struct ApiParam<'a> {
    pub name: &'a str,
    pub location: ParamLocation,
    pub required: bool,
    pub schema: &'a Value,
}

impl OpenApi {
    /// Reads and parses the description at `path`.
    pub fn read(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io {
            path: path.to_owned(),
            source,
        })?;
        let doc = serde_json::from_str(&text).map_err(|error| SpecError::Parse {
            file: path.display().to_string(),
            path: format!("line {} column {}", error.line(), error.column()),
            message: error.to_string(),
        })?;
        Ok(Self::from_value(doc))
    }

    pub fn from_value(doc: Value) -> Self {
        Self { doc }
    }

    /// `info.version`, Stripe's API version, e.g. `2023-08-16`.
    pub fn api_version(&self) -> Option<&str> {
        self.doc.pointer("/info/version").and_then(Value::as_str)
    }

    /// All path templates, in the document's order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.doc
            .get("paths")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|paths| paths.keys().map(String::as_str))
    }

    pub fn has_path(&self, path: &str) -> bool {
        self.doc
            .get("paths")
            .and_then(|paths| paths.get(path))
            .is_some()
    }

    /// The operation `method path`, when the description has it.
    pub fn operation<'a>(&'a self, path: &str, method: HttpMethod) -> Option<Operation<'a>> {
        let (path, item) = self.doc.get("paths")?.as_object()?.get_key_value(path)?;
        let value = item.get(method_key(method))?;
        Some(Operation {
            path: path.as_str(),
            method,
            value,
        })
    }

    /// The component schema `name` (`customer`, `checkout.session`).
    pub fn schema(&self, name: &str) -> Option<&Value> {
        self.doc.get("components")?.get("schemas")?.get(name)
    }

    /// Follows `$ref`s (and single-branch `anyOf`s) to the schema they name.
    pub fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        let mut current = schema;
        for _ in 0..16 {
            match ref_name(current).and_then(|name| self.schema(name)) {
                Some(target) => current = target,
                None => break,
            }
        }
        current
    }

    /// The property map of an object schema (after resolving references).
    pub fn properties<'a>(&'a self, schema: &'a Value) -> Option<&'a Map<String, Value>> {
        self.resolve(schema).get("properties")?.as_object()
    }

    /// The JDBC-style data type of a schema.
    pub fn data_type(&self, schema: &Value) -> DataType {
        if expansion_targets(schema).next().is_some() {
            return DataType::Varchar;
        }
        if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
            // `anyOf: [X, {enum: [""]}]` is X that an empty string unsets: its type is X's.
            let typed: Vec<&Value> = branches.iter().filter(|b| !is_empty_marker(b)).collect();
            return match typed.as_slice() {
                [only] => self.data_type(only),
                _ => DataType::Json,
            };
        }
        let schema = self.resolve(schema);
        match schema.get("type").and_then(Value::as_str) {
            Some("string") if schema.get("format").and_then(Value::as_str) == Some("decimal") => {
                DataType::Decimal
            }
            Some("string") => DataType::Varchar,
            Some("integer")
                if schema.get("format").and_then(Value::as_str) == Some("unix-time") =>
            {
                DataType::Timestamp
            }
            Some("integer") => DataType::Bigint,
            Some("number") => DataType::Double,
            Some("boolean") => DataType::Boolean,
            Some("array") => DataType::Array,
            Some("object") => DataType::Struct,
            _ if schema.get("properties").is_some() => DataType::Struct,
            _ => DataType::Json,
        }
    }

    /// A compact JSON schema: types, formats, enums, nesting and nullability, without prose.
    ///
    /// References to other resources (schemas with an `x-resourceId`) below the top become
    /// `{"type": "object"}`; so does anything nested deeper than `max_depth` objects, which keeps
    /// the files reasonable (Stripe's payment-method options nest a dozen levels).
    pub fn compact_schema(&self, schema: &Value, max_depth: usize, keep_required: bool) -> Value {
        Compactor {
            api: self,
            max_depth,
            keep_required,
        }
        .compact(schema, 0)
    }
}

impl<'a> Operation<'a> {
    /// Stripe's operationId, e.g. `GetCustomers`.
    pub fn operation_id(&self) -> Option<&'a str> {
        self.value.get("operationId").and_then(Value::as_str)
    }

    /// The operation's description as plain text: HTML tags dropped, entities decoded,
    /// whitespace collapsed, cut at a sentence end within [`DESCRIPTION_LIMIT`] characters.
    pub fn description(&self) -> Option<String> {
        let html = self.value.get("description").and_then(Value::as_str)?;
        let text = plain_text(html);
        (!text.is_empty()).then(|| shorten(&text, DESCRIPTION_LIMIT))
    }

    /// Whether the request body travels in `encoding` (or there is none). Other bodies (Stripe's
    /// file uploads, `POST /v1/files`, are multipart to another host) the engine does not speak.
    pub fn has_body_in(&self, encoding: BodyEncoding) -> bool {
        match self.value.pointer("/requestBody/content") {
            Some(content) => content.get(encoding.content_type()).is_some(),
            None => true,
        }
    }

    /// Path and query parameters, in the document's order.
    pub fn parameters(&self) -> impl Iterator<Item = ApiParam<'a>> {
        self.value
            .get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|param| {
                let location = match param.get("in").and_then(Value::as_str)? {
                    "path" => ParamLocation::Path,
                    "query" => ParamLocation::Query,
                    _ => return None,
                };
                Some(ApiParam {
                    name: param.get("name")?.as_str()?,
                    location,
                    required: param
                        .get("required")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    schema: param.get("schema").unwrap_or(&Value::Null),
                })
            })
    }

    /// Top-level form fields of the request body, in the document's order.
    pub fn body_params(&self) -> impl Iterator<Item = ApiParam<'a>> {
        self.body_params_in(BodyEncoding::Form)
    }

    /// Top-level members of the request body in `encoding`, in the document's order.
    pub fn body_params_in(&self, encoding: BodyEncoding) -> impl Iterator<Item = ApiParam<'a>> {
        let schema = self
            .value
            .get("requestBody")
            .and_then(|body| body.get("content"))
            .and_then(|content| content.get(encoding.content_type()))
            .and_then(|media| media.get("schema"));
        let required: Vec<&str> = schema
            .and_then(|schema| schema.get("required"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        schema
            .and_then(|schema| schema.get("properties"))
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(move |(name, schema)| ApiParam {
                name: name.as_str(),
                location: ParamLocation::Body,
                required: required.contains(&name.as_str()),
                schema,
            })
    }

    /// Every parameter: path and query first, then the form body.
    pub fn all_params(&self) -> impl Iterator<Item = ApiParam<'a>> {
        self.parameters().chain(self.body_params())
    }

    /// The schema of the 200 JSON response.
    pub fn response_schema(&self) -> Option<&'a Value> {
        self.value
            .pointer("/responses/200/content/application~1json/schema")
    }

    /// The component schema name of the 200 response, when it is one object type.
    pub fn response_ref(&self) -> Option<&'a str> {
        self.response_schema().and_then(ref_name)
    }

    /// Whether the 200 response is the object `schema`, alone or as one branch of a union
    /// (Stripe answers `GET /v1/customers/{id}` with a customer or a deleted customer, and
    /// `POST /v1/customers/{id}/cards` with the polymorphic `payment_source`).
    pub fn returns(&self, api: &OpenApi, schema: &str) -> bool {
        self.response_schema()
            .is_some_and(|response| union_contains(api, response, schema, 3))
    }

    /// For list responses (inline or a `$ref`) whose items are the array property `items`
    /// (Stripe's `{object: "list", data: [...]}`: `data`): the schema name of the items, or `Err(())` when
    /// the items are a union of several types.
    #[allow(clippy::result_unit_err)]
    pub fn list_item_ref(&self, api: &'a OpenApi, items: &str) -> Option<Result<&'a str, ()>> {
        let schema = api.resolve(self.response_schema()?);
        let data = schema.get("properties")?.get(items)?;
        let items = data.get("items")?;
        Some(ref_name(items).ok_or(()))
    }
}

/// Stripe's `{"type": "string", "enum": [""]}` branch: send an empty string to unset a value.
fn is_empty_marker(schema: &Value) -> bool {
    schema
        .get("enum")
        .and_then(Value::as_array)
        .is_some_and(|values| values.len() == 1 && values[0] == "")
}

fn union_contains(api: &OpenApi, schema: &Value, name: &str, depth: usize) -> bool {
    if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
        let target = target.trim_start_matches("#/components/schemas/");
        return target == name
            || (depth > 0
                && api
                    .schema(target)
                    .is_some_and(|resolved| union_contains(api, resolved, name, depth - 1)));
    }
    depth > 0
        && schema
            .get("anyOf")
            .and_then(Value::as_array)
            .is_some_and(|branches| {
                branches
                    .iter()
                    .any(|branch| union_contains(api, branch, name, depth - 1))
            })
}

/// The schema name a `$ref` (or an `anyOf` with one `$ref` branch) points to.
pub fn ref_name(schema: &Value) -> Option<&str> {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return reference.strip_prefix("#/components/schemas/");
    }
    match schema.get("anyOf").and_then(Value::as_array)?.as_slice() {
        [only] => ref_name(only),
        _ => None,
    }
}

/// The resource schemas an expandable field can expand to (`x-expansionResources`), without
/// the `deleted_*` tombstones.
pub fn expansion_targets(schema: &Value) -> impl Iterator<Item = &str> {
    schema
        .get("x-expansionResources")
        .and_then(|resources| resources.get("oneOf"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(ref_name)
        .filter(|name| !name.starts_with("deleted_"))
}

/// A compact schema cut to `max_depth` object levels, deeper objects summarised as
/// `{"type": "object"}` (keeping `nullable`).
pub fn truncate_schema(schema: &Value, max_depth: usize) -> Value {
    let Some(map) = schema.as_object() else {
        return schema.clone();
    };
    if map.contains_key("properties") && max_depth == 0 {
        let mut out = Map::new();
        out.insert("type".into(), "object".into());
        if let Some(nullable) = map.get("nullable") {
            out.insert("nullable".into(), nullable.clone());
        }
        return Value::Object(out);
    }
    let below = max_depth.saturating_sub(1);
    let out = map
        .iter()
        .map(|(key, value)| {
            let value = match (key.as_str(), value) {
                ("properties", Value::Object(properties)) => Value::Object(
                    properties
                        .iter()
                        .map(|(name, property)| (name.clone(), truncate_schema(property, below)))
                        .collect(),
                ),
                ("items" | "additionalProperties", nested) => truncate_schema(nested, below),
                ("anyOf", Value::Array(branches)) => Value::Array(
                    branches
                        .iter()
                        .map(|branch| truncate_schema(branch, max_depth))
                        .collect(),
                ),
                _ => value.clone(),
            };
            (key.clone(), value)
        })
        .collect();
    Value::Object(out)
}

fn method_key(method: HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "get",
        HttpMethod::Post => "post",
        HttpMethod::Delete => "delete",
    }
}

struct Compactor<'a> {
    api: &'a OpenApi,
    max_depth: usize,
    keep_required: bool,
}

impl Compactor<'_> {
    fn compact(&self, schema: &Value, depth: usize) -> Value {
        let nullable = schema.get("nullable").and_then(Value::as_bool) == Some(true);
        let mut out = self.compact_inner(schema, depth);
        if nullable && let Some(map) = out.as_object_mut() {
            map.insert("nullable".into(), Value::Bool(true));
        }
        out
    }

    fn compact_inner(&self, schema: &Value, depth: usize) -> Value {
        if expansion_targets(schema).next().is_some() {
            return json!({"type": "string"});
        }
        if let Some(name) = schema.get("$ref").and_then(Value::as_str) {
            let name = name.trim_start_matches("#/components/schemas/");
            return match self.api.schema(name) {
                Some(target) if depth > 0 && target.get("x-resourceId").is_some() => {
                    json!({"type": "object"})
                }
                Some(target) => self.compact(target, depth),
                None => json!({}),
            };
        }
        if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
            let mut compacted: Vec<Value> = branches
                .iter()
                .map(|branch| self.compact(branch, depth))
                .collect();
            compacted.dedup();
            return match compacted.len() {
                1 => compacted.remove(0),
                _ => json!({ "anyOf": compacted }),
            };
        }

        let mut out = Map::new();
        let is_object = schema.get("type").and_then(Value::as_str) == Some("object")
            || schema.get("properties").is_some();
        if let Some(kind) = schema.get("type") {
            out.insert("type".into(), kind.clone());
        } else if is_object {
            out.insert("type".into(), "object".into());
        }
        if is_object && depth >= self.max_depth {
            return Value::Object(out);
        }
        if let Some(format) = schema.get("format").and_then(Value::as_str)
            && matches!(format, "unix-time" | "decimal" | "binary")
        {
            out.insert("format".into(), format.into());
        }
        if let Some(values) = schema.get("enum") {
            out.insert("enum".into(), values.clone());
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && max != DEFAULT_MAX_LENGTH
        {
            out.insert("maxLength".into(), max.into());
        }
        if let Some(items) = schema.get("items") {
            out.insert("items".into(), self.compact(items, depth + 1));
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object)
            && !properties.is_empty()
        {
            let properties: Map<String, Value> = properties
                .iter()
                .map(|(name, property)| (name.clone(), self.compact(property, depth + 1)))
                .collect();
            out.insert("properties".into(), Value::Object(properties));
            if self.keep_required
                && let Some(required) = schema.get("required").filter(|required| {
                    required
                        .as_array()
                        .is_some_and(|required| !required.is_empty())
                })
            {
                out.insert("required".into(), required.clone());
            }
        }
        if let Some(additional) = schema.get("additionalProperties")
            && additional.is_object()
        {
            out.insert(
                "additionalProperties".into(),
                self.compact(additional, depth + 1),
            );
        }
        Value::Object(out)
    }
}

/// Longest operation description kept in the spec, in characters.
pub const DESCRIPTION_LIMIT: usize = 600;

/// Stripe's description HTML as plain text. Pure.
pub fn plain_text(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                text.push(' ');
            }
            '>' if in_tag => in_tag = false,
            _ if in_tag => {}
            _ => text.push(c),
        }
    }
    let decoded = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    let mut collapsed = decoded.split_whitespace().collect::<Vec<_>>().join(" ");
    // Tags next to punctuation leave a space before it: `<code>id</code>.` → `id .`.
    for mark in [".", ",", ";", ":", ")"] {
        collapsed = collapsed.replace(&format!(" {mark}"), mark);
    }
    collapsed.replace("( ", "(")
}

/// `text` cut after the last sentence that ends within `limit` characters (or at a word when
/// no sentence does). Pure.
pub fn shorten(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let head: String = text.chars().take(limit).collect();
    if let Some(end) = head.rfind(". ") {
        return head[..=end].to_owned();
    }
    match head.rfind(' ') {
        Some(end) => format!("{}…", &head[..end]),
        None => head,
    }
}

#[cfg(test)]
mod description_tests {
    use super::*;

    #[test]
    fn descriptions_become_plain_text_cut_at_a_sentence() {
        let html = "<p>Confirm the <code>PaymentIntent</code>. Then &amp; only then,\n<a href=\"#x\">pay</a>.</p>";
        assert_eq!(
            plain_text(html),
            "Confirm the PaymentIntent. Then & only then, pay."
        );
        assert_eq!(shorten("One. Two three.", 8), "One.");
        assert_eq!(shorten("no sentence end here", 9), "no…");
        assert_eq!(shorten("short", 10), "short");
    }
}
