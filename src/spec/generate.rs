//! The generator: derives a connector spec from an OpenAPI description (Stripe's, or any API
//! shaped like it) plus the overlay, whose `[connector]` section also says which request bodies
//! and list responses to read.
//!
//! Reads the two input files, then works on data only. The rules (which paths are entity
//! collections, how names are formed, which POSTs are actions) are documented in
//! `docs/connector-spec.md`; the overlay overrides names where the rules fall short.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use super::SpecError;
use super::model::{
    ActionSpec, BodyEncoding, ConnectorMeta, ConnectorSpec, DataType, EntitySpec, FieldSpec,
    HttpMethod, OperationSpec, Operations, ParamLocation, ParamSpec, ParentKey, ResultShape,
};
use super::naming::{display_name, pascal_case, path_shape, placeholders, singular};
use super::openapi::{ApiParam, OpenApi, Operation, expansion_targets, truncate_schema};
use super::overlay::Overlay;
use super::validate::validate;

/// How validation errors name the spec being generated (it has no directory yet).
const GENERATED_ROOT: &str = "<generated>";

/// Stripe's sample objects, read from beside the OpenAPI file when present (for id prefixes).
pub const FIXTURES_FILE: &str = "fixtures3.json";

/// How many object levels an entity field's schema keeps before summarising as `{"type":"object"}`.
const FIELD_SCHEMA_DEPTH: usize = 2;
/// How many object levels an action's result field schemas keep (the full ones are on the entity).
const RESULT_SCHEMA_DEPTH: usize = 1;
/// How many object levels a parameter's schema keeps.
const PARAM_SCHEMA_DEPTH: usize = 3;
/// Stripe's `expand` parameter: kept on entity operations, left out of actions, whose results
/// are flattened ids.
const EXPAND: &str = "expand";
const SEARCH_SUFFIX: &str = "/search";
const TEST_HELPERS: &str = "/v1/test_helpers/";

/// Generates the connector spec from the OpenAPI description at `openapi` and the overlay at
/// `overlay`. Stripe's sample objects (`fixtures3.json`) beside the description supply id prefixes.
pub fn generate(openapi: &Path, overlay: &Path) -> Result<ConnectorSpec, SpecError> {
    let api = OpenApi::read(openapi)?;
    let overlay = Overlay::read(overlay)?;
    let fixtures_path = openapi.with_file_name(FIXTURES_FILE);
    let fixtures = match std::fs::read_to_string(&fixtures_path) {
        Ok(text) => {
            Some(
                serde_json::from_str::<Value>(&text).map_err(|error| SpecError::Parse {
                    file: fixtures_path.display().to_string(),
                    path: format!("line {} column {}", error.line(), error.column()),
                    message: error.to_string(),
                })?,
            )
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(SpecError::Io {
                path: fixtures_path,
                source,
            });
        }
    };
    generate_from(&api, &overlay, fixtures.as_ref())
}

/// Generates the connector spec from parsed inputs.
pub fn generate_from(
    api: &OpenApi,
    overlay: &Overlay,
    fixtures: Option<&Value>,
) -> Result<ConnectorSpec, SpecError> {
    let api_version = api
        .api_version()
        .ok_or_else(|| SpecError::open_api("info.version", "missing"))?;
    let generator = Generator::new(api, overlay, fixtures);
    let collections = generator.collections()?;
    let entities = generator.entities(&collections)?;
    let actions = generator.actions(&collections, &entities)?;
    generator.check_overlay_used(&collections, &actions)?;

    let mut entities = entities;
    entities.sort_by(|a, b| a.name.cmp(&b.name));
    let mut actions = actions;
    actions.sort_by(|a, b| a.name.cmp(&b.name));
    let descriptions = operation_descriptions(api, &entities, &actions);
    let spec = ConnectorSpec {
        connector: ConnectorMeta {
            name: overlay.connector.name.clone(),
            version: overlay.connector.version.clone(),
            api_version: api_version.to_owned(),
            default_base_url: overlay.connector.default_base_url.clone(),
            dialect: overlay.connector.dialect.clone(),
        },
        entities,
        actions,
        descriptions,
    };
    // What the generator writes must load: catch a rule or overlay gap before it is committed.
    validate(&spec, GENERATED_ROOT)?;
    Ok(spec)
}

