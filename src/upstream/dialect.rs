//! The upstream dialect: what one vendor's REST API expects beyond what its connector spec says.
//!
//! The spec describes entities, fields and operations; the dialect says how a request is
//! authorised, how a write is made safe to retry, whether a failed response is worth retrying,
//! how a list page is read and the next one asked for, what an error body means, how the account
//! a rate limit applies to is named, and which cheap call proves a key works. The engine and the
//! client call these hooks and nothing vendor-specific (vector's `HttpClientContext`).
//!
//! A connector names its dialect in its spec (`connector.json`, `"dialect": "stripe"`);
//! `crate::dialects` maps the names built into the runtime to implementations (Stripe's is
//! `crate::stripe::dialect`). Embedding code may pass its own to `UpstreamClient::new`.

use std::fmt::Debug;

use http::HeaderMap;
use serde_json::{Map, Value};

use super::error::UpstreamError;
use super::retry::{self, Decision, Outcome};
use crate::engine::conditions::Condition;
use crate::engine::request::UpstreamRequest;
use crate::engine::tier::SearchQuery;
use crate::spec::model::{EntitySpec, OperationSpec};
use crate::violation::FieldViolation;

/// What authorises a connection's requests. The key is a secret: a dialect marks the header
/// carrying it sensitive and never puts it anywhere else.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    pub api_key: &'a str,
    /// The account acted on, for upstreams where one key reaches several (Stripe Connect).
    pub account_id: Option<&'a str>,
    /// The API version the connector spec describes, for upstreams that pin one per request.
    pub api_version: &'a str,
}

/// How the upstream makes a write safe to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Idempotency {
    /// The request header carrying the key, e.g. `Idempotency-Key`.
    pub header: &'static str,
    /// The longest key the upstream accepts.
    pub max_key_len: usize,
}

/// What a response's headers say about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseMeta {
    /// The upstream's id of the request, surfaced in errors and traces.
    pub request_id: Option<String>,
    /// The upstream replayed a stored response for the idempotency key.
    pub replayed: bool,
}

/// How a list's pages are chained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// A page starts after an item's id (Stripe's `starting_after`), so a read can resume after
    /// any item it returned.
    AfterItem,
    /// A page is named by a token the previous page gave (a page number, an opaque cursor), so a
    /// read resumes at that page and skips the items already returned.
    PageToken,
}

/// One page of a list as the dialect reads it from a response body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListPage {
    /// The page's items, in the upstream's order.
    pub items: Vec<Value>,
    /// The cursor of the next page; `None` when this is the last one.
    pub next: Option<String>,
}

/// The account a rate limit applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateAccount {
    /// Connections with the same key share one budget; never the API key itself.
    pub key: String,
    /// Whether the account runs at the live rate (`nodes.stripe_budget.live_mode_rate`) rather
    /// than the stricter test rate.
    pub live: bool,
}

/// How far an action's effect reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionEffect {
    /// Changes an object in a way that can be redone or undone and moves no money.
    Reversible,
    /// Moves money, commits a document or ends an object's life: a guard rail must enable it
    /// explicitly.
    Destructive,
}

/// A vendor's rules, called by the generic engine and client.
pub trait Dialect: Send + Sync + Debug {
    /// The name a connector spec gives (`connector.json`'s `dialect`), e.g. `stripe`.
    fn name(&self) -> &'static str;

    /// The upstream's name in messages, e.g. `Stripe`, and (in upper or lower case) the prefix of
    /// its errors' reasons and metadata keys (`STRIPE_CARD_ERROR`, `stripe_code`).
    fn display_name(&self) -> &'static str;

