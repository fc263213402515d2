//! How long an admitted call still needs after admission (the upstream round trip), estimated as
//! TCP estimates its retransmission timeout (RFC 6298): a smoothed mean plus four smoothed mean
//! deviations. A call is admitted only while its caller's deadline leaves at least that much time,
//! so no node transaction is spent on a call whose caller will have gone before it completes.
//! Pure: atomics only, no clock of its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The smoothed service time and its deviation, in nanoseconds (0 until the first sample).
#[derive(Debug, Default)]
pub struct ServiceTime {
    mean: AtomicU64,
    deviation: AtomicU64,
}

impl ServiceTime {
    /// Takes one measured service time into the estimate (gains 1/8 and 1/4, as RFC 6298).
    pub fn record(&self, sample: Duration) {
        let sample = u64::try_from(sample.as_nanos()).unwrap_or(u64::MAX / 8);
        let mean = self.mean.load(Ordering::Relaxed);
        if mean == 0 {
            self.mean.store(sample.max(1), Ordering::Relaxed);
            self.deviation.store(sample / 2, Ordering::Relaxed);
            return;
        }
        let deviation = self.deviation.load(Ordering::Relaxed);
        let error = mean.abs_diff(sample);
        // Races between concurrent samples lose an update at worst: an estimate, not a count.
        self.deviation
            .store(deviation - deviation / 4 + error / 4, Ordering::Relaxed);
        self.mean
            .store((mean - mean / 8 + sample / 8).max(1), Ordering::Relaxed);
    }

    /// The time a call should have left when admitted: mean + 4 × deviation.
    pub fn estimate(&self) -> Duration {
        let mean = self.mean.load(Ordering::Relaxed);
        let deviation = self.deviation.load(Ordering::Relaxed);
        Duration::from_nanos(mean.saturating_add(deviation.saturating_mul(4)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_nothing_before_the_first_sample() {
        assert_eq!(ServiceTime::default().estimate(), Duration::ZERO);
    }

    #[test]
    fn first_sample_sets_mean_and_half_as_deviation() {
        let time = ServiceTime::default();
        time.record(Duration::from_millis(8));
        assert_eq!(time.estimate(), Duration::from_millis(8 + 4 * 4));
    }

    #[test]
    fn steady_samples_converge_on_the_sample() {
        let time = ServiceTime::default();
        time.record(Duration::from_millis(40));
        for _ in 0..200 {
            time.record(Duration::from_millis(10));
        }
        let estimate = time.estimate();
        assert!(
            estimate >= Duration::from_millis(10) && estimate < Duration::from_micros(10_100),
            "{estimate:?}"
        );
    }

    #[test]
    fn jitter_widens_the_margin() {
        let steady = ServiceTime::default();
        let jittery = ServiceTime::default();
        for i in 0..100 {
            steady.record(Duration::from_millis(10));
            jittery.record(Duration::from_millis(if i % 2 == 0 { 5 } else { 15 }));
        }
        assert!(jittery.estimate() > steady.estimate() + Duration::from_millis(10));
    }
}