/// Stripe's description of every upstream operation the spec uses, by operation id.
fn operation_descriptions(
    api: &OpenApi,
    entities: &[EntitySpec],
    actions: &[ActionSpec],
) -> BTreeMap<String, String> {
    let operations = entities
        .iter()
        .flat_map(|entity| entity.operations.iter().map(|(_, op)| op))
        .chain(actions.iter().map(|action| &action.operation));
    operations
        .filter_map(|op| {
            let text = api.operation(&op.path, op.method)?.description()?;
            Some((op.operation_id.clone(), text))
        })
        .collect()
}

/// An entity collection found in the description, before its spec is built.
#[derive(Debug, Clone)]
struct Collection<'a> {
    /// Path with placeholders erased, the identity of the collection.
    shape: String,
    /// Collection path as the description spells it.
    path: String,
    item_path: Option<String>,
    /// Component schema of the resource.
    schema: &'a str,
    /// Index of the parent collection, for nested ones.
    parent: Option<usize>,
    name: String,
}

impl Collection<'_> {
    fn item_shape(&self) -> String {
        format!("{}/{{}}", self.shape)
    }
}

struct Generator<'a> {
    api: &'a OpenApi,
    overlay: &'a Overlay,
    fixtures: Option<&'a Value>,
    /// Paths the spec may use: no skipped collections, no test helpers beyond those listed.
    paths: Vec<&'a str>,
}

impl<'a> Generator<'a> {
    fn new(api: &'a OpenApi, overlay: &'a Overlay, fixtures: Option<&'a Value>) -> Self {
        let mut paths: Vec<&str> = api
            .paths()
            .filter(|path| !overlay.skips(path))
            .filter(|path| {
                !path.starts_with(TEST_HELPERS)
                    || overlay
                        .test_helpers
                        .iter()
                        .any(|helper| path == helper || path.starts_with(&format!("{helper}/")))
            })
            .collect();
        paths.sort_unstable();
        Self {
            api,
            overlay,
            fixtures,
            paths,
        }
    }

    /// The request bodies this API takes.
    fn body(&self) -> BodyEncoding {
        self.overlay.connector.body
    }

    fn has_id(&self, schema: &str) -> bool {
        self.api
            .schema(schema)
            .and_then(|schema| schema.get("properties"))
            .is_some_and(|properties| properties.get("id").is_some())
    }