    /// The headers that authorise and scope every request (the key, the pinned version, the
    /// account), built once per client; header values holding a secret are marked sensitive
    /// (see `upstream::client::secret_header_value`). `None` when a credential cannot be carried
    /// in a header.
    fn auth_headers(&self, credentials: &Credentials<'_>) -> Option<HeaderMap>;

    /// How writes carry an idempotency key; `None` when the upstream has none (a write is then
    /// never retried).
    fn idempotency(&self) -> Option<Idempotency>;

    /// The request id and replay flag of a response.
    fn response_meta(&self, headers: &HeaderMap) -> ResponseMeta;

    /// Whether a non-2xx response is worth trying again, and after how long at least. The
    /// default: conflicts, rate limits and server errors are, after any `Retry-After`.
    fn classify(&self, status: u16, headers: &HeaderMap) -> Decision {
        retry::decide(Outcome::Response {
            status,
            retry_after: retry::retry_after(headers),
        })
    }

    /// The vendor-neutral error of a non-2xx response body. A body that is not the upstream's
    /// error shape still becomes an error that says so, with the HTTP status.
    fn error(&self, status: u16, body: &[u8], request_id: Option<String>) -> UpstreamError;

    /// Whether a response that came through a proxy was the proxy refusing its credentials
    /// rather than the upstream answering. The default: HTTP 407 only.
    fn answered_by_proxy(&self, status: u16, _body: &[u8]) -> bool {
        status == 407
    }

    /// What the upstream's own rules say about a connection's key (its secret reference
    /// `reference`, for the message, and its value), e.g. a key kind it refuses. Default: nothing.
    fn check_api_key(&self, _reference: &str, _value: &str) -> Option<FieldViolation> {
        None
    }

    /// What the upstream's own rules say about a connection's account id. Default: nothing.
    fn check_account_id(&self, _account_id: &str) -> Option<FieldViolation> {
        None
    }

    /// How far the action named `action` reaches, for agent tools' hints and guard rails.
    /// Default: destructive, so an upstream whose verbs are unknown is guarded.
    fn action_effect(&self, _action: &str) -> ActionEffect {
        ActionEffect::Destructive
    }

    /// The largest page a list call may ask for.
    fn max_page_size(&self) -> usize;

    /// How list pages are chained.
    fn paging(&self) -> Paging;

    /// Adds the page size and the cursor of the page to read (`None`: the first) to a list call's
    /// inputs. Returns false when the operation takes no cursor: the upstream then answers the
    /// whole list at once, and pages are cut by the engine.
    fn page_inputs(
        &self,
        op: &OperationSpec,
        inputs: &mut Map<String, Value>,
        size: u64,
        cursor: Option<&str>,
    ) -> bool;

    /// Reads a list response: its items and the next page's cursor. `cursor` is the one the call
    /// was made with.
    fn list_page(&self, body: Map<String, Value>, cursor: Option<&str>) -> ListPage;

    /// The top-level field whose `true` marks an object the upstream answered as a deleted stub
    /// rather than a 404. The default: none are stubs.
    fn deleted_stub_field(&self) -> Option<&'static str> {
        None
    }

    /// The error for a deleted stub (`what` names it, e.g. `Customer cus_1`): for a connector the
    /// object no longer exists.
    fn deleted_error(&self, what: &str, request_id: Option<String>) -> UpstreamError {
        UpstreamError {
            upstream: self.display_name().to_owned(),
            http_status: 404,
            error_type: "not_found".to_owned(),
            message: format!("{what} was deleted"),
            request_id,
            ..UpstreamError::default()
        }
    }

    /// The upstream's own order of a list, as `(field source, descending)`, when it has one the
    /// engine can stream page by page instead of sorting (Stripe: newest first).
    fn native_order(&self) -> Option<(&'static str, bool)> {
        None
    }

    /// The cheapest authenticated read, for CheckStatus.
    fn status_probe(&self) -> UpstreamRequest;

    /// The account whose rate limit a connection's calls spend.
    fn rate_account(&self, credentials: &Credentials<'_>) -> RateAccount;

    /// Why the upstream's API takes a parameter its description leaves out, but the runtime
    /// does not send it (`key`: the caller's or the upstream's name), for the caller's field
    /// violation instead of "unknown parameter". The default: none are.
    fn withheld(&self, _operation_id: &str, _key: &str) -> Option<&'static str> {
        None
    }

    /// The search query serving `condition` on `entity`, when the upstream has a search the
    /// clause maps onto. The default: no search.
    fn search(&self, _entity: &EntitySpec, _condition: &Condition) -> Option<SearchQuery> {
        None
    }

    /// The search call for one page (`page`: the cursor the previous one gave).
    fn search_request(
        &self,
        _entity: &EntitySpec,
        _query: &SearchQuery,
        _limit: u64,
        _page: Option<&str>,
    ) -> Option<UpstreamRequest> {
        None
    }

    /// Reads a search response: its items and the next page's cursor.
    fn search_page(&self, body: Map<String, Value>) -> ListPage {
        self.list_page(body, None)
    }
}
