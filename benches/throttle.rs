//! Node pool benchmarks, run by hand (never by the test suite):
//!
//! ```text
//! cargo bench --bench throttle              # full run, about 1–2 minutes
//! cargo bench --bench throttle -- --quick   # short smoke run (or THROTTLE_BENCH_QUICK=1)
//! ```
//!
//! Prints Markdown tables: precision (admitted rate at fixed node counts under twice the load),
//! reaction (a step from 6 to 150 calls/s), cost (time per admitted call, memory per node).
//! The throttled call is pluggable ([`Call`]): the default does nothing, so the figures are the
//! pool's own; the same harness can drive real calls (e.g. gRPC to the sandbox).

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use connector_runtime::throttle::{NodePool, PoolSettings};
use tokio::time::Instant;

/// Counts live heap bytes, to measure the memory of pools.
struct CountingAllocator;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// The work done for each admitted transaction.
type Call = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

fn no_op_call() -> Call {
    Arc::new(|| Box::pin(async {}))
}

/// Offered load: `rate` calls/s from `from` until `until`, each willing to wait `patience`.
#[derive(Clone, Copy)]
struct Load {
    rate: f64,
    from: Instant,
    until: Instant,
    patience: Duration,
}

/// What happened to the offered calls; admissions are counted per millisecond since `origin`.
struct Outcome {
    origin: Instant,
    admitted_per_ms: Vec<AtomicU64>,
    offered: AtomicU64,
    rejected: AtomicU64,
}

impl Outcome {
    fn new(origin: Instant, span: Duration) -> Arc<Self> {
        let slots = span.as_millis() as usize + 1_000;
        Arc::new(Self {
            origin,
            admitted_per_ms: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            offered: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        })
    }

    fn record_admission(&self, at: Instant) {
        let ms = at.saturating_duration_since(self.origin).as_millis() as usize;
        if let Some(slot) = self.admitted_per_ms.get(ms) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn admitted_between(&self, from: Duration, until: Duration) -> u64 {
        let (from, until) = (from.as_millis() as usize, until.as_millis() as usize);
        self.admitted_per_ms[from..until.min(self.admitted_per_ms.len())]
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed))
            .sum()
    }

    /// The most admissions in any window of one second (1 ms steps) within `[from, until)`.
    fn max_one_second_window(&self, from: Duration, until: Duration) -> u64 {
        let counts: Vec<u64> = self.admitted_per_ms
            [from.as_millis() as usize..until.as_millis() as usize]
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed))
            .collect();
        let mut window: u64 = counts.iter().take(1_000).sum();
        let mut best = window;
        for end in 1_000..counts.len() {
            window = window + counts[end] - counts[end - 1_000];
            best = best.max(window);
        }
        best
    }
}

