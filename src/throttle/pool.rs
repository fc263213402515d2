//! One connection's node pool: admits transactions over its nodes, queues calls that find every
//! node busy, resizes itself from the autoscaling policy, and accepts new bounds and rates live.
//! It does not talk to Stripe and does not know what a transaction is.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};

use super::budget::AccountBudget;
use super::nodes::NodeSet;
use super::policy::{ScaleDecision, ScaleInput, ScalePolicy};
use super::queue::{Capacity, Refused, Shape, WaitingRoom, effective_deadline};
use super::service_time::ServiceTime;
use super::settings::{
    InvalidPoolSettings, PoolMode, PoolSettings, validate_bounds, validate_rate,
};
use super::{ThrottleReason, Throttled};

/// A transaction the pool let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Index of the node that admitted the call.
    pub node: usize,
    /// How long the call waited in the queue.
    pub waited: Duration,
}

/// A snapshot of a pool, read from atomics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolStatus {
    pub mode: PoolMode,
    /// Nodes running now.
    pub current_nodes: u32,
    /// What the last autoscaling decision found demand needs, within `[min_nodes, max_nodes]`.
    pub desired_nodes: u32,
    pub min_nodes: u32,
    pub max_nodes: u32,
    /// Admitted transactions over capacity during the last autoscaling interval.
    pub utilization: f64,
    /// Transactions admitted since the pool started.
    pub admitted: u64,
    /// Calls waiting for capacity now.
    pub queued: u64,
    /// Calls refused since the pool started.
    pub throttled: u64,
    /// Transactions per second each node admits.
    pub node_rate: u32,
    /// Transactions an idle node admits at once.
    pub node_burst: u32,
}

#[derive(Debug)]
struct ScalerState {
    last_tick: Instant,
    below_since: Option<Duration>,
}

/// A connection's node pool. Create it with [`NodePool::new`]; share the `Arc`.
#[derive(Debug)]
pub struct NodePool {
    mode: PoolMode,
    max_queue: usize,
    max_wait: Duration,
    target_utilization: f64,
    stabilization_window: Duration,
    scale_tick: Duration,
    nodes: RwLock<NodeSet>,
    room: WaitingRoom,
    min_nodes: AtomicU32,
    max_nodes: AtomicU32,
    current_nodes: AtomicU32,
    desired_nodes: AtomicU32,
    node_rate: AtomicU32,
    node_burst: AtomicU32,
    utilization_bits: AtomicU64,
    admitted: AtomicU64,
    throttled: AtomicU64,
    tick_offered: AtomicU64,
    tick_admitted: AtomicU64,
    epoch: Instant,
    /// Nanoseconds after `epoch` of the next autoscaler tick; `u64::MAX` when none will come.
    next_tick: AtomicU64,
    scaler: Mutex<ScalerState>,
    service_time: ServiceTime,
    stop: Arc<Notify>,
    stopped: AtomicBool,
}

impl NodePool {
    /// Builds a pool from `settings` (normalised: see [`PoolSettings::normalized`]) and, in
    /// autoscale mode, spawns its autoscaler on the current tokio runtime. The autoscaler stops
    /// when the pool is dropped or [`NodePool::shutdown`] is called. Outside a runtime the pool
    /// works at its minimum size, without autoscaling.
    pub fn new(settings: PoolSettings) -> Arc<Self> {
        let settings = settings.normalized();
        let initial = match settings.mode {
            PoolMode::Autoscale => settings.min_nodes,
            PoolMode::Replica => 1,
        };
        let epoch = Instant::now();
        let pool = Arc::new(Self {
            mode: settings.mode,
            max_queue: settings.max_queue,
            max_wait: settings.max_wait,
            target_utilization: settings.target_utilization,
            stabilization_window: settings.stabilization_window,
            scale_tick: settings.scale_tick,
            nodes: RwLock::new(NodeSet::new(
                initial,
                settings.node_rate,
                settings.node_burst,
            )),
            room: WaitingRoom::default(),
            min_nodes: AtomicU32::new(settings.min_nodes),
            max_nodes: AtomicU32::new(settings.max_nodes),
            current_nodes: AtomicU32::new(initial),
            desired_nodes: AtomicU32::new(initial),
            node_rate: AtomicU32::new(settings.node_rate),
            node_burst: AtomicU32::new(settings.node_burst),
            utilization_bits: AtomicU64::new(0f64.to_bits()),
            admitted: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            tick_offered: AtomicU64::new(0),
            tick_admitted: AtomicU64::new(0),
            epoch,
            next_tick: AtomicU64::new(u64::MAX),
            scaler: Mutex::new(ScalerState {
                last_tick: epoch,
                below_since: None,
            }),
            service_time: ServiceTime::default(),
            stop: Arc::new(Notify::new()),
            stopped: AtomicBool::new(false),
        });
        if pool.mode == PoolMode::Autoscale {
            spawn_autoscaler(&pool);
        }
        pool
    }

