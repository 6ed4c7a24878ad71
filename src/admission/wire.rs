//! The AdmissionReview as it arrives: decoded in one pass into narrow types holding only what pullgate
//! reads (uid, kind, resource, subresource, operation, dry run, namespace, name), with the object and
//! the old object kept as their raw JSON text for [`Workload::from_json`](crate::workload::Workload)
//! to read once the kind is known. No `serde_json::Value` is built on the way; only a body that fails
//! to decode is looked at a second time, to say why (and to keep its uid).

use kube::core::admission::Operation;
use kube::core::{GroupVersionKind, GroupVersionResource};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{BadReview, REVIEW_API_VERSION, ReviewError};

/// The fields of an AdmissionReview request pullgate reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewRequest {
    pub uid: String,
    pub kind: GroupVersionKind,
    pub resource: GroupVersionResource,
    pub sub_resource: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub operation: Operation,
    pub dry_run: bool,
}

/// A decoded request: its fields, and the object and old object as JSON text (absent or `null`:
/// `None`).
#[derive(Debug, Clone)]
pub struct Request {
    pub review: ReviewRequest,
    pub object: Option<Box<RawValue>>,
    pub old_object: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(default, borrow)]
    api_version: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    request: Option<RequestWire<'a>>,
}

/// The request as sent: [`ReviewRequest`]'s fields and the raw objects, read in the envelope's pass.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestWire<'a> {
    uid: String,
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    #[serde(default)]
    dry_run: bool,
    #[serde(default, borrow)]
    object: Option<&'a RawValue>,
    #[serde(default, borrow)]
    old_object: Option<&'a RawValue>,
}

/// What an undecodable body still says: its type and uid, when they can be read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Loose {
    #[serde(default)]
    api_version: Option<serde_json::Value>,
    #[serde(default)]
    kind: Option<serde_json::Value>,
    #[serde(default)]
    request: Option<serde_json::Value>,
}

/// Decode a request body.
pub fn decode(body: &[u8]) -> Result<Request, BadReview> {
    let bad = |uid: Option<String>, error| BadReview { uid, error };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad(None, ReviewError::Empty));
    }
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(error) => return Err(explain(body, error)),
    };
    let (api_version, kind) = (
        envelope.api_version.unwrap_or_default(),
        envelope.kind.unwrap_or_default(),
    );
    let uid = envelope.request.as_ref().map(|r| r.uid.clone());
    if api_version != REVIEW_API_VERSION || kind != "AdmissionReview" {
        let (api_version, kind) = (api_version.into_owned(), kind.into_owned());
        return Err(bad(uid, ReviewError::WrongType { api_version, kind }));
    }
    let Some(request) = envelope.request else {
        let reason = "it has no `request`".into();
        return Err(bad(None, ReviewError::InvalidRequest(reason)));
    };
    let RequestWire {
        uid,
        kind,
        resource,
        sub_resource,
        name,
        namespace,
        operation,
        dry_run,
        object,
        old_object,
    } = request;
    Ok(Request {
        review: ReviewRequest {
            uid,
            kind,
            resource,
            sub_resource,
            name,
            namespace,
            operation,
            dry_run,
        },
        object: object.map(RawValue::to_owned),
        old_object: old_object.map(RawValue::to_owned),
    })
}

/// Why a body did not decode: not JSON at all, JSON of another type, or a request of the wrong shape
/// (keeping its uid when it can be read).
fn explain(body: &[u8], error: serde_json::Error) -> BadReview {
    let Ok(loose) = serde_json::from_slice::<Loose>(body) else {
        let error = match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Err(not_json) => ReviewError::NotJson(not_json),
            // JSON, but not an object: no apiVersion, no kind.
            Ok(_) => ReviewError::WrongType {
                api_version: String::new(),
                kind: String::new(),
            },
        };
        return BadReview { uid: None, error };
    };
    let text = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let uid = loose
        .request
        .as_ref()
        .and_then(|r| r.get("uid"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let (api_version, kind) = (text(&loose.api_version), text(&loose.kind));
    if api_version != REVIEW_API_VERSION || kind != "AdmissionReview" {
        return BadReview {
            uid,
            error: ReviewError::WrongType { api_version, kind },
        };
    }
    BadReview {
        uid,
        error: ReviewError::InvalidRequest(error.to_string()),
    }
}
