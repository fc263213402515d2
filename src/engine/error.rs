//! What can go wrong executing an entity operation or an action. Mapped to gRPC in `api::status`.

use std::time::Duration;

use crate::spec::model::OperationKind;
use crate::throttle::Throttled;
use crate::upstream::error::UpstreamError;

pub use crate::violation::FieldViolation;

/// Errors of the generic engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Inputs failed the schema before any upstream call.
    #[error("invalid input: {}", summarize(.0))]
    InvalidInput(Vec<FieldViolation>),
    /// No connection with this id.
    #[error("connection {0:?} not found")]
    ConnectionNotFound(String),
    /// No entity type with this name in the connector spec.
    #[error("entity type {0:?} not found")]
    EntityTypeNotFound(String),
    /// No action with this name in the connector spec.
    #[error("action {0:?} not found")]
    ActionNotFound(String),
    /// The entity type does not support the operation.
    #[error("entity type {entity} does not support {operation:?}")]
    OperationNotSupported {
        entity: String,
        operation: OperationKind,
    },
    /// The upstream answered with an error (read by the connector's dialect).
    #[error("{0}")]
    Upstream(Box<UpstreamError>),
    /// The upstream could not be reached or did not answer in time.
    #[error("upstream unavailable: {message}")]
    Unavailable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The caller's deadline passed before the call completed.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// The proxy refused the connection's proxy credentials (HTTP 407).
    #[error("the proxy rejected the proxy credentials: {0}")]
    ProxyAuthentication(String),
    /// The upstream answered something that is not the shape its dialect expects.
    #[error("unexpected upstream response: {0}")]
    BadResponse(String),
    /// The connection's pool or its account's rate budget has no capacity in time.
    #[error(transparent)]
    Throttled(#[from] Throttled),
    /// An order other than the upstream's own was asked of more entities than are sorted in one
    /// read. `native` names the upstream's order (e.g. `Created DESC`), when it has one.
    #[error(
        "the clause matches more than {limit} entities, too many to sort in another order than {}; narrow the conditions{}",
        native.as_deref().unwrap_or("the upstream's own"),
        native.as_deref().map(|order| format!(" or sort by {order}")).unwrap_or_default()
    )]
    TooManyToSort {
        limit: usize,
        native: Option<String>,
    },
    /// The connection cannot serve calls (e.g. its secret does not resolve).
    #[error("connection not ready: {0}")]
    NotReady(String),
}

/// Violations named in an error's one-line text; the rest are counted.
const SUMMARIZED_VIOLATIONS: usize = 3;

fn summarize(violations: &[FieldViolation]) -> String {
    let mut text = violations
        .iter()
        .take(SUMMARIZED_VIOLATIONS)
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ");
    if let Some(more) = violations
        .len()
        .checked_sub(SUMMARIZED_VIOLATIONS)
        .filter(|n| *n > 0)
    {
        text.push_str(&format!("; and {more} more"));
    }
    text
}

impl EngineError {
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        Self::InvalidInput(vec![FieldViolation::new(field, description.into())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_to_sort_names_the_upstream_order_when_there_is_one() {
        let stripe = EngineError::TooManyToSort {
            limit: 10_000,
            native: Some("Created DESC".to_owned()),
        };
        assert_eq!(
            stripe.to_string(),
            "the clause matches more than 10000 entities, too many to sort in another order than Created DESC; narrow the conditions or sort by Created DESC"
        );
        let other = EngineError::TooManyToSort {
            limit: 5,
            native: None,
        };
        assert!(
            other
                .to_string()
                .ends_with("than the upstream's own; narrow the conditions")
        );
    }
}
