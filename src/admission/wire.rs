//! The AdmissionReview as it arrives: decoded in one pass into narrow types holding only what pullgate
//! reads (uid, kind, resource, subresource, operation, dry run, namespace, name), the object and the
//! old object read in the same pass as workload views ([`ObjectView`]: names, labels, the pod spec's
//! containers and pull context, whatever the kind). No `serde_json::Value` is built on the way.
//!
//! An object that does not have a workload's shape (another kind's `spec.containers` of another type,
//! say) fails that pass: the body is then decoded a second time keeping both objects as JSON text, so
//! that only a checked kind's malformed object is an error, said once the kind is known. A body that
//! fails both is looked at once more, to say why (and to keep its uid).

use kube::core::admission::Operation;
use kube::core::{GroupVersionKind, GroupVersionResource};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{BadReview, REVIEW_API_VERSION, ReviewError};
use crate::workload::{ObjectView, Workload, WorkloadError, WorkloadKind};

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

/// A decoded request: its fields, and the object and old object (absent or `null`: `None`).
#[derive(Debug, Clone)]
pub struct Request {
    pub review: ReviewRequest,
    pub object: Option<Object>,
    pub old_object: Option<Object>,
}

/// An object of a request: read as a workload in the envelope's pass, or its JSON text when it does not
/// have a workload's shape.
#[derive(Debug, Clone)]
pub enum Object {
    View(Box<ObjectView>),
    Text(Box<RawValue>),
}

impl Object {
    /// The object as a workload of `kind`: its pod spec where `kind` puts it, or why it cannot be read.
    pub fn workload(self, kind: WorkloadKind) -> Result<Workload, WorkloadError> {
        match self {
            Self::View(view) => Workload::from_view(kind, *view),
            Self::Text(text) => Workload::from_json(kind, text.get()),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a, O> {
    #[serde(default, borrow)]
    api_version: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(default = "none")]
    request: Option<RequestWire<O>>,
}

/// `#[serde(default)]` on a generic field would ask `O: Default`, which `&RawValue` is not.
fn none<T>() -> Option<T> {
    None
}

/// The request as sent: [`ReviewRequest`]'s fields and the objects, read in the envelope's pass.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestWire<O> {
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
    #[serde(default = "none")]
    object: Option<O>,
    #[serde(default = "none")]
    old_object: Option<O>,
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
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BadReview {
            uid: None,
            error: ReviewError::Empty,
        });
    }
    match serde_json::from_slice::<Envelope<ObjectView>>(body) {
        Ok(envelope) => request(envelope, |view| Object::View(Box::new(view))),
        Err(_) => match serde_json::from_slice::<Envelope<&RawValue>>(body) {
            Ok(envelope) => request(envelope, |text| Object::Text(text.to_owned())),
            Err(error) => Err(explain(body, error)),
        },
    }
}

/// The request of a decoded envelope, when the envelope is an AdmissionReview that has one.
fn request<O>(envelope: Envelope<O>, object: impl Fn(O) -> Object) -> Result<Request, BadReview> {
    let bad = |uid: Option<String>, error| BadReview { uid, error };
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
        object: new,
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
        object: new.map(&object),
        old_object: old_object.map(&object),
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
