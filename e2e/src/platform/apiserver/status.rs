//! The API server's failure answers: `metav1.Status` bodies with the codes and reasons a real
//! API server gives (404 NotFound, 409 AlreadyExists/Conflict, 415 UnsupportedMediaType,
//! 422 Invalid, 400 BadRequest, 405 MethodNotAllowed, 503 ServiceUnavailable).

use std::fmt;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One failed request, answered as a `Status` object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `reason` (`NotFound`, `Conflict`, …).
    pub reason: &'static str,
    /// `message`.
    pub message: String,
    /// `details`, if any.
    pub details: Option<Value>,
}

fn qualified(kind: &str, group: &str) -> String {
    if group.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}.{group}")
    }
}

impl ApiError {
    /// 404: `deployments.apps "x" not found`.
    pub fn not_found(kind: &str, group: &str, name: &str) -> Self {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("{} \"{name}\" not found", qualified(kind, group)),
            details: Some(json!({"name": name, "group": group, "kind": kind})),
        }
    }

    /// 409 on create: the name is taken.
    pub fn already_exists(kind: &str, group: &str, name: &str) -> Self {
        ApiError {
            code: 409,
            reason: "AlreadyExists",
            message: format!("{} \"{name}\" already exists", qualified(kind, group)),
            details: Some(json!({"name": name, "group": group, "kind": kind})),
        }
    }

    /// 409 on update: a stale `resourceVersion`.
    pub fn conflict(kind: &str, group: &str, name: &str) -> Self {
        ApiError {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                qualified(kind, group)
            ),
            details: Some(json!({"name": name, "group": group, "kind": kind})),
        }
    }

    /// 422: a field is invalid.
    pub fn invalid(kind: &str, name: &str, field: &str, why: &str) -> Self {
        let kind_name = match kind {
            "deployments" => "Deployment",
            "services" => "Service",
            "scale" => "Scale",
            other => other,
        };
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("{kind_name}.apps \"{name}\" is invalid: {field}: {why}"),
            details: Some(json!({
                "name": name,
                "kind": kind_name,
                "causes": [{"reason": "FieldValueInvalid", "message": why, "field": field}],
            })),
        }
    }

    /// 415: a patch in a content type the server does not take.
    pub fn unsupported_media_type(got: &str) -> Self {
        ApiError {
            code: 415,
            reason: "UnsupportedMediaType",
            message: format!(
                "the body of the request was in an unknown format ({got:?}) - accepted media \
                 types include: application/json-patch+json, application/merge-patch+json, \
                 application/strategic-merge-patch+json"
            ),
            details: None,
        }
    }

    /// 400.
    pub fn bad_request(message: &str) -> Self {
        ApiError {
            code: 400,
            reason: "BadRequest",
            message: message.to_owned(),
            details: None,
        }
    }

    /// 405.
    pub fn method_not_allowed() -> Self {
        ApiError {
            code: 405,
            reason: "MethodNotAllowed",
            message: "the server does not allow this method on the requested resource".to_owned(),
            details: None,
        }
    }

    /// 503 from the pod proxy.
    pub fn unavailable(message: &str) -> Self {
        ApiError {
            code: 503,
            reason: "ServiceUnavailable",
            message: message.to_owned(),
            details: None,
        }
    }

    /// The `Status` object.
    pub fn body(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, Json(self.body())).into_response()
    }
}
