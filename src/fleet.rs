//! The fleet: replicas of the runtime that share state through Redis. Here live Stripe's
//! per-account budget, as a GCRA (generic cell rate algorithm) run atomically in Redis by a Lua
//! script, and the count of replicas alive, from their heartbeats.
//!
//! Redis' own clock (`TIME`) is the only clock the budget reads, so replicas whose clocks differ
//! still share one schedule. Keys hold account keys (an account id or a key fingerprint), never
//! an API key; the Redis password is a secret and appears in no log line or error.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;

use crate::config::SharedBudgetSettings;
use crate::secrets::Secret;
use crate::throttle::{Reservation, SharedBudgetDown, SharedLimiter};

/// How often a replica says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// A replica not heard of for this long no longer counts.
const REPLICA_TTL: Duration = Duration::from_secs(15);
/// After Redis failed, how long calls skip it before one tries again.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Reserves one request: `{1, delay_us}` granted after the delay, `{0, retry_us}` refused.
/// KEYS[1]: the account's key. ARGV: emission interval (µs), burst, longest delay accepted (µs).
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local max_delay = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local start = tat - (burst - 1) * interval
if start < now then start = now end
local delay = start - now
if delay > max_delay then return {0, delay} end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, delay}
";

/// Records a heartbeat and answers how many replicas are alive.
/// KEYS[1]: the replica set. ARGV: this replica's id, time to live (ms).
const HEARTBEAT_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('ZCARD', KEYS[1])
";

/// Why the fleet's Redis could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("nodes.stripe_budget.shared.redis_url: {0}")]
    Url(String),
}

/// The shared Stripe budget in Redis. Build it with [`RedisBudget::start`].
#[derive(Debug)]
pub struct RedisBudget {
    connection: ConnectionManager,
    gcra: Script,
    heartbeat: Script,
    prefix: String,
    timeout: Duration,
    replica: String,
    replicas: AtomicU32,
    /// Until when calls skip Redis after a failure.
    skip_until: Mutex<Option<Instant>>,
}

impl RedisBudget {
    /// Connects lazily (the runtime starts even while Redis is down) and starts this replica's
    /// heartbeat, which stops when the budget is dropped.
    pub fn start(
        settings: &SharedBudgetSettings,
        password: Option<Secret>,
    ) -> Result<Arc<Self>, FleetError> {
        let mut url = url::Url::parse(&settings.redis_url)
            .map_err(|e| FleetError::Url(format!("not a URL: {e}")))?;
        if let Some(password) = &password {
            url.set_password(Some(password.expose()))
                .map_err(|()| FleetError::Url("cannot carry a password".to_owned()))?;
        }
        // Redis' own error text may quote the URL: never show it, it may hold the password.
        let client = redis::Client::open(url.as_str())
            .map_err(|_| FleetError::Url("not a valid Redis URL".to_owned()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_max_delay(PROBE_INTERVAL);
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|_| FleetError::Url("cannot create a Redis connection".to_owned()))?;
        let budget = Arc::new(Self {
            connection,
            gcra: Script::new(GCRA),
            heartbeat: Script::new(HEARTBEAT_SCRIPT),
            prefix: settings.key_prefix.clone(),
            timeout: settings.timeout,
            replica: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            replicas: AtomicU32::new(settings.assumed_replicas.max(1)),
            skip_until: Mutex::new(None),
        });
        spawn_heartbeat(Arc::downgrade(&budget));
        Ok(budget)
    }

    fn skipping(&self) -> bool {
        let skip = self
            .skip_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        skip.is_some_and(|until| Instant::now() < until)
    }

    fn record(&self, ok: bool) {
        let mut skip = self
            .skip_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *skip = (!ok).then(|| Instant::now() + PROBE_INTERVAL);
    }

    async fn beat(&self) -> Result<u32, SharedBudgetDown> {
        let mut connection = self.connection.clone();
        let mut invocation = self.heartbeat.key(format!("{}:replicas", self.prefix));
        invocation
            .arg(&self.replica)
            .arg(u64::try_from(REPLICA_TTL.as_millis()).unwrap_or(u64::MAX));
        let count: u32 =
            tokio::time::timeout(self.timeout, invocation.invoke_async(&mut connection))
                .await
                .map_err(|_| SharedBudgetDown("timed out".to_owned()))?
                .map_err(|e| SharedBudgetDown(e.kind_name()))?;
        self.replicas.store(count.max(1), Ordering::Release);
        Ok(count)
    }
}

/// The error's kind only: Redis' messages can quote what was sent.
trait KindName {
    fn kind_name(&self) -> String;
}

impl KindName for redis::RedisError {
    fn kind_name(&self) -> String {
        if self.is_timeout() {
            "timed out".to_owned()
        } else if self.is_connection_refusal() || self.is_connection_dropped() || self.is_io_error()
        {
            "connection failed".to_owned()
        } else {
            format!("{:?}", self.kind())
        }
    }
}

#[async_trait::async_trait]
impl SharedLimiter for RedisBudget {
    async fn reserve(
        &self,
        account: &str,
        rate: u32,
        burst: u32,
        max_delay: Duration,
    ) -> Result<Reservation, SharedBudgetDown> {
        if self.skipping() {
            return Err(SharedBudgetDown("recently unreachable".to_owned()));
        }
        let interval_us = 1_000_000 / u64::from(rate.max(1));
        let max_delay_us = u64::try_from(max_delay.as_micros()).unwrap_or(u64::MAX / 2);
        let mut connection = self.connection.clone();
        let mut invocation = self.gcra.key(format!("{}:budget:{account}", self.prefix));
        invocation
            .arg(interval_us)
            .arg(burst.max(1))
            .arg(max_delay_us);
        let answer = tokio::time::timeout(self.timeout, invocation.invoke_async(&mut connection))
            .await
            .map_err(|_| SharedBudgetDown("timed out".to_owned()))
            .and_then(|r: redis::RedisResult<(i64, i64)>| {
                r.map_err(|e| SharedBudgetDown(e.kind_name()))
            });
        self.record(answer.is_ok());
        let (granted, micros) = answer?;
        let micros = Duration::from_micros(u64::try_from(micros).unwrap_or(0));
        Ok(if granted == 1 {
            Reservation::Granted { delay: micros }
        } else {
            Reservation::Refused {
                retry_after: micros,
            }
        })
    }

    fn replicas(&self) -> u32 {
        self.replicas.load(Ordering::Acquire)
    }
}

fn spawn_heartbeat(budget: Weak<RedisBudget>) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(HEARTBEAT);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reachable = None;
        loop {
            ticks.tick().await;
            let Some(budget) = budget.upgrade() else {
                break;
            };
            let beat = budget.beat().await;
            let now_reachable = beat.is_ok();
            if reachable != Some(now_reachable) {
                match &beat {
                    Ok(replicas) => {
                        tracing::info!(
                            replicas,
                            "sharing the Stripe budget with the fleet through Redis"
                        );
                    }
                    Err(error) => tracing::warn!(%error, "Redis heartbeat failed"),
                }
                reachable = Some(now_reachable);
            }
        }
    });
}
