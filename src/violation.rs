//! One broken input rule, named by the caller's field path: the single violation type the engine,
//! connection validation and the gRPC edge share. `api::status` turns a list of them into a
//! `BadRequest`; nothing here knows gRPC. Pure data, no I/O.

use std::fmt;

/// The reason of a violation that names no more specific rule.
pub const INVALID_ARGUMENT: &str = "INVALID_ARGUMENT";

/// One invalid input, named by the caller's field path (e.g. `Amount`,
/// `Shipping.address.line1`, `node_config.min_node_count`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Field path as the caller wrote it.
    pub field: String,
    /// What is wrong and what is accepted, in words. Never contains a secret value.
    pub description: String,
    /// UPPER_SNAKE rule that was broken, e.g. `INVALID_NAME`; [`INVALID_ARGUMENT`] when no
    /// rule has a name of its own.
    pub reason: &'static str,
}

impl FieldViolation {
    /// A violation of no named rule.
    pub fn new(field: &str, description: String) -> Self {
        Self::of_rule(field, INVALID_ARGUMENT, description)
    }

    /// A violation of the rule `reason`.
    pub fn of_rule(
        field: impl Into<String>,
        reason: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
            reason,
        }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.field, self.description, self.reason)
    }
}
