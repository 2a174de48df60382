//! What the model reads: the text of a request body, for the local input estimate.
//!
//! One walker serves both wire formats (a body is read for whichever fields it has):
//!
//! * `system`: a string, or an array of `{"type":"text","text":…}` blocks (Anthropic);
//! * `messages[].content`: a string, or an array of blocks/parts — `text`, `thinking`,
//!   `tool_use` (its `name` and `input` as compact JSON), `tool_result` (its `content`,
//!   string or text blocks);
//! * OpenAI assistant `tool_calls[].function.{name,arguments}`, the `name` of a message;
//! * tool definitions: Anthropic `tools[].{name,description,input_schema}` and OpenAI
//!   `tools[].function.{name,description,parameters}` (schemas as compact JSON), legacy
//!   `functions[]`;
//! * OpenAI-style `prompt` / `input` (string or array of strings) when there are no messages.
//!
//! Not counted: images, documents and other binary blocks, roles, and any chat-template
//! framing (see docs/TOKEN_COUNTING.md). Each text is counted on its own and the counts are
//! summed, so no per-message framing is added.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::routes::WireFormat;

/// What the walker needs of a JSON tree; implemented for [`serde_json::Value`] and for the
/// borrowed [`Json`] the proxy parses request bodies into (same results for both).
pub trait JsonNode: Sized {
    /// The value of `key` when this is an object (the last one if the key repeats).
    fn field(&self, key: &str) -> Option<&Self>;
    /// The string, when this is a string.
    fn text(&self) -> Option<&str>;
    /// The items, when this is an array.
    fn items(&self) -> Option<&[Self]>;
    /// True for objects.
    fn is_object(&self) -> bool;
    /// True for `null`.
    fn is_null(&self) -> bool;
    /// Compact JSON text, as `serde_json::Value` prints it.
    fn json_text(&self) -> String;
}

impl JsonNode for Value {
    fn field(&self, key: &str) -> Option<&Self> {
        self.as_object()?.get(key)
    }
    fn text(&self) -> Option<&str> {
        self.as_str()
    }
    fn items(&self) -> Option<&[Self]> {
        self.as_array().map(Vec::as_slice)
    }
    fn is_object(&self) -> bool {
        self.is_object()
    }
    fn is_null(&self) -> bool {
        self.is_null()
    }
    fn json_text(&self) -> String {
        self.to_string()
    }
}

