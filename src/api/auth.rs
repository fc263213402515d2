//! The gRPC side of caller authentication: a tower layer that checks the bearer token against the
//! role the method needs (`crate::auth`) before the call reaches any service.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tower::{Layer, Service};

use crate::auth::{TokenTable, required_role};

/// Who made a call, for logs: the name of the caller's token (never its value), `anonymous`
/// when authentication is off, or `stdio` for the local MCP process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

impl Caller {
    /// The caller a token check found: the token's name, or `anonymous`.
    pub fn from_token(name: Option<String>) -> Self {
        Self(name.unwrap_or_else(|| "anonymous".to_owned()))
    }
}

/// Checks every call's token.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    tokens: Arc<TokenTable>,
}

impl AuthLayer {
    pub fn new(tokens: Arc<TokenTable>) -> Self {
        Self { tokens }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            tokens: self.tokens.clone(),
        }
    }
}

/// The service `AuthLayer` wraps around the router.
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    tokens: Arc<TokenTable>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for AuthService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        if let Some(role) = required_role(request.uri().path()) {
            let header = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match self.tokens.identify(header, role) {
                Ok(name) => {
                    request.extensions_mut().insert(Caller::from_token(name));
                }
                Err(error) => {
                    let response = tonic::Status::from(error).into_http();
                    return Box::pin(async move { Ok(response) });
                }
            }
        }
        // The clone is ready only after poll_ready; swap so the ready one serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(inner.call(request))
    }
}
