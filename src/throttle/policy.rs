//! The autoscaling decision: a pure function from recent demand to a node count. No clock, no I/O,
//! no shared state: the caller passes the time and carries the little state there is
//! (`below_since`) from one decision to the next.

use std::time::Duration;

/// How a pool sizes itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalePolicy {
    pub min_nodes: u32,
    pub max_nodes: u32,
    /// Transactions per second one node admits.
    pub node_rate: u32,
    /// Share (0 < u ≤ 1) of capacity to aim for; below 1 leaves headroom for bursts.
    pub target_utilization: f64,
    /// How long demand must stay below the current size before a node is given back.
    pub stabilization_window: Duration,
}

/// What happened during the last interval, and the state carried from the previous decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScaleInput {
    /// A reading of the (injected) clock, e.g. time since the pool started.
    pub now: Duration,
    /// The span the counts below cover.
    pub interval: Duration,
    pub current_nodes: u32,
    /// Calls that arrived during the interval, whatever became of them (admitted at once,
    /// queued, or rejected), so that a saturated pool still sees how far demand exceeds it.
    pub offered: u64,
    /// Calls waiting for capacity at the end of the interval: a backlog to serve on top of the
    /// arrivals of the next interval.
    pub queued: u64,
    /// Since when the desired size has been below the current one (from the previous decision).
    pub below_since: Option<Duration>,
}

/// The node count to run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleDecision {
    /// The node count to apply now.
    pub target_nodes: u32,
    /// What demand alone asks for, clamped to `[min, max]` (reported as `desired_nodes`).
    pub desired_nodes: u32,
    /// Pass back as [`ScaleInput::below_since`] with the next input.
    pub below_since: Option<Duration>,
}

impl ScalePolicy {
    /// Nodes needed to serve `input`'s demand at the target utilisation, clamped to `[min, max]`.
    ///
    /// Demand is the interval's arrivals plus the backlog still queued, per second: the pool
    /// must serve both in the next interval if arrivals keep their pace.
    pub fn desired_nodes(&self, input: &ScaleInput) -> u32 {
        let (min, max) = self.bounds();
        let seconds = input.interval.as_secs_f64();
        if seconds <= 0.0 {
            return input.current_nodes.clamp(min, max);
        }
        let calls = input.offered.saturating_add(input.queued);
        let demand = calls as f64 / seconds;
        let per_node = f64::from(self.node_rate.max(1)) * self.target_utilization.clamp(0.01, 1.0);
        // The small epsilon keeps exact multiples (9.6 / 4.8) from rounding up by float noise.
        let needed = (demand / per_node - 1e-9).ceil();
        let needed = if needed >= f64::from(max) {
            max
        } else {
            needed.max(0.0) as u32
        };
        needed.clamp(min, max)
    }

    /// Decides the node count: up at once to what demand needs; down one node per decision, and
    /// only once demand has needed fewer nodes for the whole stabilisation window.
    pub fn decide(&self, input: &ScaleInput) -> ScaleDecision {
        let (min, max) = self.bounds();
        let desired = self.desired_nodes(input);
        let current = input.current_nodes;
        let hold = |below_since| ScaleDecision {
            target_nodes: current,
            desired_nodes: desired,
            below_since,
        };
        if current > max || current < min {
            // Bounds changed under the pool: obey them at once.
            return ScaleDecision {
                target_nodes: current.clamp(min, max).max(desired.min(max)),
                desired_nodes: desired,
                below_since: None,
            };
        }
        if desired >= current {
            return ScaleDecision {
                target_nodes: desired,
                desired_nodes: desired,
                below_since: None,
            };
        }
        let since = input.below_since.unwrap_or(input.now);
        if input.now.saturating_sub(since) >= self.stabilization_window {
            ScaleDecision {
                target_nodes: current - 1,
                desired_nodes: desired,
                below_since: Some(since),
            }
        } else {
            hold(Some(since))
        }
    }

