//! The connector spec as data: what `connector-spec/<connector>/` holds once loaded.
//!
//! Pure types, no I/O. The generator (`spec generate`) writes these, the loader reads and validates
//! them, the engine executes them and the sandbox serves them. Field and parameter names facing users
//! are PascalCase (`Id`, `Email`, `PaymentIntentId`); `source` keeps Stripe's own snake_case name.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A whole connector: its metadata, entity types and actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorSpec {
    pub connector: ConnectorMeta,
    pub entities: Vec<EntitySpec>,
    pub actions: Vec<ActionSpec>,
    /// Stripe's description of each upstream operation as plain text, by `operation_id`
    /// (`descriptions.json`); what agent tools tell a model about themselves.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub descriptions: BTreeMap<String, String>,
}

/// Identity of the connector and the upstream API version its shapes are pinned to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorMeta {
    /// Connector name, e.g. `stripe`.
    pub name: String,
    /// Connector version exposed on connections, e.g. `1`.
    pub version: String,
    /// Upstream API version (sent as `Stripe-Version`), e.g. `2023-08-16`.
    pub api_version: String,
    /// Default upstream base URL, e.g. `https://api.stripe.com`: what a connection uses unless
    /// it names its own `api_base_url`.
    pub default_base_url: String,
    /// The upstream dialect the engine speaks to this connector's API, by name (`stripe`); see
    /// `upstream::dialect` and `crate::dialects`.
    pub dialect: String,
}

/// JDBC-style data types, as in Google Integration Connectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DataType {
    Varchar,
    Bigint,
    Integer,
    Double,
    Decimal,
    Boolean,
    Timestamp,
    Struct,
    Array,
    Json,
}

/// The standard operations an entity type may support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationKind {
    List,
    Get,
    Create,
    Update,
    Delete,
}

/// HTTP method of an upstream operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Post,
    Delete,
}

/// Where a parameter travels in the upstream request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamLocation {
    /// Substituted into `{source}` in the operation's path.
    Path,
    /// Query string (GET/DELETE), bracket-encoded when nested.
    Query,
    /// Form-encoded body (POST), bracket-encoded when nested.
    Body,
}

/// One entity type, e.g. `Customer` or the nested `CustomerTaxId`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntitySpec {
    /// Singular PascalCase name, e.g. `PaymentIntent`.
    pub name: String,
    /// Stripe's `object` value for this resource, e.g. `payment_intent`.
    pub object: String,
    /// Prefix of Stripe ids for this resource without the underscore, e.g. `pi`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_prefix: Option<String>,
    /// Collection path with placeholders for parent ids, e.g. `/v1/customers/{customer}/tax_ids`.
    pub collection_path: String,
    /// Item path, e.g. `/v1/customers/{customer}/tax_ids/{id}`; absent for list-only resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_path: Option<String>,
    /// Name of the placeholder in `item_path` that carries this entity's own id, e.g. `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id_param: Option<String>,
    /// Parent keys of nested collections, in path order (empty for top-level resources).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<ParentKey>,
    /// Search endpoint (`/v1/<collection>/search`) when the resource supports Stripe's search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_path: Option<String>,
    /// Field names (PascalCase) that Stripe's search query language accepts for this resource
    /// (`email:'a@b.c'`, `created>123`, `metadata['k']:'v'`); empty without `search_path`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search_fields: Vec<String>,
    /// The entity's fields (the key `Id` first).
    pub fields: Vec<FieldSpec>,
    /// Upstream operations backing each supported standard operation.
    pub operations: Operations,
}

/// A parent id that a nested collection's path needs, e.g. `Customer` → `{customer}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParentKey {
    /// Field name callers use (a key field of the entity and a required filter for List), e.g. `Customer`.
    pub field: String,
    /// Placeholder name in the paths, e.g. `customer`.
    pub param: String,
    /// Entity type the parent id refers to, when it is one, e.g. `Customer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
}

/// One field of an entity type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// PascalCase name, e.g. `Email`.
    pub name: String,
    /// Stripe's name, e.g. `email`.
    pub source: String,
    pub data_type: DataType,
    #[serde(default)]
    pub key: bool,
    #[serde(default)]
    pub nullable: bool,
    /// True when no Create or Update operation accepts the field.
    #[serde(default)]
    pub read_only: bool,
    /// Entity type the field's id refers to (expandable fields), e.g. `Customer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// JSON schema of the value (types, enums, nested properties; no prose).
    pub json_schema: Arc<Value>,
}

/// The upstream operations behind an entity type's standard operations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<OperationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get: Option<OperationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<OperationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<OperationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<OperationSpec>,
}

