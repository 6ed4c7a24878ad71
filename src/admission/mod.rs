//! AdmissionReview in, AdmissionReview out: decoding the request body ([`wire`]: narrow types, no
//! `Value` tree), turning a request into the engine's [`Subject`], and turning a verdict into the
//! response. No policy logic lives here.

mod wire;

use kube::core::TypeMeta;
use kube::core::admission::{AdmissionResponse, Operation};
use kube::core::response::StatusSummary;
use serde::Serialize;

use crate::engine::{self, Decision, Subject};
use crate::policy::{self, Action, PolicySet, Verdict};
use crate::resolve::Resolver;
use crate::workload::{WorkloadError, WorkloadKind};

pub use wire::{Object, Request, ReviewRequest, decode};

/// The only AdmissionReview version pullgate registers for.
pub const REVIEW_API_VERSION: &str = "admission.k8s.io/v1";

/// All warnings of one response together stay under this many bytes (the apiserver truncates past 4 KiB).
pub const WARNINGS_BUDGET: usize = 4000;
/// A denial message stays under this many bytes; the rest is summarised in one line.
pub const DENY_BUDGET: usize = 8000;

/// Why a body is not a usable AdmissionReview request.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// Nothing was sent.
    #[error(
        "request body is empty; expected an AdmissionReview ({REVIEW_API_VERSION}) JSON object"
    )]
    Empty,
    /// The body is not JSON (or is cut short).
    #[error(
        "request body is not valid JSON ({0}); expected an AdmissionReview ({REVIEW_API_VERSION})"
    )]
    NotJson(#[source] serde_json::Error),
    /// JSON, but of another type or version.
    #[error(
        "expected apiVersion {REVIEW_API_VERSION} and kind AdmissionReview, found apiVersion {api_version:?} and kind {kind:?}"
    )]
    WrongType { api_version: String, kind: String },
    /// An AdmissionReview whose `request` is missing or has the wrong shape.
    #[error("AdmissionReview request is invalid: {0}")]
    InvalidRequest(String),
    /// The body is larger than the configured limit.
    #[error("request body is larger than the {limit}-byte limit")]
    TooLarge { limit: usize },
    /// The body did not arrive within the read timeout.
    #[error("request body did not arrive within {seconds} s")]
    Slow { seconds: u64 },
    /// Too many large bodies are being received at once.
    #[error("too many large request bodies are being received at once; retry")]
    Busy,
}

/// A request that decoded but cannot be checked.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// CREATE and UPDATE always carry the object.
    #[error("{operation:?} request for {kind} carries no object")]
    MissingObject {
        operation: Operation,
        kind: WorkloadKind,
    },
    /// The object's pod spec cannot be read.
    #[error(transparent)]
    Workload(#[from] WorkloadError),
}

/// A body that could not be decoded, with the uid when it could still be read.
#[derive(Debug)]
pub struct BadReview {
    pub uid: Option<String>,
    pub error: ReviewError,
}

/// The workload kind a request is about, or `None` when pullgate has nothing to check
/// (DELETE, CONNECT, other kinds, subresources other than `pods/ephemeralcontainers`).
pub fn checked_kind(req: &ReviewRequest) -> Option<WorkloadKind> {
    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return None;
    }
    let kind = WorkloadKind::from_group_kind(&req.kind.group, &req.kind.kind)?;
    match req.sub_resource.as_deref() {
        None | Some("") => Some(kind),
        Some("ephemeralcontainers") if kind == WorkloadKind::Pod => Some(kind),
        Some(_) => None,
    }
}

/// The subject to decide on, or `None` when there is nothing to check. On UPDATE only what changed is
/// checked (see [`Subject::new`]). The objects are taken out of `req`.
pub fn subject(req: &mut Request) -> Result<Option<Subject>, RequestError> {
    let Some(kind) = checked_kind(&req.review) else {
        return Ok(None);
    };
    let object = req.object.take().ok_or(RequestError::MissingObject {
        operation: req.review.operation.clone(),
        kind,
    })?;
    let workload = object.workload(kind)?;
    let old = match (&req.review.operation, req.old_object.take()) {
        (Operation::Update, Some(old)) => old.workload(kind).ok(),
        _ => None,
    };
    let namespace = req
        .review
        .namespace
        .clone()
        .or_else(|| workload.namespace.clone())
        .unwrap_or_default();
    Ok(Some(Subject::new(workload, namespace, old.as_ref())))
}

/// The whole decision for one decoded request, with the engine's decision when there was one to make.
/// Without a resolver, only the static rules can fire. The objects are taken out of `req`.
pub async fn review(
    req: &mut Request,
    policies: &PolicySet,
    resolver: Option<&Resolver>,
) -> (AdmissionResponse, Option<Decision>) {
    match subject(req) {
        Ok(None) => (allow(&req.review), None),
        Ok(Some(subject)) => {
            let decision = engine::decide(&subject, policies, resolver).await;
            (respond(&req.review, &decision.verdict), Some(decision))
        }
        Err(error) => {
            let mut response = allow(&req.review).deny(format!("pullgate: {error}"));
            response.result.status = Some(StatusSummary::Failure);
            response.result.code = 400;
            response.result.reason = "BadRequest".into();
            (response, None)
        }
    }
}

/// Turn a verdict into the response: denials carry 403 and one line per deny finding; warn findings
/// become Kubernetes warnings, on denials too.
pub fn respond(req: &ReviewRequest, verdict: &Verdict) -> AdmissionResponse {
    let mut response = allow(req);
    let warnings = warnings(verdict);
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    if verdict.allowed() {
        return response;
    }
    let lines: Vec<String> = verdict
        .with_action(Action::Deny)
        .map(policy::Finding::deny_line)
        .collect();
    let lines = within(lines, DENY_BUDGET, "denials");
    let mut response = response.deny(lines.join("\n"));
    response.result.status = Some(StatusSummary::Failure);
    response.result.code = 403;
    response.result.reason = "Forbidden".into();
    response
}

