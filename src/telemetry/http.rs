//! The metrics port: `/metrics` (Prometheus text format), `/status` (a live HTML page with no
//! external assets) and `/status.json` (the page's figures), served by axum on a port of its own.
//! Read-only: nothing here changes the service.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::board::{Board, Point, SAMPLE_INTERVAL};
use super::figures::ConnectionFigures;
use super::metrics::metrics;
use super::prometheus;

/// The status page, one self-contained file.
const STATUS_PAGE: &str = include_str!("status.html");

/// The running metrics port; dropping it stops the server.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Serves the board's figures on `listener` (bind it first; `127.0.0.1:0` in tests).
    pub fn start(listener: TcpListener, board: Arc<Board>) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let router = Router::new()
            .route("/", get(|| async { Redirect::to("/status") }))
            .route("/metrics", get(metrics_text))
            .route("/status", get(status_page))
            .route("/status.json", get(status_json))
            .with_state(board);
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::error!(%error, "metrics port stopped");
            }
        });
        tracing::info!(%addr, "serving /metrics, /status and /status.json");
        Ok(Self { addr, task })
    }

    /// Where the port listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn metrics_text(State(board): State<Arc<Board>>) -> Response {
    let text = prometheus::render(metrics(), &board.figures());
    ([(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)], text).into_response()
}

async fn status_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
            ),
        ],
        STATUS_PAGE,
    )
        .into_response()
}

/// `/status.json`: what the page shows.
#[derive(Debug, Serialize)]
pub struct StatusDocument {
    /// Milliseconds since the Unix epoch.
    pub generated_at: u64,
    /// Seconds between two history points.
    pub sample_interval_seconds: u64,
    pub connections: Vec<ConnectionStatus>,
}

/// One connection on the status page.
#[derive(Debug, Serialize)]
pub struct ConnectionStatus {
    #[serde(flatten)]
    pub figures: ConnectionFigures,
    /// The last sample's admitted calls per second.
    pub admitted_per_second: f64,
    /// The last sample's throttled calls per second.
    pub throttled_per_second: f64,
    /// Samples of the last minutes, oldest first.
    pub history: Vec<Point>,
}

async fn status_json(State(board): State<Arc<Board>>) -> Response {
    let connections = board
        .figures()
        .into_iter()
        .map(|figures| {
            let history = board.history(&figures.connection);
            let last = history.last().copied();
            ConnectionStatus {
                admitted_per_second: last.map_or(0.0, |p| p.admitted),
                throttled_per_second: last.map_or(0.0, |p| p.throttled),
                figures,
                history,
            }
        })
        .collect();
    let document = StatusDocument {
        generated_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        sample_interval_seconds: SAMPLE_INTERVAL.as_secs(),
        connections,
    };
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(document)).into_response()
}