    /// Admits one transaction, waiting in the queue for a free node if need be, but never past
    /// `deadline` nor the pool's `max_wait`. Refuses at once when the queue is full or when
    /// capacity certainly cannot free up in time. Cancel-safe: dropping the future leaves the queue.
    pub async fn admit(&self, deadline: Option<Instant>) -> Result<Admission, Throttled> {
        self.tick_offered.fetch_add(1, Ordering::Relaxed);
        let deadline = effective_deadline(deadline, self.max_wait);
        match self.room.take(self, deadline, self.max_queue).await {
            Ok(taken) => {
                self.admitted.fetch_add(1, Ordering::Relaxed);
                self.tick_admitted.fetch_add(1, Ordering::Relaxed);
                Ok(Admission {
                    node: taken.slot,
                    waited: taken.waited,
                })
            }
            Err(refused) => {
                self.throttled.fetch_add(1, Ordering::Relaxed);
                Err(self.throttled_error(refused))
            }
        }
    }

    /// The latest moment a call whose caller waits until `deadline` may be admitted and still
    /// complete: the deadline less the estimated time an admitted call takes (see
    /// [`ServiceTime`]). Admit with this, so no node transaction goes to a caller who will be gone.
    pub fn admission_deadline(&self, deadline: Option<Instant>) -> Option<Instant> {
        let needed = self.service_time.estimate();
        deadline.map(|deadline| {
            deadline
                .checked_sub(needed)
                .unwrap_or_else(|| Instant::now() - Duration::from_nanos(1))
        })
    }

    /// Records how long an admitted call took to complete, for [`NodePool::admission_deadline`].
    pub fn record_service_time(&self, elapsed: Duration) {
        self.service_time.record(elapsed);
    }

    /// Admits one transaction on this pool, then on the Stripe account's budget: the order every
    /// caller must follow. A call refused by the budget has still used its node transaction.
    pub async fn admit_with_budget(
        &self,
        budget: &AccountBudget,
        deadline: Option<Instant>,
    ) -> Result<Admission, Throttled> {
        let deadline = self.admission_deadline(deadline);
        let admission = self.admit(deadline).await?;
        budget.admit(deadline).await?;
        Ok(admission)
    }

    /// Sets new node bounds without a restart. In autoscale mode a pool outside the new bounds is
    /// resized at once; queued calls keep their place. In replica mode the bounds are only reported.
    pub fn reconfigure(&self, min_nodes: u32, max_nodes: u32) -> Result<(), InvalidPoolSettings> {
        validate_bounds(min_nodes, max_nodes)?;
        let _scaler = self.scaler.lock().unwrap_or_else(PoisonError::into_inner);
        self.min_nodes.store(min_nodes, Ordering::Release);
        self.max_nodes.store(max_nodes, Ordering::Release);
        if self.mode == PoolMode::Autoscale {
            let current = self.current_nodes.load(Ordering::Acquire);
            self.resize(current.clamp(min_nodes, max_nodes));
            let desired = self.desired_nodes.load(Ordering::Acquire);
            self.desired_nodes
                .store(desired.clamp(min_nodes, max_nodes), Ordering::Release);
        }
        tracing::info!(min_nodes, max_nodes, "node pool bounds changed");
        Ok(())
    }

    /// Sets a new per-node rate and burst without a restart. Governor quotas are immutable, so every
    /// node's limiter is rebuilt, keeping the capacity it had already spent.
    pub fn set_node_rate(
        &self,
        node_rate: u32,
        node_burst: u32,
    ) -> Result<(), InvalidPoolSettings> {
        validate_rate(node_rate, node_burst)?;
        let _scaler = self.scaler.lock().unwrap_or_else(PoisonError::into_inner);
        self.nodes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .set_rate(node_rate, node_burst);
        self.node_rate.store(node_rate, Ordering::Release);
        self.node_burst.store(node_burst, Ordering::Release);
        self.room.capacity_changed();
        tracing::info!(node_rate, node_burst, "node rate changed");
        Ok(())
    }

    /// The pool's state, from atomics (cheap enough for every health check).
    pub fn status(&self) -> PoolStatus {
        PoolStatus {
            mode: self.mode,
            current_nodes: self.current_nodes.load(Ordering::Acquire),
            desired_nodes: self.desired_nodes.load(Ordering::Acquire),
            min_nodes: self.min_nodes.load(Ordering::Acquire),
            max_nodes: self.max_nodes.load(Ordering::Acquire),
            utilization: f64::from_bits(self.utilization_bits.load(Ordering::Acquire)),
            admitted: self.admitted.load(Ordering::Relaxed),
            queued: self.room.queued() as u64,
            throttled: self.throttled.load(Ordering::Relaxed),
            node_rate: self.node_rate.load(Ordering::Acquire),
            node_burst: self.node_burst.load(Ordering::Acquire),
        }
    }

