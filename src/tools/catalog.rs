//! The tool catalog: one tool per entity operation and per action of a connector spec, built once.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::io_schemas;
use crate::spec::model::{ActionSpec, ConnectorSpec, EntitySpec, OperationKind};
use crate::upstream::dialect::{ActionEffect, Dialect};

/// What calling a tool runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolOperation {
    /// A standard operation on an entity type (`Customer`, LIST).
    Entity { entity: String, kind: OperationKind },
    /// A custom verb (`ConfirmPaymentIntent`).
    Action { action: String },
}

/// MCP's tool annotations: hints for clients, never guarantees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolHints {
    /// The tool only reads (List, Get).
    pub read_only: bool,
    /// The tool deletes, moves money or commits a document (Delete and most actions).
    pub destructive: bool,
    /// Calling again with the same arguments has no further effect (creates and actions require
    /// a `request_id`, which makes a repeated call replay the first one's result).
    pub idempotent: bool,
    /// The tool talks to a system outside the runtime (Stripe): always true.
    pub open_world: bool,
}

/// One tool.
#[derive(Debug, Clone)]
pub struct ToolDefinition {
    /// snake_case, e.g. `list_customers`, `confirm_payment_intent`.
    pub name: String,
    /// Human name, e.g. `List customers`.
    pub title: String,
    /// Stripe's description of the operation, plus how to call the tool.
    pub description: String,
    /// JSON Schema of the arguments (an object); shared, so a listing copies no schema.
    pub input_schema: Arc<Map<String, Value>>,
    /// JSON Schema of the result (an object); shared.
    pub output_schema: Arc<Map<String, Value>>,
    pub hints: ToolHints,
    pub operation: ToolOperation,
}

/// Every tool of a spec, in a stable order (entity types by name, their operations in LIST, GET,
/// CREATE, UPDATE, DELETE order, then actions by name), with a lookup by name.
#[derive(Debug, Clone, Default)]
pub struct ToolCatalog {
    tools: Vec<ToolDefinition>,
    by_name: HashMap<String, usize>,
}

impl ToolCatalog {
    /// The tools of `spec`: one per entity operation and action, described by the spec's text
    /// of the operation; `dialect` says which actions are destructive. A name that two operations
    /// would share goes to the first.
    pub fn new(spec: &ConnectorSpec, dialect: &dyn Dialect) -> Self {
        let mut catalog = Self::default();
        for entity in &spec.entities {
            for (kind, operation) in entity.operations.iter() {
                let description = spec.description(operation);
                catalog.push(entity_tool(entity, kind, description));
            }
        }
        for action in &spec.actions {
            let description = spec.description(&action.operation);
            catalog.push(action_tool(action, description, dialect));
        }
        catalog
    }

    fn push(&mut self, tool: ToolDefinition) {
        if self.by_name.contains_key(&tool.name) {
            tracing::warn!(tool = %tool.name, "two operations map to one tool name; keeping the first");
            return;
        }
        self.by_name.insert(tool.name.clone(), self.tools.len());
        self.tools.push(tool);
    }

    /// The tool named `name`.
    pub fn get(&self, name: &str) -> Option<&ToolDefinition> {
        self.by_name
            .get(name)
            .and_then(|index| self.tools.get(*index))
    }

    /// Every tool, in catalog order.
    pub fn iter(&self) -> impl Iterator<Item = &ToolDefinition> {
        self.tools.iter()
    }

