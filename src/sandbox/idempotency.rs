//! Stripe's idempotency keys: the first response to a key is stored and replayed for the same
//! parameters; other parameters are an `idempotency_error`; a request racing one still in flight
//! gets 409 `idempotency_key_in_use`. Keys are scoped per API key. No I/O.

use std::collections::HashMap;

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

/// How long a stored response is replayed, as in Stripe.
const KEEP: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
enum Entry {
    InFlight {
        fingerprint: String,
    },
    Done {
        fingerprint: String,
        status: u16,
        body: Bytes,
        at: Instant,
    },
}

/// What to do with a request that carries an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Begin {
    /// First use: the key is now reserved; call `finish` or `abandon`.
    Proceed,
    /// Same key, same parameters: send this stored response again.
    Replay { status: u16, body: Bytes },
    /// The first request with this key is still running.
    InUse,
    /// Same key, different parameters.
    Mismatch,
}

#[derive(Debug, Default)]
pub(crate) struct IdempotencyStore {
    entries: HashMap<(String, String), Entry>,
}

impl IdempotencyStore {
    pub fn begin(&mut self, api_key: &str, key: &str, fingerprint: &str) -> Begin {
        let slot = (api_key.to_owned(), key.to_owned());
        if let Some(Entry::Done { at, .. }) = self.entries.get(&slot)
            && at.elapsed() >= KEEP
        {
            self.entries.remove(&slot);
        }
        match self.entries.get(&slot) {
            None => {
                self.entries.insert(
                    slot,
                    Entry::InFlight {
                        fingerprint: fingerprint.to_owned(),
                    },
                );
                Begin::Proceed
            }
            Some(Entry::InFlight { fingerprint: first })
            | Some(Entry::Done {
                fingerprint: first, ..
            }) if first != fingerprint => Begin::Mismatch,
            Some(Entry::InFlight { .. }) => Begin::InUse,
            Some(Entry::Done { status, body, .. }) => Begin::Replay {
                status: *status,
                body: body.clone(),
            },
        }
    }

    pub fn finish(&mut self, api_key: &str, key: &str, status: u16, body: Bytes) {
        let slot = (api_key.to_owned(), key.to_owned());
        if let Some(Entry::InFlight { fingerprint }) = self.entries.remove(&slot) {
            self.entries.insert(
                slot,
                Entry::Done {
                    fingerprint,
                    status,
                    body,
                    at: Instant::now(),
                },
            );
        }
    }

    /// Releases a reservation without storing anything (the request never executed).
    pub fn abandon(&mut self, api_key: &str, key: &str) {
        let slot = (api_key.to_owned(), key.to_owned());
        if matches!(self.entries.get(&slot), Some(Entry::InFlight { .. })) {
            self.entries.remove(&slot);
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_same_parameters_and_rejects_others() {
        let mut store = IdempotencyStore::default();
        assert_eq!(store.begin("sk", "k1", "a=1"), Begin::Proceed);
        assert_eq!(store.begin("sk", "k1", "a=1"), Begin::InUse);
        assert_eq!(store.begin("sk", "k1", "a=2"), Begin::Mismatch);
        store.finish("sk", "k1", 200, Bytes::from_static(b"{}"));
        assert_eq!(
            store.begin("sk", "k1", "a=1"),
            Begin::Replay {
                status: 200,
                body: Bytes::from_static(b"{}")
            }
        );
        assert_eq!(store.begin("sk", "k1", "a=2"), Begin::Mismatch);
        assert_eq!(store.begin("other", "k1", "a=2"), Begin::Proceed);
    }

    #[tokio::test(start_paused = true)]
    async fn stored_responses_expire_after_a_day() {
        let mut store = IdempotencyStore::default();
        assert_eq!(store.begin("sk", "k", "x"), Begin::Proceed);
        store.finish("sk", "k", 200, Bytes::from_static(b"{}"));
        tokio::time::advance(Duration::from_secs(23 * 3600)).await;
        assert_eq!(store.begin("sk", "k", "y"), Begin::Mismatch);
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(store.begin("sk", "k", "y"), Begin::Proceed);
    }

    #[test]
    fn abandoned_keys_can_be_used_again() {
        let mut store = IdempotencyStore::default();
        assert_eq!(store.begin("sk", "k", "x"), Begin::Proceed);
        store.abandon("sk", "k");
        assert_eq!(store.begin("sk", "k", "y"), Begin::Proceed);
    }
}
