//! Stripe as an upstream dialect: bearer keys with `Stripe-Version` and `Stripe-Account`,
//! `Idempotency-Key` on writes, `Stripe-Should-Retry` over the generic retry rules, cursor lists
//! (`limit`, `starting_after`, `data`, `has_more`), deleted stubs, Search, and one rate budget per
//! account, live or test mode by the key's prefix.

use http::HeaderMap;
use serde_json::{Map, Value};

use super::{error, gated, headers, search, verbs};
use crate::engine::conditions::Condition;
use crate::engine::request::UpstreamRequest;
use crate::engine::tier::SearchQuery;
use crate::spec::model::{EntitySpec, HttpMethod, OperationSpec, ParamLocation};
use crate::upstream::client::secret_header_value;
use crate::upstream::dialect::{
    ActionEffect, Credentials, Dialect, Idempotency, ListPage, Paging, RateAccount, ResponseMeta,
};
use crate::upstream::error::UpstreamError;
use crate::upstream::retry::{self, Decision};
use crate::violation::FieldViolation;

/// The name connector specs give (`"dialect": "stripe"`).
pub const NAME: &str = "stripe";

/// Stripe's most items per list page.
const MAX_LIMIT: usize = 100;
/// The list parameters of Stripe's cursor paging.
const LIMIT: &str = "limit";
const STARTING_AFTER: &str = "starting_after";

/// Stripe's rules for the generic engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct StripeDialect;

