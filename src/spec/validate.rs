//! Validation of a loaded connector spec: the rules the engine relies on without re-checking.
//!
//! Pure, no I/O. Each violation is reported with the file it lives in and the JSON path inside
//! it, e.g. `connector-spec/stripe/entities/Customer.json: fields[3].reference: no entity type "Custmer"`.

use std::collections::BTreeSet;

use super::SpecError;
use super::files::{ACTIONS_DIR, CONNECTOR_FILE, ENTITIES_DIR};
use super::model::{
    ActionSpec, ConnectorSpec, EntitySpec, FieldSpec, HttpMethod, OperationKind, OperationSpec,
    ParamLocation, ParamSpec, ResultShape,
};
use super::naming::{is_pascal_case, path_shape, placeholders};

/// Checks `spec`; `root` is how errors name the spec's directory (`connector-spec/stripe`).
pub fn validate(spec: &ConnectorSpec, root: &str) -> Result<(), SpecError> {
    let connector_file = format!("{root}/{CONNECTOR_FILE}");
    let meta = &spec.connector;
    for (path, value) in [
        ("name", &meta.name),
        ("version", &meta.version),
        ("api_version", &meta.api_version),
        ("default_base_url", &meta.default_base_url),
        ("dialect", &meta.dialect),
    ] {
        if value.trim().is_empty() {
            return Err(SpecError::invalid(
                &connector_file,
                path,
                "must not be empty",
            ));
        }
    }

    let entity_names: BTreeSet<&str> = spec.entities.iter().map(|e| e.name.as_str()).collect();
    let mut seen = BTreeSet::new();
    for entity in &spec.entities {
        let file = format!("{root}/{ENTITIES_DIR}/{}.json", entity.name);
        if !seen.insert(entity.name.as_str()) {
            return Err(SpecError::invalid(
                &file,
                "name",
                format!("entity type \"{}\" is defined twice", entity.name),
            ));
        }
        EntityCheck {
            file: &file,
            entity,
            entity_names: &entity_names,
        }
        .run()?;
    }
    let mut seen = BTreeSet::new();
    for action in &spec.actions {
        let file = format!("{root}/{ACTIONS_DIR}/{}.json", action.name);
        if !seen.insert(action.name.as_str()) {
            return Err(SpecError::invalid(
                &file,
                "name",
                format!("action \"{}\" is defined twice", action.name),
            ));
        }
        check_action(&file, action, &entity_names)?;
    }
    Ok(())
}

struct EntityCheck<'a> {
    file: &'a str,
    entity: &'a EntitySpec,
    entity_names: &'a BTreeSet<&'a str>,
}