/// A JSON value whose strings borrow from the body when they have no escapes: what the
/// proxy parses a request body into, once (model, stream and the input texts all come
/// from this one parse). Objects keep their entries in order, duplicates included.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number, as `serde_json` reads it.
    Number(serde_json::Number),
    /// A string.
    String(Cow<'a, str>),
    /// An array.
    Array(Vec<Json<'a>>),
    /// An object (entries in body order).
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// Parses `body` (the same grammar and limits as `serde_json::from_slice`).
    pub fn parse(body: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// The same value as a `serde_json::Value` (later duplicate keys win, as when
    /// `serde_json` parses the text itself).
    pub fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::String(s) => Value::String(s.clone().into_owned()),
            Json::Array(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Object(entries) => {
                let mut map = serde_json::Map::new();
                for (k, v) in entries {
                    map.insert(k.clone().into_owned(), v.to_value());
                }
                Value::Object(map)
            }
        }
    }

    /// The entries named `key` (more than one when the key repeats).
    fn entries<'s>(&'s self, key: &'s str) -> impl Iterator<Item = &'s Json<'a>> + 's {
        let entries: &[(Cow<'a, str>, Json<'a>)] = match self {
            Json::Object(entries) => entries,
            _ => &[],
        };
        entries
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

impl JsonNode for Json<'_> {
    fn field(&self, key: &str) -> Option<&Self> {
        match self {
            Json::Object(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn text(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }
    fn items(&self) -> Option<&[Self]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }
    fn is_object(&self) -> bool {
        matches!(self, Json::Object(_))
    }
    fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }
    fn json_text(&self) -> String {
        self.to_value().to_string()
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Json<'de>, E> {
        // As serde_json's own `Value` does (JSON text has no NaN or infinities).
        Ok(serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        Json::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut entries = Vec::new();
        while let Some(Key(key)) = map.next_key()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Json::Object(entries))
    }
}

/// An object key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A request body read once: what the handler needs (`model`, `stream`) and what the
/// input estimate counts.
#[derive(Debug)]
pub struct RequestDoc<'a> {
    /// The `model` field (`None` when absent, or as the minimal parse would report it).
    pub model: Option<Cow<'a, str>>,
    /// `"stream": true`.
    pub stream: bool,
    /// The parsed body (`None` when it is not JSON).
    pub json: Option<Json<'a>>,
}

impl<'a> RequestDoc<'a> {
    /// Parses `body` once. `model`/`stream` follow the rules of the minimal parse they
    /// replace: both are `None`/`false` unless the body is a JSON object whose `model` (if
    /// any) is a string or null and whose `stream` (if any) is a boolean or null, each at
    /// most once.
    pub fn parse(body: &'a [u8]) -> Self {
        let json = Json::parse(body).ok();
        let (model, stream) = json.as_ref().map_or((None, false), peek);
        Self {
            model,
            stream,
            json,
        }
    }

    /// The texts the model reads, copied into one buffer (for counting elsewhere), or
    /// `None` when the body is not a JSON object.
    pub fn input_texts(&self) -> Option<InputTexts> {
        let json = self.json.as_ref()?;
        let mut texts = InputTexts::default();
        visit_input_texts(json, &mut |t| texts.push(t)).then_some(texts)
    }
}

fn peek<'a>(json: &Json<'a>) -> (Option<Cow<'a, str>>, bool) {
    if let Json::Array(items) = json {
        // serde's derived structs also accept a sequence: `[model, stream]`.
        return match items.as_slice() {
            [] => (None, false),
            [model] => peek_fields(Some(model), None),
            [model, stream] => peek_fields(Some(model), Some(stream)),
            _ => (None, false),
        };
    }
    if !json.is_object() {
        return (None, false);
    }
    let mut models = json.entries("model");
    let mut streams = json.entries("stream");
    let (model, stream) = (models.next(), streams.next());
    if models.next().is_some() || streams.next().is_some() {
        return (None, false); // a repeated field fails the minimal parse
    }
    peek_fields(model, stream)
}

fn peek_fields<'a>(
    model: Option<&Json<'a>>,
    stream: Option<&Json<'a>>,
) -> (Option<Cow<'a, str>>, bool) {
    let model = match model {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s.clone()),
        Some(_) => return (None, false),
    };
    let stream = match stream {
        None | Some(Json::Null) => false,
        Some(Json::Bool(b)) => *b,
        Some(_) => return (None, false),
    };
    (model, stream)
}

/// The texts of one request, in one buffer (one allocation), in visiting order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InputTexts {
    buf: String,
    ends: Vec<usize>,
}

impl InputTexts {
    fn push(&mut self, text: &str) {
        self.buf.push_str(text);
        self.ends.push(self.buf.len());
    }

    /// Each text, in visiting order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .filter_map(|(start, end)| self.buf.get(start..end))
    }
}

/// Calls `visit` with every text of `body` that the model reads. Returns `false` when the
/// body is not a JSON object (nothing visited).
pub fn visit_input_texts<J: JsonNode>(body: &J, visit: &mut dyn FnMut(&str)) -> bool {
    if !body.is_object() {
        return false;
    }
    if let Some(system) = body.field("system") {
        visit_content(system, visit);
    }
    let mut has_messages = false;
    if let Some(messages) = body.field("messages").and_then(J::items) {
        has_messages = true;
        for message in messages {
            visit_message(message, visit);
        }
    }
    for key in ["tools", "functions"] {
        if let Some(tools) = body.field(key).and_then(J::items) {
            for tool in tools {
                visit_tool_definition(tool, visit);
            }
        }
    }
    if !has_messages {
        for key in ["prompt", "input"] {
            let Some(value) = body.field(key) else {
                continue;
            };
            if let Some(s) = value.text() {
                visit(s);
            } else if let Some(items) = value.items() {
                for s in items.iter().filter_map(J::text) {
                    visit(s);
                }
            }
        }
    }
    true
}

