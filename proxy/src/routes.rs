//! Which API a path belongs to: its wire format, its kind and its bounded `path` label.
//!
//! The format is decided by the path's suffix (`…/v1/messages`, `…/v1/messages/count_tokens`
//! are Anthropic; `…/chat/completions` is OpenAI), so any prefix works. The `path` metric label
//! is the path itself only when it is one of the [`KNOWN_ROUTES`], otherwise `other`; this
//! keeps label cardinality bounded (the Go original used the raw path).

/// The wire format of a request, which decides token accounting and error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireFormat {
    /// Anthropic Messages (`…/v1/messages`), SSE with named events.
    Anthropic,
    /// OpenAI chat completions (`…/chat/completions`), SSE `data:` lines ending with `[DONE]`.
    OpenAi,
    /// Anything else: passed through untouched.
    Other,
}

/// What a request asks for, within its wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// `POST …/v1/messages`.
    Messages,
    /// `POST …/v1/messages/count_tokens`.
    CountTokens,
    /// `POST …/chat/completions`.
    ChatCompletions,
    /// Any other path.
    Other,
}

/// A classified request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    /// Wire format (error bodies, usage parsing).
    pub format: WireFormat,
    /// What is asked for.
    pub kind: RouteKind,
    /// Bounded `path` label value: a known route or `other`.
    pub label: &'static str,
}

/// Label value of every path that is not a known route.
pub const OTHER_ROUTE: &str = "other";

/// Known Anthropic Messages routes.
pub const ANTHROPIC_MESSAGES_ROUTES: &[&str] = &["/v1/messages", "/api/anthropic/v1/messages"];
/// Known Anthropic count_tokens routes.
pub const ANTHROPIC_COUNT_TOKENS_ROUTES: &[&str] = &[
    "/v1/messages/count_tokens",
    "/api/anthropic/v1/messages/count_tokens",
];
/// Known OpenAI chat completions routes (Z.AI general and coding-plan endpoints).
pub const OPENAI_CHAT_ROUTES: &[&str] = &[
    "/v1/chat/completions",
    "/chat/completions",
    "/api/paas/v4/chat/completions",
    "/api/coding/paas/v4/chat/completions",
];
/// Other known routes that keep their own label (model listings, embeddings).
pub const OTHER_KNOWN_ROUTES: &[&str] = &[
    "/v1/models",
    "/models",
    "/api/anthropic/v1/models",
    "/api/paas/v4/models",
    "/api/coding/paas/v4/models",
    "/v1/embeddings",
    "/api/paas/v4/embeddings",
];

/// Every known route label (besides `other`).
pub const KNOWN_ROUTES: &[&[&str]] = &[
    ANTHROPIC_MESSAGES_ROUTES,
    ANTHROPIC_COUNT_TOKENS_ROUTES,
    OPENAI_CHAT_ROUTES,
    OTHER_KNOWN_ROUTES,
];

/// The routes whose zero series are pre-created on `/metrics` (messages and chat).
pub fn chat_routes() -> Vec<&'static str> {
    ANTHROPIC_MESSAGES_ROUTES
        .iter()
        .chain(OPENAI_CHAT_ROUTES)
        .copied()
        .collect()
}

fn known_label(path: &str, candidates: &[&'static str]) -> &'static str {
    candidates
        .iter()
        .find(|known| **known == path)
        .copied()
        .unwrap_or(OTHER_ROUTE)
}

/// Classifies a request path (without query).
pub fn classify(path: &str) -> Route {
    if path.ends_with("/v1/messages") {
        Route {
            format: WireFormat::Anthropic,
            kind: RouteKind::Messages,
            label: known_label(path, ANTHROPIC_MESSAGES_ROUTES),
        }
    } else if path.ends_with("/v1/messages/count_tokens") {
        Route {
            format: WireFormat::Anthropic,
            kind: RouteKind::CountTokens,
            label: known_label(path, ANTHROPIC_COUNT_TOKENS_ROUTES),
        }
    } else if path.ends_with("/chat/completions") {
        Route {
            format: WireFormat::OpenAi,
            kind: RouteKind::ChatCompletions,
            label: known_label(path, OPENAI_CHAT_ROUTES),
        }
    } else {
        Route {
            format: WireFormat::Other,
            kind: RouteKind::Other,
            label: known_label(path, OTHER_KNOWN_ROUTES),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_follow_the_suffix() {
        let r = classify("/api/anthropic/v1/messages");
        assert_eq!(
            (r.format, r.kind, r.label),
            (
                WireFormat::Anthropic,
                RouteKind::Messages,
                "/api/anthropic/v1/messages"
            )
        );
        let r = classify("/custom/prefix/v1/messages");
        assert_eq!((r.format, r.label), (WireFormat::Anthropic, "other"));
        let r = classify("/v1/messages/count_tokens");
        assert_eq!(r.kind, RouteKind::CountTokens);
        let r = classify("/api/paas/v4/chat/completions");
        assert_eq!(
            (r.format, r.label),
            (WireFormat::OpenAi, "/api/paas/v4/chat/completions")
        );
        let r = classify("/api/paas/v4/models");
        assert_eq!(
            (r.format, r.label),
            (WireFormat::Other, "/api/paas/v4/models")
        );
        let r = classify("/x/../etc/passwd");
        assert_eq!((r.format, r.label), (WireFormat::Other, "other"));
    }
}
