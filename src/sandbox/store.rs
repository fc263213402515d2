//! The sandbox's in-memory state: objects by Stripe object type in creation order, an id index,
//! the hidden behaviour of test cards, and id generation. No I/O.
//!
//! Ids look like Stripe's: the prefix, then 14 random characters for the types Stripe gives short
//! ids (customers, products, …) and 24 otherwise, the first six encoding the creation second so
//! that ids sort roughly by time. The random part comes from the operating system's entropy, so
//! ids never repeat across sandbox restarts (the `seed` setting drives fault decisions only).

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
    pub quote_sequence: u64,
    /// When each object was created, on tokio's clock (for search lag).
    created_at: HashMap<String, tokio::time::Instant>,
    /// Deleted customers: Stripe still answers them with a `{id, object, deleted: true}` stub.
    pub deleted_customers: HashSet<String>,
}

const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// The same characters in ASCII order, so time stamps sort as text.
const ALPHANUMERIC_SORTED: &[u8] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Object types whose Stripe ids carry 14 characters after the prefix (`cus_Oaxlz8kB0PJWGa`).
const SHORT_ID_TYPES: &[&str] = &[
    "customer",
    "product",
    "subscription_item",
    "terminal.configuration",
];

impl Store {
    pub fn new() -> Self {
        Self {
            collections: HashMap::new(),
            index: HashMap::new(),
            ids: StdRng::from_os_rng(),
            cards: HashMap::new(),
            spent: HashSet::new(),
            quote_lines: HashMap::new(),
            quote_sequence: 0,
            created_at: HashMap::new(),
            deleted_customers: HashSet::new(),
        }
    }

    /// How many objects are stored, of every type.
    pub fn object_count(&self) -> usize {
        self.index.len()
    }

    /// A Stripe-style id for an object type: `prefix_` and 14 or 24 alphanumerics (see the module doc).
    pub fn new_id_for(&mut self, object_type: &str, prefix: &str) -> String {
        if SHORT_ID_TYPES.contains(&object_type) {
            return format!("{prefix}_{}", self.random_text(14));
        }
        match object_type {
            // `acct_1Nnlp9GPxmnHQRkJ`: 16 characters.
            "account" => {
                let id = self.new_id(prefix);
                id[..prefix.len() + 1 + 16].to_owned()
            }
            // `cs_test_a1GY7ro6…`: test-mode Checkout Sessions carry `test_` and 58 characters.
            "checkout.session" => format!("{prefix}_test_{}", self.random_text(58)),
            _ => self.new_id(prefix),
        }
    }

    /// A 24-character Stripe-style id: six characters of the creation time, then random ones.
    pub fn new_id(&mut self, prefix: &str) -> String {
        let mut time = u64::try_from(unix_now()).unwrap_or(0);
        let mut stamp = [b'0'; 6];
        for slot in stamp.iter_mut().rev() {
            *slot = ALPHANUMERIC_SORTED[usize::try_from(time % 62).unwrap_or(0)];
            time /= 62;
        }
        let stamp = String::from_utf8_lossy(&stamp).into_owned();
        format!("{prefix}_{stamp}{}", self.random_text(18))
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
    fn ids_have_stripes_lengths_and_never_repeat_across_stores() {
        let mut a = Store::new();
        let mut b = Store::new();
        let customer = a.new_id_for("customer", "cus");
        assert!(customer.starts_with("cus_") && customer.len() == 4 + 14);
        let intent = a.new_id_for("payment_intent", "pi");
        assert!(intent.starts_with("pi_") && intent.len() == 3 + 24);
        assert_ne!(customer, b.new_id_for("customer", "cus"));
        assert_ne!(intent, b.new_id_for("payment_intent", "pi"));
    }

    #[test]
    fn lists_newest_first_and_removal_keeps_order() {
        let mut store = Store::new();
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
