//! A connection's tool policy applied to a tool: visible and callable, or refused with the
//! setting that would allow it. Pure.

use super::catalog::ToolDefinition;
use crate::connections::model::ToolPolicy;

/// Longest tool name pattern.
const MAX_PATTERN_LEN: usize = 100;

/// Whether `pattern` is a well-formed tool name pattern.
pub fn valid_pattern(pattern: &str) -> bool {
    !pattern.is_empty()
        && pattern.len() <= MAX_PATTERN_LEN
        && pattern
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'*')
}

/// Whether `pattern` matches the whole of `name`; `*` matches any run of characters.
/// Linear in practice: a greedy matcher that backtracks only to the last `*`.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((star_pi, star_ni)) = star {
            pi = star_pi + 1;
            ni = star_ni + 1;
            star = Some((star_pi, star_ni + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|b| *b == b'*')
}

fn first_match<'a>(patterns: &'a [String], name: &str) -> Option<&'a str> {
    patterns
        .iter()
        .map(String::as_str)
        .find(|pattern| pattern_matches(pattern, name))
}

/// Why a connection's policy refuses a tool; each says which setting would allow it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyRefusal {
    #[error(
        "tool `{tool}` is denied on connection `{connection}` by the pattern `{pattern}` in tool_policy.deny; remove that pattern to allow it"
    )]
    Denied {
        tool: String,
        connection: String,
        pattern: String,
    },
    #[error(
        "tool `{tool}` changes data and is not enabled on connection `{connection}`: add `{tool}` (or a pattern matching it) to the connection's tool_policy.allow"
    )]
    WriteNotAllowed { tool: String, connection: String },
    #[error(
        "tool `{tool}` is destructive (it deletes data or moves money) and is not enabled on connection `{connection}`: add `{tool}` (or a pattern matching it) to the connection's tool_policy.allow_destructive"
    )]
    DestructiveNotAllowed { tool: String, connection: String },
    #[error(
        "tool `{tool}` is destructive and connection `{connection}` uses a live-mode key: besides tool_policy.allow_destructive, set the connection's tool_policy.allow_live_destructive to true"
    )]
    LiveModeNotAllowed { tool: String, connection: String },
}

impl PolicyRefusal {
    /// The setting that would allow the tool (`tool_policy.allow_destructive`, …).
    pub fn setting(&self) -> &'static str {
        match self {
            Self::Denied { .. } => "tool_policy.deny",
            Self::WriteNotAllowed { .. } => "tool_policy.allow",
            Self::DestructiveNotAllowed { .. } => "tool_policy.allow_destructive",
            Self::LiveModeNotAllowed { .. } => "tool_policy.allow_live_destructive",
        }
    }

    pub fn tool(&self) -> &str {
        match self {
            Self::Denied { tool, .. }
            | Self::WriteNotAllowed { tool, .. }
            | Self::DestructiveNotAllowed { tool, .. }
            | Self::LiveModeNotAllowed { tool, .. } => tool,
        }
    }
}

/// A connection's policy, with what it needs to decide: the connection's id and key mode.
#[derive(Debug, Clone, Copy)]
pub struct ToolPolicyCheck<'a> {
    pub policy: &'a ToolPolicy,
    pub connection: &'a str,
    /// The connection's key is a live-mode key.
    pub live_mode: bool,
}