impl EntityCheck<'_> {
    fn fail(&self, path: impl Into<String>, message: impl Into<String>) -> SpecError {
        SpecError::invalid(self.file, path, message)
    }

    fn run(&self) -> Result<(), SpecError> {
        let entity = self.entity;
        if !is_pascal_case(&entity.name) {
            return Err(self.fail("name", format!("\"{}\" is not PascalCase", entity.name)));
        }
        if entity.object.is_empty() {
            return Err(self.fail("object", "must not be empty"));
        }
        check_fields(self.file, "fields", &entity.fields, self.entity_names)?;
        if !entity.fields.iter().any(|field| field.key) {
            return Err(self.fail("fields", "no key field"));
        }
        self.check_paths()?;
        self.check_parents()?;
        self.check_search()?;
        self.check_operations()
    }

    fn check_paths(&self) -> Result<(), SpecError> {
        let entity = self.entity;
        if !entity.collection_path.starts_with('/') {
            return Err(self.fail("collection_path", "must start with /"));
        }
        match (&entity.item_path, &entity.item_id_param) {
            (None, None) => {}
            (Some(item_path), Some(id_param)) => {
                let expected = format!("{}/{{}}", path_shape(&entity.collection_path));
                if path_shape(item_path) != expected {
                    return Err(self.fail(
                        "item_path",
                        format!("\"{item_path}\" is not the collection path plus one id"),
                    ));
                }
                if !item_path.ends_with(&format!("/{{{id_param}}}")) {
                    return Err(self.fail(
                        "item_id_param",
                        format!("\"{id_param}\" is not the last placeholder of the item path"),
                    ));
                }
            }
            (Some(_), None) => return Err(self.fail("item_id_param", "missing for the item path")),
            (None, Some(_)) => return Err(self.fail("item_id_param", "set without an item path")),
        }
        Ok(())
    }

    fn check_parents(&self) -> Result<(), SpecError> {
        let entity = self.entity;
        let collection_placeholders = placeholders(&entity.collection_path);
        if collection_placeholders.len() != entity.parents.len() {
            return Err(self.fail(
                "parents",
                format!(
                    "{} parent keys for {} placeholders in the collection path",
                    entity.parents.len(),
                    collection_placeholders.len()
                ),
            ));
        }
        for (index, (parent, placeholder)) in entity
            .parents
            .iter()
            .zip(&collection_placeholders)
            .enumerate()
        {
            if parent.param != *placeholder {
                return Err(self.fail(
                    format!("parents[{index}].param"),
                    format!(
                        "\"{}\" is not placeholder {{{placeholder}}} of the collection path",
                        parent.param
                    ),
                ));
            }
            match entity
                .fields
                .iter()
                .find(|field| field.name == parent.field)
            {
                Some(field) if field.key => {}
                Some(_) => {
                    return Err(self.fail(
                        format!("parents[{index}].field"),
                        format!("field \"{}\" is not a key", parent.field),
                    ));
                }
                None => {
                    return Err(self.fail(
                        format!("parents[{index}].field"),
                        format!("no field \"{}\"", parent.field),
                    ));
                }
            }
            if let Some(target) = &parent.entity
                && !self.entity_names.contains(target.as_str())
            {
                return Err(self.fail(
                    format!("parents[{index}].entity"),
                    format!("no entity type \"{target}\""),
                ));
            }
        }
        Ok(())
    }

    fn check_search(&self) -> Result<(), SpecError> {
        let entity = self.entity;
        if let Some(search) = &entity.search_path
            && *search != format!("{}/search", entity.collection_path)
        {
            return Err(self.fail(
                "search_path",
                format!("\"{search}\" is not the collection path plus /search"),
            ));
        }
        for (index, name) in entity.search_fields.iter().enumerate() {
            if entity.search_path.is_none() {
                return Err(self.fail(
                    format!("search_fields[{index}]"),
                    "set without a search_path",
                ));
            }
            if !entity.fields.iter().any(|field| &field.name == name) {
                return Err(self.fail(
                    format!("search_fields[{index}]"),
                    format!("no field \"{name}\""),
                ));
            }
        }
        Ok(())
    }

    fn check_operations(&self) -> Result<(), SpecError> {
        let entity = self.entity;
        let parent_names: Vec<&str> = entity.parents.iter().map(|p| p.field.as_str()).collect();
        for (kind, op) in entity.operations.iter() {
            let (method, on_item) = match kind {
                OperationKind::List => (HttpMethod::Get, false),
                OperationKind::Get => (HttpMethod::Get, true),
                OperationKind::Create => (HttpMethod::Post, false),
                OperationKind::Update => (HttpMethod::Post, true),
                OperationKind::Delete => (HttpMethod::Delete, true),
            };
            let at = format!("operations.{}", kind_name(kind));
            if op.method != method {
                return Err(self.fail(
                    format!("{at}.method"),
                    format!("must be {method:?} for {}", kind_name(kind)),
                ));
            }
            let expected_path = if on_item {
                entity.item_path.as_deref()
            } else {
                Some(entity.collection_path.as_str())
            };
            // Stripe spells placeholders differently across operations of one resource
            // (`/v1/transfers/{id}/reversals` vs `/v1/transfers/{transfer}/reversals/{id}`).
            if expected_path.map(path_shape) != Some(path_shape(&op.path)) {
                return Err(self.fail(
                    format!("{at}.path"),
                    match expected_path {
                        Some(expected) => format!("\"{}\" does not match \"{expected}\"", op.path),
                        None => format!("\"{}\" needs an item_path", op.path),
                    },
                ));
            }
            check_operation(self.file, &at, op)?;
            // Path parameters are named by position: parent keys, then `Id`.
            let path_names: Vec<&str> = op
                .params
                .iter()
                .filter(|param| param.location == ParamLocation::Path)
                .map(|param| param.name.as_str())
                .collect();
            let mut expected: Vec<&str> = parent_names.clone();
            if on_item {
                expected.push("Id");
            }
            if path_names != expected {
                return Err(self.fail(
                    format!("{at}.params"),
                    format!("path parameters {path_names:?}, expected {expected:?}"),
                ));
            }
        }
        Ok(())
    }
}

fn kind_name(kind: OperationKind) -> &'static str {
    match kind {
        OperationKind::List => "list",
        OperationKind::Get => "get",
        OperationKind::Create => "create",
        OperationKind::Update => "update",
        OperationKind::Delete => "delete",
    }
}

fn check_fields(
    file: &str,
    at: &str,
    fields: &[FieldSpec],
    entity_names: &BTreeSet<&str>,
) -> Result<(), SpecError> {
    let mut names = BTreeSet::new();
    let mut sources = BTreeSet::new();
    for (index, field) in fields.iter().enumerate() {
        let here = |what: &str| format!("{at}[{index}].{what}");
        if !is_pascal_case(&field.name) {
            return Err(SpecError::invalid(
                file,
                here("name"),
                format!("\"{}\" is not PascalCase", field.name),
            ));
        }
        if !names.insert(field.name.as_str()) {
            return Err(SpecError::invalid(
                file,
                here("name"),
                format!("duplicate field \"{}\"", field.name),
            ));
        }
        if field.source.is_empty() || !sources.insert(field.source.as_str()) {
            return Err(SpecError::invalid(
                file,
                here("source"),
                format!("empty or duplicate source \"{}\"", field.source),
            ));
        }
        if let Some(reference) = &field.reference
            && !entity_names.contains(reference.as_str())
        {
            return Err(SpecError::invalid(
                file,
                here("reference"),
                format!("no entity type \"{reference}\""),
            ));
        }
        if !field.json_schema.is_object() {
            return Err(SpecError::invalid(
                file,
                here("json_schema"),
                "must be a JSON object",
            ));
        }
    }
    Ok(())
}

