//! Fault decisions drawn from a seeded generator: the same seed and request sequence give the
//! same faults. Every request draws the same number of values, so changing one rate does not shift
//! the decisions of the others.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::config::{FaultConfig, FaultPhase};

/// A fault that replaces the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Fault {
    ServerError,
    RateLimit,
    LockTimeout,
    Drop,
}

/// What happens to one request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct FaultPlan {
    pub latency: Duration,
    /// Replaces the response before the request is executed.
    pub before: Option<Fault>,
    /// Replaces the response after the request was executed.
    pub after: Option<Fault>,
    /// Holds the response back this long.
    pub slow: Option<Duration>,
}

#[derive(Debug)]
pub(crate) struct FaultInjector {
    rng: StdRng,
}

impl FaultInjector {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn plan(&mut self, config: &FaultConfig) -> FaultPlan {
        let draws: [f64; 6] = std::array::from_fn(|_| self.rng.random::<f64>());
        let [error, limit, lock, drop, slow, phase] = draws;
        let late = match config.phase {
            FaultPhase::Before => false,
            FaultPhase::After => true,
            FaultPhase::Either => phase < 0.5,
        };
        let mut plan = FaultPlan {
            latency: config.latency,
            ..FaultPlan::default()
        };
        if limit < config.rate_limit_rate {
            plan.before = Some(Fault::RateLimit);
        } else if lock < config.lock_timeout_rate {
            plan.before = Some(Fault::LockTimeout);
        } else if drop < config.drop_rate {
            *(if late {
                &mut plan.after
            } else {
                &mut plan.before
            }) = Some(Fault::Drop);
        } else if error < config.server_error_rate {
            *(if late {
                &mut plan.after
            } else {
                &mut plan.before
            }) = Some(Fault::ServerError);
        }
        if slow < config.slow_rate {
            plan.slow = Some(config.slow_delay);
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(seed: u64, config: &FaultConfig, n: usize) -> Vec<FaultPlan> {
        let mut injector = FaultInjector::new(seed);
        (0..n).map(|_| injector.plan(config)).collect()
    }

    #[test]
    fn same_seed_gives_same_faults() {
        let config = FaultConfig {
            server_error_rate: 0.3,
            drop_rate: 0.1,
            ..FaultConfig::default()
        };
        assert_eq!(faults(7, &config, 200), faults(7, &config, 200));
        assert_ne!(faults(7, &config, 200), faults(8, &config, 200));
    }

    #[test]
    fn rates_are_respected_roughly_and_zero_means_never() {
        let config = FaultConfig {
            server_error_rate: 0.25,
            ..FaultConfig::default()
        };
        let plans = faults(1, &config, 4000);
        let errors = plans
            .iter()
            .filter(|p| p.before == Some(Fault::ServerError))
            .count();
        assert!((800..1200).contains(&errors), "{errors}");
        assert!(
            faults(1, &FaultConfig::default(), 1000)
                .iter()
                .all(|p| *p == FaultPlan::default())
        );
    }

    #[test]
    fn after_phase_moves_errors_and_drops_after_execution_but_never_rate_limits() {
        let config = FaultConfig {
            server_error_rate: 1.0,
            phase: FaultPhase::After,
            ..FaultConfig::default()
        };
        assert!(
            faults(3, &config, 50)
                .iter()
                .all(|p| p.before.is_none() && p.after == Some(Fault::ServerError))
        );
        let limited = FaultConfig {
            rate_limit_rate: 1.0,
            phase: FaultPhase::After,
            ..FaultConfig::default()
        };
        assert!(
            faults(3, &limited, 50)
                .iter()
                .all(|p| p.before == Some(Fault::RateLimit))
        );
    }
}
