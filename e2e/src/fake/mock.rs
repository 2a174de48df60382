//! The wiremock half of the fake: every answer that is one complete body — JSON messages and
//! completions, count_tokens, models, quota, 401/400/429/5xx bodies, empty 200s — with the
//! per-request latency applied by `ResponseTemplate::set_delay`.
//!
//! The front server decides each request's fate and passes it in the internal
//! `x-fake-decision` header (JSON [`Decision`]); the responders below only render it.

use std::sync::Arc;
use std::time::Duration;

use wiremock::matchers::{any, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::faults::{Decision, Outcome};
use super::state::Shared;
use super::wire::errors::{self, ErrorResponse};
use super::wire::{self, Route, anthropic, openai, quota};

/// Internal header carrying the front's decision to the mock.
pub const DECISION_HEADER: &str = "x-fake-decision";

/// Renders one route's answers.
struct Surface {
    shared: Arc<Shared>,
    route: Route,
}

fn error_template(error: ErrorResponse) -> ResponseTemplate {
    let mut template =
        ResponseTemplate::new(error.status).set_body_raw(error.body, error.content_type);
    for (name, value) in error.headers {
        template = template.insert_header(name, value.as_str());
    }
    template
}

fn json_template(value: &serde_json::Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(value.to_string(), "application/json")
}

impl Surface {
    fn ok(&self, request: &Request, omit_usage: bool, bill: bool) -> ResponseTemplate {
        let api = self.route.api();
        match self.route {
            Route::AnthropicMessages | Route::OpenAiChat => {
                let Some(parsed) = wire::parse_request(&request.body) else {
                    return error_template(errors::bad_request(api));
                };
                let Some(api) = api else {
                    return error_template(errors::bad_request(None));
                };
                let answer = wire::answer(
                    api,
                    self.shared.seed,
                    &request.body,
                    &parsed,
                    self.shared.next_id(),
                    chrono::Utc::now().timestamp(),
                );
                if bill {
                    self.shared.bill(answer.usage);
                }
                let body = if self.route == Route::AnthropicMessages {
                    let mut answer = answer;
                    answer.id = format!("msg_{}", answer.id);
                    anthropic::json_body(&answer, !omit_usage)
                } else {
                    openai::json_body(&answer, !omit_usage)
                };
                json_template(&body)
            }
            Route::AnthropicCountTokens => match wire::parse_request(&request.body) {
                Some(parsed) => json_template(&anthropic::count_tokens_body(
                    super::tokens::input_tokens(super::tokens::Api::Anthropic, &parsed),
                )),
                None => error_template(errors::bad_request(api)),
            },
            Route::Models => json_template(&wire::models_body(self.shared.started_ms / 1000)),
            Route::Quota => json_template(&quota::quota_body(
                self.shared.quota_shape(),
                self.shared.allowance,
                self.shared.billed_total(),
                self.shared.started_ms,
            )),
            Route::Other => ResponseTemplate::new(404).set_body_raw(
                r#"{"error":{"code":"404","message":"Not Found"}}"#,
                "application/json",
            ),
        }
    }
}

impl Respond for Surface {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let decision: Decision = request
            .headers
            .get(DECISION_HEADER)
            .and_then(|value| serde_json::from_slice(value.as_bytes()).ok())
            .unwrap_or(Decision {
                outcome: Outcome::Ok,
                delay_ms: 0,
                chunk_delay_ms: 0,
                omit_usage: false,
            });
        let api = self.route.api();
        let template = match decision.outcome {
            Outcome::Ok => self.ok(request, decision.omit_usage, true),
            // The front cuts the body; nothing is billed for a cut answer.
            Outcome::Truncate | Outcome::Reset => self.ok(request, decision.omit_usage, false),
            Outcome::Unauthorized { missing } => error_template(errors::unauthorized(api, missing)),
            Outcome::BadRequest => error_template(errors::bad_request(api)),
            Outcome::Status { status } => error_template(errors::server_error(api, status)),
            Outcome::RateLimited {
                code,
                retry_after_s,
                reset_in_s,
                retry_after_header_s,
            } => error_template(errors::rate_limited(
                api,
                code,
                retry_after_s,
                reset_in_s,
                retry_after_header_s,
                chrono::Utc::now(),
            )),
            Outcome::Empty => {
                let streaming =
                    wire::parse_request(&request.body).is_some_and(|r| wire::wants_stream(&r));
                let content_type = if streaming {
                    "text/event-stream;charset=UTF-8"
                } else {
                    "application/json"
                };
                ResponseTemplate::new(200).set_body_raw(Vec::<u8>::new(), content_type)
            }
        };
        template.set_delay(Duration::from_millis(decision.delay_ms))
    }
}

/// Mounts the fake's surfaces on `server`.
pub async fn mount(server: &MockServer, shared: &Arc<Shared>) {
    let surface = |route| Surface {
        shared: Arc::clone(shared),
        route,
    };
    Mock::given(method("POST"))
        .and(path(wire::ANTHROPIC_MESSAGES))
        .respond_with(surface(Route::AnthropicMessages))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(wire::ANTHROPIC_COUNT_TOKENS))
        .respond_with(surface(Route::AnthropicCountTokens))
        .mount(server)
        .await;
    for chat in wire::OPENAI_CHAT {
        Mock::given(method("POST"))
            .and(path(*chat))
            .respond_with(surface(Route::OpenAiChat))
            .mount(server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path(wire::QUOTA))
        .respond_with(surface(Route::Quota))
        .mount(server)
        .await;
    for models in wire::MODELS {
        Mock::given(method("GET"))
            .and(path(*models))
            .respond_with(surface(Route::Models))
            .mount(server)
            .await;
    }
    Mock::given(any())
        .respond_with(surface(Route::Other))
        .with_priority(u8::MAX)
        .mount(server)
        .await;
}