    pub fn len(&self) -> usize {
        self.tools.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

/// `PaymentIntent` → `payment_intent`.
pub fn snake_case(pascal: &str) -> String {
    let mut out = String::with_capacity(pascal.len() + 4);
    for (index, c) in pascal.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if index > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `customer` → `customers`, `tax` → `taxes`, `summary` → `summaries`.
pub fn plural(word: &str) -> String {
    if let Some(stem) = word.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        return format!("{stem}ies");
    }
    if word.ends_with(['s', 'x', 'z']) || word.ends_with("ch") || word.ends_with("sh") {
        return format!("{word}es");
    }
    format!("{word}s")
}

/// `payment_intent` → `payment intent`.
fn words(snake: &str) -> String {
    snake.replace('_', " ")
}

fn entity_tool(
    entity: &EntitySpec,
    kind: OperationKind,
    spec_text: Option<&str>,
) -> ToolDefinition {
    let snake = snake_case(&entity.name);
    let (name, title) = match kind {
        OperationKind::List => {
            let many = plural(&snake);
            (format!("list_{many}"), format!("List {}", words(&many)))
        }
        OperationKind::Get => (format!("get_{snake}"), format!("Get {}", words(&snake))),
        OperationKind::Create => (
            format!("create_{snake}"),
            format!("Create {}", words(&snake)),
        ),
        OperationKind::Update => (
            format!("update_{snake}"),
            format!("Update {}", words(&snake)),
        ),
        OperationKind::Delete => (
            format!("delete_{snake}"),
            format!("Delete {}", words(&snake)),
        ),
    };
    let hints = ToolHints {
        read_only: matches!(kind, OperationKind::List | OperationKind::Get),
        destructive: kind == OperationKind::Delete,
        idempotent: true,
        open_world: true,
    };
    let fallback = format!("{title} ({}).", entity.name);
    let mut description = spec_text.map_or(fallback, str::to_owned);
    description.push(' ');
    description.push_str(&io_schemas::usage(entity, kind));
    ToolDefinition {
        name,
        title,
        description,
        input_schema: Arc::new(io_schemas::entity_input(entity, kind)),
        output_schema: Arc::new(io_schemas::entity_output(entity, kind)),
        hints,
        operation: ToolOperation::Entity {
            entity: entity.name.clone(),
            kind,
        },
    }
}

fn action_tool(
    action: &ActionSpec,
    spec_text: Option<&str>,
    dialect: &dyn Dialect,
) -> ToolDefinition {
    let fallback = format!("{}.", action.display_name);
    let mut description = spec_text.map_or(fallback, str::to_owned);
    description.push(' ');
    description.push_str(io_schemas::REQUEST_ID_USAGE);
    ToolDefinition {
        name: snake_case(&action.name),
        title: action.display_name.clone(),
        description,
        input_schema: Arc::new(io_schemas::action_input(action)),
        output_schema: Arc::new(io_schemas::action_output(action)),
        hints: ToolHints {
            read_only: false,
            destructive: dialect.action_effect(&action.name) == ActionEffect::Destructive,
            idempotent: true,
            open_world: true,
        },
        operation: ToolOperation::Action {
            action: action.name.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_snake_case_and_lists_plural() {
        assert_eq!(snake_case("PaymentIntent"), "payment_intent");
        assert_eq!(plural("customer"), "customers");
        assert_eq!(plural("customer_tax_id"), "customer_tax_ids");
        assert_eq!(plural("usage_record_summary"), "usage_record_summaries");
        assert_eq!(plural("key"), "keys");
        assert_eq!(plural("tax"), "taxes");
    }

    #[test]
    fn the_stripe_spec_gives_one_tool_per_operation_and_action() {
        let spec = crate::spec::stripe().unwrap();
        let catalog = ToolCatalog::new(spec, &crate::stripe::dialect::StripeDialect);
        let operations: usize = spec
            .entities
            .iter()
            .map(|e| e.operations.iter().count())
            .sum();
        assert_eq!(catalog.len(), operations + spec.actions.len());
        let list = catalog.get("list_customers").unwrap();
        assert!(list.hints.read_only && !list.hints.destructive);
        assert!(
            list.description
                .starts_with("Returns a list of your customers.")
        );
        let delete = catalog.get("delete_customer").unwrap();
        assert!(delete.hints.destructive && !delete.hints.read_only);
        let confirm = catalog.get("confirm_payment_intent").unwrap();
        assert!(confirm.hints.destructive && confirm.hints.idempotent);
        assert_eq!(
            confirm.operation,
            ToolOperation::Action {
                action: "ConfirmPaymentIntent".to_owned()
            }
        );
        let create = catalog.get("create_payment_intent").unwrap();
        assert!(!create.hints.destructive && !create.hints.read_only);
        assert!(catalog.get("attach_payment_method_to_customer").is_some());
        assert!(
            !catalog
                .get("attach_payment_method_to_customer")
                .unwrap()
                .hints
                .destructive
        );
    }
}