    fn bounds(&self) -> (u32, u32) {
        let max = self.max_nodes.max(1);
        (self.min_nodes.clamp(1, max), max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ScalePolicy {
        ScalePolicy {
            min_nodes: 2,
            max_nodes: 50,
            node_rate: 6,
            target_utilization: 0.8,
            stabilization_window: Duration::from_secs(10),
        }
    }

    fn input(
        now: u64,
        current: u32,
        calls_per_second: u64,
        below_since: Option<Duration>,
    ) -> ScaleInput {
        ScaleInput {
            now: Duration::from_secs(now),
            interval: Duration::from_secs(1),
            current_nodes: current,
            offered: calls_per_second,
            queued: 0,
            below_since,
        }
    }

    #[test]
    fn scales_up_at_once_to_what_demand_needs() {
        let decision = policy().decide(&input(1, 2, 150, None));
        // 150 calls/s at 6/s per node and 80 % utilisation: ceil(150 / 4.8) = 32.
        assert_eq!(decision.target_nodes, 32);
        assert_eq!(decision.desired_nodes, 32);
    }

    #[test]
    fn counts_the_queued_backlog_on_top_of_arrivals() {
        let mut backlog = input(1, 2, 10, None);
        backlog.queued = 20;
        // (10 + 20) calls/s at 4.8 per node.
        assert_eq!(policy().desired_nodes(&backlog), 7);
        let mut saturated = input(1, 50, 300, None);
        saturated.queued = 500;
        assert_eq!(policy().desired_nodes(&saturated), 50);
    }

    #[test]
    fn exact_multiples_do_not_round_up() {
        // 9.6 calls/s over 5 s is exactly two nodes at 4.8 each.
        let five = ScaleInput {
            interval: Duration::from_secs(5),
            offered: 48,
            ..input(5, 2, 0, None)
        };
        assert_eq!(policy().desired_nodes(&five), 2);
    }

    #[test]
    fn clamps_to_min_and_max() {
        assert_eq!(policy().desired_nodes(&input(1, 2, 0, None)), 2);
        assert_eq!(policy().desired_nodes(&input(1, 2, 1_000_000, None)), 50);
    }

    #[test]
    fn waits_for_the_window_before_scaling_down_one_node_at_a_time() {
        let policy = policy();
        let first = policy.decide(&input(100, 10, 0, None));
        assert_eq!(
            (first.target_nodes, first.below_since),
            (10, Some(Duration::from_secs(100)))
        );
        let during = policy.decide(&input(109, 10, 0, first.below_since));
        assert_eq!(during.target_nodes, 10);
        let after = policy.decide(&input(110, 10, 0, during.below_since));
        assert_eq!(after.target_nodes, 9);
        let next = policy.decide(&input(111, 9, 0, after.below_since));
        assert_eq!(next.target_nodes, 8);
    }

    #[test]
    fn a_busy_tick_restarts_the_window() {
        let policy = policy();
        let low = policy.decide(&input(100, 10, 0, None));
        let busy = policy.decide(&input(105, 10, 48, low.below_since));
        assert_eq!((busy.target_nodes, busy.below_since), (10, None));
        let low_again = policy.decide(&input(112, 10, 0, busy.below_since));
        assert_eq!(low_again.target_nodes, 10);
    }

    #[test]
    fn obeys_lowered_bounds_at_once() {
        let lowered = ScalePolicy {
            max_nodes: 4,
            ..policy()
        };
        assert_eq!(lowered.decide(&input(1, 10, 100, None)).target_nodes, 4);
        let raised = ScalePolicy {
            min_nodes: 5,
            ..policy()
        };
        assert_eq!(raised.decide(&input(1, 2, 0, None)).target_nodes, 5);
    }

    #[test]
    fn random_demand_never_breaks_the_invariants() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let min = rng.random_range(1..10);
            let policy = ScalePolicy {
                min_nodes: min,
                max_nodes: rng.random_range(min..80),
                node_rate: rng.random_range(1..20),
                target_utilization: rng.random_range(0.1..=1.0),
                stabilization_window: Duration::from_secs(rng.random_range(0..20)),
            };
            let mut nodes = policy.min_nodes;
            let mut below_since = None;
            let mut last_rise = Duration::ZERO;
            for tick in 1..300u64 {
                let now = Duration::from_secs(tick);
                let input = ScaleInput {
                    now,
                    interval: Duration::from_secs(1),
                    current_nodes: nodes,
                    offered: rng.random_range(0..2_000),
                    queued: rng.random_range(0..50),
                    below_since,
                };
                let decision = policy.decide(&input);
                let target = decision.target_nodes;
                assert!((policy.min_nodes..=policy.max_nodes).contains(&target));
                assert!(
                    target >= decision.desired_nodes.min(nodes),
                    "never below what demand needs"
                );
                if target > nodes {
                    assert_eq!(
                        target, decision.desired_nodes,
                        "up at once to what demand needs"
                    );
                    last_rise = now;
                }
                if target < nodes {
                    assert_eq!(target, nodes - 1, "down one node at a time");
                    assert!(
                        now - last_rise >= policy.stabilization_window,
                        "down only after the window"
                    );
                }
                if decision.desired_nodes >= nodes {
                    last_rise = now;
                }
                nodes = target;
                below_since = decision.below_since;
            }
        }
    }

    #[test]
    fn zero_interval_keeps_the_current_size() {
        let zero = ScaleInput {
            interval: Duration::ZERO,
            ..input(1, 7, 100, None)
        };
        assert_eq!(policy().decide(&zero).target_nodes, 7);
    }
}