fn visit_message<J: JsonNode>(message: &J, visit: &mut dyn FnMut(&str)) {
    if !message.is_object() {
        return;
    }
    if let Some(content) = message.field("content") {
        visit_content(content, visit);
    }
    if let Some(name) = message.field("name").and_then(J::text) {
        visit(name);
    }
    if let Some(calls) = message.field("tool_calls").and_then(J::items) {
        for call in calls {
            if let Some(function) = call.field("function") {
                visit_function_call(function, visit);
            }
        }
    }
    if let Some(function) = message.field("function_call") {
        visit_function_call(function, visit);
    }
}

fn visit_function_call<J: JsonNode>(function: &J, visit: &mut dyn FnMut(&str)) {
    if let Some(name) = function.field("name").and_then(J::text) {
        visit(name);
    }
    match function.field("arguments") {
        Some(args) if args.text().is_some() => visit_json(args, visit),
        Some(args) if args.is_object() => visit_json(args, visit),
        _ => {}
    }
}

/// A `content`/`system` value: a string or an array of blocks.
fn visit_content<J: JsonNode>(content: &J, visit: &mut dyn FnMut(&str)) {
    if let Some(s) = content.text() {
        visit(s);
    } else if let Some(blocks) = content.items() {
        for block in blocks {
            visit_block(block, visit);
        }
    }
}

fn visit_block<J: JsonNode>(block: &J, visit: &mut dyn FnMut(&str)) {
    if !block.is_object() {
        if let Some(s) = block.text() {
            visit(s);
        }
        return;
    }
    let text_field = |name: &str, visit: &mut dyn FnMut(&str)| {
        if let Some(text) = block.field(name).and_then(J::text) {
            visit(text);
        }
    };
    match block.field("type").and_then(J::text) {
        Some("text") | Some("input_text") | None => text_field("text", visit),
        Some("thinking") => text_field("thinking", visit),
        Some("tool_use") | Some("server_tool_use") => {
            text_field("name", visit);
            if let Some(input) = block.field("input") {
                visit_json(input, visit);
            }
        }
        Some("tool_result") => {
            if let Some(content) = block.field("content") {
                visit_content(content, visit);
            }
        }
        // Images, documents, redacted thinking, audio…: not counted.
        Some(_) => {}
    }
}

fn visit_tool_definition<J: JsonNode>(tool: &J, visit: &mut dyn FnMut(&str)) {
    // OpenAI wraps the definition in `function`; Anthropic puts it at the top level.
    let def = tool.field("function").unwrap_or(tool);
    if let Some(name) = def.field("name").and_then(J::text) {
        visit(name);
    }
    if let Some(description) = def.field("description").and_then(J::text) {
        visit(description);
    }
    for key in ["input_schema", "parameters"] {
        if let Some(schema) = def.field(key) {
            visit_json(schema, visit);
        }
    }
}

/// Structured values (tool inputs, schemas) are read by the model as JSON text.
fn visit_json<J: JsonNode>(value: &J, visit: &mut dyn FnMut(&str)) {
    if value.is_null() {
    } else if let Some(s) = value.text() {
        visit(s);
    } else {
        visit(&value.json_text());
    }
}

/// Any JSON value, read the way `serde_json::Value` reads it (strings decoded, numbers
/// parsed) and dropped: accepted exactly when `Value` would be, without building anything.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_none<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Checked, D::Error> {
        Checked::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_key::<Checked>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

