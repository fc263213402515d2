//! Live figures of every connection: its node pool (nodes, utilisation, queue) and its Stripe
//! account budget, read from the registry's atomics, plus the call counters of the metric store.
//! Read-only; cheap enough for every scrape.

use serde::Serialize;

use super::metrics::{Metrics, metrics};
use crate::registry::Registry;
use crate::throttle::PoolMode;

/// One connection's figures at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionFigures {
    pub connection: String,
    /// Whether the connection can serve calls (its secret resolved, its client built).
    pub ready: bool,
    /// `pool` (the process autoscales the connection's nodes) or `replica` (one node per process).
    pub mode: &'static str,
    pub nodes: NodeFigures,
    /// Admitted transactions over capacity, 0..1: over the last autoscaling interval, or in
    /// replica mode (no in-process autoscaler) over the status board's last sampling second.
    pub utilization: f64,
    /// Transactions per second one node admits.
    pub node_rate: u32,
    /// Calls waiting for a free node now.
    pub queue_length: u64,
    /// Transactions the node pool admitted since start.
    pub admitted_transactions: u64,
    pub calls: CallFigures,
    pub upstream: UpstreamFigures,
    pub stripe_budget: BudgetFigures,
}

/// Node counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NodeFigures {
    pub current: u32,
    pub desired: u32,
    pub min: u32,
    pub max: u32,
}

/// Calls served since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CallFigures {
    /// Every call naming this connection, whatever its outcome.
    pub total: u64,
    /// Calls refused with RESOURCE_EXHAUSTED (node capacity or Stripe budget).
    pub throttled: u64,
}

/// Upstream requests since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UpstreamFigures {
    /// Every attempt sent.
    pub requests: u64,
    /// Attempts answered with HTTP ≥ 400 or with no response.
    pub errors: u64,
    pub retries: u64,
}

/// The Stripe account budget the connection draws on (shared by every connection of the account).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BudgetFigures {
    /// Requests per second the account may make.
    pub limit_per_second: u32,
    /// `live` or `test`.
    pub mode: &'static str,
    /// Requests the budget admitted since start.
    pub admitted: u64,
    /// Requests the budget refused since start.
    pub refused: u64,
    /// Share of the budget used during the last sampling second (0..1); 0 until sampled.
    pub used: f64,
}

/// The figures of every connection, ordered by id.
pub fn read(registry: &Registry) -> Vec<ConnectionFigures> {
    let m = metrics();
    registry
        .list()
        .into_iter()
        .map(|view| {
            let id = view.stored.spec.id.clone();
            let calls = CallFigures {
                total: Metrics::connection_total(&m.calls, &id),
                throttled: Metrics::connection_total(&m.throttled, &id),
            };
            let upstream = UpstreamFigures {
                requests: Metrics::connection_total(&m.upstream_requests, &id),
                errors: m.upstream_errors(&id),
                retries: Metrics::connection_total(&m.retries, &id),
            };
            let runtime = view.runtime.as_ref().ok();
            let pool = runtime.map(|r| r.pool.status());
            let budget = runtime.map(|r| &r.budget);
            let (admitted, refused) = budget.map_or((0, 0), |b| b.counts());
            ConnectionFigures {
                connection: id,
                ready: runtime.is_some(),
                mode: match pool.map(|p| p.mode) {
                    Some(PoolMode::Replica) => "replica",
                    _ => "pool",
                },
                nodes: NodeFigures {
                    current: pool.map_or(0, |p| p.current_nodes),
                    desired: pool.map_or(0, |p| p.desired_nodes),
                    min: pool.map_or(0, |p| p.min_nodes),
                    max: pool.map_or(0, |p| p.max_nodes),
                },
                utilization: pool.map_or(0.0, |p| p.utilization.clamp(0.0, 1.0)),
                node_rate: pool.map_or(0, |p| p.node_rate),
                queue_length: pool.map_or(0, |p| p.queued),
                admitted_transactions: pool.map_or(0, |p| p.admitted),
                calls,
                upstream,
                stripe_budget: BudgetFigures {
                    limit_per_second: budget.map_or(0, |b| b.rate()),
                    mode: if budget.is_some_and(|b| b.is_live()) {
                        "live"
                    } else {
                        "test"
                    },
                    admitted,
                    refused,
                    used: 0.0,
                },
            }
        })
        .collect()
}