impl ToolPolicyCheck<'_> {
    /// Whether agents may see and call `tool`, or why not.
    pub fn check(&self, tool: &ToolDefinition) -> Result<(), PolicyRefusal> {
        let name = tool.name.as_str();
        let connection = self.connection.to_owned();
        if let Some(pattern) = first_match(&self.policy.deny, name) {
            return Err(PolicyRefusal::Denied {
                tool: name.to_owned(),
                connection,
                pattern: pattern.to_owned(),
            });
        }
        if tool.hints.read_only {
            return Ok(());
        }
        if !tool.hints.destructive {
            return match first_match(&self.policy.allow, name) {
                Some(_) => Ok(()),
                None => Err(PolicyRefusal::WriteNotAllowed {
                    tool: name.to_owned(),
                    connection,
                }),
            };
        }
        if first_match(&self.policy.allow_destructive, name).is_none() {
            return Err(PolicyRefusal::DestructiveNotAllowed {
                tool: name.to_owned(),
                connection,
            });
        }
        if self.live_mode && !self.policy.allow_live_destructive {
            return Err(PolicyRefusal::LiveModeNotAllowed {
                tool: name.to_owned(),
                connection,
            });
        }
        Ok(())
    }

    /// Whether agents may see `tool` in a listing.
    pub fn allows(&self, tool: &ToolDefinition) -> bool {
        self.check(tool).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::ToolCatalog;

    fn catalog() -> ToolCatalog {
        ToolCatalog::new(
            crate::spec::stripe().unwrap(),
            &crate::stripe::dialect::StripeDialect,
        )
    }

    fn check(policy: &ToolPolicy, live_mode: bool, tool: &str) -> Result<(), PolicyRefusal> {
        let catalog = catalog();
        ToolPolicyCheck {
            policy,
            connection: "c",
            live_mode,
        }
        .check(catalog.get(tool).unwrap())
    }

    #[test]
    fn patterns_match_whole_names_with_wildcards() {
        assert!(pattern_matches("list_*", "list_customers"));
        assert!(pattern_matches("*", "delete_customer"));
        assert!(pattern_matches("*_invoice", "finalize_invoice"));
        assert!(pattern_matches("c*_p*_i*", "confirm_payment_intent"));
        assert!(!pattern_matches("list_*", "get_customer"));
        assert!(!pattern_matches(
            "create_customer",
            "create_customer_tax_id"
        ));
        assert!(valid_pattern("create_*"));
        assert!(!valid_pattern("Create"));
        assert!(!valid_pattern(""));
    }

    #[test]
    fn the_default_policy_exposes_read_only_tools_only() {
        let policy = ToolPolicy::default();
        assert_eq!(check(&policy, false, "list_customers"), Ok(()));
        assert_eq!(check(&policy, false, "get_payment_intent"), Ok(()));
        let refusal = check(&policy, false, "delete_customer").unwrap_err();
        assert_eq!(refusal.setting(), "tool_policy.allow_destructive");
        assert!(
            refusal
                .to_string()
                .contains("tool_policy.allow_destructive")
        );
        let refusal = check(&policy, false, "create_customer").unwrap_err();
        assert_eq!(refusal.setting(), "tool_policy.allow");
    }

    #[test]
    fn allow_never_covers_destructive_tools() {
        let policy = ToolPolicy {
            allow: vec!["*".to_owned()],
            ..ToolPolicy::default()
        };
        assert_eq!(check(&policy, false, "create_payment_intent"), Ok(()));
        assert_eq!(
            check(&policy, false, "confirm_payment_intent")
                .unwrap_err()
                .setting(),
            "tool_policy.allow_destructive"
        );
    }

    #[test]
    fn live_mode_needs_the_second_setting_and_deny_wins() {
        let mut policy = ToolPolicy {
            allow_destructive: vec!["confirm_payment_intent".to_owned()],
            ..ToolPolicy::default()
        };
        assert_eq!(check(&policy, false, "confirm_payment_intent"), Ok(()));
        assert_eq!(
            check(&policy, true, "confirm_payment_intent")
                .unwrap_err()
                .setting(),
            "tool_policy.allow_live_destructive"
        );
        policy.allow_live_destructive = true;
        assert_eq!(check(&policy, true, "confirm_payment_intent"), Ok(()));
        policy.deny = vec!["confirm_*".to_owned()];
        assert_eq!(
            check(&policy, true, "confirm_payment_intent")
                .unwrap_err()
                .setting(),
            "tool_policy.deny"
        );
        policy.deny = vec!["list_*".to_owned()];
        assert!(check(&policy, false, "list_customers").is_err());
    }
}
