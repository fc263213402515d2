//! The retry decision, kept apart from the mechanism (as vector's `RetryLogic`): one classification
//! of an upstream outcome drives retries here and can feed throttling and scaling signals. Pure.

use std::time::Duration;

/// What an attempt produced, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP response with this status and its `Retry-After`, if any.
    Response {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No response: connection refused or reset, TLS failure, or timeout.
    Transport,
}

/// Whether to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Final: success, or an error that will not change (a decline, a bad parameter).
    Done,
    /// Try again, waiting at least this long (Retry-After), if given.
    Retry { at_least: Option<Duration> },
}

/// The generic rules: transport failures, conflicts, rate limits (429, which some vendors' SDKs do
/// not retry, a common complaint) and server errors are retried; other answers are final.
/// Dialects add their upstream's explicit advice on top (`Dialect::classify`).
pub fn decide(outcome: Outcome) -> Decision {
    match outcome {
        Outcome::Transport => Decision::Retry { at_least: None },
        Outcome::Response {
            status,
            retry_after,
            ..
        } if status == 409 || status == 429 || status >= 500 => Decision::Retry {
            at_least: retry_after,
        },
        Outcome::Response { .. } => Decision::Done,
    }
}

/// Exponential backoff with full jitter: uniform in [0, min(cap, base·2^attempt)], never below
/// the server's Retry-After. `unit` in [0, 1) is the random draw, injected for tests.
pub fn backoff(
    attempt: u32,
    base: Duration,
    cap: Duration,
    at_least: Option<Duration>,
    unit: f64,
) -> Duration {
    let exp = base
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(cap);
    let jittered = exp.mul_f64(unit.clamp(0.0, 1.0));
    at_least.map_or(jittered, |floor| jittered.max(floor))
}

/// Longest `Retry-After` honoured; longer ones are ignored (as Stripe's SDKs do), so that one odd
/// header cannot park a call for an hour.
const MAX_RETRY_AFTER_SECS: f64 = 60.0;

/// `Retry-After` in seconds, when present and sane (at most a minute).
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let secs: f64 = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (secs.is_finite() && (0.0..=MAX_RETRY_AFTER_SECS).contains(&secs))
        .then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16) -> Outcome {
        Outcome::Response {
            status,
            retry_after: None,
        }
    }

    #[test]
    fn retries_rate_limits_conflicts_server_errors_and_transport_failures() {
        for status in [409, 429, 500, 502, 503] {
            assert_eq!(
                decide(response(status)),
                Decision::Retry { at_least: None },
                "{status}"
            );
        }
        assert_eq!(
            decide(Outcome::Transport),
            Decision::Retry { at_least: None }
        );
    }

    #[test]
    fn never_retries_final_client_errors() {
        for status in [200, 400, 401, 402, 403, 404] {
            assert_eq!(decide(response(status)), Decision::Done, "{status}");
        }
    }

    #[test]
    fn reads_a_sane_retry_after_and_ignores_long_ones() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(http::header::RETRY_AFTER, "3600".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let base = Duration::from_millis(500);
        let cap = Duration::from_secs(5);
        assert_eq!(backoff(0, base, cap, None, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(2, base, cap, None, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(10, base, cap, None, 1.0), cap);
        assert_eq!(backoff(3, base, cap, None, 0.0), Duration::ZERO);
        assert_eq!(
            backoff(0, base, cap, Some(Duration::from_secs(3)), 0.5),
            Duration::from_secs(3)
        );
    }
}