/// The fields the minimal parse reads from a JSON request body. Every other value is read as
/// [`Checked`] (as `serde_json::Value` would read it, nothing built), so one pass both reads
/// `{model, stream}` and rejects what the one parse (`RequestDoc`) rejects: serde's
/// `IgnoredAny` skips strings and numbers without checking UTF-8, lone surrogate escapes or
/// range.
struct Peek<'a> {
    model: Option<Cow<'a, str>>,
    stream: Option<bool>,
}

/// A string borrowed from the body when it has no escapes.
struct BorrowedStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for BorrowedStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BorrowedStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// A key of the body's top-level object, compared without allocating.
enum PeekKey {
    Model,
    Stream,
    Other,
}

impl<'de> Deserialize<'de> for PeekKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PeekKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E>(self, v: &str) -> Result<PeekKey, E> {
                Ok(match v {
                    "model" => PeekKey::Model,
                    "stream" => PeekKey::Stream,
                    _ => PeekKey::Other,
                })
            }
        }
        deserializer.deserialize_identifier(V)
    }
}

impl<'de> Deserialize<'de> for Peek<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Peek<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a request object")
            }
            // As a derived struct reads a sequence: the fields in order, absent ones default.
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Peek<'de>, A::Error> {
                let model = seq.next_element::<Option<BorrowedStr<'de>>>()?.flatten();
                let stream = seq.next_element::<Option<bool>>()?.flatten();
                Ok(Peek {
                    model: model.map(|m| m.0),
                    stream,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Peek<'de>, A::Error> {
                let mut model: Option<Option<BorrowedStr<'de>>> = None;
                let mut stream: Option<Option<bool>> = None;
                while let Some(key) = map.next_key::<PeekKey>()? {
                    match key {
                        PeekKey::Model if model.is_some() => {
                            return Err(de::Error::duplicate_field("model"));
                        }
                        PeekKey::Model => model = Some(map.next_value()?),
                        PeekKey::Stream if stream.is_some() => {
                            return Err(de::Error::duplicate_field("stream"));
                        }
                        PeekKey::Stream => stream = Some(map.next_value()?),
                        PeekKey::Other => {
                            map.next_value::<Checked>()?;
                        }
                    }
                }
                Ok(Peek {
                    model: model.flatten().map(|m| m.0),
                    stream: stream.flatten(),
                })
            }
        }
        deserializer.deserialize_struct("Peek", &["model", "stream"], V)
    }
}