/// Offers `load` to `pool`, issuing the calls due every millisecond; admitted calls run `call`.
async fn offer(pool: Arc<NodePool>, load: Load, outcome: Arc<Outcome>, call: Call) {
    tokio::time::sleep_until(load.from).await;
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut issued: u64 = 0;
    loop {
        let now = ticks.tick().await;
        if now >= load.until {
            break;
        }
        let due = (now.duration_since(load.from).as_secs_f64() * load.rate) as u64;
        while issued < due {
            issued += 1;
            outcome.offered.fetch_add(1, Ordering::Relaxed);
            let (pool, outcome, call) =
                (Arc::clone(&pool), Arc::clone(&outcome), Arc::clone(&call));
            let deadline = Instant::now() + load.patience;
            tokio::spawn(async move {
                match pool.admit(Some(deadline)).await {
                    Ok(_) => {
                        outcome.record_admission(Instant::now());
                        call().await;
                    }
                    Err(_) => {
                        outcome.rejected.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    }
}

struct Plan {
    measure: Duration,
    warm_up: Duration,
    reaction_after_step: Duration,
    cost_calls: u32,
    pools: usize,
}

async fn precision(plan: &Plan, call: &Call) {
    println!("### Precision: fixed node counts, offered load twice the capacity\n");
    println!(
        "Warm-up {} s (the initial bursts), then {} s measured. Goal: admitted/s within ±1 % of \
         nodes × 6; busiest one-second window ≤ nodes × 6 + 6.\n",
        plan.warm_up.as_secs(),
        plan.measure.as_secs()
    );
    println!(
        "| nodes | capacity/s | offered/s | admitted/s | error | busiest 1 s window | admitted in first second (burst) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for nodes in [2u32, 10, 50] {
        let pool = NodePool::new(PoolSettings {
            min_nodes: nodes,
            max_nodes: nodes,
            ..PoolSettings::default()
        });
        let capacity = f64::from(nodes * 6);
        let origin = Instant::now();
        let span = plan.warm_up + plan.measure;
        let outcome = Outcome::new(origin, span);
        let load = Load {
            rate: capacity * 2.0,
            from: origin,
            until: origin + span,
            patience: Duration::ZERO,
        };
        offer(
            Arc::clone(&pool),
            load,
            Arc::clone(&outcome),
            Arc::clone(call),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let admitted = outcome.admitted_between(plan.warm_up, span);
        let rate = admitted as f64 / plan.measure.as_secs_f64();
        let error = (rate - capacity) / capacity * 100.0;
        let busiest = outcome.max_one_second_window(plan.warm_up, span);
        let first = outcome.admitted_between(Duration::ZERO, Duration::from_secs(1));
        println!(
            "| {nodes} | {capacity:.0} | {:.0} | {rate:.2} | {error:+.2} % | {busiest} | {first} |",
            capacity * 2.0
        );
    }
    println!();
}

async fn reaction(plan: &Plan, call: &Call) {
    println!("### Reaction: step from 6 to 150 calls/s (min 2, max 50 nodes, tick 1 s)\n");
    println!(
        "The step comes mid-tick (t = 3.5 s); calls wait up to 1 s. Goal: enough nodes \
         (nodes × 6 ≥ 150) within 2 s.\n"
    );
    let pool = NodePool::new(PoolSettings::default());
    let origin = Instant::now();
    let step = origin + Duration::from_millis(3_500);
    let end = step + plan.reaction_after_step;
    let before = Outcome::new(origin, end - origin);
    let after = Outcome::new(origin, end - origin);
    let quiet = Load {
        rate: 6.0,
        from: origin,
        until: step,
        patience: Duration::from_secs(1),
    };
    let busy = Load {
        rate: 150.0,
        from: step,
        until: end,
        patience: Duration::from_secs(1),
    };
    let watcher = {
        let pool = Arc::clone(&pool);
        tokio::spawn(async move {
            let mut enough = None;
            let mut peak = 0;
            while Instant::now() < end {
                let status = pool.status();
                peak = peak.max(status.current_nodes);
                let now = Instant::now();
                if enough.is_none() && now >= step && status.current_nodes * status.node_rate >= 150
                {
                    enough = Some((now - step, status.current_nodes));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (enough, peak)
        })
    };
    offer(
        Arc::clone(&pool),
        quiet,
        Arc::clone(&before),
        Arc::clone(call),
    )
    .await;
    let rejected_before_step = before.rejected.load(Ordering::Relaxed);
    offer(
        Arc::clone(&pool),
        busy,
        Arc::clone(&after),
        Arc::clone(call),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (enough, peak) = watcher.await.unwrap_or((None, 0));
    let (reaction, nodes_then) = enough.unwrap_or((Duration::MAX, 0));
    let offered = after.offered.load(Ordering::Relaxed);
    let rejected = after.rejected.load(Ordering::Relaxed);
    let admitted_first_second =
        after.admitted_between(Duration::from_millis(3_500), Duration::from_millis(4_500));
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| time from the step to enough nodes | {:.3} s ({nodes_then} nodes) |",
        reaction.as_secs_f64()
    );
    println!("| most nodes during the step | {peak} |");
    println!("| calls offered after the step | {offered} |");
    println!(
        "| calls rejected after the step | {rejected} ({:.1} %) |",
        rejected as f64 / offered.max(1) as f64 * 100.0
    );
    println!("| calls admitted in the first second after the step | {admitted_first_second} |");
    println!("| calls rejected before the step | {rejected_before_step} |");
    println!();
}

fn cost(plan: &Plan) {
    println!("### Cost\n");
    println!("| measure | value | goal |");
    println!("|---|---:|---:|");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Nodes with capacity to spare, so every call is admitted: the dispatcher's own cost.
    let (per_admitted, per_refused) = runtime.block_on(async {
        let roomy = NodePool::new(PoolSettings {
            min_nodes: 50,
            max_nodes: 50,
            node_rate: 100_000_000,
            node_burst: 10_000_000,
            ..PoolSettings::default()
        });
        let start = Instant::now();
        for _ in 0..plan.cost_calls {
            let admitted = roomy.admit(None).await;
            std::hint::black_box(admitted.is_ok());
        }
        let per_admitted = start.elapsed() / plan.cost_calls;
        // Every node spent, calls with no time to wait: the refusal path scans all 50 nodes.
        let full = NodePool::new(PoolSettings {
            min_nodes: 50,
            max_nodes: 50,
            node_rate: 1,
            node_burst: 1,
            ..PoolSettings::default()
        });
        let now = Instant::now();
        for _ in 0..50 {
            let _ = full.admit(Some(now)).await;
        }
        let start = Instant::now();
        for _ in 0..plan.cost_calls {
            let refused = full.admit(Some(Instant::now())).await;
            std::hint::black_box(refused.is_err());
        }
        (per_admitted, start.elapsed() / plan.cost_calls)
    });
    println!(
        "| time per admitted call (50 nodes, one thread) | {} ns | < 1,000 ns |",
        per_admitted.as_nanos()
    );
    println!(
        "| time per refused call (50 busy nodes scanned) | {} ns | |",
        per_refused.as_nanos()
    );
    drop(runtime);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (bytes, pools) = runtime.block_on(async {
        let before = LIVE_BYTES.load(Ordering::Relaxed);
        let pools: Vec<Arc<NodePool>> = (0..plan.pools)
            .map(|_| {
                NodePool::new(PoolSettings {
                    min_nodes: 50,
                    max_nodes: 50,
                    ..PoolSettings::default()
                })
            })
            .collect();
        // Let every autoscaler task start and allocate its timer.
        tokio::time::sleep(Duration::from_millis(50)).await;
        (
            LIVE_BYTES.load(Ordering::Relaxed).saturating_sub(before),
            pools,
        )
    });
    let nodes = plan.pools * 50;
    println!(
        "| memory of {} connections × 50 nodes | {:.1} MiB | |",
        plan.pools,
        bytes as f64 / (1024.0 * 1024.0)
    );
    println!(
        "| memory per node (pool, queue and autoscaler task included) | {} bytes | < 2,048 bytes |",
        bytes / nodes
    );
    drop(pools);
    drop(runtime);
    println!();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|arg| arg == "--bench") {
        // `cargo test --all-targets` runs bench binaries without `--bench`: nothing to do here.
        println!("throttle benchmarks run with `cargo bench --bench throttle`");
        return;
    }
    let quick = args.iter().any(|arg| arg == "--quick")
        || std::env::var_os("THROTTLE_BENCH_QUICK").is_some();
    let plan = if quick {
        Plan {
            measure: Duration::from_secs(2),
            warm_up: Duration::from_secs(1),
            reaction_after_step: Duration::from_secs(3),
            cost_calls: 100_000,
            pools: 100,
        }
    } else {
        Plan {
            measure: Duration::from_secs(10),
            warm_up: Duration::from_secs(1),
            reaction_after_step: Duration::from_secs(5),
            cost_calls: 2_000_000,
            pools: 1_000,
        }
    };
    println!("## Node pool{}\n", if quick { " (quick run)" } else { "" });
    let call = no_op_call();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        precision(&plan, &call).await;
        reaction(&plan, &call).await;
    });
    drop(runtime);
    cost(&plan);
}
