//! The sandbox's settings: rate limit, fault injection and the random seed. Plain data with serde
//! defaults; the admin endpoint reads and patches the same struct at run time.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of the Stripe test-mode sandbox. Every field has a default, so `{}` is a valid config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// Requests per second allowed per API key, as a token bucket whose burst equals the rate.
    /// Beyond it the sandbox answers Stripe's 429 `rate_limit`. `null` or `0` turns limiting off.
    /// Default: 25, Stripe's test-mode limit.
    pub rate_limit: Option<u32>,
    /// Faults injected into `/v1/...` requests (never into `/_sandbox/...`). Default: none.
    pub faults: FaultConfig,
    /// How long a new object stays invisible to search, as Stripe's search is eventually
    /// consistent (e.g. `"2s"`). Default: 0 (searchable at once).
    #[serde(with = "humantime_serde")]
    pub search_delay: Duration,
    /// A simulated clock for new objects' `created`, so a seeded account can span a history (e.g.
    /// 10,000 customers a minute apart) as a real one does. Default: none (the wall clock).
    pub clock: Option<SimulatedClock>,
    /// Seed of the random generator behind fault decisions: the same seed and the same sequence of
    /// requests give the same faults. Object ids are random and never repeat, as Stripe's.
    /// Default: 0.
    pub seed: u64,
    /// Faults injected into webhook deliveries to WebhookEndpoints. Default: none.
    pub webhooks: super::webhooks::WebhookFaults,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            rate_limit: default_rate_limit(),
            faults: FaultConfig::default(),
            search_delay: Duration::ZERO,
            clock: None,
            seed: 0,
            webhooks: super::webhooks::WebhookFaults::default(),
        }
    }
}

/// New objects are created at `start` plus `step` for every object the sandbox already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedClock {
    /// Unix seconds of the first object, e.g. `1600000000`.
    pub start: i64,
    /// How far the clock moves with each object stored (e.g. `"60s"`).
    #[serde(with = "humantime_serde")]
    pub step: Duration,
}

impl SimulatedClock {
    /// The `created` of the next object when `stored` objects exist.
    pub fn at(&self, stored: usize) -> i64 {
        let step = i64::try_from(self.step.as_secs()).unwrap_or(i64::MAX);
        self.start
            .saturating_add(step.saturating_mul(i64::try_from(stored).unwrap_or(i64::MAX)))
    }
}

const fn default_rate_limit() -> Option<u32> {
    Some(25)
}

/// Which side of the state change a 500 or a dropped connection lands on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultPhase {
    /// Before the request is executed: nothing changed, a retry simply runs it.
    #[default]
    Before,
    /// After the request was executed and its result stored under its idempotency key: the
    /// object exists but the caller never sees it, which is what idempotent retries must survive.
    After,
    /// Either, chosen at random for each fault.
    Either,
}

/// Fault injection. Rates are probabilities in `[0, 1]`, drawn independently for each request
/// from the seeded generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Latency added to every request before it is executed (e.g. `"20ms"`). Default: none.
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// Fraction of requests answered with HTTP 500 `api_error`.
    pub server_error_rate: f64,
    /// Fraction of requests answered with HTTP 429 `rate_limit` (never executed).
    pub rate_limit_rate: f64,
    /// Fraction of requests answered with HTTP 429 `lock_timeout` (never executed).
    pub lock_timeout_rate: f64,
    /// Fraction of requests whose connection is closed without any response.
    pub drop_rate: f64,
    /// Fraction of responses held back by `slow_delay` before being sent.
    pub slow_rate: f64,
    /// How long a slow response is held back. Default: 2 s.
    #[serde(with = "humantime_serde")]
    pub slow_delay: Duration,
    /// Whether 500s and dropped connections hit before or after the state change. Default: `before`.
    pub phase: FaultPhase,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            server_error_rate: 0.0,
            rate_limit_rate: 0.0,
            lock_timeout_rate: 0.0,
            drop_rate: 0.0,
            slow_rate: 0.0,
            slow_delay: default_slow_delay(),
            phase: FaultPhase::Before,
        }
    }
}

const fn default_slow_delay() -> Duration {
    Duration::from_secs(2)
}

impl SandboxConfig {
    /// The effective rate limit: `None` when limiting is off.
    pub fn effective_rate_limit(&self) -> Option<u32> {
        self.rate_limit.filter(|rate| *rate > 0)
    }

    /// Checks that every rate is a probability. Returns the offending field's name.
    pub fn validate(&self) -> Result<(), String> {
        let rates = [
            ("faults.server_error_rate", self.faults.server_error_rate),
            ("faults.rate_limit_rate", self.faults.rate_limit_rate),
            ("faults.lock_timeout_rate", self.faults.lock_timeout_rate),
            ("faults.drop_rate", self.faults.drop_rate),
            ("faults.slow_rate", self.faults.slow_rate),
        ];
        for (name, rate) in rates.into_iter().chain(self.webhooks.rates()) {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1, got {rate}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_means_stripe_test_mode_limits_and_no_faults() {
        let config: SandboxConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, SandboxConfig::default());
        assert_eq!(config.effective_rate_limit(), Some(25));
        assert_eq!(config.faults.server_error_rate, 0.0);
    }

    #[test]
    fn zero_or_null_rate_limit_turns_limiting_off() {
        let zero: SandboxConfig = serde_json::from_str(r#"{"rate_limit": 0}"#).unwrap();
        let null: SandboxConfig = serde_json::from_str(r#"{"rate_limit": null}"#).unwrap();
        assert_eq!(zero.effective_rate_limit(), None);
        assert_eq!(null.effective_rate_limit(), None);
    }

    #[test]
    fn durations_are_human_readable_and_rates_are_checked() {
        let config: SandboxConfig = serde_json::from_str(
            r#"{"faults": {"latency": "20ms", "drop_rate": 1.5, "phase": "after"}}"#,
        )
        .unwrap();
        assert_eq!(config.faults.latency, Duration::from_millis(20));
        assert_eq!(config.faults.phase, FaultPhase::After);
        assert!(config.validate().unwrap_err().contains("drop_rate"));
    }
}
