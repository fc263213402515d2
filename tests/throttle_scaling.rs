//! Autoscaling scenarios from `tests/data/scaling/*.toml`: each file gives per-tick demand and the
//! node counts expected after each tick. Every scenario runs twice: through the pure
//! [`ScalePolicy`] with a fake clock, and through a real [`NodePool`]
//! under tokio's paused clock.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use connector_runtime::throttle::{NodePool, PoolSettings, ScaleInput, ScalePolicy};
use serde::Deserialize;
use tokio::time::Instant;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    description: String,
    policy: PolicyData,
    ticks: Vec<TickData>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyData {
    min_nodes: u32,
    max_nodes: u32,
    node_rate: u32,
    target_utilization: f64,
    #[serde(with = "humantime_serde")]
    stabilization_window: Duration,
    #[serde(with = "humantime_serde")]
    tick: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TickData {
    /// Offered calls per second during the tick.
    demand: u64,
    #[serde(default = "one")]
    repeat: u32,
    nodes: Option<u32>,
    min: Option<u32>,
    max: Option<u32>,
}

fn one() -> u32 {
    1
}

/// One tick's demand and the expected node count after it.
struct Step {
    demand: u64,
    low: u32,
    high: u32,
}

impl Scenario {
    fn load(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap();
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn steps(&self) -> Vec<Step> {
        let mut steps = Vec::new();
        for tick in &self.ticks {
            let (low, high) = match (tick.nodes, tick.min, tick.max) {
                (Some(nodes), None, None) => (nodes, nodes),
                (None, low, high) => (low.unwrap_or(0), high.unwrap_or(u32::MAX)),
                _ => panic!(
                    "{}: give `nodes` or `min`/`max`, not both",
                    self.description
                ),
            };
            for _ in 0..tick.repeat {
                steps.push(Step {
                    demand: tick.demand,
                    low,
                    high,
                });
            }
        }
        steps
    }

    fn policy(&self) -> ScalePolicy {
        ScalePolicy {
            min_nodes: self.policy.min_nodes,
            max_nodes: self.policy.max_nodes,
            node_rate: self.policy.node_rate,
            target_utilization: self.policy.target_utilization,
            stabilization_window: self.policy.stabilization_window,
        }
    }

    fn check(&self, tick: usize, step: &Step, previous: u32, nodes: u32) {
        let at = format!(
            "{} at tick {} (t = {} s)",
            self.description,
            tick + 1,
            tick + 1
        );
        assert!(
            (step.low..=step.high).contains(&nodes),
            "{at}: {nodes} nodes, expected {}..={}",
            step.low,
            step.high
        );
        assert!(
            nodes + 1 >= previous,
            "{at}: dropped from {previous} to {nodes} nodes in one tick"
        );
        assert!(
            (self.policy.min_nodes..=self.policy.max_nodes).contains(&nodes),
            "{at}: out of bounds"
        );
    }
}

fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scaling");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    let names: Vec<_> = files
        .iter()
        .filter_map(|f| f.file_stem()?.to_str())
        .collect();
    for expected in ["oscillation", "ramp", "spike", "step"] {
        assert!(names.contains(&expected), "missing scenario {expected}");
    }
    files
}

#[test]
fn scenarios_hold_for_the_pure_policy() {
    for path in scenario_files() {
        let scenario = Scenario::load(&path);
        let policy = scenario.policy();
        let tick = scenario.policy.tick;
        let mut nodes = scenario.policy.min_nodes;
        let mut below_since = None;
        for (index, step) in scenario.steps().iter().enumerate() {
            // A pool that refuses what it cannot serve at once: no backlog.
            let input = ScaleInput {
                now: tick * (index as u32 + 1),
                interval: tick,
                current_nodes: nodes,
                offered: step.demand * tick.as_secs(),
                queued: 0,
                below_since,
            };
            let decision = policy.decide(&input);
            below_since = decision.below_since;
            scenario.check(index, step, nodes, decision.target_nodes);
            nodes = decision.target_nodes;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn scenarios_hold_for_a_real_pool() {
    for path in scenario_files() {
        let scenario = Scenario::load(&path);
        assert_eq!(
            scenario.policy.tick,
            Duration::from_secs(1),
            "the pool run offers load per second"
        );
        let pool = NodePool::new(PoolSettings {
            min_nodes: scenario.policy.min_nodes,
            max_nodes: scenario.policy.max_nodes,
            node_rate: scenario.policy.node_rate,
            node_burst: scenario.policy.node_rate,
            target_utilization: scenario.policy.target_utilization,
            stabilization_window: scenario.policy.stabilization_window,
            scale_tick: scenario.policy.tick,
            ..PoolSettings::default()
        });
        let start = Instant::now();
        let mut previous = scenario.policy.min_nodes;
        for (index, step) in scenario.steps().iter().enumerate() {
            let second = start + Duration::from_secs(index as u64);
            offer_during_second(&pool, second, step.demand).await;
            // The tick at the end of this second has run one millisecond later.
            tokio::time::sleep_until(second + Duration::from_millis(1_001)).await;
            let nodes = pool.status().current_nodes;
            scenario.check(index, step, previous, nodes);
            previous = nodes;
        }
    }
}

/// Offers `demand` calls spread over the milliseconds 1..=998 of the second starting at `second`,
/// clear of the autoscaler's ticks on whole seconds. Calls do not wait (deadline now), so each is
/// admitted or refused at once.
async fn offer_during_second(pool: &Arc<NodePool>, second: Instant, demand: u64) {
    let mut offered = 0;
    for ms in 1..=998u64 {
        let due = demand * ms / 998;
        if due > offered {
            tokio::time::sleep_until(second + Duration::from_millis(ms)).await;
        }
        while offered < due {
            let _ = pool.admit(Some(Instant::now())).await;
            offered += 1;
        }
    }
}
