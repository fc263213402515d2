//! The status board: samples every connection's figures once a second and keeps the last
//! [`HISTORY_POINTS`] samples (admitted and throttled calls per second, Stripe budget used), for
//! the status page's charts and the budget-used gauge. Memory is bounded by the number of
//! connections times [`HISTORY_POINTS`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::time::{Instant, MissedTickBehavior};

use super::figures::{self, ConnectionFigures};
use crate::registry::Registry;

/// How often the board samples.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// Samples kept per connection: five minutes.
pub const HISTORY_POINTS: usize = 300;

/// One sample of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// Milliseconds since the Unix epoch.
    pub t: u64,
    /// Calls per second that were not throttled.
    pub admitted: f64,
    /// Calls per second refused with RESOURCE_EXHAUSTED.
    pub throttled: f64,
    /// Share of the Stripe budget used (0..1).
    pub budget_used: f64,
    /// Admitted transactions over the node pool's capacity (0..1).
    pub utilization: f64,
}

#[derive(Debug, Default)]
struct Track {
    last_calls: u64,
    last_throttled: u64,
    last_budget: u64,
    last_transactions: u64,
    points: VecDeque<Point>,
}

#[derive(Debug)]
struct Samples {
    at: Instant,
    /// Whether the first sample (the baseline of the connections that existed at start) is taken.
    baseline_taken: bool,
    tracks: HashMap<String, Track>,
}

/// A registry's figures with their recent history.
#[derive(Debug)]
pub struct Board {
    registry: Arc<Registry>,
    samples: Mutex<Samples>,
}

static WATCHED: RwLock<Option<Weak<Board>>> = RwLock::new(None);

impl Board {
    /// Starts sampling `registry` on the current tokio runtime; the sampler stops when the board
    /// is dropped. The newest board is also the one the OTLP exporter's gauges read.
    pub fn start(registry: Arc<Registry>) -> Arc<Self> {
        let board = Arc::new(Self {
            registry,
            samples: Mutex::new(Samples {
                at: Instant::now(),
                baseline_taken: false,
                tracks: HashMap::new(),
            }),
        });
        board.sample();
        *WATCHED.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::downgrade(&board));
        let weak = Arc::downgrade(&board);
        tokio::spawn(async move {
            let mut ticks =
                tokio::time::interval_at(Instant::now() + SAMPLE_INTERVAL, SAMPLE_INTERVAL);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(board) = weak.upgrade() else { break };
                board.sample();
            }
        });
        board
    }

    /// The newest board started in this process, while it lives.
    pub fn watched() -> Option<Arc<Self>> {
        WATCHED
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(Weak::upgrade)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Samples> {
        self.samples.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes one sample of every connection.
    pub fn sample(&self) {
        let figures = figures::read(&self.registry);
        let now = Instant::now();
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut samples = self.lock();
        let seconds = now.saturating_duration_since(samples.at).as_secs_f64();
        samples.at = now;
        samples
            .tracks
            .retain(|id, _| figures.iter().any(|f| &f.connection == id));
        // A connection that appears after the baseline is new: its counters started at zero.
        let baseline = !samples.baseline_taken;
        samples.baseline_taken = true;
        for f in &figures {
            let fresh = baseline && !samples.tracks.contains_key(&f.connection);
            let track = samples.tracks.entry(f.connection.clone()).or_default();
            let calls = f.calls.total.saturating_sub(f.calls.throttled);
            if !fresh && seconds > 0.0 {
                let per_second =
                    |now: u64, before: u64| now.saturating_sub(before) as f64 / seconds;
                let limit = f64::from(f.stripe_budget.limit_per_second.max(1));
                let capacity = f64::from(f.nodes.current.max(1)) * f64::from(f.node_rate.max(1));
                track.points.push_back(Point {
                    t,
                    admitted: per_second(calls, track.last_calls),
                    throttled: per_second(f.calls.throttled, track.last_throttled),
                    budget_used: (per_second(f.stripe_budget.admitted, track.last_budget) / limit)
                        .clamp(0.0, 1.0),
                    utilization: (per_second(f.admitted_transactions, track.last_transactions)
                        / capacity)
                        .clamp(0.0, 1.0),
                });
                if track.points.len() > HISTORY_POINTS {
                    track.points.pop_front();
                }
            }
            track.last_calls = calls;
            track.last_throttled = f.calls.throttled;
            track.last_budget = f.stripe_budget.admitted;
            track.last_transactions = f.admitted_transactions;
        }
    }

    /// Every connection's figures now, with the budget used from the last sample (and, in replica
    /// mode, where no autoscaler measures it, the utilisation too).
    pub fn figures(&self) -> Vec<ConnectionFigures> {
        let mut figures = figures::read(&self.registry);
        let samples = self.lock();
        for f in &mut figures {
            if let Some(last) = samples
                .tracks
                .get(&f.connection)
                .and_then(|t| t.points.back())
            {
                f.stripe_budget.used = last.budget_used;
                if f.mode == "replica" {
                    f.utilization = last.utilization;
                }
            }
        }
        figures
    }

    /// A connection's samples, oldest first.
    pub fn history(&self, connection: &str) -> Vec<Point> {
        self.lock()
            .tracks
            .get(connection)
            .map(|t| t.points.iter().copied().collect())
            .unwrap_or_default()
    }
}
