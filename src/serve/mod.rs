//! `mnist-nn serve`: a trained model behind a web page to draw digits on, and a JSON API.
//!
//! - [`predictor`]: the model, with a pool of networks so that requests run side by side;
//! - [`test_report`]: its answers on the test set, for the confusion matrix and the mistakes;
//! - [`api`]: the JSON routes and their errors;
//! - the pages (`page/`): HTML, JavaScript and CSS compiled into the binary, so the server needs
//!   no files and no network beside the model and the data set.
//!
//! The server is axum on tokio. [`router`] is the whole application; [`serve`] runs it on a
//! listener until a shutdown signal.

pub mod api;
pub mod predictor;
pub mod test_report;

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

use api::ModelInfo;
use predictor::Predictor;
use test_report::TestReport;

/// The largest request body accepted by default: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// What every request can read.
pub struct AppState {
    /// The model.
    pub predictor: Predictor,
    /// Its answers on the test set.
    pub report: TestReport,
    /// Its description.
    pub model: ModelInfo,
}

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The pages' files: where each is served, its content type and its text.
const ASSETS: [(&str, &str, &str); 6] = [
    ("/", HTML, include_str!("page/draw.html")),
    ("/mistakes", HTML, include_str!("page/mistakes.html")),
    ("/draw.js", JAVASCRIPT, include_str!("page/draw.js")),
    ("/mistakes.js", JAVASCRIPT, include_str!("page/mistakes.js")),
    ("/shared.js", JAVASCRIPT, include_str!("page/shared.js")),
    ("/style.css", CSS, include_str!("page/style.css")),
];

/// The whole application: pages, API, and JSON errors for everything else. Bodies over
/// `body_limit` bytes are refused with 413.
pub fn router(state: Arc<AppState>, body_limit: usize) -> Router {
    let pages = ASSETS
        .iter()
        .fold(Router::new(), |router, &(path, content_type, text)| {
            router.route(
                path,
                get(move || async move {
                    ([(header::CONTENT_TYPE, content_type)], text).into_response()
                }),
            )
        });
    pages
        .route("/api/predict", post(api::predict))
        .route("/api/model", get(api::model))
        .route("/api/confusion", get(api::confusion))
        .route("/api/mistakes", get(api::mistakes))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Answers requests on `listener` with [`router`] until `shutdown` completes, then lets the
/// requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    body_limit: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state, body_limit))
        .with_graceful_shutdown(shutdown)
        .await
}
