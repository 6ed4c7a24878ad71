//! The routes: `/validate` (always answers an AdmissionReview), `/healthz`, `/readyz` and `/metrics`.
//! The handler is thin: read the body within its limit, decode, let `admission` and the engine decide,
//! count and log the outcome, answer.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::ConnectionShutdown;
use kube::core::admission::{AdmissionResponse, Operation};
use tracing::Instrument;

use super::body::{self, BodyLimits};
use super::metrics::Metrics;
use super::reload::PolicyStore;
use crate::admission::{self, BadReview, ReviewError, ReviewRequest};
use crate::engine::Decision;
use crate::resolve::Resolver;
use crate::workload::WorkloadKind;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub policies: Arc<PolicyStore>,
    /// Registry resolution; `None` runs the static rules only.
    pub resolver: Option<Arc<Resolver>>,
    /// Limits on request bodies (size, time, shared memory).
    pub body: BodyLimits,
    pub metrics: Arc<Metrics>,
}

/// The routes, with no TLS or listener: tests drive it with `oneshot`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.policies.error() {
        None => (StatusCode::OK, "ok").into_response(),
        Some(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: policies invalid: {error}\n"),
        )
            .into_response(),
    }
}

/// JSON response with the given status.
fn review_response(status: StatusCode, response: AdmissionResponse) -> Response {
    match admission::encode(&response) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the AdmissionReview response: {error}"),
        )
            .into_response(),
    }
}

/// `POST /validate`: always answers with an AdmissionReview. A usable request gets HTTP 200 with the
/// verdict; a body that is not an AdmissionReview gets 400 (413 when too large) with `allowed: false` and
/// the reason, so a misconfigured caller sees why and the apiserver applies its `failurePolicy`.
async fn validate(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let body = match read_body(request, &state.body).await {
        Ok(body) => body,
        Err((status, bad)) => return review_response(status, admission::reject(&bad)),
    };
    let mut request = match admission::decode(&body.bytes) {
        Ok(request) => request,
        Err(bad) => {
            state.metrics.invalid_review();
            tracing::warn!(error = %bad.error, uid = bad.uid.as_deref().unwrap_or(""), "bad AdmissionReview");
            return review_response(StatusCode::BAD_REQUEST, admission::reject(&bad));
        }
    };
    let review = &request.review;
    let span = tracing::info_span!(
        "admission",
        uid = %review.uid,
        kind = %review.kind.kind,
        namespace = review.namespace.as_deref().unwrap_or(""),
        // Not `name`: a JSON log writes the span's own name under that key.
        object = %review.name,
        operation = ?review.operation,
        dry_run = review.dry_run,
    );
    async {
        let started = Instant::now();
        let in_flight = state.metrics.in_flight();
        let policies = state.policies.current();
        let (response, decision) =
            admission::review(&mut request, &policies, state.resolver.as_deref()).await;
        drop(in_flight);
        record(
            &state.metrics,
            &request.review,
            &response,
            decision.as_ref(),
            started.elapsed(),
        );
        review_response(StatusCode::OK, response)
    }
    .instrument(span)
    .await
}

/// The body, read within the limits; otherwise the status and the reason to answer with. A body too
/// slow to arrive also closes its connection (gracefully: other HTTP/2 streams finish).
async fn read_body(
    request: axum::extract::Request,
    limits: &BodyLimits,
) -> Result<body::ReadBody, (StatusCode, BadReview)> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let connection = request.extensions().get::<ConnectionShutdown>().cloned();
    let error = match body::read(request.into_body(), declared, limits).await {
        Ok(read) => return Ok(read),
        Err(error) => error,
    };
    let status = match error {
        ReviewError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        ReviewError::Slow { .. } => {
            if let Some(connection) = connection {
                connection.graceful_shutdown();
            }
            StatusCode::REQUEST_TIMEOUT
        }
        ReviewError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    Err((status, BadReview { uid: None, error }))
}

/// Count the answered admission and write its one log line.
fn record(
    metrics: &Metrics,
    review: &ReviewRequest,
    response: &AdmissionResponse,
    decision: Option<&Decision>,
    elapsed: std::time::Duration,
) {
    let outcome = match (&response.allowed, &response.warnings) {
        (false, _) => "denied",
        (true, Some(w)) if !w.is_empty() => "warned",
        (true, _) => "allowed",
    };
    let kind = WorkloadKind::from_group_kind(&review.kind.group, &review.kind.kind)
        .map_or("other", |k| k.as_str());
    let verdict = decision.map(|d| &d.verdict);
    metrics.admission(
        kind,
        operation_label(&review.operation),
        outcome,
        verdict,
        elapsed,
    );
    let fired: Vec<String> = verdict
        .iter()
        .flat_map(|v| &v.findings)
        .map(|f| format!("{}:{}", f.rule, f.action))
        .collect();
    tracing::info!(
        verdict = outcome,
        rules = ?fired,
        warnings = response.warnings.as_ref().map_or(0, Vec::len),
        registry_calls = decision.map_or(0, |d| d.registry_calls),
        // Whole microseconds: `28.663`, never `28.662650000000003`.
        duration_ms = elapsed.as_micros() as f64 / 1000.0,
        "admission decided"
    );
}

/// The operation as a metric label.
fn operation_label(operation: &Operation) -> &'static str {
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}