impl Dialect for StripeDialect {
    fn name(&self) -> &'static str {
        NAME
    }

    fn display_name(&self) -> &'static str {
        error::UPSTREAM
    }

    fn auth_headers(&self, credentials: &Credentials<'_>) -> Option<HeaderMap> {
        let header = |name: &str| name.parse::<http::HeaderName>().ok();
        let mut auth = HeaderMap::new();
        auth.insert(
            http::header::AUTHORIZATION,
            secret_header_value("Bearer ", credentials.api_key)?,
        );
        auth.insert(
            header(headers::HEADER_STRIPE_VERSION)?,
            credentials.api_version.parse().ok()?,
        );
        if let Some(account) = credentials.account_id {
            auth.insert(
                header(headers::HEADER_STRIPE_ACCOUNT)?,
                account.parse().ok()?,
            );
        }
        Some(auth)
    }

    fn action_effect(&self, action: &str) -> ActionEffect {
        verbs::action_effect(action)
    }

    fn check_api_key(&self, reference: &str, value: &str) -> Option<FieldViolation> {
        value.starts_with("pk_").then(|| {
            FieldViolation::of_rule(
                "api_key",
                "PUBLISHABLE_API_KEY",
                format!(
                    "{reference} holds a publishable key (`pk_…`); use a secret (`sk_…`) or restricted (`rk_…`) key"
                ),
            )
        })
    }

    fn check_account_id(&self, id: &str) -> Option<FieldViolation> {
        let valid = id.strip_prefix("acct_").is_some_and(|rest| {
            !rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
        });
        (!valid).then(|| {
            FieldViolation::of_rule(
                "account_id",
                "INVALID_ACCOUNT_ID",
                "a Stripe account ID looks like `acct_` followed by letters and digits; leave it unset for the key's own account",
            )
        })
    }

    fn idempotency(&self) -> Option<Idempotency> {
        Some(Idempotency {
            header: headers::HEADER_IDEMPOTENCY_KEY,
            max_key_len: headers::MAX_IDEMPOTENCY_KEY_LEN,
        })
    }

    fn response_meta(&self, response: &HeaderMap) -> ResponseMeta {
        ResponseMeta {
            request_id: headers::request_id(response),
            replayed: response.get(headers::HEADER_IDEMPOTENT_REPLAYED).is_some(),
        }
    }

    /// `Stripe-Should-Retry` decides when present; otherwise the generic rules.
    fn classify(&self, status: u16, response: &HeaderMap) -> Decision {
        let retry_after = retry::retry_after(response);
        match headers::should_retry(response) {
            Some(false) => Decision::Done,
            Some(true) => Decision::Retry {
                at_least: retry_after,
            },
            None => retry::decide(retry::Outcome::Response {
                status,
                retry_after,
            }),
        }
    }

    fn error(&self, status: u16, body: &[u8], request_id: Option<String>) -> UpstreamError {
        error::from_response(status, body, request_id)
    }

    /// Stripe's own 401 always carries its JSON error body; a proxy's 407 (or the 401 some proxies
    /// answer instead) does not.
    fn answered_by_proxy(&self, status: u16, body: &[u8]) -> bool {
        (status == 407 || status == 401) && !error::is_error_body(body)
    }

    fn max_page_size(&self) -> usize {
        MAX_LIMIT
    }

    fn paging(&self) -> Paging {
        Paging::AfterItem
    }

    /// A few of Stripe's lists (report types, an account's capabilities) take no `limit` and no
    /// cursor: they answer everything at once.
    fn page_inputs(
        &self,
        op: &OperationSpec,
        inputs: &mut Map<String, Value>,
        size: u64,
        cursor: Option<&str>,
    ) -> bool {
        if op.param_by_source(ParamLocation::Query, LIMIT).is_some() {
            inputs.insert(LIMIT.to_owned(), Value::from(size));
        }
        let paged = op
            .param_by_source(ParamLocation::Query, STARTING_AFTER)
            .is_some();
        if let Some(after) = cursor.filter(|_| paged) {
            inputs.insert(STARTING_AFTER.to_owned(), Value::String(after.to_owned()));
        }
        paged
    }

    /// `{data, has_more}`: the next page starts after the last item.
    fn list_page(&self, mut body: Map<String, Value>, _cursor: Option<&str>) -> ListPage {
        let items = match body.remove("data") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        let has_more = body
            .get("has_more")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let next = items
            .last()
            .and_then(|item| item.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .filter(|_| has_more);
        ListPage { items, next }
    }

    /// Stripe still answers some deleted objects (a deleted customer) with a stub
    /// `{id, object, deleted: true}`.
    fn deleted_stub_field(&self) -> Option<&'static str> {
        Some("deleted")
    }

    /// Stripe's answer for a missing object.
    fn deleted_error(&self, what: &str, request_id: Option<String>) -> UpstreamError {
        UpstreamError {
            upstream: error::UPSTREAM.to_owned(),
            http_status: 404,
            error_type: "invalid_request_error".to_owned(),
            code: Some("resource_missing".to_owned()),
            message: format!("{what} was deleted"),
            request_id,
            ..UpstreamError::default()
        }
    }

    /// Newest first.
    fn native_order(&self) -> Option<(&'static str, bool)> {
        Some(("created", true))
    }

    /// One customer: the cheapest authenticated read.
    fn status_probe(&self) -> UpstreamRequest {
        UpstreamRequest {
            method: HttpMethod::Get,
            path: "/v1/customers".to_owned(),
            query: vec![(LIMIT.to_owned(), "1".to_owned())],
            form: Vec::new(),
            json: None,
            operation_id: "GetCustomers".to_owned(),
            path_template: "/v1/customers".to_owned(),
        }
    }

    /// The connected account when one is named, else the key (by fingerprint); live-mode keys
    /// (`sk_live_…`, `rk_live_…`) at the live rate.
    fn rate_account(&self, credentials: &Credentials<'_>) -> RateAccount {
        RateAccount {
            key: credentials.account_id.map_or_else(
                || {
                    format!(
                        "key:{}",
                        crate::engine::paging::fingerprint(&[credentials.api_key])
                    )
                },
                str::to_owned,
            ),
            live: super::is_live_key(credentials.api_key),
        }
    }

    /// Gated parameters the pinned API version does not describe (`gated`).
    fn withheld(&self, operation_id: &str, key: &str) -> Option<&'static str> {
        gated::withheld(operation_id, key)
    }

    fn search(&self, entity: &EntitySpec, condition: &Condition) -> Option<SearchQuery> {
        search::push_down(entity, condition)
    }

    fn search_request(
        &self,
        entity: &EntitySpec,
        query: &SearchQuery,
        limit: u64,
        page: Option<&str>,
    ) -> Option<UpstreamRequest> {
        search::request(entity, query, limit, page)
    }

    /// `{data, has_more, next_page}`.
    fn search_page(&self, mut body: Map<String, Value>) -> ListPage {
        let items = match body.remove("data") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        let has_more = body
            .get("has_more")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let next = body
            .get("next_page")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .filter(|_| has_more);
        ListPage { items, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderValue;
    use std::time::Duration;

    fn with(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn stripe_should_retry_overrides_the_generic_rules() {
        let dialect = StripeDialect;
        assert_eq!(
            dialect.classify(503, &with(&[(headers::HEADER_SHOULD_RETRY, "false")])),
            Decision::Done
        );
        assert_eq!(
            dialect.classify(
                400,
                &with(&[(headers::HEADER_SHOULD_RETRY, "true"), ("retry-after", "1")])
            ),
            Decision::Retry {
                at_least: Some(Duration::from_secs(1))
            }
        );
        assert_eq!(
            dialect.classify(429, &HeaderMap::new()),
            Decision::Retry { at_least: None }
        );
        assert_eq!(dialect.classify(402, &HeaderMap::new()), Decision::Done);
    }

    #[test]
    fn a_list_page_continues_after_its_last_item_while_stripe_has_more() {
        let body = |has_more: bool| {
            serde_json::json!({"object": "list", "data": [{"id": "a"}, {"id": "b"}], "has_more": has_more})
                .as_object()
                .cloned()
                .unwrap()
        };
        let page = StripeDialect.list_page(body(true), None);
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.next.as_deref(), Some("b"));
        assert_eq!(StripeDialect.list_page(body(false), None).next, None);
    }

    #[test]
    fn deleted_stubs_are_missing_objects() {
        assert_eq!(StripeDialect.deleted_stub_field(), Some("deleted"));
        let error = StripeDialect.deleted_error("Customer cus_1", None);
        assert_eq!(
            (error.http_status, error.code.as_deref()),
            (404, Some("resource_missing"))
        );
        assert_eq!(error.message, "Customer cus_1 was deleted");
    }

    #[test]
    fn a_proxy_refusal_has_no_stripe_error_body() {
        assert!(StripeDialect.answered_by_proxy(407, b"Proxy Authentication Required"));
        assert!(StripeDialect.answered_by_proxy(401, b"<html>no</html>"));
        assert!(!StripeDialect.answered_by_proxy(
            401,
            br#"{"error":{"type":"invalid_request_error","message":"Invalid API Key"}}"#
        ));
    }

    #[test]
    fn budgets_go_by_account_else_by_key_and_live_keys_are_live() {
        let credentials = Credentials {
            api_key: "sk_live_abc",
            account_id: None,
            api_version: "2023-08-16",
        };
        let account = StripeDialect.rate_account(&credentials);
        assert!(account.live && account.key.starts_with("key:"));
        assert!(!account.key.contains("sk_live_abc"));
        let connected = StripeDialect.rate_account(&Credentials {
            account_id: Some("acct_1"),
            api_key: "sk_test_abc",
            ..credentials
        });
        assert_eq!(connected.key, "acct_1");
        assert!(!connected.live);
    }
}
