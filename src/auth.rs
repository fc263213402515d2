//! Caller authentication: bearer tokens with roles. Pure; the gRPC layer is `api::auth`.
//!
//! `admin` may do everything; `invoker` may read connections and event subscriptions, stream
//! events, and use entities and actions.
//! Health and reflection are open, as probes and tools expect.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// ConnectionService and EventSubscriptionService writes, and everything an invoker may do.
    Admin,
    /// Entities, actions, reading connections and event subscriptions, streaming events.
    Invoker,
}

impl Role {
    /// True when this role grants `needed`.
    pub fn grants(self, needed: Role) -> bool {
        self == Role::Admin || self == needed
    }
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token (send `authorization: Bearer <token>`)")]
    MissingToken,
    #[error("unknown bearer token")]
    UnknownToken,
    #[error("token {token_name:?} has role {has:?}; this method needs {needs:?}")]
    Forbidden {
        token_name: String,
        has: Role,
        needs: Role,
    },
}

/// The role a gRPC method needs, or None for open methods (health, reflection).
pub fn required_role(path: &str) -> Option<Role> {
    let (service, method) = path.trim_start_matches('/').split_once('/')?;
    match service {
        "connectors.v1.EntityService"
        | "connectors.v1.ActionService"
        | "connectors.v1.ToolService" => Some(Role::Invoker),
        "connectors.v1.ConnectionService" => Some(match method {
            "GetConnection" | "ListConnections" | "CheckStatus" | "CheckReadiness" => Role::Invoker,
            _ => Role::Admin,
        }),
        "connectors.v1.EventSubscriptionService" => Some(match method {
            "GetEventSubscription" | "ListEventSubscriptions" | "StreamEvents" => Role::Invoker,
            _ => Role::Admin,
        }),
        "grpc.health.v1.Health"
        | "grpc.reflection.v1.ServerReflection"
        | "grpc.reflection.v1alpha.ServerReflection" => None,
        // Anything else is not served; let the router answer UNIMPLEMENTED, but never unauthenticated.
        _ => Some(Role::Admin),
    }
}

/// Configured tokens. An empty table disables authentication (loopback development only).
#[derive(Clone, Default)]
pub struct TokenTable {
    tokens: HashMap<Vec<u8>, (String, Role)>,
}

impl std::fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&String> = self.tokens.values().map(|(name, _)| name).collect();
        f.debug_struct("TokenTable").field("names", &names).finish()
    }
}

/// Compares without an early exit, so timing does not reveal how much of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl TokenTable {
    /// Builds the table from `(name, role, token value)`.
    pub fn new(entries: impl IntoIterator<Item = (String, Role, String)>) -> Self {
        Self {
            tokens: entries
                .into_iter()
                .map(|(name, role, token)| (token.into_bytes(), (name, role)))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Checks an `authorization` header value against the role a method needs.
    pub fn authorize(&self, authorization: Option<&str>, needed: Role) -> Result<(), AuthError> {
        self.identify(authorization, needed).map(|_| ())
    }

    /// Like [`authorize`](Self::authorize), and names the caller: the token's name, or `None`
    /// when authentication is off.
    pub fn identify(
        &self,
        authorization: Option<&str>,
        needed: Role,
    ) -> Result<Option<String>, AuthError> {
        if self.tokens.is_empty() {
            return Ok(None);
        }
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::MissingToken)?;
        let mut found = None;
        for (candidate, entry) in &self.tokens {
            if constant_time_eq(candidate, token.as_bytes()) {
                found = Some(entry);
            }
        }
        let (name, role) = found.ok_or(AuthError::UnknownToken)?;
        if role.grants(needed) {
            Ok(Some(name.clone()))
        } else {
            Err(AuthError::Forbidden {
                token_name: name.clone(),
                has: *role,
                needs: needed,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> TokenTable {
        TokenTable::new([
            ("ops".to_owned(), Role::Admin, "admin-token".to_owned()),
            (
                "flows".to_owned(),
                Role::Invoker,
                "invoker-token".to_owned(),
            ),
        ])
    }

    #[test]
    fn connection_writes_need_admin_and_reads_need_invoker() {
        assert_eq!(
            required_role("/connectors.v1.ConnectionService/CreateConnection"),
            Some(Role::Admin)
        );
        assert_eq!(
            required_role("/connectors.v1.ConnectionService/GetConnection"),
            Some(Role::Invoker)
        );
        assert_eq!(
            required_role("/connectors.v1.EntityService/ListEntities"),
            Some(Role::Invoker)
        );
        assert_eq!(
            required_role("/connectors.v1.ToolService/ExecuteTool"),
            Some(Role::Invoker)
        );
        assert_eq!(required_role("/grpc.health.v1.Health/Check"), None);
    }

    #[test]
    fn event_subscription_changes_need_admin_and_reading_events_needs_invoker() {
        for method in [
            "GetEventSubscription",
            "ListEventSubscriptions",
            "StreamEvents",
        ] {
            let path = format!("/connectors.v1.EventSubscriptionService/{method}");
            assert_eq!(required_role(&path), Some(Role::Invoker), "{method}");
        }
        for method in [
            "CreateEventSubscription",
            "UpdateEventSubscription",
            "DeleteEventSubscription",
            "RetryEventSubscription",
        ] {
            let path = format!("/connectors.v1.EventSubscriptionService/{method}");
            assert_eq!(required_role(&path), Some(Role::Admin), "{method}");
        }
    }

    #[test]
    fn missing_unknown_and_underprivileged_tokens_are_refused() {
        let t = table();
        assert_eq!(
            t.authorize(None, Role::Invoker),
            Err(AuthError::MissingToken)
        );
        assert_eq!(
            t.authorize(Some("Bearer nope"), Role::Invoker),
            Err(AuthError::UnknownToken)
        );
        assert!(matches!(
            t.authorize(Some("Bearer invoker-token"), Role::Admin),
            Err(AuthError::Forbidden { .. })
        ));
        assert_eq!(
            t.authorize(Some("Bearer invoker-token"), Role::Invoker),
            Ok(())
        );
        assert_eq!(
            t.authorize(Some("Bearer admin-token"), Role::Invoker),
            Ok(())
        );
    }

    #[test]
    fn errors_and_debug_never_show_token_values() {
        let t = table();
        assert!(!format!("{t:?}").contains("admin-token"));
        let error = t
            .authorize(Some("Bearer invoker-token"), Role::Admin)
            .unwrap_err();
        assert!(!error.to_string().contains("invoker-token"));
    }
}
