//! The one upstream call: a pooled hyper-util client over rustls (ring, webpki roots).
//!
//! [`send`] builds the upstream request (target URL + path + query, filtered headers, the
//! proxy's credential) and waits at most `UPSTREAM_TIMEOUT` for the response head. Every
//! upstream attempt goes through it, so retries (forward/retry.rs) wrap this function.
//! It counts `zai_proxy_upstream_errors_total` per attempt: `upstream_connection` for
//! transport failures and timeouts, the status code for upstream answers >= 400, and also
//! `auth` for 401/403 (the proxy's credential refused; see `AppState::record_upstream_auth_failure`).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::RequestParts;
use super::headers::{self, CredentialValues};
use crate::error::ProxyError;
use crate::routes::WireFormat;
use crate::state::AppState;

/// The pooled upstream HTTP(S) client.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why an upstream attempt produced no response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Connecting or exchanging with the upstream failed (DNS, refused, TLS, reset...).
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    /// No response head within `UPSTREAM_TIMEOUT`.
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    /// The upstream request could not be built (bad URL after appending the path).
    #[error("could not build the upstream request: {0}")]
    Request(String),
}

/// Builds the pooled client: HTTP/1.1, https or plain http, TCP_NODELAY, idle connections kept
/// 90 s.
pub fn build_client() -> Result<UpstreamClient, ProxyError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| ProxyError::Tls(e.to_string()))?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .build(https))
}

/// The upstream URI: target URL + incoming path + `?query` (plain concatenation).
pub fn upstream_uri(target_url: &str, path_and_query: &str) -> Result<Uri, UpstreamError> {
    let mut s = String::with_capacity(target_url.len() + path_and_query.len());
    s.push_str(target_url);
    s.push_str(path_and_query);
    s.parse::<Uri>()
        .map_err(|e| UpstreamError::Request(e.to_string()))
}

/// Sends one upstream attempt and returns the response head (body not yet read).
pub async fn send(
    state: &AppState,
    parts: &RequestParts,
    body: Bytes,
) -> Result<Response<Incoming>, UpstreamError> {
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
            Err(UpstreamError::Unreachable(describe(&e)))
        }
        Err(_) => {
            state.count_upstream_error("upstream_connection");
            Err(UpstreamError::Timeout(state.config.upstream_timeout))
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

/// Shared credential header values (built once).
pub(crate) fn credentials(key: &crate::config::ApiKey) -> Result<CredentialValues, ProxyError> {
    CredentialValues::new(key).ok_or_else(|| {
        ProxyError::Config(crate::config::ConfigError {
            problems: vec![crate::config::Problem {
                variable: "ZAI_API_KEY",
                reason: "contains characters not allowed in an HTTP header".to_owned(),
            }],
        })
    })
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
