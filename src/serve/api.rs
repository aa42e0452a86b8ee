//! The JSON API: what the pages call, and what scripts can call.
//!
//! | route | answer |
//! | --- | --- |
//! | `POST /api/predict` | a [`Prediction`] for a PNG or JPEG body (`Content-Type: image/png` or `image/jpeg`, a picture of any size, prepared as `mnist-nn predict` prepares it) or for `{"pixels": [784 values 0-255]}` (`application/json`, a 28x28 image already prepared like the data set's, used as it is) |
//! | `GET /api/model` | the model's [`ModelInfo`] |
//! | `GET /api/confusion` | the test set's confusion matrix ([`Confusion`]) |
//! | `GET /api/mistakes?truth=T&predicted=P[&limit=N]` | the first `N` (default 100) test images of class `T` predicted as `P` ([`Cell`]) |
//!
//! Every error is `{"error": "what went wrong"}` with its status: 400 for an empty body, a picture
//! that cannot be decoded or has no ink, or bad JSON or query values; 413 for a body over the
//! server's limit; 415 for another content type; 404 for an unknown path; 405 for a wrong method.

use std::io::Cursor;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use image::{ImageFormat, ImageReader, Limits};
use serde::{Deserialize, Serialize};

use crate::data::{CLASSES, IMAGE_PIXELS};
use crate::model::Training;

use super::predictor::Prediction;
use super::test_report::TestImage;
use super::AppState;

/// Largest width or height of a picture sent to `/api/predict`: a small file can claim a huge
/// size, and decoding it would take that much memory.
const MAX_PICTURE_SIDE: u32 = 4096;
/// Test images `/api/mistakes` returns when no `limit` is given.
const DEFAULT_CELL_LIMIT: usize = 100;

/// An error answered as `{"error": message}` with `status`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with this status and explanation.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: &self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

/// A body refused before it was read whole: too large (413), or cut off (400).
impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> ApiError {
        let message = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => "the body is larger than this server accepts".into(),
            _ => rejection.body_text(),
        };
        ApiError::new(rejection.status(), message)
    }
}

/// `POST /api/predict`.
pub async fn predict(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Prediction>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The media type without parameters such as `; charset=utf-8`.
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let format = match media_type.as_str() {
        "image/png" => Some(ImageFormat::Png),
        "image/jpeg" => Some(ImageFormat::Jpeg),
        "application/json" => None,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported content type {content_type:?}: send image/png, image/jpeg or \
                     application/json ({{\"pixels\": [784 values 0-255]}})"
                ),
            ))
        }
    };
    let body = body?;
    if body.is_empty() {
        return Err(ApiError::bad_request("the body is empty"));
    }
    let prediction = match format {
        Some(format) => {
            let picture = decode_picture(&body, format)?;
            state
                .predictor
                .predict_picture(&picture)
                .map_err(ApiError::bad_request)?
        }
        None => state.predictor.predict_pixels(parse_pixels(&body)?),
    };
    Ok(Json(prediction))
}

/// Decodes a PNG or JPEG body, refusing pictures over [`MAX_PICTURE_SIDE`].
fn decode_picture(body: &[u8], format: ImageFormat) -> Result<image::DynamicImage, ApiError> {
    let mut reader = ImageReader::with_format(Cursor::new(body), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_PICTURE_SIDE);
    limits.max_image_height = Some(MAX_PICTURE_SIDE);
    reader.limits(limits);
    reader.decode().map_err(|e| {
        ApiError::bad_request(format!(
            "cannot decode the body as {}: {e}",
            format.to_mime_type()
        ))
    })
}

/// The JSON body `{"pixels": [...]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PixelsBody {
    pixels: Vec<u8>,
}

/// The 784 pixels of a JSON body.
fn parse_pixels(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let parsed: PixelsBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"pixels\": [784 integers 0-255]}}: {e}"
        ))
    })?;
    if parsed.pixels.len() != IMAGE_PIXELS {
        return Err(ApiError::bad_request(format!(
            "expected {IMAGE_PIXELS} pixels (28x28, row by row), got {}",
            parsed.pixels.len()
        )));
    }
    Ok(parsed.pixels)
}

/// What `GET /api/model` answers.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// The model file's name.
    pub file: String,
    /// The data set it was trained on (`mnist`, `fashion-mnist`, `kmnist`).
    pub dataset: &'static str,
    /// That data set's title.
    pub dataset_title: &'static str,
    /// The names of its classes, in order.
    pub classes: Vec<&'static str>,
    /// How a picture sent to `/api/predict` becomes the 28x28 image the network receives.
    pub preparation: &'static str,
    /// The layers, one line each.
    pub layers: Vec<String>,
    /// Trainable parameters.
    pub parameters: usize,
    /// How it was trained, in one line.
    pub trained: String,
    /// How it was trained, field by field.
    pub training: Training,
    /// Its accuracy on the test set, measured when the server started.
    pub test_accuracy: f64,
    /// Images in that test set.
    pub test_images: usize,
}

/// `GET /api/model`.
pub async fn model(State(state): State<Arc<AppState>>) -> Json<ModelInfo> {
    Json(state.model.clone())
}

/// What `GET /api/confusion` answers.
#[derive(Serialize)]
pub struct Confusion {
    /// The names of the classes, in order.
    pub classes: Vec<&'static str>,
    /// `matrix[truth][predicted]`: test images of class `truth` predicted as `predicted`.
    pub matrix: [[usize; CLASSES]; CLASSES],
    /// The fraction of test images predicted correctly.
    pub accuracy: f64,
}

/// `GET /api/confusion`.
pub async fn confusion(State(state): State<Arc<AppState>>) -> Json<Confusion> {
    Json(Confusion {
        classes: state.model.classes.clone(),
        matrix: *state.report.confusion(),
        accuracy: state.report.accuracy(),
    })
}

/// The query of `GET /api/mistakes`.
#[derive(Deserialize)]
pub struct CellQuery {
    truth: u8,
    predicted: u8,
    limit: Option<usize>,
}

/// What `GET /api/mistakes` answers.
#[derive(Serialize)]
pub struct Cell {
    /// The true class.
    pub truth: u8,
    /// The predicted class.
    pub predicted: u8,
    /// How many test images the cell holds.
    pub count: usize,
    /// The first of them.
    pub images: Vec<TestImage>,
}

/// `GET /api/mistakes`.
pub async fn mistakes(
    State(state): State<Arc<AppState>>,
    query: Result<Query<CellQuery>, QueryRejection>,
) -> Result<Json<Cell>, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "expected ?truth=T&predicted=P[&limit=N] with classes 0-9: {}",
            e.body_text()
        ))
    })?;
    let classes = 0..CLASSES as u8;
    if !classes.contains(&query.truth) || !classes.contains(&query.predicted) {
        return Err(ApiError::bad_request(format!(
            "classes are 0 to {}: got truth={} predicted={}",
            CLASSES - 1,
            query.truth,
            query.predicted
        )));
    }
    let limit = query.limit.unwrap_or(DEFAULT_CELL_LIMIT);
    Ok(Json(Cell {
        truth: query.truth,
        predicted: query.predicted,
        count: state.report.confusion()[query.truth as usize][query.predicted as usize],
        images: state.report.cell(query.truth, query.predicted, limit),
    }))
}

/// Any path the server does not know.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such page or route")
}

/// A known path asked with another method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this route does not answer that method",
    )
}
