//! Per-API-key token buckets on tokio's clock, so tests can pause and advance time. Stripe's test
//! mode allows 25 requests/s; the bucket's burst equals its rate.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// One token bucket: `capacity` tokens, refilled at `per_second`.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    pub fn new(per_second: u32, now: Instant) -> Self {
        let rate = f64::from(per_second.max(1));
        Self {
            capacity: rate,
            per_second: rate,
            tokens: rate,
            updated: now,
        }
    }

    /// Takes one token, or says how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.per_second,
            ))
        }
    }
}

/// Token buckets per API key. The keys live only in memory and are never logged.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    rate: Option<u32>,
    buckets: HashMap<String, TokenBucket>,
}

impl RateLimiter {
    pub fn new(rate: Option<u32>) -> Self {
        Self {
            rate,
            buckets: HashMap::new(),
        }
    }

    /// Changes the rate; buckets start full again.
    pub fn set_rate(&mut self, rate: Option<u32>) {
        self.rate = rate;
        self.buckets.clear();
    }

    pub fn check(&mut self, key: &str, now: Instant) -> Result<(), Duration> {
        let Some(rate) = self.rate else {
            return Ok(());
        };
        self.buckets
            .entry(key.to_owned())
            .or_insert_with(|| TokenBucket::new(rate, now))
            .try_take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rejects_the_twenty_sixth_call_within_one_second() {
        let mut limiter = RateLimiter::new(Some(25));
        let now = Instant::now();
        for _ in 0..25 {
            assert!(limiter.check("sk_test_a", now).is_ok());
        }
        let wait = limiter.check("sk_test_a", now).unwrap_err();
        assert_eq!(wait, Duration::from_millis(40));
    }

    #[tokio::test(start_paused = true)]
    async fn refills_with_time_and_keys_are_independent() {
        let mut limiter = RateLimiter::new(Some(2));
        let start = Instant::now();
        assert!(limiter.check("a", start).is_ok());
        assert!(limiter.check("a", start).is_ok());
        assert!(limiter.check("a", start).is_err());
        assert!(limiter.check("b", start).is_ok());
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(limiter.check("a", Instant::now()).is_ok());
        assert!(limiter.check("a", Instant::now()).is_err());
    }

    #[test]
    fn no_rate_means_no_limit() {
        let mut limiter = RateLimiter::new(None);
        let now = Instant::now();
        assert!((0..1000).all(|_| limiter.check("a", now).is_ok()));
    }
}
