//! Settings of a node pool and of the per-account Stripe budgets: plain data with serde defaults and
//! validation. The `///` docs here are the user documentation of each setting.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Largest node count a pool accepts (a sanity bound; Google's platform caps a connection at 100).
pub const MAX_NODES_LIMIT: u32 = 1_000;

/// Longest interval between autoscaling decisions.
pub const MAX_SCALE_TICK: Duration = Duration::from_secs(3_600);

/// Transactions per second one node admits.
pub const fn default_node_rate() -> u32 {
    6
}

/// Transactions one idle node admits at once.
pub const fn default_node_burst() -> u32 {
    6
}

/// Fewest nodes of an autoscaled pool.
pub const fn default_min_nodes() -> u32 {
    2
}

/// Most nodes of an autoscaled pool.
pub const fn default_max_nodes() -> u32 {
    50
}

/// Calls that may wait for capacity at once, per pool.
pub const fn default_max_queue() -> usize {
    1_000
}

/// Longest a call waits for capacity when its caller gave no earlier deadline.
pub const fn default_max_wait() -> Duration {
    Duration::from_secs(5)
}

/// Share of the pool's capacity the autoscaler aims to use.
pub const fn default_target_utilization() -> f64 {
    0.8
}

/// How often the autoscaler measures demand and decides.
pub const fn default_scale_tick() -> Duration {
    Duration::from_secs(1)
}

/// How long demand must stay below capacity before the pool shrinks.
pub const fn default_stabilization_window() -> Duration {
    Duration::from_secs(30)
}

/// Stripe's request budget per account in test mode (requests/s).
pub const fn default_test_mode_rate() -> u32 {
    25
}

/// Stripe's request budget per account in live mode (requests/s).
pub const fn default_live_mode_rate() -> u32 {
    100
}

/// Calls that may wait for an account's budget at once.
pub const fn default_budget_max_queue() -> usize {
    1_000
}

/// How the pool's node count is managed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolMode {
    /// The in-process autoscaler keeps the node count between `min_nodes` and `max_nodes`.
    #[default]
    Autoscale,
    /// This process is exactly one node; the platform (e.g. a Kubernetes HPA) scales replicas.
    /// `min_nodes`/`max_nodes` are reported but not applied in process.
    Replica,
}

/// Settings of one connection's node pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSettings {
    /// Transactions per second each node admits.
    #[serde(default = "default_node_rate")]
    pub node_rate: u32,
    /// Transactions an idle node admits at once (the limiter's burst).
    #[serde(default = "default_node_burst")]
    pub node_burst: u32,
    /// Fewest nodes (autoscale mode).
    #[serde(default = "default_min_nodes")]
    pub min_nodes: u32,
    /// Most nodes (autoscale mode).
    #[serde(default = "default_max_nodes")]
    pub max_nodes: u32,
    /// Calls that may wait for capacity at once; more are throttled immediately.
    #[serde(default = "default_max_queue")]
    pub max_queue: usize,
    /// Longest a call waits for capacity, whatever the caller's deadline.
    #[serde(default = "default_max_wait", with = "humantime_serde")]
    pub max_wait: Duration,
    /// Share of capacity (0 < u ≤ 1) the autoscaler aims to use.
    #[serde(default = "default_target_utilization")]
    pub target_utilization: f64,
    /// Interval between autoscaling decisions.
    #[serde(default = "default_scale_tick", with = "humantime_serde")]
    pub scale_tick: Duration,
    /// How long demand must stay below capacity before the pool gives back a node.
    #[serde(default = "default_stabilization_window", with = "humantime_serde")]
    pub stabilization_window: Duration,
    /// `autoscale` (default) or `replica`.
    #[serde(default)]
    pub mode: PoolMode,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            node_rate: default_node_rate(),
            node_burst: default_node_burst(),
            min_nodes: default_min_nodes(),
            max_nodes: default_max_nodes(),
            max_queue: default_max_queue(),
            max_wait: default_max_wait(),
            target_utilization: default_target_utilization(),
            scale_tick: default_scale_tick(),
            stabilization_window: default_stabilization_window(),
            mode: PoolMode::default(),
        }
    }
}

/// A setting out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidPoolSettings {
    #[error("node_rate and node_burst must be at least 1 (got rate {rate}, burst {burst})")]
    ZeroRate { rate: u32, burst: u32 },
    #[error(
        "node counts must satisfy 1 ≤ min_nodes ≤ max_nodes ≤ {MAX_NODES_LIMIT} (got min {min}, max {max})"
    )]
    NodeBounds { min: u32, max: u32 },
    #[error("target_utilization must be in (0, 1] (got {0})")]
    TargetUtilization(f64),
    #[error("scale_tick must be positive and at most an hour")]
    ScaleTick,
}

impl PoolSettings {
    /// Checks every setting; config loading calls this once at start-up.
    pub fn validate(&self) -> Result<(), InvalidPoolSettings> {
        match self.problems().into_iter().next() {
            Some(problem) => Err(problem),
            None => Ok(()),
        }
    }

