//! The caller's gRPC deadline (`grpc-timeout`), so upstream calls and queueing never outlive it.

use std::time::Duration;

use tokio::time::Instant;

/// Parses `grpc-timeout` (`<digits><unit>`, unit one of H M S m u n).
pub fn parse_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The deadline of a request, if the caller set one.
pub fn of<T>(request: &tonic::Request<T>) -> Option<Instant> {
    let timeout = request
        .metadata()
        .get("grpc-timeout")?
        .to_str()
        .ok()
        .and_then(parse_timeout)?;
    Some(Instant::now() + timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grpc_timeouts() {
        assert_eq!(parse_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_timeout("5x"), None);
        assert_eq!(parse_timeout("S"), None);
    }
}
