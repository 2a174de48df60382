//! The one upstream call, over the pooled client (`crate::client`).
//!
//! [`send`] builds the upstream request (target URL + path + query, filtered headers, the
//! proxy's credential) and waits at most `UPSTREAM_TIMEOUT` for the response head. Every
//! upstream attempt goes through it, so retries (forward/retry.rs) wrap this function.
//! It counts `zai_proxy_upstream_errors_total` per attempt: `upstream_connection` for
//! transport failures and timeouts, the status code for upstream answers >= 400, and also
//! `auth` for 401/403 (the proxy's credential refused; see `AppState::record_upstream_auth_failure`).

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri, header};
use http_body_util::Full;
use hyper::body::Incoming;

use super::RequestParts;
use crate::error::ProxyError;
use crate::headers;
use crate::routes::WireFormat;
use crate::state::AppState;

/// The upstream URI: target URL + incoming path + `?query` (plain concatenation).
pub fn upstream_uri(target_url: &str, path_and_query: &str) -> Result<Uri, ProxyError> {
    let mut s = String::with_capacity(target_url.len() + path_and_query.len());
    s.push_str(target_url);
    s.push_str(path_and_query);
    s.parse::<Uri>()
        .map_err(|e| ProxyError::UpstreamRequest(e.to_string()))
}

/// Sends one upstream attempt and returns the response head (body not yet read).
pub async fn send(
    state: &AppState,
    parts: &RequestParts,
    body: Bytes,
) -> Result<Response<Incoming>, ProxyError> {
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |pq| pq.as_str());
    let uri = match upstream_uri(&state.config.target_url, path_and_query) {
        Ok(uri) => uri,
        Err(e) => {
            state.count_upstream_error("request_creation");
            return Err(e);
        }
    };

    let mut request = Request::new(Full::new(body));
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    *headers = headers::upstream_request_headers(&parts.headers);
    if parts.route.format != WireFormat::Other {
        // Usage is read from the bodies we relay; they must not be compressed.
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    let credential = headers::credential_for(
        state.config.auth_header,
        parts.route.format,
        &state.config.target_url,
        parts.uri.path(),
    );
    state.credentials.apply(credential, headers);

    match tokio::time::timeout(
        state.config.upstream_timeout,
        state.upstream.request(request),
    )
    .await
    {
        Ok(Ok(response)) => {
            let status = response.status();
            if status.as_u16() >= 400 {
                state.count_upstream_error(status.as_str());
            }
            if matches!(
                status,
                http::StatusCode::UNAUTHORIZED | http::StatusCode::FORBIDDEN
            ) {
                state.record_upstream_auth_failure(status);
            }
            Ok(response)
        }
        Ok(Err(e)) => {
            state.count_upstream_error("upstream_connection");
            Err(ProxyError::UpstreamUnreachable(describe(&e)))
        }
        Err(_) => {
            state.count_upstream_error("upstream_connection");
            Err(ProxyError::UpstreamTimeout(state.config.upstream_timeout))
        }
    }
}

/// The error and its causes, e.g. `client error (Connect): tcp connect error: Connection
/// refused`. Transport errors never carry request headers, so the key cannot appear.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_is_plain_concatenation() {
        let uri =
            upstream_uri("https://api.z.ai/api/anthropic", "/v1/messages?beta=true").expect("uri");
        assert_eq!(
            uri.to_string(),
            "https://api.z.ai/api/anthropic/v1/messages?beta=true"
        );
    }
}