    /// Every setting out of range, in declaration order (for reports that list them all).
    pub fn problems(&self) -> Vec<InvalidPoolSettings> {
        let mut problems = Vec::new();
        problems.extend(validate_rate(self.node_rate, self.node_burst).err());
        problems.extend(validate_bounds(self.min_nodes, self.max_nodes).err());
        if !(self.target_utilization > 0.0 && self.target_utilization <= 1.0) {
            problems.push(InvalidPoolSettings::TargetUtilization(
                self.target_utilization,
            ));
        }
        if self.scale_tick.is_zero() || self.scale_tick > MAX_SCALE_TICK {
            problems.push(InvalidPoolSettings::ScaleTick);
        }
        problems
    }

    /// The nearest valid settings: out-of-range values are clamped, so a pool never runs on
    /// nonsense even when a caller skipped [`PoolSettings::validate`].
    pub fn normalized(mut self) -> Self {
        self.node_rate = self.node_rate.max(1);
        self.node_burst = self.node_burst.max(1);
        self.max_nodes = self.max_nodes.clamp(1, MAX_NODES_LIMIT);
        self.min_nodes = self.min_nodes.clamp(1, self.max_nodes);
        if !(self.target_utilization > 0.0 && self.target_utilization <= 1.0) {
            self.target_utilization = default_target_utilization();
        }
        if self.scale_tick.is_zero() {
            self.scale_tick = default_scale_tick();
        }
        self.scale_tick = self.scale_tick.min(MAX_SCALE_TICK);
        self
    }
}

pub(crate) fn validate_rate(rate: u32, burst: u32) -> Result<(), InvalidPoolSettings> {
    if rate == 0 || burst == 0 {
        return Err(InvalidPoolSettings::ZeroRate { rate, burst });
    }
    Ok(())
}

pub(crate) fn validate_bounds(min: u32, max: u32) -> Result<(), InvalidPoolSettings> {
    if min == 0 || min > max || max > MAX_NODES_LIMIT {
        return Err(InvalidPoolSettings::NodeBounds { min, max });
    }
    Ok(())
}

/// Settings of the per-Stripe-account request budgets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSettings {
    /// Requests/s allowed per test-mode account (Stripe's limit is 25).
    #[serde(default = "default_test_mode_rate")]
    pub test_mode_rate: u32,
    /// Requests/s allowed per live-mode account (Stripe's limit is 100).
    #[serde(default = "default_live_mode_rate")]
    pub live_mode_rate: u32,
    /// Requests an idle account may send at once; defaults to one second's worth of its rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Calls that may wait for an account's budget at once.
    #[serde(default = "default_budget_max_queue")]
    pub max_queue: usize,
    /// Longest a call waits for the budget, whatever the caller's deadline.
    #[serde(default = "default_max_wait", with = "humantime_serde")]
    pub max_wait: Duration,
}

/// A budget setting out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidBudgetSettings {
    #[error("must be at least 1")]
    ZeroTestModeRate,
    #[error("must be at least 1")]
    ZeroLiveModeRate,
}

impl BudgetSettings {
    /// Every setting out of range, in declaration order (for reports that list them all).
    pub fn problems(&self) -> Vec<InvalidBudgetSettings> {
        let mut problems = Vec::new();
        if self.test_mode_rate == 0 {
            problems.push(InvalidBudgetSettings::ZeroTestModeRate);
        }
        if self.live_mode_rate == 0 {
            problems.push(InvalidBudgetSettings::ZeroLiveModeRate);
        }
        problems
    }
}

impl Default for BudgetSettings {
    fn default() -> Self {
        Self {
            test_mode_rate: default_test_mode_rate(),
            live_mode_rate: default_live_mode_rate(),
            burst: None,
            max_queue: default_budget_max_queue(),
            max_wait: default_max_wait(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_googles_node_model() {
        let settings = PoolSettings::default();
        assert_eq!(
            (settings.node_rate, settings.min_nodes, settings.max_nodes),
            (6, 2, 50)
        );
        assert_eq!(settings.validate(), Ok(()));
        let budgets = BudgetSettings::default();
        assert_eq!((budgets.test_mode_rate, budgets.live_mode_rate), (25, 100));
    }

    #[test]
    fn deserializes_partial_settings_with_defaults() {
        let settings: PoolSettings =
            toml::from_str("max_nodes = 10\nmax_wait = \"250ms\"\nmode = \"replica\"").unwrap();
        assert_eq!(settings.max_nodes, 10);
        assert_eq!(settings.max_wait, Duration::from_millis(250));
        assert_eq!(settings.mode, PoolMode::Replica);
        assert_eq!(settings.node_rate, 6);
    }

    #[test]
    fn rejects_min_above_max_and_normalizes_it() {
        let settings = PoolSettings {
            min_nodes: 8,
            max_nodes: 4,
            ..PoolSettings::default()
        };
        assert_eq!(
            settings.validate(),
            Err(InvalidPoolSettings::NodeBounds { min: 8, max: 4 })
        );
        let normalized = settings.normalized();
        assert_eq!((normalized.min_nodes, normalized.max_nodes), (4, 4));
    }

    #[test]
    fn rejects_zero_rate_and_bad_utilization() {
        let zero = PoolSettings {
            node_rate: 0,
            ..PoolSettings::default()
        };
        assert!(matches!(
            zero.validate(),
            Err(InvalidPoolSettings::ZeroRate { .. })
        ));
        let over = PoolSettings {
            target_utilization: 1.5,
            ..PoolSettings::default()
        };
        assert_eq!(
            over.validate(),
            Err(InvalidPoolSettings::TargetUtilization(1.5))
        );
    }
}
