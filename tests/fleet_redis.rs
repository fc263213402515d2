//! A fleet on one machine: a real Redis (Debian's `redis-server`, started here on a loopback port)
//! and three `connector-runtime serve` processes in replica mode in front of one sandbox, driven by
//! a round-robin client. Together the replicas admit 3 × 6 calls/s; with the account budget at
//! 10/s they admit at most 10/s together; Redis stopped mid-run gives the configured fail mode and
//! no crash, and the shared budget returns with Redis; SIGTERM to one replica under load loses no
//! call. `.ci/run` installs `redis-server`; without it these tests fail.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{ChildGuard, free_port, reason, wait_for_port, wait_for_port_within};
use connector_runtime::api::convert::to_proto_struct;
use connector_runtime::api::pb;
use connector_runtime::api::pb::connection_service_client::ConnectionServiceClient;
use connector_runtime::api::pb::entity_service_client::EntityServiceClient;
use connector_runtime::sandbox::{self, SandboxConfig, SandboxHandle};
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

/// The fleet tests measure rates: one at a time, so they do not share the two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const KEY: &str = "sk_test_fleet_0123456789";
const CONNECTION: &str = "fleet";

fn redis_server() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let candidate = Path::new(dir).join("redis-server");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("redis-server is not installed (apt-get install redis-server); .ci/run installs it");
}

/// A real Redis on a loopback port, without persistence; it can be stopped and started again on
/// the same port.
struct Redis {
    port: u16,
    dir: tempfile::TempDir,
    process: Option<ChildGuard>,
}