    /// Finds the entity collections: list endpoints, create-only collections and get-only items.
    fn collections(&self) -> Result<Vec<Collection<'a>>, SpecError> {
        // Accept parents before children: fewer segments first.
        let mut ordered: Vec<(String, (String, &'a str))> = self.candidates().into_iter().collect();
        ordered.sort_by_key(|(shape, _)| (shape.matches('/').count(), shape.clone()));
        let mut accepted: Vec<Collection<'a>> = Vec::new();
        for (shape, (path, schema)) in ordered {
            let Some(parent) = placement(&accepted, &shape, schema) else {
                continue;
            };
            let item_path = self
                .paths
                .iter()
                .find(|candidate| path_shape(candidate) == format!("{shape}/{{}}"))
                .map(|path| (*path).to_owned());
            let name = self.collection_name(&path, schema, parent.map(|index| &accepted[index]));
            if let Some(existing) = accepted.iter().find(|collection| collection.name == name) {
                return Err(SpecError::overlay(
                    format!("entities.\"{path}\""),
                    format!(
                        "entity name {name} is also derived for {}; name one of them or skip it",
                        existing.path
                    ),
                ));
            }
            accepted.push(Collection {
                shape,
                path,
                item_path,
                schema,
                parent,
                name,
            });
        }
        Ok(accepted)
    }

    /// Every endpoint that looks like an entity collection, as shape → (path, item schema). The
    /// first source to claim a shape wins: list endpoints, then collections that can only be
    /// created into, then collections known only by their item's Get.
    fn candidates(&self) -> BTreeMap<String, (String, &'a str)> {
        let mut candidates: BTreeMap<String, (String, &'a str)> = BTreeMap::new();
        let collection_paths = self
            .paths
            .iter()
            .copied()
            .filter(|path| !path.ends_with('}') && !path.ends_with(SEARCH_SUFFIX));
        for path in collection_paths.clone() {
            if let Some(Ok(schema)) = self
                .api
                .operation(path, HttpMethod::Get)
                .and_then(|op| op.list_item_ref(self.api, &self.overlay.connector.list_items))
            {
                candidates.insert(path_shape(path), (path.to_owned(), schema));
            }
        }
        for path in collection_paths {
            let last = last_segment(path);
            if let Some(schema) = self
                .api
                .operation(path, HttpMethod::Post)
                .and_then(|op| op.response_ref())
                && last.ends_with('s')
                && self.has_id(schema)
            {
                candidates
                    .entry(path_shape(path))
                    .or_insert_with(|| (path.to_owned(), schema));
            }
        }
        for path in self
            .paths
            .iter()
            .copied()
            .filter(|path| path.ends_with('}'))
        {
            let Some(collection) = parent_path(path) else {
                continue;
            };
            if let Some(schema) = self
                .api
                .operation(path, HttpMethod::Get)
                .and_then(|op| op.response_ref())
                && !collection.ends_with('}')
                && last_segment(collection).ends_with('s')
                && self.has_id(schema)
            {
                candidates
                    .entry(path_shape(collection))
                    .or_insert_with(|| (collection.to_owned(), schema));
            }
        }
        candidates
    }

    fn collection_name(&self, path: &str, schema: &str, parent: Option<&Collection<'_>>) -> String {
        if let Some(name) = self
            .overlay
            .entities
            .get(path)
            .and_then(|entity| entity.name.clone())
        {
            return name;
        }
        match parent {
            Some(parent) => format!(
                "{}{}",
                parent.name,
                pascal_case(&singular(last_segment(path)))
            ),
            None => {
                let resource_id = self
                    .api
                    .schema(schema)
                    .and_then(|schema| schema.get("x-resourceId"))
                    .and_then(Value::as_str)
                    .unwrap_or(schema);
                pascal_case(resource_id)
            }
        }
    }

    /// Entity name for each resource schema: top-level collections win over nested copies.
    fn schema_entities(collections: &[Collection<'_>]) -> BTreeMap<String, String> {
        let mut by_schema = BTreeMap::new();
        for collection in collections.iter().filter(|c| c.parent.is_none()) {
            by_schema
                .entry(collection.schema.to_owned())
                .or_insert_with(|| collection.name.clone());
        }
        for collection in collections.iter().filter(|c| c.parent.is_some()) {
            by_schema
                .entry(collection.schema.to_owned())
                .or_insert_with(|| collection.name.clone());
        }
        by_schema
    }

    fn entities(&self, collections: &[Collection<'a>]) -> Result<Vec<EntitySpec>, SpecError> {
        let references = Self::schema_entities(collections);
        collections
            .iter()
            .map(|collection| self.entity(collection, collections, &references))
            .collect()
    }

    fn operation(&self, path: &str, method: HttpMethod) -> Option<Operation<'a>> {
        self.api.operation(path, method)
    }

    /// The operation `method path` when its response is the resource `schema` (or, for DELETE,
    /// anything: Stripe answers deletes with a `deleted_*` tombstone).
    fn resource_operation(
        &self,
        path: Option<&str>,
        method: HttpMethod,
        schema: &str,
    ) -> Option<Operation<'a>> {
        let op = self
            .operation(path?, method)
            .filter(|op| op.has_body_in(self.body()))?;
        match method {
            HttpMethod::Delete => Some(op),
            _ if op.returns(self.api, schema) => Some(op),
            _ => None,
        }
    }

    fn entity(
        &self,
        collection: &Collection<'a>,
        collections: &[Collection<'a>],
        references: &BTreeMap<String, String>,
    ) -> Result<EntitySpec, SpecError> {
        let schema_name = collection.schema;
        let schema = self
            .api
            .schema(schema_name)
            .ok_or_else(|| SpecError::open_api(&collection.path, "response schema missing"))?;
        let properties = self.api.properties(schema).cloned().unwrap_or_default();

        let list = self
            .operation(&collection.path, HttpMethod::Get)
            .filter(|op| {
                op.list_item_ref(self.api, &self.overlay.connector.list_items)
                    == Some(Ok(schema_name))
            });
        let create = self.resource_operation(Some(&collection.path), HttpMethod::Post, schema_name);
        let item = collection.item_path.as_deref();
        let get = self.resource_operation(item, HttpMethod::Get, schema_name);
        let update = self.resource_operation(item, HttpMethod::Post, schema_name);
        let delete = self.resource_operation(item, HttpMethod::Delete, schema_name);
        let item_path = if get.is_some() || update.is_some() || delete.is_some() {
            collection.item_path.clone()
        } else {
            None
        };
        let item_id_param = item_path
            .as_deref()
            .and_then(|path| placeholders(path).last().map(|name| (*name).to_owned()));

        let (parents, parent_fields) =
            self.parents(collection, collections, &properties, create.is_some())?;

        let writable: BTreeSet<&str> = [create, update]
            .iter()
            .flatten()
            .flat_map(|op| op.body_params_in(self.body()).map(|param| param.name))
            .collect();
        let fields = self.fields(&properties, &writable, references, parent_fields);

        let parent_names: Vec<String> = parents.iter().map(|parent| parent.field.clone()).collect();
        let collection_op = |op: Option<Operation<'a>>| {
            op.map(|op| self.operation_spec(op, &parent_names, None, true))
                .transpose()
        };
        let item_op = |op: Option<Operation<'a>>| {
            op.map(|op| self.operation_spec(op, &parent_names, Some("Id"), true))
                .transpose()
        };
        let operations = Operations {
            list: collection_op(list)?,
            get: item_op(get)?,
            create: collection_op(create)?,
            update: item_op(update)?,
            delete: item_op(delete)?,
        };

        let (search_path, search_fields) = self.search(collection, &fields)?;
        let object = schema
            .pointer("/properties/object/enum/0")
            .and_then(Value::as_str)
            .unwrap_or(schema_name)
            .to_owned();
        let id_prefix = self
            .overlay
            .entities
            .get(&collection.path)
            .and_then(|entity| entity.id_prefix.clone())
            .or_else(|| self.fixture_id_prefix(schema_name));

        Ok(EntitySpec {
            name: collection.name.clone(),
            object,
            id_prefix,
            collection_path: collection.path.clone(),
            item_path,
            item_id_param,
            parents,
            search_path,
            search_fields,
            fields,
            operations,
        })
    }

    /// A nested collection's parent keys, outermost first, and the fields that carry them: one
    /// per placeholder of its path, each naming the collection it comes from.
    fn parents(
        &self,
        collection: &Collection<'a>,
        collections: &[Collection<'a>],
        properties: &serde_json::Map<String, Value>,
        creatable: bool,
    ) -> Result<(Vec<ParentKey>, Vec<FieldSpec>), SpecError> {
        let collection_placeholders = placeholders(&collection.path);
        let mut ancestor = collection.parent;
        let mut chain = Vec::new();
        while let Some(index) = ancestor {
            chain.push(&collections[index]);
            ancestor = collections[index].parent;
        }
        chain.reverse();
        if chain.len() != collection_placeholders.len() {
            return Err(SpecError::open_api(
                &collection.path,
                "placeholders do not match the parent collections",
            ));
        }
        let mut parents = Vec::new();
        let mut parent_fields = Vec::new();
        for (parent, param) in chain.iter().zip(&collection_placeholders) {
            let field = self.parent_field(properties, parent, param, creatable)?;
            parents.push(ParentKey {
                field: field.name.clone(),
                param: (*param).to_owned(),
                entity: Some(parent.name.clone()),
            });
            parent_fields.push(field);
        }
        Ok((parents, parent_fields))
    }

    /// The collection's search path, when the API has one, and the fields the overlay makes
    /// searchable, each of which must be a field of the entity.
    fn search(
        &self,
        collection: &Collection<'a>,
        fields: &[FieldSpec],
    ) -> Result<(Option<String>, Vec<String>), SpecError> {
        let search_path = format!("{}{SEARCH_SUFFIX}", collection.path);
        let search_path = self
            .operation(&search_path, HttpMethod::Get)
            .map(|_| search_path);
        let search_fields = self
            .overlay
            .entities
            .get(&collection.path)
            .map(|entity| entity.search_fields.clone())
            .unwrap_or_default();
        for field in &search_fields {
            if search_path.is_none() || !fields.iter().any(|f| &f.name == field) {
                return Err(SpecError::overlay(
                    format!("entities.\"{}\".search_fields", collection.path),
                    format!("{field} is not a searchable field of {}", collection.name),
                ));
            }
        }
        Ok((search_path, search_fields))
    }

    /// The field of a nested resource that holds its parent's id: the property named like the
    /// placeholder, else the one expanding to the parent's resource, else a field of its own
    /// (named after the parent entity) that the engine fills from the request path.
    fn parent_field(
        &self,
        properties: &serde_json::Map<String, Value>,
        parent: &Collection<'_>,
        param: &str,
        has_create: bool,
    ) -> Result<FieldSpec, SpecError> {
        let by_name = (param != "id")
            .then(|| properties.get_key_value(param))
            .flatten();
        let by_reference = || {
            let mut matching = properties
                .iter()
                .filter(|(_, schema)| expansion_targets(schema).any(|t| t == parent.schema));
            match (matching.next(), matching.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        };
        let field = match by_name.or_else(by_reference) {
            Some((source, schema)) => FieldSpec {
                name: pascal_case(source),
                source: source.clone(),
                data_type: DataType::Varchar,
                key: true,
                nullable: false,
                read_only: !has_create,
                reference: Some(parent.name.clone()),
                json_schema: json!({"type": "string"}).into(),
            }
            .with_nullable(schema),
            None if properties.contains_key(param) => {
                return Err(SpecError::open_api(
                    &parent.path,
                    format!("parent placeholder {{{param}}} clashes with a property"),
                ));
            }
            None => FieldSpec {
                name: parent.name.clone(),
                source: param.to_owned(),
                data_type: DataType::Varchar,
                key: true,
                nullable: false,
                read_only: !has_create,
                reference: Some(parent.name.clone()),
                json_schema: json!({"type": "string"}).into(),
            },
        };
        Ok(field)
    }

    /// Fields: `Id` first, then the parent keys, then the rest in the description's order.
    fn fields(
        &self,
        properties: &serde_json::Map<String, Value>,
        writable: &BTreeSet<&str>,
        references: &BTreeMap<String, String>,
        parent_fields: Vec<FieldSpec>,
    ) -> Vec<FieldSpec> {
        let parent_sources: BTreeSet<String> = parent_fields
            .iter()
            .map(|field| field.source.clone())
            .collect();
        let mut fields: Vec<FieldSpec> = Vec::with_capacity(properties.len() + 1);
        let mut rest = Vec::with_capacity(properties.len());
        for (source, schema) in properties {
            if parent_sources.contains(source) {
                continue;
            }
            let field = self.field(source, schema, writable, references);
            if source == "id" {
                fields.push(field);
            } else {
                rest.push(field);
            }
        }
        fields.extend(parent_fields);
        fields.extend(rest);
        fields
    }

    fn field(
        &self,
        source: &str,
        schema: &Value,
        writable: &BTreeSet<&str>,
        references: &BTreeMap<String, String>,
    ) -> FieldSpec {
        let mut targets = expansion_targets(schema);
        let reference = match (targets.next(), targets.next()) {
            (Some(only), None) => references.get(only).cloned(),
            _ => None,
        };
        FieldSpec {
            name: pascal_case(source),
            source: source.to_owned(),
            data_type: self.api.data_type(schema),
            key: source == "id",
            nullable: is_nullable(schema),
            read_only: !writable.contains(source),
            reference,
            json_schema: self
                .api
                .compact_schema(schema, FIELD_SCHEMA_DEPTH, false)
                .into(),
        }
    }

    /// An operation's spec. Path placeholders are named by position: the parents' names first,
    /// then `item_id` for the last one when the path ends in the item's own id.
    fn operation_spec(
        &self,
        op: Operation<'a>,
        parent_names: &[String],
        item_id: Option<&str>,
        keep_expand: bool,
    ) -> Result<OperationSpec, SpecError> {
        let location = || format!("paths.{}.{}", op.path, method_name(op.method));
        let names = placeholders(op.path);
        let expected = parent_names.len() + usize::from(item_id.is_some());
        if names.len() != expected {
            return Err(SpecError::open_api(
                location(),
                format!(
                    "expected {expected} path placeholders, found {}",
                    names.len()
                ),
            ));
        }
        let path_params: Vec<ApiParam<'a>> = op
            .parameters()
            .filter(|param| param.location == ParamLocation::Path)
            .collect();
        let mut params = Vec::new();
        for (index, placeholder) in names.iter().enumerate() {
            let param = path_params
                .iter()
                .find(|param| param.name == *placeholder)
                .ok_or_else(|| {
                    SpecError::open_api(location(), format!("no path parameter {placeholder}"))
                })?;
            let name = parent_names
                .get(index)
                .map(String::as_str)
                .or(item_id)
                .unwrap_or(placeholder);
            params.push(self.param_spec(name.to_owned(), param, true));
        }
        let others = op
            .parameters()
            .filter(|param| param.location == ParamLocation::Query)
            .chain(
                op.body_params_in(self.body())
                    .filter(|_| op.method != HttpMethod::Get),
            );
        for param in others {
            if param.name == EXPAND && !keep_expand {
                continue;
            }
            params.push(self.param_spec(pascal_case(param.name), &param, param.required));
        }
        let operation_id = op
            .operation_id()
            .ok_or_else(|| SpecError::open_api(location(), "operationId missing"))?;
        Ok(OperationSpec {
            method: op.method,
            path: op.path.to_owned(),
            operation_id: operation_id.to_owned(),
            params,
            body: self.body(),
        })
    }

    fn param_spec(&self, name: String, param: &ApiParam<'_>, required: bool) -> ParamSpec {
        ParamSpec {
            name,
            source: param.name.to_owned(),
            location: param.location,
            required,
            data_type: self.api.data_type(param.schema),
            json_schema: self
                .api
                .compact_schema(param.schema, PARAM_SCHEMA_DEPTH, true)
                .into(),
        }
    }

    /// Actions: POSTs on an entity's item path (or collection path) plus one literal segment that
    /// return the entity's own object, e.g. `POST /v1/invoices/{invoice}/pay`.
    fn actions(
        &self,
        collections: &[Collection<'a>],
        entities: &[EntitySpec],
    ) -> Result<Vec<ActionSpec>, SpecError> {
        let collection_shapes: BTreeSet<&str> =
            collections.iter().map(|c| c.shape.as_str()).collect();
        let mut actions: Vec<ActionSpec> = Vec::new();
        for path in self.paths.iter().copied() {
            if path.ends_with('}') || collection_shapes.contains(path_shape(path).as_str()) {
                continue;
            }
            let Some(op) = self
                .operation(path, HttpMethod::Post)
                .filter(|op| op.has_body_in(self.body()))
            else {
                continue;
            };
            let Some(target) = parent_path(path).map(path_shape) else {
                continue;
            };
            let found = collections
                .iter()
                .zip(entities)
                .find_map(|(collection, entity)| {
                    if collection.item_shape() == target {
                        Some((collection, entity, true))
                    } else if collection.shape == target {
                        Some((collection, entity, false))
                    } else {
                        None
                    }
                });
            let Some((collection, entity, on_item)) = found else {
                continue;
            };
            if !op.returns(self.api, collection.schema) {
                continue;
            }
            actions.push(self.action(op, entity, on_item)?);
        }
        let mut seen = BTreeSet::new();
        for action in &actions {
            if !seen.insert(action.name.as_str()) {
                return Err(SpecError::overlay(
                    format!("actions.\"{}\"", action.operation.path),
                    format!(
                        "action name {} is derived twice; name one of them",
                        action.name
                    ),
                ));
            }
        }
        Ok(actions)
    }

    fn action(
        &self,
        op: Operation<'a>,
        entity: &EntitySpec,
        on_item: bool,
    ) -> Result<ActionSpec, SpecError> {
        let overlay = self.overlay.actions.get(op.path);
        let verb = last_segment(op.path);
        let name = overlay
            .and_then(|action| action.name.clone())
            .unwrap_or_else(|| format!("{}{}", pascal_case(verb), entity.name));
        let parent_names: Vec<String> = entity
            .parents
            .iter()
            .map(|parent| format!("{}Id", parent.entity.as_deref().unwrap_or(&parent.field)))
            .collect();
        let item_id = format!("{}Id", entity.name);
        let mut operation = self.operation_spec(
            op,
            &parent_names,
            on_item.then_some(item_id.as_str()),
            false,
        )?;
        if let Some(overlay) = overlay {
            for (source, new_name) in &overlay.params {
                let mut matched = false;
                for param in operation.params.iter_mut().filter(|p| &p.source == source) {
                    param.name = new_name.clone();
                    matched = true;
                }
                if !matched {
                    return Err(SpecError::overlay(
                        format!("actions.\"{}\".params.{source}", op.path),
                        "the operation has no such parameter",
                    ));
                }
            }
            for extra in &overlay.extra_params {
                if operation.param(&extra.name).is_some()
                    || op.all_params().any(|param| param.name == extra.source)
                {
                    return Err(SpecError::overlay(
                        format!("actions.\"{}\".extra_params.{}", op.path, extra.source),
                        "the operation already has this parameter",
                    ));
                }
                operation.params.push(extra.clone());
            }
        }
        let properties: BTreeSet<&str> = self
            .api
            .schema(op.response_ref().unwrap_or_default())
            .and_then(|schema| self.api.properties(schema))
            .map(|properties| properties.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let result_fields = entity
            .fields
            .iter()
            .filter(|field| properties.contains(field.source.as_str()))
            .map(|field| FieldSpec {
                json_schema: truncate_schema(&field.json_schema, RESULT_SCHEMA_DEPTH).into(),
                ..field.clone()
            })
            .collect();
        Ok(ActionSpec {
            display_name: display_name(&name),
            name,
            entity: Some(entity.name.clone()),
            operation,
            result: overlay
                .and_then(|action| action.result.clone())
                .unwrap_or(ResultShape::Flatten),
            result_fields,
        })
    }

    fn fixture_id_prefix(&self, schema: &str) -> Option<String> {
        let id = self
            .fixtures?
            .get("resources")?
            .get(schema)?
            .get("id")?
            .as_str()?;
        id_prefix(id)
    }

    /// Every overlay key must name something the description has: typos fail loudly.
    fn check_overlay_used(
        &self,
        collections: &[Collection<'_>],
        actions: &[ActionSpec],
    ) -> Result<(), SpecError> {
        for path in self.overlay.entities.keys() {
            if !collections
                .iter()
                .any(|collection| &collection.path == path)
            {
                return Err(SpecError::overlay(
                    format!("entities.\"{path}\""),
                    "no entity collection has this path",
                ));
            }
        }
        for path in self.overlay.actions.keys() {
            if !actions.iter().any(|action| &action.operation.path == path) {
                return Err(SpecError::overlay(
                    format!("actions.\"{path}\""),
                    "no action has this path",
                ));
            }
        }
        for skipped in self.overlay.skip.iter().chain(&self.overlay.test_helpers) {
            if !self.api.has_path(skipped) {
                return Err(SpecError::overlay(
                    format!("skip \"{skipped}\""),
                    "the description has no such path",
                ));
            }
        }
        Ok(())
    }
}

trait WithNullable {
    fn with_nullable(self, schema: &Value) -> Self;
}

impl WithNullable for FieldSpec {
    fn with_nullable(mut self, schema: &Value) -> Self {
        self.nullable = is_nullable(schema);
        if self.nullable
            && let Some(map) = Arc::make_mut(&mut self.json_schema).as_object_mut()
        {
            map.insert("nullable".into(), Value::Bool(true));
        }
        self
    }
}

fn is_nullable(schema: &Value) -> bool {
    schema.get("nullable").and_then(Value::as_bool) == Some(true)
}

/// The prefix of a sample id: `cus_Oaxlz8kB0PJWGa` → `cus`, `cs_test_a1GY…` → `cs`,
/// `sub_sched_1Nnm…` → `sub_sched`; none for ids without a random tail (`card_payments`, `US`).
pub fn id_prefix(id: &str) -> Option<String> {
    let (head, tail) = id.rsplit_once('_')?;
    let random_tail = tail.len() >= 8
        && tail.chars().all(|ch| ch.is_ascii_alphanumeric())
        && tail
            .chars()
            .any(|ch| ch.is_ascii_digit() || ch.is_ascii_uppercase());
    let head = head
        .strip_suffix("_test")
        .or_else(|| head.strip_suffix("_live"))
        .unwrap_or(head);
    let plain_head = !head.is_empty()
        && head
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_');
    (random_tail && plain_head).then(|| head.to_owned())
}

/// Where a candidate collection sits among those accepted so far: `Some(Some(i))` under
/// collection `i`, `Some(None)` at the top, `None` when it is not a collection of its own.
fn placement(accepted: &[Collection<'_>], shape: &str, schema: &str) -> Option<Option<usize>> {
    if !shape.contains("{}") {
        // `/v1/invoices/upcoming/lines` extends the `/v1/invoices` collection with a literal: a
        // preview, not a collection of its own.
        let extends_one = accepted.iter().any(|collection| {
            shape
                .strip_prefix(&collection.shape)
                .is_some_and(|rest| rest.starts_with('/'))
        });
        return (!extends_one).then_some(None);
    }
    let parent_item = parent_path(shape).filter(|item| item.ends_with("{}"))?;
    let index = accepted
        .iter()
        .position(|collection| collection.item_shape() == parent_item)?;
    // A verb on the parent that returns the parent is not a collection.
    (accepted[index].schema != schema).then_some(Some(index))
}

fn last_segment(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn parent_path(path: &str) -> Option<&str> {
    path.rsplit_once('/')
        .map(|(parent, _)| parent)
        .filter(|parent| !parent.is_empty())
}

fn method_name(method: HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "get",
        HttpMethod::Post => "post",
        HttpMethod::Delete => "delete",
    }
}

#[cfg(test)]
mod tests;
