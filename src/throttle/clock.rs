//! A governor clock that reads tokio's clock, so that rate limiting follows tokio's paused time in
//! tests and the real monotonic clock in production. Nothing here sleeps.

use std::ops::Add;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::nanos::Nanos;
use tokio::time::Instant;

/// Governor [`Clock`] backed by [`tokio::time::Instant::now`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

/// A reading of [`TokioClock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokioInstant(pub Instant);

impl Add<Nanos> for TokioInstant {
    type Output = Self;

    fn add(self, other: Nanos) -> Self {
        Self(self.0 + Duration::from(other))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        // Nanos cannot represent more than ~584 years; saturate rather than panic.
        let nanos = self.0.saturating_duration_since(earlier.0).as_nanos();
        Nanos::new(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        self.0
            .checked_sub(Duration::from(duration))
            .map_or(*self, Self)
    }
}

impl Clock for TokioClock {
    type Instant = TokioInstant;

    fn now(&self) -> TokioInstant {
        TokioInstant(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_paused_tokio_time() {
        let clock = TokioClock;
        let before = clock.now();
        tokio::time::advance(Duration::from_millis(250)).await;
        let after = clock.now();
        assert_eq!(
            Duration::from(after.duration_since(before)),
            Duration::from_millis(250)
        );
        assert_eq!(Duration::from(before.duration_since(after)), Duration::ZERO);
    }
}