/// The distinct JSON schemas seen so far, for sharing equal ones: Stripe's spec repeats many
/// (metadata, address, `expand`, currency, …), about half of its schema text. The loader shares
/// each file's schemas as soon as it is parsed, so repeats are dropped before the next file is
/// read.
#[derive(Debug, Default)]
pub struct SchemaPool {
    by_text_hash: HashMap<u64, Vec<Arc<Value>>>,
}

impl SchemaPool {
    fn share(&mut self, schema: &mut Arc<Value>) {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(schema.to_string());
        let same = self.by_text_hash.entry(hash).or_default();
        match same.iter().find(|known| ***known == **schema) {
            Some(known) => *schema = Arc::clone(known),
            None => same.push(Arc::clone(schema)),
        }
    }

    pub fn share_entity(&mut self, entity: &mut EntitySpec) {
        for field in &mut entity.fields {
            self.share(&mut field.json_schema);
        }
        for op in entity.operations.iter_mut() {
            op.params
                .iter_mut()
                .for_each(|p| self.share(&mut p.json_schema));
        }
    }

    pub fn share_action(&mut self, action: &mut ActionSpec) {
        for param in &mut action.operation.params {
            self.share(&mut param.json_schema);
        }
        for field in &mut action.result_fields {
            self.share(&mut field.json_schema);
        }
    }
}

impl Operations {
    /// The supported operations, mutable.
    fn iter_mut(&mut self) -> impl Iterator<Item = &mut OperationSpec> {
        [
            self.list.as_mut(),
            self.get.as_mut(),
            self.create.as_mut(),
            self.update.as_mut(),
            self.delete.as_mut(),
        ]
        .into_iter()
        .flatten()
    }

    /// The supported operations with their specs, in LIST, GET, CREATE, UPDATE, DELETE order.
    pub fn iter(&self) -> impl Iterator<Item = (OperationKind, &OperationSpec)> {
        [
            (OperationKind::List, self.list.as_ref()),
            (OperationKind::Get, self.get.as_ref()),
            (OperationKind::Create, self.create.as_ref()),
            (OperationKind::Update, self.update.as_ref()),
            (OperationKind::Delete, self.delete.as_ref()),
        ]
        .into_iter()
        .filter_map(|(kind, op)| op.map(|op| (kind, op)))
    }

    pub fn get(&self, kind: OperationKind) -> Option<&OperationSpec> {
        match kind {
            OperationKind::List => self.list.as_ref(),
            OperationKind::Get => self.get.as_ref(),
            OperationKind::Create => self.create.as_ref(),
            OperationKind::Update => self.update.as_ref(),
            OperationKind::Delete => self.delete.as_ref(),
        }
    }
}

/// One upstream HTTP operation and the parameters it accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationSpec {
    pub method: HttpMethod,
    /// Path with `{placeholders}`, e.g. `/v1/payment_intents/{intent}/confirm`.
    pub path: String,
    /// Stripe's operationId, e.g. `PostPaymentIntentsIntentConfirm`, for tracing and checks.
    pub operation_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<ParamSpec>,
    /// How the body parameters of a POST travel (the request body's content type).
    #[serde(default, skip_serializing_if = "BodyEncoding::is_form")]
    pub body: BodyEncoding,
}

/// The content type of an operation's request body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyEncoding {
    /// `application/x-www-form-urlencoded` with bracketed keys (`metadata[k]=v`).
    #[default]
    Form,
    /// `application/json`, one object of the body parameters.
    Json,
}

impl BodyEncoding {
    pub fn is_form(&self) -> bool {
        *self == Self::Form
    }

    /// The request body's media type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Form => "application/x-www-form-urlencoded",
            Self::Json => "application/json",
        }
    }
}

/// One parameter of an upstream operation or action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    /// PascalCase name callers use, e.g. `PaymentIntentId`, `ReturnUrl`.
    pub name: String,
    /// Stripe's name, e.g. `intent`, `return_url`.
    pub source: String,
    pub location: ParamLocation,
    #[serde(default)]
    pub required: bool,
    pub data_type: DataType,
    pub json_schema: Arc<Value>,
}

/// How an action's upstream response becomes its result row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ResultShape {
    /// `{"Success": "true", <the object's fields flattened with dots, scalars as strings>}`.
    Flatten,
    /// `{"Success": "true"}` only.
    SuccessOnly,
    /// `{"Success": "true"}` plus selected fields: output name → dotted source path in the object.
    Select { fields: Vec<SelectedField> },
}

/// One selected result field, e.g. `InvoiceId` ← `invoice`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectedField {
    pub name: String,
    pub source: String,
}

/// A custom verb, e.g. `ConfirmPaymentIntent` → `POST /v1/payment_intents/{intent}/confirm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    /// Verb + object, e.g. `ConfirmPaymentIntent`.
    pub name: String,
    /// Human name, e.g. `Confirm payment intent`.
    pub display_name: String,
    /// Entity type the action acts on, when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    pub operation: OperationSpec,
    pub result: ResultShape,
    /// Fields of the object the upstream call returns (result metadata).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub result_fields: Vec<FieldSpec>,
}