impl Redis {
    async fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            process: None,
        };
        redis.resume().await;
        redis
    }

    async fn resume(&mut self) {
        let child = Command::new(redis_server())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--port", &self.port.to_string()])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        self.process = Some(ChildGuard(child));
        assert!(wait_for_port(self.port).await, "redis-server did not start");
    }

    fn stop(&mut self) {
        self.process = None;
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

/// One `connector-runtime serve` process in replica mode.
struct Replica {
    child: Child,
    stderr: PathBuf,
    entities: EntityServiceClient<Channel>,
    connections: ConnectionServiceClient<Channel>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct FleetSettings<'a> {
    redis: &'a Redis,
    sandbox: &'a str,
    budget: u32,
    on_down: &'a str,
}

async fn spawn_replica(dir: &Path, name: &str, fleet: &FleetSettings<'_>) -> Replica {
    let port = free_port();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
[server]
listen = "127.0.0.1:{port}"
drain_timeout = "20s"
[sandbox]
enabled = "never"
[log]
level = "warn"
[nodes]
mode = "replica"
[nodes.stripe_budget]
test = {budget}
[nodes.stripe_budget.shared]
redis_url = "{redis}"
on_redis_down = "{on_down}"
assumed_replicas = 3
[[connections]]
id = "{CONNECTION}"
api_key = {{ secret = "env:FLEET_STRIPE_KEY", version = "latest" }}
api_base_url = "{sandbox}"
"#,
            data = dir.join(format!("{name}-data")).display(),
            budget = fleet.budget,
            redis = fleet.redis.url(),
            on_down = fleet.on_down,
            sandbox = fleet.sandbox,
        ),
    )
    .unwrap();
    let stderr = dir.join(format!("{name}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_connector-runtime"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("FLEET_STRIPE_KEY", KEY)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("starting a replica");
    assert!(
        wait_for_port_within(port, Duration::from_secs(60)).await,
        "replica {name} did not start:\n{}",
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Replica {
        child,
        stderr,
        entities: EntityServiceClient::new(channel.clone()),
        connections: ConnectionServiceClient::new(channel),
    }
}

async fn start_sandbox() -> SandboxHandle {
    let spec = connector_runtime::spec::stripe_shared().unwrap();
    let config = SandboxConfig {
        rate_limit: None,
        ..SandboxConfig::default()
    };
    sandbox::start(spec, "127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

async fn node_status(replica: &Replica) -> pb::NodeStatus {
    replica
        .connections
        .clone()
        .get_connection(pb::GetConnectionRequest {
            name: format!("connections/{CONNECTION}"),
        })
        .await
        .unwrap()
        .into_inner()
        .node_status
        .expect("node figures")
}

/// Sums a figure over the fleet at one moment.
async fn fleet_sum(replicas: &[Replica], figure: fn(&pb::NodeStatus) -> u64) -> u64 {
    let mut sum = 0;
    for replica in replicas {
        sum += figure(&node_status(replica).await);
    }
    sum
}

/// Waits (bounded) until every replica reports `authority` for its Stripe budget.
async fn await_authority(replicas: &[Replica], authority: &str) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let mut all = true;
        for replica in replicas {
            all &= node_status(replica).await.budget_authority == authority;
        }
        if all {
            return;
        }
        assert!(
            Instant::now() < until,
            "replicas never reported the budget as {authority}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create_customer(replica: &Replica, request_id: &str) -> Result<String, tonic::Status> {
    let fields = json!({"Email": format!("{request_id}@example.com")});
    let mut request = tonic::Request::new(pb::CreateEntityRequest {
        parent: format!("connections/{CONNECTION}/entityTypes/Customer"),
        entity: Some(pb::Entity {
            fields: Some(to_proto_struct(fields.as_object().unwrap())),
            ..Default::default()
        }),
        request_id: request_id.to_owned(),
    });
    request.set_timeout(Duration::from_secs(3));
    let created = replica.entities.clone().create_entity(request).await?;
    Ok(created.into_inner().name)
}

async fn get_customer(replica: &Replica, name: &str) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(pb::GetEntityRequest {
        name: name.to_owned(),
    });
    request.set_timeout(Duration::from_secs(3));
    replica
        .entities
        .clone()
        .get_entity(request)
        .await
        .map(|_| ())
}

/// Callers that read one customer in a loop, each call on the next replica in turn, until
/// `stop`; answers the calls that succeeded.
fn read_load(
    replicas: &Arc<Vec<Replica>>,
    name: &str,
    callers: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<usize>> {
    let next = Arc::new(AtomicUsize::new(0));
    (0..callers)
        .map(|_| {
            let (replicas, next, stop, name) = (
                replicas.clone(),
                next.clone(),
                stop.clone(),
                name.to_owned(),
            );
            tokio::spawn(async move {
                let mut ok = 0;
                while !stop.load(Ordering::Acquire) {
                    let replica = &replicas[next.fetch_add(1, Ordering::Relaxed) % replicas.len()];
                    match get_customer(replica, &name).await {
                        Ok(()) => ok += 1,
                        // Overload is refused retryably; a refusal sent as the call's deadline
                        // passes can cross the caller's own 3 s timer on a loaded machine.
                        Err(status) => {
                            assert!(
                                matches!(
                                    status.code(),
                                    Code::ResourceExhausted
                                        | Code::DeadlineExceeded
                                        | Code::Cancelled
                                ),
                                "{status:?}"
                            );
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                ok
            })
        })
        .collect()
}

async fn stop_load(stop: &AtomicBool, tasks: Vec<tokio::task::JoinHandle<usize>>) -> usize {
    stop.store(true, Ordering::Release);
    let mut ok = 0;
    for task in tasks {
        ok += task.await.unwrap();
    }
    ok
}

/// Admissions per second over `window`, from the fleet's own counters.
async fn measured_rate(
    replicas: &[Replica],
    window: Duration,
    figure: fn(&pb::NodeStatus) -> u64,
) -> f64 {
    let (t1, before) = (Instant::now(), fleet_sum(replicas, figure).await);
    tokio::time::sleep(window).await;
    let (t2, after) = (Instant::now(), fleet_sum(replicas, figure).await);
    (after - before) as f64 / (t2 - t1).as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_admit_three_nodes_and_lose_no_call_when_one_is_stopped() {
    let _serial = SERIAL.lock().await;
    let redis = Redis::start().await;
    let sandbox = start_sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let fleet = FleetSettings {
        redis: &redis,
        sandbox: &sandbox.base_url(),
        budget: 100,
        on_down: "fail_open",
    };
    let mut replicas = Vec::new();
    for name in ["a", "b", "c"] {
        replicas.push(spawn_replica(dir.path(), name, &fleet).await);
    }
    let customer = create_customer(&replicas[0], "fleet-reader").await.unwrap();
    let replicas = Arc::new(replicas);

    // Each replica is one node of 6 transactions/s: together 18/s, whatever the callers offer.
    let stop = Arc::new(AtomicBool::new(false));
    let load = read_load(&replicas, &customer, 12, &stop);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rate = measured_rate(&replicas, Duration::from_secs(10), |s| s.admitted).await;
    stop_load(&stop, load).await;
    assert!(
        (rate - 18.0).abs() <= 18.0 * 0.02,
        "three replicas admitted {rate:.2} calls/s, not 18 ± 2 %"
    );

    // SIGTERM to one replica under a load of creates: every logical call completes exactly once.
    // A caller whose call is refused because its replica is going away retries it, with the same
    // request id, on the next replica.
    let sigterm_sent = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let early_failures = Arc::new(AtomicUsize::new(0));
    // Calls completed so far: the SIGTERM waits for the load to be under way, not for a time.
    let (completed_tx, mut completed) = tokio::sync::watch::channel(0usize);
    let completed_tx = Arc::new(completed_tx);
    let mut callers = Vec::new();
    for caller in 0..9 {
        let (replicas, next, sigterm_sent, early_failures, completed_tx) = (
            replicas.clone(),
            next.clone(),
            sigterm_sent.clone(),
            early_failures.clone(),
            completed_tx.clone(),
        );
        callers.push(tokio::spawn(async move {
            let mut created = Vec::new();
            for call in 0..8 {
                let request_id = format!("fleet-{caller}-{call}");
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    assert!(attempts <= 20, "{request_id} never succeeded");
                    let index = next.fetch_add(1, Ordering::Relaxed) % replicas.len();
                    let before_sigterm = !sigterm_sent.load(Ordering::Acquire);
                    match create_customer(&replicas[index], &request_id).await {
                        Ok(name) => {
                            created.push(name);
                            completed_tx.send_modify(|n| *n += 1);
                            break;
                        }
                        Err(status) if status.code() == Code::ResourceExhausted => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(status) => {
                            if index == 0 && before_sigterm {
                                early_failures.fetch_add(1, Ordering::Relaxed);
                            }
                            assert!(index == 0, "a live replica failed {request_id}: {status:?}");
                        }
                    }
                }
            }
            created
        }));
    }
    drop(completed_tx);
    // A quarter of the 72 calls done: every caller is mid-run, with most calls still to come.
    completed
        .wait_for(|n| *n >= 18)
        .await
        .expect("callers are running");
    let pid = replicas[0].child.id().to_string();
    sigterm_sent.store(true, Ordering::Release);
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut names = Vec::new();
    for caller in callers {
        names.extend(caller.await.unwrap());
    }
    let distinct: HashSet<&String> = names.iter().collect();
    assert_eq!(names.len(), 9 * 8, "every logical call completed");
    assert_eq!(distinct.len(), 9 * 8, "no logical call created two objects");
    assert_eq!(
        early_failures.load(Ordering::Relaxed),
        0,
        "calls the stopped replica had accepted failed"
    );
    let mut replicas = Arc::into_inner(replicas).expect("callers are done");
    let status = replicas[0].child.wait().unwrap();
    assert!(status.success(), "the stopped replica exited with {status}");
    let log = std::fs::read_to_string(&replicas[0].stderr).unwrap();
    assert!(
        !log.contains("drain timeout reached"),
        "the stopped replica abandoned calls in flight:\n{log}"
    );
    replicas.clear();
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_budget_is_shared_through_redis_and_survives_redis_going_away() {
    let _serial = SERIAL.lock().await;
    let mut redis = Redis::start().await;
    let sandbox = start_sandbox().await;
    let base_url = sandbox.base_url();
    let dir = tempfile::tempdir().unwrap();
    let fleet = FleetSettings {
        redis: &redis,
        sandbox: &base_url,
        budget: 10,
        on_down: "fail_open",
    };
    let mut replicas = Vec::new();
    for name in ["a", "b", "c"] {
        replicas.push(spawn_replica(dir.path(), name, &fleet).await);
    }
    let closed = spawn_replica(
        dir.path(),
        "closed",
        &FleetSettings {
            on_down: "fail_closed",
            ..fleet
        },
    )
    .await;
    let customer = create_customer(&replicas[0], "budget-reader")
        .await
        .unwrap();
    let replicas = Arc::new(replicas);
    await_authority(&replicas, "shared").await;

    // Three nodes could admit 18/s; the account's 10/s binds the fleet as a whole.
    let stop = Arc::new(AtomicBool::new(false));
    let load = read_load(&replicas, &customer, 12, &stop);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rate = measured_rate(&replicas, Duration::from_secs(8), |s| s.budget_admitted).await;
    assert!(
        (9.0..=10.2).contains(&rate),
        "the fleet sent {rate:.2} requests/s on a 10/s account budget"
    );
    let mut keys = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let budget_keys: Vec<String> = redis::cmd("KEYS")
        .arg("connector-runtime:budget:*")
        .query_async(&mut keys)
        .await
        .unwrap();
    assert_eq!(budget_keys.len(), 1, "one shared budget: {budget_keys:?}");

    // Redis goes away: fail_open replicas keep serving on their share (10/s ÷ 3 replicas); the
    // fail_closed one refuses, retryably.
    redis.stop();
    await_authority(&replicas, "local_share").await;
    let rate = measured_rate(&replicas, Duration::from_secs(4), |s| s.budget_admitted).await;
    assert!(
        rate > 0.0 && rate <= 3.0 * 3.0 * 1.05,
        "{rate:.2} requests/s on local shares of 3/s"
    );
    let refused = get_customer(&closed, &customer).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert_eq!(reason(&refused), "SHARED_BUDGET_UNAVAILABLE");
    assert!(refused.get_error_details().retry_info().is_some());

    // Redis is back: the shared budget returns without a restart.
    redis.resume().await;
    await_authority(&replicas, "shared").await;
    // The fail_closed replica tries Redis again once its retry delay has passed, as its callers do.
    let mut attempts = 0;
    while let Err(refused) = get_customer(&closed, &customer).await {
        attempts += 1;
        assert!(
            attempts < 10,
            "the shared budget never came back: {refused:?}"
        );
        assert_eq!(reason(&refused), "SHARED_BUDGET_UNAVAILABLE");
        let delay = refused
            .get_error_details()
            .retry_info()
            .unwrap()
            .retry_delay;
        tokio::time::sleep(delay.unwrap_or(Duration::from_secs(1))).await;
    }
    let served = stop_load(&stop, load).await;
    assert!(served > 0);
    let mut replicas = Arc::into_inner(replicas).expect("callers are done");
    for replica in replicas.iter_mut() {
        assert!(
            replica.child.try_wait().unwrap().is_none(),
            "a replica exited"
        );
    }
    let mut closed = closed;
    assert!(
        closed.child.try_wait().unwrap().is_none(),
        "a replica exited"
    );
    drop(closed);
    replicas.clear();
    sandbox.shutdown().await;
}
