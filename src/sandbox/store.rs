//! The sandbox's in-memory state: objects by Stripe object type in creation order, an id index,
//! the hidden behaviour of test cards, and id generation from the seeded generator. No I/O.

use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use indexmap::IndexMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};

/// How a test card behaves when charged (never the card number itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CardBehaviour {
    Succeeds,
    /// Declines with `card_declined` / `generic_decline`; fails on attach too.
    GenericDecline,
    InsufficientFunds,
    ExpiredCard,
    IncorrectCvc,
    ProcessingError,
    /// Attaches fine, then every charge declines (4000000000000341).
    AttachesThenDeclines,
    /// Requires 3-D Secure authentication.
    AuthenticationRequired,
}

/// One stored object and the parent ids it was created under (nested collections).
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub object: Map<String, Value>,
    pub parents: Vec<(String, String)>,
}

/// Objects of one Stripe object type, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Collection {
    pub records: IndexMap<String, Record>,
}

#[derive(Debug)]
pub(crate) struct Store {
    collections: HashMap<String, Collection>,
    /// id → object type.
    index: HashMap<String, String>,
    ids: StdRng,
    /// Behaviour of card PaymentMethods, by PaymentMethod id.
    pub cards: HashMap<String, CardBehaviour>,
    /// PaymentMethods that can no longer be used: detached from a customer, or used once
    /// without ever being attached to one.
    pub spent: HashSet<String>,
    /// Quote line items (price id, quantity, amount), by quote id; Stripe shows them only on request.
    pub quote_lines: HashMap<String, Vec<Value>>,
    /// Next invoice number per customer.
    pub invoice_sequences: HashMap<String, u64>,
    pub quote_sequence: u64,
    /// When each object was created, on tokio's clock (for search lag).
    created_at: HashMap<String, tokio::time::Instant>,
    /// Deleted customers: Stripe still answers them with a `{id, object, deleted: true}` stub.
    pub deleted_customers: HashSet<String>,
}

const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl Store {
    pub fn new(seed: u64) -> Self {
        Self {
            collections: HashMap::new(),
            index: HashMap::new(),
            // Distinct from the fault generator's stream so ids do not shift fault decisions.
            ids: StdRng::seed_from_u64(seed ^ 0x05ee_d1d5),
            cards: HashMap::new(),
            spent: HashSet::new(),
            quote_lines: HashMap::new(),
            invoice_sequences: HashMap::new(),
            quote_sequence: 0,
            created_at: HashMap::new(),
            deleted_customers: HashSet::new(),
        }
    }

    /// How many objects are stored, of every type.
    pub fn object_count(&self) -> usize {
        self.index.len()
    }

    /// A Stripe-style id: `prefix_` and 24 random alphanumerics.
    pub fn new_id(&mut self, prefix: &str) -> String {
        format!("{prefix}_{}", self.random_text(24))
    }

    pub fn random_text(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(ALPHANUMERIC[self.ids.random_range(0..ALPHANUMERIC.len())]))
            .collect()
    }

    pub fn random_hex_upper(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b"0123456789ABCDEF"[self.ids.random_range(0..16)]))
            .collect()
    }

    pub fn insert(
        &mut self,
        object_type: &str,
        id: &str,
        object: Map<String, Value>,
        parents: Vec<(String, String)>,
    ) {
        self.index.insert(id.to_owned(), object_type.to_owned());
        self.created_at
            .entry(id.to_owned())
            .or_insert_with(tokio::time::Instant::now);
        self.collections
            .entry(object_type.to_owned())
            .or_default()
            .records
            .insert(id.to_owned(), Record { object, parents });
    }

    pub fn get(&self, object_type: &str, id: &str) -> Option<&Map<String, Value>> {
        self.collections
            .get(object_type)?
            .records
            .get(id)
            .map(|r| &r.object)
    }

    pub fn get_mut(&mut self, object_type: &str, id: &str) -> Option<&mut Map<String, Value>> {
        self.collections
            .get_mut(object_type)?
            .records
            .get_mut(id)
            .map(|r| &mut r.object)
    }

    pub fn record(&self, object_type: &str, id: &str) -> Option<&Record> {
        self.collections.get(object_type)?.records.get(id)
    }

    /// Any stored object by id, whatever its type.
    pub fn find(&self, id: &str) -> Option<&Map<String, Value>> {
        let object_type = self.index.get(id)?;
        self.get(object_type, id)
    }

    /// True when the object was created at least `delay` ago.
    pub fn older_than(&self, id: &str, delay: std::time::Duration) -> bool {
        self.created_at
            .get(id)
            .is_none_or(|at| at.elapsed() >= delay)
    }

    pub fn remove(&mut self, object_type: &str, id: &str) -> Option<Record> {
        self.index.remove(id);
        self.created_at.remove(id);
        self.collections
            .get_mut(object_type)?
            .records
            .shift_remove(id)
    }

    /// Records of one type, newest first.
    pub fn newest_first(&self, object_type: &str) -> impl Iterator<Item = (&String, &Record)> {
        self.collections
            .get(object_type)
            .into_iter()
            .flat_map(|c| c.records.iter().rev())
    }
}

/// Seconds since the Unix epoch, as Stripe's `created`.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_prefix_and_are_reproducible_by_seed() {
        let mut a = Store::new(1);
        let mut b = Store::new(1);
        let id = a.new_id("cus");
        assert!(id.starts_with("cus_") && id.len() == 28);
        assert_eq!(id, b.new_id("cus"));
        assert_ne!(a.new_id("cus"), id);
    }

    #[test]
    fn lists_newest_first_and_removal_keeps_order() {
        let mut store = Store::new(0);
        for id in ["a", "b", "c"] {
            store.insert("thing", id, Map::new(), Vec::new());
        }
        store.remove("thing", "b");
        let ids: Vec<&String> = store.newest_first("thing").map(|(id, _)| id).collect();
        assert_eq!(ids, vec!["c", "a"]);
        assert!(store.find("b").is_none());
        assert!(store.find("c").is_some());
    }
}
