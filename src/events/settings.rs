//! The `[events]` settings section: the webhook listener, the event store's retention, the
//! catch-up from the upstream event log, and delivery to HTTP subscribers. Plain data.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Receiving, storing and delivering events (`[events]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsSettings {
    /// Address of the webhook listener (`IP:port`), which serves `POST /webhooks/{connection}`;
    /// port 0 picks a free port. Unset: no listener (events still arrive through the catch-up
    /// from the event log). Default: unset.
    pub listen: Option<SocketAddr>,
    /// Largest webhook body accepted, in bytes; a larger one is refused with 400. Default: 1 MiB.
    pub max_body_bytes: usize,
    /// How far a webhook's signature timestamp may be from now (humantime). Default: `300s`,
    /// Stripe's own tolerance.
    #[serde(with = "humantime_serde")]
    pub signature_tolerance: Duration,
    /// How long stored events are kept, by their creation time (humantime). Default: `30days`,
    /// as Stripe's own event log.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How often each connection with subscriptions reads the upstream event log to fill gaps
    /// left by lost webhooks; it also reads it at start. Default: `60s`.
    #[serde(with = "humantime_serde")]
    pub catch_up_interval: Duration,
    /// How far before the newest event already read from the log each catch-up starts again, for
    /// events that show up in the log late. Default: `5m`.
    #[serde(with = "humantime_serde")]
    pub catch_up_overlap: Duration,
    /// Attempts to POST one event to an HTTP subscriber before it becomes a dead letter.
    /// Default: 8.
    pub delivery_max_attempts: u32,
    /// Wait before the second attempt; it doubles after each failure up to `delivery_backoff_cap`.
    /// Default: `1s`.
    #[serde(with = "humantime_serde")]
    pub delivery_backoff: Duration,
    /// Longest wait between two attempts. Default: `5m`.
    #[serde(with = "humantime_serde")]
    pub delivery_backoff_cap: Duration,
    /// Longest one POST to an HTTP subscriber may take. Default: `10s`.
    #[serde(with = "humantime_serde")]
    pub delivery_timeout: Duration,
}

impl Default for EventsSettings {
    fn default() -> Self {
        Self {
            listen: None,
            max_body_bytes: default_max_body_bytes(),
            signature_tolerance: default_signature_tolerance(),
            retention: default_retention(),
            catch_up_interval: default_catch_up_interval(),
            catch_up_overlap: default_catch_up_overlap(),
            delivery_max_attempts: default_delivery_max_attempts(),
            delivery_backoff: default_delivery_backoff(),
            delivery_backoff_cap: default_delivery_backoff_cap(),
            delivery_timeout: default_delivery_timeout(),
        }
    }
}

/// 1 MiB.
pub const fn default_max_body_bytes() -> usize {
    1024 * 1024
}
/// 300 seconds.
pub const fn default_signature_tolerance() -> Duration {
    Duration::from_secs(crate::stripe::webhook::DEFAULT_TOLERANCE_SECS)
}
/// 30 days.
pub const fn default_retention() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}
/// 60 seconds.
pub const fn default_catch_up_interval() -> Duration {
    Duration::from_secs(60)
}
/// 5 minutes.
pub const fn default_catch_up_overlap() -> Duration {
    Duration::from_secs(300)
}
/// 8 attempts.
pub const fn default_delivery_max_attempts() -> u32 {
    8
}
/// 1 second.
pub const fn default_delivery_backoff() -> Duration {
    Duration::from_secs(1)
}
/// 5 minutes.
pub const fn default_delivery_backoff_cap() -> Duration {
    Duration::from_secs(300)
}
/// 10 seconds.
pub const fn default_delivery_timeout() -> Duration {
    Duration::from_secs(10)
}