    /// Stops the autoscaler; the pool keeps serving at its current size.
    pub fn shutdown(&self) {
        self.stopped.store(true, Ordering::Release);
        self.next_tick.store(u64::MAX, Ordering::Release);
        self.stop.notify_one();
    }

    /// The policy under the current bounds and rate.
    fn policy(&self) -> ScalePolicy {
        ScalePolicy {
            min_nodes: self.min_nodes.load(Ordering::Acquire),
            max_nodes: self.max_nodes.load(Ordering::Acquire),
            node_rate: self.node_rate.load(Ordering::Acquire),
            target_utilization: self.target_utilization,
            stabilization_window: self.stabilization_window,
        }
    }

    /// One autoscaling step: measure the interval since the last one, decide, resize.
    fn autoscale(&self) -> ScaleDecision {
        let mut state = self.scaler.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let interval = now.saturating_duration_since(state.last_tick);
        state.last_tick = now;
        let current = self.current_nodes.load(Ordering::Acquire);
        let input = ScaleInput {
            now: now.saturating_duration_since(self.epoch),
            interval,
            current_nodes: current,
            offered: self.tick_offered.swap(0, Ordering::AcqRel),
            queued: self.room.queued() as u64,
            below_since: state.below_since,
        };
        let admitted = self.tick_admitted.swap(0, Ordering::AcqRel);
        let decision = self.policy().decide(&input);
        state.below_since = decision.below_since;
        let capacity = f64::from(current)
            * f64::from(self.node_rate.load(Ordering::Acquire))
            * interval.as_secs_f64();
        let utilization = if capacity > 0.0 {
            admitted as f64 / capacity
        } else {
            0.0
        };
        self.utilization_bits
            .store(utilization.to_bits(), Ordering::Release);
        self.desired_nodes
            .store(decision.desired_nodes, Ordering::Release);
        self.resize(decision.target_nodes);
        decision
    }

    /// Resizes the node set; callers hold the scaler lock.
    fn resize(&self, target: u32) {
        let current = self.current_nodes.load(Ordering::Acquire);
        if target == current {
            return;
        }
        {
            let mut nodes = self.nodes.write().unwrap_or_else(PoisonError::into_inner);
            nodes.resize(target);
            self.current_nodes.store(target, Ordering::Release);
        }
        if target > current {
            self.room.capacity_changed();
        }
        tracing::debug!(from = current, to = target, "node pool resized");
    }

    fn read_nodes(&self) -> RwLockReadGuard<'_, NodeSet> {
        self.nodes.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn nanos_since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX - 1)
    }

    fn throttled_error(&self, refused: Refused) -> Throttled {
        let rate = self.node_rate.load(Ordering::Acquire);
        let limit = match self.mode {
            PoolMode::Autoscale => match self.max_nodes.load(Ordering::Acquire) {
                1 => format!("{rate} transactions/s per node × 1 node"),
                max => format!("{rate} transactions/s per node × {max} nodes"),
            },
            PoolMode::Replica => format!("{rate} transactions/s per node × 1 node (replica)"),
        };
        Throttled {
            reason: ThrottleReason::NodeCapacity,
            cause: refused.cause,
            retry_after: refused.retry_after,
            limit,
        }
    }
}

impl Capacity for NodePool {
    fn try_take(&self) -> Result<usize, Instant> {
        self.read_nodes().try_take()
    }

    fn shape(&self) -> Shape {
        let nodes = self.read_nodes();
        Shape {
            nodes: nodes.len(),
            burst: self.node_burst.load(Ordering::Acquire),
            interval: nodes.emission_interval(),
        }
    }

    fn may_grow_before(&self, deadline: Instant) -> bool {
        self.mode == PoolMode::Autoscale
            && !self.stopped.load(Ordering::Acquire)
            && self.current_nodes.load(Ordering::Acquire) < self.max_nodes.load(Ordering::Acquire)
            && self.next_tick.load(Ordering::Acquire) <= self.nanos_since_epoch(deadline)
    }
}

impl Drop for NodePool {
    fn drop(&mut self) {
        self.stop.notify_one();
    }
}

fn spawn_autoscaler(pool: &Arc<NodePool>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no tokio runtime: node pool runs without autoscaling");
        return;
    };
    let tick = pool.scale_tick;
    let first = pool.epoch + tick;
    pool.next_tick
        .store(pool.nanos_since_epoch(first), Ordering::Release);
    let weak: Weak<NodePool> = Arc::downgrade(pool);
    let stop = Arc::clone(&pool.stop);
    runtime.spawn(async move {
        let mut ticks = tokio::time::interval_at(first, tick);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.notified() => break,
            }
            let Some(pool) = weak.upgrade() else { break };
            if pool.stopped.load(Ordering::Acquire) {
                break;
            }
            pool.autoscale();
            let next = Instant::now() + tick;
            pool.next_tick
                .store(pool.nanos_since_epoch(next), Ordering::Release);
        }
    });
}