impl ConnectorSpec {
    /// The entity type named `name` (exact, case-sensitive PascalCase).
    pub fn entity(&self, name: &str) -> Option<&EntitySpec> {
        self.entities.iter().find(|entity| entity.name == name)
    }

    /// The action named `name` (exact, case-sensitive PascalCase).
    pub fn action(&self, name: &str) -> Option<&ActionSpec> {
        self.actions.iter().find(|action| action.name == name)
    }

    /// Stripe's description of the upstream operation `operation`, when the spec has one.
    pub fn description(&self, operation: &OperationSpec) -> Option<&str> {
        self.descriptions
            .get(&operation.operation_id)
            .map(String::as_str)
    }
}

impl EntitySpec {
    /// The field whose PascalCase `name` or Stripe `source` is `name_or_source` (`Email` or `email`).
    pub fn field(&self, name_or_source: &str) -> Option<&FieldSpec> {
        self.fields
            .iter()
            .find(|field| field.name == name_or_source)
            .or_else(|| {
                self.fields
                    .iter()
                    .find(|field| field.source == name_or_source)
            })
    }

    /// The key fields: `Id` and, for nested collections, the parent keys.
    pub fn key_fields(&self) -> impl Iterator<Item = &FieldSpec> {
        self.fields.iter().filter(|field| field.key)
    }

    /// The parent key whose field is `field`, for nested collections.
    pub fn parent(&self, field: &str) -> Option<&ParentKey> {
        self.parents.iter().find(|parent| parent.field == field)
    }

    /// Fields whose List conditions go upstream rather than being filtered by the runtime: the
    /// parent keys, then the fields Stripe's list endpoint filters by.
    pub fn filterable_fields(&self) -> Vec<String> {
        let mut names: Vec<String> = self.parents.iter().map(|p| p.field.clone()).collect();
        if let Some(list) = &self.operations.list {
            for param in list
                .params
                .iter()
                .filter(|p| p.location == ParamLocation::Query)
            {
                if let Some(f) = self.fields.iter().find(|f| f.source == param.source) {
                    names.push(f.name.clone());
                }
            }
        }
        names
    }

    /// Whether the entity type supports `kind`.
    pub fn supports(&self, kind: OperationKind) -> bool {
        self.operations.get(kind).is_some()
    }
}

impl OperationSpec {
    /// The parameter named `name` (PascalCase).
    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|param| param.name == name)
    }

    /// Placeholder values for this operation of `entity`, by placeholder name: each path
    /// parameter named after a parent key gets that parent's id (in `parents` order), and `Id`
    /// gets `id`. Stripe spells one resource's placeholders differently across its operations
    /// (`/v1/transfers/{id}/reversals` vs `/v1/transfers/{transfer}/reversals/{id}`), so bind by
    /// these names rather than by `ParentKey::param`.
    pub fn path_values<'a>(
        &'a self,
        entity: &EntitySpec,
        parents: &'a [String],
        id: Option<&'a str>,
    ) -> Vec<(&'a str, &'a str)> {
        self.params
            .iter()
            .filter(|param| param.location == ParamLocation::Path)
            .filter_map(|param| {
                let value = if param.name == "Id" {
                    id?
                } else {
                    let index = entity.parents.iter().position(|p| p.field == param.name)?;
                    parents.get(index)?.as_str()
                };
                Some((param.source.as_str(), value))
            })
            .collect()
    }

    /// The parameter whose Stripe name is `source` in `location`.
    pub fn param_by_source(&self, location: ParamLocation, source: &str) -> Option<&ParamSpec> {
        self.params
            .iter()
            .find(|param| param.location == location && param.source == source)
    }
}

impl ActionSpec {
    /// The input parameter named `name` (PascalCase).
    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.operation.param(name)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    #[test]
    fn equal_schemas_of_the_loaded_spec_are_one_shared_value() {
        let spec = crate::spec::stripe().unwrap();
        let schemas: Vec<&super::Arc<super::Value>> = spec
            .entities
            .iter()
            .flat_map(|e| e.fields.iter().map(|f| &f.json_schema))
            .chain(
                spec.actions
                    .iter()
                    .flat_map(|a| a.operation.params.iter().map(|p| &p.json_schema)),
            )
            .collect();
        let allocations: HashSet<*const super::Value> =
            schemas.iter().map(|s| super::Arc::as_ptr(s)).collect();
        let texts: HashSet<String> = schemas.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            allocations.len(),
            texts.len(),
            "one allocation per distinct schema"
        );
        assert!(
            allocations.len() < schemas.len() / 2,
            "Stripe repeats schemas"
        );
    }
}