/// `(model, stream)` of an Anthropic/OpenAI JSON body, without building a tree (the
/// handler's parse when the body is not read for its texts, see `hooks::read_request`);
/// `(None, false)` if it does not parse. One pass: the same body reads the same whichever
/// parse its size or the counting setting picks (see [`Peek`]).
pub fn peek_request(format: WireFormat, body: &[u8]) -> (Option<Cow<'_, str>>, bool) {
    if format == WireFormat::Other || body.is_empty() {
        return (None, false);
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return (None, false);
    };
    match serde_json::from_str::<Peek<'_>>(text) {
        Ok(p) => (p.model, p.stream.unwrap_or(false)),
        Err(_) => (None, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn texts(body: Value) -> Vec<String> {
        let mut out = Vec::new();
        visit_input_texts(&body, &mut |s| out.push(s.to_owned()));
        out
    }

    #[test]
    fn anthropic_body_everything_the_model_reads() {
        let body = json!({
            "model": "glm-4.6",
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Calling."},
                    {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "Sunny"}]},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
                ]}
            ],
            "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}]
        });
        assert_eq!(
            texts(body),
            vec![
                "Be brief.",
                "Hi",
                "Calling.",
                "get_weather",
                r#"{"city":"Paris"}"#,
                "Sunny",
                "get_weather",
                "Weather",
                r#"{"type":"object"}"#
            ]
        );
    }

    #[test]
    fn openai_body_everything_the_model_reads() {
        let body = json!({
            "model": "glm-4.6",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {"url": "x"}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"}
            ],
            "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}]
        });
        assert_eq!(
            texts(body),
            vec![
                "Be brief.",
                "Hi",
                "f",
                "{\"a\":1}",
                "42",
                "f",
                "d",
                r#"{"type":"object"}"#
            ]
        );
    }

    #[test]
    fn prompt_only_without_messages_and_non_objects() {
        assert_eq!(texts(json!({"prompt": "abc"})), vec!["abc"]);
        assert_eq!(texts(json!({"input": ["a", "b"]})), vec!["a", "b"]);
        assert!(texts(json!({"messages": [], "input": "x"})).is_empty());
        let mut n = 0;
        assert!(!visit_input_texts(&json!([1, 2]), &mut |_| n += 1));
        assert_eq!(n, 0);
    }

    /// Bodies whose edge cases the borrowed parse must read exactly like `serde_json::Value`
    /// (texts) and like the minimal `Peek` parse (model, stream).
    const EDGE_BODIES: &[&str] = &[
        r#"{"model":"glm-4.6","stream":true,"messages":[{"role":"user","content":"Hi"}]}"#,
        r#"{"model":"glm\"4","stream":false,"system":"s","messages":[{"role":"user","content":"line\nbreak \u00e9"}]}"#,
        r#"{"model":"a","model":"b","messages":[{"content":"dup model"}]}"#,
        r#"{"stream":true,"stream":false,"prompt":"p"}"#,
        r#"{"model":7,"stream":true,"messages":[]}"#,
        r#"{"model":null,"stream":null,"input":["a",1,"b"]}"#,
        r#"{"model":"m","stream":"yes","prompt":"x"}"#,
        r#"{"system":"one","system":"two","messages":[{"content":"c","content":"d"}]}"#,
        r#"["glm-4.6",true]"#,
        r#"["glm-4.6"]"#,
        r#"[]"#,
        r#"["m",true,3]"#,
        r#"[1]"#,
        r#""just a string""#,
        r#"42"#,
        r#"not json"#,
        r#"{"messages":[{"role":"assistant","content":[{"type":"tool_use","name":"f","input":{"z":1,"a":[1.5,-2,1e300,"s",18446744073709551616],"m":{"y":null,"b":true}}}]},{"role":"tool","content":[{"type":"tool_result","content":[{"type":"text","text":"ok"}]}]}],"tools":[{"name":"f","description":"d","input_schema":{"type":"object","properties":{"q":{"type":"string"}}}},{"type":"function","function":{"name":"g","parameters":{"b":1,"a":2}}}]}"#,
        r#"{"messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":"{\"a\":1}"}},{"function":{"name":"g","arguments":{"k":[1,2]}}},"junk"],"function_call":{"name":"h","arguments":5}},{"content":[{"type":"thinking","thinking":"hmm"},{"type":"image","source":{}},"bare",{"text":"untyped"},{"type":7,"text":"odd type"}]}]}"#,
        r#"{"functions":[{"name":"legacy","parameters":{}}],"prompt":["p1","p2"],"input":"i"}"#,
        r#"{"messages":"not an array","prompt":"counted"}"#,
        r#"{"a":{"b":{"c":[[[[{"d":"deep"}]]]]}},"messages":[{"content":"\ud83d\ude00 emoji"}]}"#,
    ];

    #[test]
    fn borrowed_parse_reads_exactly_like_serde_json_value_and_peek() {
        for body in EDGE_BODIES {
            let value = serde_json::from_slice::<Value>(body.as_bytes()).ok();
            let doc = RequestDoc::parse(body.as_bytes());
            assert_eq!(
                doc.json.as_ref().map(Json::to_value),
                value,
                "same tree: {body}"
            );
            let mut expected = Vec::new();
            let expected_object = value
                .as_ref()
                .is_some_and(|v| visit_input_texts(v, &mut |t| expected.push(t.to_owned())));
            let texts = doc.input_texts();
            assert_eq!(texts.is_some(), expected_object, "object: {body}");
            let got: Vec<String> = texts
                .iter()
                .flat_map(InputTexts::iter)
                .map(str::to_owned)
                .collect();
            assert_eq!(got, expected, "texts: {body}");
            let (model, stream) = peek_request(WireFormat::Anthropic, body.as_bytes());
            assert_eq!(
                (doc.model.as_deref(), doc.stream),
                (model.as_deref(), stream),
                "model/stream: {body}"
            );
        }
    }

    /// Fuzz finding (request_peek): invalid UTF-8 inside a field the minimal parse skips
    /// gave a model there but none from the one parse, so the same body was read two ways
    /// depending on its size and on whether tokens were counted.
    #[test]
    fn invalid_utf8_in_a_skipped_field_is_not_json_for_either_parse() {
        let body =
            b"{\"model\":\"glm-4.6\",\"stream\":true,\"tools\":[{\"name\":\"le\xff\xfegacy\"}]}";
        assert!(serde_json::from_slice::<Value>(body).is_err());
        let doc = RequestDoc::parse(body);
        assert_eq!((doc.model.as_deref(), doc.stream), (None, false));
        for format in [WireFormat::Anthropic, WireFormat::OpenAi] {
            assert_eq!(peek_request(format, body), (None, false));
        }
    }

    /// Fuzz finding (request_peek): a lone surrogate escape or a number out of `f64` range
    /// in a field the minimal parse skips — JSON that `serde_json::Value` rejects — still
    /// gave a model there but none from the one parse.
    #[test]
    fn values_value_rejects_are_rejected_in_skipped_fields_too() {
        for body in [
            r#"{"model":"glm-4.6","stream":true,"system":[{"cache_control":{"type":"ep\ud800l"}}]}"#,
            r#"{"model":"glm-4.6","stream":true,"x":"\udc00"}"#,
            r#"{"model":"glm-4.6","stream":true,"temperature":1e400}"#,
            r#"{"model":"glm-4.6","stream":true,"\ud800":1}"#,
        ] {
            assert!(serde_json::from_str::<Value>(body).is_err(), "{body}");
            let doc = RequestDoc::parse(body.as_bytes());
            assert_eq!((doc.model.as_deref(), doc.stream), (None, false), "{body}");
            assert_eq!(
                peek_request(WireFormat::OpenAi, body.as_bytes()),
                (None, false),
                "{body}"
            );
        }
        // A paired surrogate escape is a character: both parses read the body.
        let body = br#"{"model":"glm-4.6","stream":true,"x":"\ud83d\ude00"}"#;
        assert_eq!(
            peek_request(WireFormat::OpenAi, body),
            (Some(Cow::Borrowed("glm-4.6")), true)
        );
    }

    #[test]
    fn unescaped_strings_are_borrowed_from_the_body() {
        let body =
            br#"{"model":"glm-4.6","messages":[{"content":"plain"},{"content":"esc\"aped"}]}"#;
        let doc = RequestDoc::parse(body);
        assert!(matches!(doc.model, Some(Cow::Borrowed("glm-4.6"))));
        let Some(Json::Object(entries)) = &doc.json else {
            panic!("object");
        };
        let Json::Array(messages) = &entries[1].1 else {
            panic!("messages");
        };
        let contents: Vec<bool> = messages
            .iter()
            .map(|m| matches!(m.field("content"), Some(Json::String(Cow::Borrowed(_)))))
            .collect();
        assert_eq!(contents, vec![true, false]);
        let texts = doc.input_texts().expect("object");
        assert_eq!(texts.iter().collect::<Vec<_>>(), vec!["plain", "esc\"aped"]);
    }

    #[test]
    fn peek_reads_model_and_stream_only() {
        let body =
            br#"{"model":"glm-4.6","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let (model, stream) = peek_request(WireFormat::Anthropic, body);
        assert_eq!(model.as_deref(), Some("glm-4.6"));
        assert!(stream);
        let (model, stream) = peek_request(WireFormat::OpenAi, b"not json");
        assert_eq!((model, stream), (None, false));
        let (model, _) = peek_request(WireFormat::Other, br#"{"model":"x"}"#);
        assert_eq!(model, None);
    }
}
