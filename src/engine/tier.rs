//! Which upstream read serves a list: tier 1, the entity type's list endpoint with what its
//! parameters can filter (equalities, `Created` ranges), or tier 2, the upstream's search (e.g.
//! Stripe's Search) with the query the dialect makes of the clause. Search is eventually consistent — an object
//! created or changed in the last minute or so may be missing — so it is used only when the
//! caller accepts that (`Consistency::Eventual`) and it narrows the read more than tier 1 does.
//! Either way the runtime evaluates the whole clause on every row read, so both tiers return the
//! same set (Search can only miss what it has not indexed yet). Pure, no I/O.

use super::EngineError;

/// A query in the upstream's search language, made by the dialect from a clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// The query text, e.g. Stripe's `email~'rosen' AND metadata['plan']:'pro'`.
    pub text: String,
    /// Clauses in the query (at least one).
    pub clauses: usize,
}

/// The consistency a list needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Consistency {
    /// Read-your-writes: never use Search. The default.
    #[default]
    Strong,
    /// Accept that objects created or changed in the last minute may be missing, to let the
    /// runtime use the upstream's search (Stripe's Search) when it narrows the read.
    Eventual,
}

/// An upstream read tier, for forcing one (tests and benchmarks compare them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// The list endpoint with the parameters it filters by.
    List,
    /// The upstream's search (Stripe's Search).
    Search,
}

/// The read chosen for one list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    List,
    Search(SearchQuery),
}

/// What tier 1 makes of the clause.
#[derive(Debug, Clone, Copy)]
pub struct ListPushdown {
    /// The list parameters evaluate the whole clause: nothing is filtered here.
    pub complete: bool,
    /// The list parameters include an equality (e.g. `email`, `customer`), which narrows a read
    /// about as much as Search would.
    pub has_equality: bool,
}

/// Chooses the read: a forced tier wins; otherwise Search only under eventual consistency, when
/// the clause maps onto it and tier 1 neither evaluates the whole clause nor filters by an
/// equality.
pub fn choose(
    forced: Option<Tier>,
    consistency: Consistency,
    list: ListPushdown,
    search: Option<SearchQuery>,
) -> Result<Read, EngineError> {
    match (forced, search) {
        (Some(Tier::List), _) => Ok(Read::List),
        (Some(Tier::Search), Some(query)) => Ok(Read::Search(query)),
        (Some(Tier::Search), None) => Err(EngineError::invalid(
            "conditions",
            "cannot be served by the upstream's Search (no part of it maps onto the search fields)",
        )),
        (None, Some(query))
            if consistency == Consistency::Eventual && !list.complete && !list.has_equality =>
        {
            Ok(Read::Search(query))
        }
        (None, _) => Ok(Read::List),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query() -> Option<SearchQuery> {
        Some(SearchQuery {
            text: "email~'rosen'".to_owned(),
            clauses: 1,
        })
    }

    const RESIDUAL: ListPushdown = ListPushdown {
        complete: false,
        has_equality: false,
    };

    #[test]
    fn strong_consistency_never_searches() {
        assert_eq!(
            choose(None, Consistency::Strong, RESIDUAL, query()).unwrap(),
            Read::List
        );
        assert!(matches!(
            choose(None, Consistency::Eventual, RESIDUAL, query()).unwrap(),
            Read::Search(_)
        ));
    }

    #[test]
    fn search_is_used_only_where_it_narrows_more_than_list_parameters() {
        let complete = ListPushdown {
            complete: true,
            has_equality: false,
        };
        let equality = ListPushdown {
            complete: false,
            has_equality: true,
        };
        for list in [complete, equality] {
            assert_eq!(
                choose(None, Consistency::Eventual, list, query()).unwrap(),
                Read::List
            );
        }
        assert_eq!(
            choose(None, Consistency::Eventual, RESIDUAL, None).unwrap(),
            Read::List
        );
        assert!(choose(Some(Tier::Search), Consistency::Strong, complete, None).is_err());
        assert_eq!(
            choose(Some(Tier::List), Consistency::Eventual, RESIDUAL, query()).unwrap(),
            Read::List
        );
    }
}
