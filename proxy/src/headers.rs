//! Header rules: hop-by-hop stripping and the upstream credential.
//!
//! Towards upstream: the client's headers minus hop-by-hop headers (RFC 9110 §7.6.1 plus any
//! named in `Connection`), minus `Host` (set from the target URL), `Content-Length` (set from
//! the body), `Expect` (the body is already read) and the client's credentials
//! (`Authorization`, `x-api-key`); then the proxy's credential. Towards the client: the
//! upstream's headers minus hop-by-hop headers.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::{ApiKey, AuthHeaderMode};
use crate::routes::WireFormat;

/// Hop-by-hop headers that are never forwarded.
pub const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// `keep-alive` and `proxy-connection` are hop-by-hop too but have no `http` constant.
const HOP_BY_HOP_NAMES: &[&str] = &["keep-alive", "proxy-connection"];

/// The `x-api-key` header name.
pub static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Which credential header goes upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// `x-api-key: <key>`.
    XApiKey,
    /// `Authorization: Bearer <key>`.
    Bearer,
}

/// Decides the credential header (pure).
///
/// `auto`: Anthropic routes get `x-api-key`, OpenAI routes `Bearer`; any other path follows
/// the upstream URL: `x-api-key` if target URL or path contains `/anthropic`, else `Bearer`.
pub fn credential_for(
    mode: AuthHeaderMode,
    format: WireFormat,
    target_url: &str,
    path: &str,
) -> Credential {
    match mode {
        AuthHeaderMode::XApiKey => Credential::XApiKey,
        AuthHeaderMode::Bearer => Credential::Bearer,
        AuthHeaderMode::Auto => match format {
            WireFormat::Anthropic => Credential::XApiKey,
            WireFormat::OpenAi => Credential::Bearer,
            WireFormat::Other
                if target_url.contains("/anthropic") || path.contains("/anthropic") =>
            {
                Credential::XApiKey
            }
            WireFormat::Other => Credential::Bearer,
        },
    }
}

/// The two credential header values, built once at start-up and marked sensitive (so
/// `Debug` of a header map never shows them).
#[derive(Clone)]
pub struct CredentialValues {
    x_api_key: HeaderValue,
    bearer: HeaderValue,
}

impl std::fmt::Debug for CredentialValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialValues([redacted])")
    }
}

impl CredentialValues {
    /// Builds both forms of `key`; `None` if the key is not a valid header value (config
    /// validation rejects such keys first).
    pub fn new(key: &ApiKey) -> Option<Self> {
        let mut x_api_key = HeaderValue::from_str(key.expose()).ok()?;
        x_api_key.set_sensitive(true);
        let mut bearer = HeaderValue::from_str(&format!("Bearer {}", key.expose())).ok()?;
        bearer.set_sensitive(true);
        Some(Self { x_api_key, bearer })
    }

    /// Sets the credential on an upstream request's headers.
    pub fn apply(&self, credential: Credential, headers: &mut HeaderMap) {
        match credential {
            Credential::XApiKey => {
                headers.insert(X_API_KEY.clone(), self.x_api_key.clone());
            }
            Credential::Bearer => {
                headers.insert(header::AUTHORIZATION, self.bearer.clone());
            }
        }
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || HOP_BY_HOP_NAMES.contains(&name.as_str())
}

/// Header names listed in `Connection` (they are hop-by-hop for this connection).
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

/// The headers to send upstream (without the credential, see [`CredentialValues::apply`]).
pub fn upstream_request_headers(client: &HeaderMap) -> HeaderMap {
    let listed = if client.contains_key(header::CONNECTION) {
        connection_listed(client)
    } else {
        Vec::new()
    };
    let mut out = HeaderMap::with_capacity(client.keys_len());
    for (name, value) in client {
        if is_hop_by_hop(name)
            || listed.contains(name)
            || name == header::HOST
            || name == header::CONTENT_LENGTH
            || name == header::EXPECT
            || name == header::AUTHORIZATION
            || name == X_API_KEY
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// Removes hop-by-hop headers from an upstream response, in place.
pub fn strip_response_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        for name in connection_listed(headers) {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    for name in HOP_BY_HOP_NAMES {
        headers.remove(*name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_credentials_and_hop_by_hop_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer client"),
        );
        h.insert("x-api-key", HeaderValue::from_static("client"));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-custom-hop"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-custom-hop", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::HOST, HeaderValue::from_static("proxy:8080"));
        h.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
        h.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        let out = upstream_request_headers(&h);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out["anthropic-version"], "2023-06-01");
    }

    #[test]
    fn credential_follows_mode_and_format() {
        use AuthHeaderMode::*;
        use WireFormat::*;
        let t = "https://api.z.ai";
        assert_eq!(
            credential_for(Auto, Anthropic, t, "/v1/messages"),
            Credential::XApiKey
        );
        assert_eq!(
            credential_for(Auto, OpenAi, t, "/x/chat/completions"),
            Credential::Bearer
        );
        assert_eq!(
            credential_for(Auto, Other, t, "/api/anthropic/v1/models"),
            Credential::XApiKey
        );
        assert_eq!(
            credential_for(Auto, Other, t, "/api/paas/v4/models"),
            Credential::Bearer
        );
        assert_eq!(
            credential_for(Auto, Other, "https://api.z.ai/api/anthropic", "/v1/models"),
            Credential::XApiKey
        );
        assert_eq!(
            credential_for(Bearer, Anthropic, t, "/v1/messages"),
            Credential::Bearer
        );
        assert_eq!(
            credential_for(XApiKey, OpenAi, t, "/chat/completions"),
            Credential::XApiKey
        );
    }

    #[test]
    fn credential_values_are_sensitive() {
        let c = CredentialValues::new(&ApiKey::new("secret-key")).expect("valid");
        let mut h = HeaderMap::new();
        c.apply(Credential::Bearer, &mut h);
        assert_eq!(h[header::AUTHORIZATION], "Bearer secret-key");
        assert!(!format!("{h:?}").contains("secret-key"));
        assert!(!format!("{c:?}").contains("secret-key"));
    }
}