/// The answer that lets `req` through, with nothing to say yet.
pub fn allow(req: &ReviewRequest) -> AdmissionResponse {
    let mut response = AdmissionResponse::invalid("");
    response.uid = req.uid.clone();
    response.allowed = true;
    response.result = Default::default();
    response
}

/// The response body: `{"apiVersion", "kind", "response"}`, serialised straight from the response.
pub fn encode(response: &AdmissionResponse) -> serde_json::Result<Vec<u8>> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Review<'a> {
        api_version: &'a str,
        kind: &'a str,
        response: &'a AdmissionResponse,
    }
    let TypeMeta { api_version, kind } = &response.types;
    serde_json::to_vec(&Review {
        api_version,
        kind,
        response,
    })
}

/// Warning lines, each within Kubernetes' per-warning limit and all together within [`WARNINGS_BUDGET`].
fn warnings(verdict: &Verdict) -> Vec<String> {
    let all: Vec<String> = verdict
        .with_action(Action::Warn)
        .map(policy::Finding::warning_line)
        .collect();
    within(all, WARNINGS_BUDGET, "warnings")
}

/// The first lines that fit in `budget` bytes, then one line saying how many `what` were left out.
fn within(all: Vec<String>, budget: usize, what: &str) -> Vec<String> {
    let total = all.len();
    let mut kept = Vec::new();
    let mut used = 0;
    for (i, line) in all.into_iter().enumerate() {
        let reserve = if i + 1 < total { 64 } else { 0 };
        if used + line.len() + reserve > budget {
            kept.push(format!(
                "[pullgate] {} more {what} not shown; run `pullgate check` for all",
                total - i
            ));
            break;
        }
        used += line.len();
        kept.push(line);
    }
    kept
}

/// The answer to a body that is not a usable AdmissionReview: `allowed: false` with code 400 and the reason,
/// keeping the uid when it could be read.
pub fn reject(bad: &BadReview) -> AdmissionResponse {
    let mut response = AdmissionResponse::invalid(format!("pullgate: {}", bad.error));
    response.uid = bad.uid.clone().unwrap_or_default();
    response.result.code = match bad.error {
        ReviewError::TooLarge { .. } => 413,
        ReviewError::Slow { .. } => 408,
        ReviewError::Busy => 503,
        _ => 400,
    };
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::empty(b"".as_slice(), "request body is empty")]
    #[case::whitespace(b"  \n".as_slice(), "request body is empty")]
    #[case::garbage(b"\x00\xffnot json".as_slice(), "request body is not valid JSON")]
    #[case::truncated(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionRev"#.as_slice(), "request body is not valid JSON")]
    #[case::array(b"[1,2]".as_slice(), "expected apiVersion admission.k8s.io/v1 and kind AdmissionReview")]
    #[case::v1beta1(br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#.as_slice(), "found apiVersion \"admission.k8s.io/v1beta1\"")]
    #[case::no_request(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.as_slice(), "AdmissionReview request is invalid")]
    #[case::bad_request(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1"}}"#.as_slice(), "AdmissionReview request is invalid")]
    fn bad_bodies_get_a_clear_reason(#[case] body: &[u8], #[case] expected: &str) {
        let err = decode(body).expect_err("must not decode");
        assert!(err.error.to_string().contains(expected), "{}", err.error);
    }

    #[test]
    fn uid_is_kept_when_readable() {
        let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1"}}"#;
        let bad = decode(body).expect_err("invalid");
        let response = reject(&bad);
        assert_eq!(response.uid, "u1");
        assert!(!response.allowed);
        assert_eq!(response.result.code, 400);
    }

    #[test]
    fn denials_are_summarised_past_the_budget() {
        let finding = |i: usize| policy::Finding {
            container: format!("c{i}"),
            image: format!("r.example/app{i}"),
            image_path: format!("spec.containers[{i}].image"),
            rule: policy::RuleId::TagNotLatest,
            action: Action::Deny,
            message: "m".repeat(200),
            fix: "f".into(),
        };
        let verdict = Verdict {
            findings: (0..1000).map(finding).collect(),
        };
        let body = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "CREATE", "userInfo": {}}
        });
        let request = decode(body.to_string().as_bytes()).expect("request").review;
        let response = respond(&request, &verdict);
        let message = &response.result.message;
        assert!(message.len() <= DENY_BUDGET + 100, "{}", message.len());
        assert!(
            message.ends_with("more denials not shown; run `pullgate check` for all"),
            "{}",
            &message[message.len() - 120..]
        );
        assert!(message.starts_with("container \"c0\""), "{message}");
    }

    #[test]
    fn warnings_stay_within_the_budget() {
        let finding = policy::Finding {
            container: "c".into(),
            image: "i".into(),
            image_path: "spec.containers[0].image".into(),
            rule: policy::RuleId::PullPolicy,
            action: Action::Warn,
            message: "x".repeat(300),
            fix: "y".into(),
        };
        let verdict = Verdict {
            findings: vec![finding; 100],
        };
        let lines = warnings(&verdict);
        let total: usize = lines.iter().map(String::len).sum();
        assert!(total <= WARNINGS_BUDGET + 100, "{total}");
        assert!(
            lines
                .iter()
                .all(|l| l.chars().count() <= policy::WARNING_MAX)
        );
        assert!(
            lines
                .last()
                .is_some_and(|l| l.contains("more warnings not shown"))
        );
    }
}
