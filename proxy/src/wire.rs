//! Errors made by the proxy itself, as JSON in the client's wire format: HTTP answers, not
//! Rust errors (those are [`crate::error::ProxyError`]).
//!
//! Anthropic: `{"type":"error","error":{"type":…,"message":…}}`;
//! OpenAI (also used for other paths, it is Z.AI's own envelope):
//! `{"error":{"message":…,"type":…,"code":…}}`. Messages never contain the API key (they are
//! fixed texts written here, plus numbers).

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};

pub use crate::routes::WireFormat;

/// The errors the proxy produces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalFailure {
    /// 413: body over `MAX_REQUEST_BODY_BYTES`.
    BodyTooLarge,
    /// 400: the request body could not be read.
    BadRequest,
    /// 502: the upstream could not be reached or broke the exchange.
    UpstreamUnreachable,
    /// 504: the upstream did not answer within `UPSTREAM_TIMEOUT`.
    UpstreamTimeout,
    /// 503: `MAX_WORKERS` requests are already in flight or queued.
    AtCapacity,
    /// 503: the proxy is shutting down.
    ShuttingDown,
}

impl LocalFailure {
    /// HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::AtCapacity | Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Anthropic `error.type`.
    pub fn anthropic_type(self) -> &'static str {
        match self {
            Self::BodyTooLarge => "request_too_large",
            Self::BadRequest => "invalid_request_error",
            Self::UpstreamUnreachable => "api_error",
            Self::UpstreamTimeout => "timeout_error",
            Self::AtCapacity | Self::ShuttingDown => "overloaded_error",
        }
    }

    /// OpenAI `error.type`.
    pub fn openai_type(self) -> &'static str {
        match self {
            Self::BodyTooLarge | Self::BadRequest => "invalid_request_error",
            Self::UpstreamUnreachable | Self::UpstreamTimeout => "upstream_error",
            Self::AtCapacity | Self::ShuttingDown => "server_error",
        }
    }

    /// OpenAI `error.code`.
    pub fn openai_code(self) -> &'static str {
        match self {
            Self::BodyTooLarge => "request_too_large",
            Self::BadRequest => "bad_request",
            Self::UpstreamUnreachable => "upstream_unreachable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::AtCapacity => "at_capacity",
            Self::ShuttingDown => "shutting_down",
        }
    }

    /// The response for a client speaking `format`.
    pub fn response(self, format: WireFormat, message: &str) -> Response {
        let body = match format {
            WireFormat::Anthropic => anthropic_body(self.anthropic_type(), message),
            WireFormat::OpenAi | WireFormat::Other => {
                openai_body(self.openai_type(), self.openai_code(), message)
            }
        };
        json_response(self.status(), body)
    }
}

fn anthropic_body(error_type: &str, message: &str) -> String {
    serde_json::json!({"type": "error", "error": {"type": error_type, "message": message}})
        .to_string()
}

fn openai_body(error_type: &str, code: &str, message: &str) -> String {
    serde_json::json!({"error": {"message": message, "type": error_type, "code": code}}).to_string()
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A JSON error in the client's format with any status and type (for other modules, e.g.
/// admin or 429s). For OpenAI bodies `code` is `error_type` too.
pub fn error_response(
    format: WireFormat,
    status: StatusCode,
    error_type: &str,
    message: &str,
) -> Response {
    let body = match format {
        WireFormat::Anthropic => anthropic_body(error_type, message),
        WireFormat::OpenAi | WireFormat::Other => openai_body(error_type, error_type, message),
    };
    json_response(status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_client_shape() {
        let a: serde_json::Value =
            serde_json::from_str(&anthropic_body("request_too_large", "too \"big\""))
                .expect("json");
        assert_eq!(a["type"], "error");
        assert_eq!(a["error"]["type"], "request_too_large");
        assert_eq!(a["error"]["message"], "too \"big\"");
        let o: serde_json::Value =
            serde_json::from_str(&openai_body("upstream_error", "upstream_timeout", "slow"))
                .expect("json");
        assert_eq!(o["error"]["code"], "upstream_timeout");
        assert_eq!(o["error"]["type"], "upstream_error");
    }

    #[test]
    fn statuses_are_honest() {
        assert_eq!(LocalFailure::BodyTooLarge.status(), 413);
        assert_eq!(LocalFailure::UpstreamUnreachable.status(), 502);
        assert_eq!(LocalFailure::UpstreamTimeout.status(), 504);
        assert_eq!(LocalFailure::AtCapacity.status(), 503);
    }
}