fn check_operation(file: &str, at: &str, op: &OperationSpec) -> Result<(), SpecError> {
    if !op.path.starts_with('/') {
        return Err(SpecError::invalid(
            file,
            format!("{at}.path"),
            "must start with /",
        ));
    }
    if op.operation_id.is_empty() {
        return Err(SpecError::invalid(
            file,
            format!("{at}.operation_id"),
            "must not be empty",
        ));
    }
    let path_placeholders = placeholders(&op.path);
    let mut seen = Seen::default();
    for (index, param) in op.params.iter().enumerate() {
        let at = format!("{at}.params[{index}]");
        check_param(file, &at, op, param, &path_placeholders, &mut seen)?;
    }
    for placeholder in path_placeholders {
        let covered = op
            .params
            .iter()
            .any(|param| param.location == ParamLocation::Path && param.source == placeholder);
        if !covered {
            return Err(SpecError::invalid(
                file,
                format!("{at}.path"),
                format!("placeholder {{{placeholder}}} has no path parameter"),
            ));
        }
    }
    Ok(())
}

/// The parameter names and sources an operation's earlier parameters took.
#[derive(Default)]
struct Seen<'a> {
    names: BTreeSet<&'a str>,
    sources: BTreeSet<(u8, &'a str)>,
}

/// One parameter's rules: a unique PascalCase name, a unique source, a path parameter's
/// placeholder and requiredness, no body on a GET, a JSON-object schema.
fn check_param<'a>(
    file: &str,
    at: &str,
    op: &OperationSpec,
    param: &'a ParamSpec,
    path_placeholders: &[&str],
    seen: &mut Seen<'a>,
) -> Result<(), SpecError> {
    let here = |what: &str| format!("{at}.{what}");
    if !is_pascal_case(&param.name) {
        return Err(SpecError::invalid(
            file,
            here("name"),
            format!("\"{}\" is not PascalCase", param.name),
        ));
    }
    if !seen.names.insert(param.name.as_str()) {
        return Err(SpecError::invalid(
            file,
            here("name"),
            format!("duplicate parameter \"{}\"", param.name),
        ));
    }
    if param.source.is_empty()
        || !seen
            .sources
            .insert((param.location as u8, param.source.as_str()))
    {
        return Err(SpecError::invalid(
            file,
            here("source"),
            format!("empty or duplicate source \"{}\"", param.source),
        ));
    }
    match param.location {
        ParamLocation::Path if !path_placeholders.contains(&param.source.as_str()) => {
            return Err(SpecError::invalid(
                file,
                here("source"),
                format!("no placeholder {{{}}} in \"{}\"", param.source, op.path),
            ));
        }
        ParamLocation::Path if !param.required => {
            return Err(SpecError::invalid(
                file,
                here("required"),
                "path parameters are required",
            ));
        }
        ParamLocation::Body if op.method == HttpMethod::Get => {
            return Err(SpecError::invalid(
                file,
                here("location"),
                "GET operations take no body",
            ));
        }
        _ => {}
    }
    if !param.json_schema.is_object() {
        return Err(SpecError::invalid(
            file,
            here("json_schema"),
            "must be a JSON object",
        ));
    }
    Ok(())
}

fn check_action(
    file: &str,
    action: &ActionSpec,
    entity_names: &BTreeSet<&str>,
) -> Result<(), SpecError> {
    if !is_pascal_case(&action.name) {
        return Err(SpecError::invalid(
            file,
            "name",
            format!("\"{}\" is not PascalCase", action.name),
        ));
    }
    if action.display_name.trim().is_empty() {
        return Err(SpecError::invalid(
            file,
            "display_name",
            "must not be empty",
        ));
    }
    if let Some(entity) = &action.entity
        && !entity_names.contains(entity.as_str())
    {
        return Err(SpecError::invalid(
            file,
            "entity",
            format!("no entity type \"{entity}\""),
        ));
    }
    check_operation(file, "operation", &action.operation)?;
    if let ResultShape::Select { fields } = &action.result {
        if fields.is_empty() {
            return Err(SpecError::invalid(
                file,
                "result.fields",
                "select needs at least one field",
            ));
        }
        let mut names = BTreeSet::new();
        for (index, field) in fields.iter().enumerate() {
            if !is_pascal_case(&field.name) || !names.insert(field.name.as_str()) {
                return Err(SpecError::invalid(
                    file,
                    format!("result.fields[{index}].name"),
                    format!("\"{}\" is not a unique PascalCase name", field.name),
                ));
            }
            if field.source.is_empty() {
                return Err(SpecError::invalid(
                    file,
                    format!("result.fields[{index}].source"),
                    "must not be empty",
                ));
            }
        }
    }
    check_fields(file, "result_fields", &action.result_fields, entity_names)
}
