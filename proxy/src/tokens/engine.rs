//! Exact token counting: the encodings, the engines behind them, and the guard that picks
//! an engine per text.
//!
//! [`Engine::count`] works in three steps, all exact (the counts equal `tiktoken-rs`'s
//! `encode_ordinary(..).len()`, which the tests check on a corpus and by property tests):
//!
//! 1. long runs of one repeated ASCII character are cut down by whole periods of their
//!    encoding, adding back the tokens cut ([`super::runs`]): a megabyte of `a`, of spaces
//!    or of `-` costs a scan instead of a megabyte-long BPE merge;
//! 2. runs of Han characters are cut between characters no token can span, and the parts
//!    are counted alone ([`super::han`]): a Chinese clause costs a few table lookups instead
//!    of a BPE merge of the whole clause;
//! 3. every stretch left goes to one of two engines:
//!    * the `tiktoken` crate (4.x): hand-written pre-tokenizer scanners and a piece cache,
//!      very fast on ordinary text, but its BPE merge is superlinear in the length of one
//!      piece;
//!    * `bpe-openai` (cl100k_base and o200k_base only): slower on ordinary text, linear on
//!      long pieces (one piece = one regex match, e.g. a long run of `ab` or of `你`).
//!
//! [`has_long_run`] is a cheap byte scan that decides which engine counts a text: any run of
//! [`LONG_RUN_BYTES`] or more bytes of the same character class (letters, whitespace,
//! punctuation) could become one long piece, so such texts go to the linear engine. The
//! choice only changes speed, never the count. `glm4` and `glm5` have no linear engine (GLM's
//! vocabularies are not valid `bpe` dictionaries: some of their tokens cannot be built by
//! merges), so they always use the `tiktoken` crate after steps 1 and 2; see
//! docs/TOKEN_COUNTING.md.

use std::fmt;
use std::sync::OnceLock;

use super::han::HanCuts;
use super::runs::RunRules;

/// Runs of this many bytes of one character class send a text to the linear engine.
/// Chosen by measurement (docs/TOKEN_COUNTING.md): below it the `tiktoken` crate is faster.
pub const LONG_RUN_BYTES: usize = 256;

/// A tokenizer vocabulary (`TOKENIZER_ENCODING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// OpenAI cl100k_base (the original's encoding; the default).
    Cl100kBase,
    /// OpenAI o200k_base.
    O200kBase,
    /// GLM-4.5/4.6/4.7's own vocabulary, as shipped by the `tiktoken` crate (`glm4`,
    /// converted from the Hugging Face `zai-org/GLM-4.5` tokenizer).
    Glm4,
    /// GLM-5.x's own vocabulary, as shipped by the `tiktoken` crate (`glm5`, feature
    /// `vocab-glm5`).
    Glm5,
}

impl Encoding {
    /// Every encoding, in documentation order.
    pub const ALL: [Encoding; 4] = [
        Encoding::Cl100kBase,
        Encoding::O200kBase,
        Encoding::Glm4,
        Encoding::Glm5,
    ];

    /// Index into [`Encoding::ALL`] (per-vocabulary tables).
    pub fn index(self) -> usize {
        match self {
            Encoding::Cl100kBase => 0,
            Encoding::O200kBase => 1,
            Encoding::Glm4 => 2,
            Encoding::Glm5 => 3,
        }
    }

    /// The name used by `TOKENIZER_ENCODING` and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Cl100kBase => "cl100k_base",
            Encoding::O200kBase => "o200k_base",
            Encoding::Glm4 => "glm4",
            Encoding::Glm5 => "glm5",
        }
    }

    /// Parses a `TOKENIZER_ENCODING` value (case-insensitive, surrounding spaces ignored).
    pub fn from_name(raw: &str) -> Option<Self> {
        let name = raw.trim().to_ascii_lowercase();
        Encoding::ALL.into_iter().find(|e| e.name() == name)
    }

    /// Number of mergeable ranks the vocabulary must have (special tokens excluded); checked
    /// when the vocabulary is loaded.
    pub fn expected_ranks(self) -> usize {
        match self {
            Encoding::Cl100kBase => 100_256,
            Encoding::O200kBase => 199_998,
            // GLM-4's tokenizer: `<|endoftext|>` is id 151329, right after the ranks.
            Encoding::Glm4 => 151_329,
            // GLM-5's tokenizer: 154,820 ranks, then its special tokens.
            Encoding::Glm5 => 154_820,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a vocabulary could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadProblem {
    /// The `tiktoken` crate was built without this vocabulary.
    Missing(Encoding),
    /// The vocabulary has an unexpected number of ranks.
    WrongSize {
        /// The encoding.
        encoding: Encoding,
        /// Ranks expected.
        expected: usize,
        /// Ranks found.
        found: usize,
    },
}

impl fmt::Display for LoadProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadProblem::Missing(e) => write!(f, "the {e} vocabulary is not compiled in"),
            LoadProblem::WrongSize {
                encoding,
                expected,
                found,
            } => write!(
                f,
                "the {encoding} vocabulary has {found} ranks, expected {expected}"
            ),
        }
    }
}

/// Which engine counted a text (for benches and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// The `tiktoken` crate (4.x).
    Fast,
    /// `bpe-openai` (linear on long pieces).
    Linear,
}

/// An exact counter for one encoding: the fast engine plus, where one exists, the linear
/// engine for texts with long runs. Cheap to share (`&'static` vocabularies inside).
pub struct Engine {
    encoding: Encoding,
    fast: &'static tiktoken::CoreBpe,
    linear: Option<&'static bpe_openai::Tokenizer>,
    runs: &'static RunRules,
    han: Option<&'static HanCuts>,
}

/// The run rules of `encoding`, derived once per process.
fn run_rules(encoding: Encoding, fast: &tiktoken::CoreBpe) -> &'static RunRules {
    static RULES: [OnceLock<RunRules>; 4] = [const { OnceLock::new() }; 4];
    RULES[encoding.index()].get_or_init(|| RunRules::derive(fast))
}

/// The Han cuts of `encoding`, derived once per process (`None`, logged, if the derivation
/// failed its own check: counting is then exact but slower on Chinese).
fn han_cuts(encoding: Encoding, fast: &tiktoken::CoreBpe) -> Option<&'static HanCuts> {
    static CUTS: [OnceLock<Option<HanCuts>>; 4] = [const { OnceLock::new() }; 4];
    CUTS[encoding.index()]
        .get_or_init(|| match HanCuts::derive(fast) {
            Ok(cuts) => Some(cuts),
            Err(problem) => {
                tracing::warn!(%encoding, %problem, "Han runs are counted whole");
                None
            }
        })
        .as_ref()
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("encoding", &self.encoding)
            .field("name", &self.name())
            .finish()
    }
}

impl Engine {
    /// Loads (and warms up) the vocabularies. Takes a few hundred milliseconds: call it once
    /// at start-up, before the proxy reports ready.
    pub fn load(encoding: Encoding) -> Result<Self, LoadProblem> {
        let fast = tiktoken::get_encoding(encoding.name()).ok_or(LoadProblem::Missing(encoding))?;
        let found = fast.vocab_size();
        if found != encoding.expected_ranks() {
            return Err(LoadProblem::WrongSize {
                encoding,
                expected: encoding.expected_ranks(),
                found,
            });
        }
        let linear = match encoding {
            Encoding::Cl100kBase => Some(bpe_openai::cl100k_base()),
            Encoding::O200kBase => Some(bpe_openai::o200k_base()),
            Encoding::Glm4 | Encoding::Glm5 => None,
        };
        let engine = Self {
            encoding,
            fast,
            linear,
            runs: run_rules(encoding, fast),
            han: han_cuts(encoding, fast),
        };
        // Both vocabularies are built lazily on first use; pay that now, not on a request.
        let warm = "warm up: Hello, 世界! 🌍";
        let _ = engine.fast.count(warm);
        if let Some(linear) = engine.linear {
            let _ = linear.count(warm);
        }
        Ok(engine)
    }

    /// The encoding.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The engine name for logs and docs.
    pub fn name(&self) -> &'static str {
        match (self.linear.is_some(), self.han.is_some()) {
            (true, true) => {
                "run-length shortcut + Han cuts + tiktoken 4 + bpe-openai for long runs"
            }
            (true, false) => "run-length shortcut + tiktoken 4 + bpe-openai for long runs",
            (false, true) => "run-length shortcut + Han cuts + tiktoken 4",
            (false, false) => "run-length shortcut + tiktoken 4",
        }
    }

    /// Which engine [`Engine::count`] uses for `text`.
    pub fn engine_for(&self, text: &str) -> EngineKind {
        match self.linear {
            Some(_) if has_long_run(text.as_bytes()) => EngineKind::Linear,
            _ => EngineKind::Fast,
        }
    }

    /// Exact number of tokens of `text`, special-token markers counted as ordinary text.
    ///
    /// Long runs of one ASCII character are first cut down by whole periods of their
    /// encoding ([`RunRules::shorten`], exact), then the text goes to the engine the guard
    /// picks.
    pub fn count(&self, text: &str) -> usize {
        match self.runs.shorten(text) {
            Some(short) => short.removed_tokens + self.count_routed(&short.text),
            None => self.count_routed(text),
        }
    }

    /// The run rules this engine shortens with (benches, tests).
    pub fn run_rules(&self) -> &RunRules {
        self.runs
    }

    /// The Han cuts this engine counts with, if their derivation passed (benches, tests).
    pub fn han_cuts(&self) -> Option<&HanCuts> {
        self.han
    }

    /// Cuts Han runs where no token spans ([`HanCuts::count`]), then counts each stretch
    /// with the engine the guard picks for it.
    fn count_routed(&self, text: &str) -> usize {
        match self.han {
            Some(han) => han.count(text, |part| self.count_with_guard(part)),
            None => self.count_with_guard(text),
        }
    }

    fn count_with_guard(&self, text: &str) -> usize {
        match (self.engine_for(text), self.linear) {
            (EngineKind::Linear, Some(linear)) => linear.count(text),
            _ => self.fast.count(text),
        }
    }

    /// Counts with one engine regardless of the guard (benches, tests). `None` when the
    /// encoding has no such engine.
    pub fn count_with(&self, kind: EngineKind, text: &str) -> Option<usize> {
        match kind {
            EngineKind::Fast => Some(self.fast.count(text)),
            EngineKind::Linear => self.linear.map(|l| l.count(text)),
        }
    }
}

// Character classes whose runs can form one long pre-tokenizer piece (digits never do:
// every encoding splits them into groups of at most three).
const LETTER: u8 = 0;
const SPACE: u8 = 1;
const PUNCT: u8 = 2;
const DIGIT: u8 = 3;

const ASCII_CLASS: [u8; 128] = {
    let mut table = [PUNCT; 128];
    let mut b = 0;
    while b < 128 {
        table[b] = match b as u8 {
            b'a'..=b'z' | b'A'..=b'Z' => LETTER,
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => SPACE,
            b'0'..=b'9' => DIGIT,
            _ => PUNCT,
        };
        b += 1;
    }
    table
};

/// Class of a non-ASCII code point, by block ranges (no Unicode tables: this runs on every
/// byte of every counted text). Approximate on purpose — it only picks the engine.
fn non_ascii_class(cp: u32) -> u8 {
    match cp {
        0x85 | 0xA0 | 0x1680 | 0x2000..=0x200A | 0x2028 | 0x2029 | 0x202F | 0x205F | 0x3000 => {
            SPACE
        }
        0xAA | 0xB5 | 0xBA => LETTER,
        0xA1..=0xBF | 0xD7 | 0xF7 => PUNCT,
        // General punctuation, symbols, arrows, box drawing, dingbats…
        0x2010..=0x2BFF => PUNCT,
        // CJK symbols and punctuation (、。「」…), fullwidth ASCII punctuation (，！？：；…).
        0x3001..=0x303F | 0xFF01..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65 => {
            PUNCT
        }
        // Emoji and other pictographs are punctuation to the split patterns.
        0x1F000..=0x1FAFF => PUNCT,
        _ => LETTER,
    }
}

/// Class and byte width of the (non-ASCII) character starting at `text[i]`.
fn decode_class(text: &[u8], i: usize) -> (u8, usize) {
    let b = text[i];
    let (width, mut cp) = match b {
        0xC0..=0xDF => (2, u32::from(b & 0x1F)),
        0xE0..=0xEF => (3, u32::from(b & 0x0F)),
        0xF0..=0xF7 => (4, u32::from(b & 0x07)),
        _ => return (PUNCT, 1),
    };
    for k in 1..width {
        match text.get(i + k) {
            Some(c) => cp = (cp << 6) | u32::from(c & 0x3F),
            None => return (PUNCT, 1),
        }
    }
    (non_ascii_class(cp), width)
}

/// Class and width of the character at `text[i]`.
fn class_at(text: &[u8], i: usize) -> (u8, usize) {
    let b = text[i];
    if b < 0x80 {
        (ASCII_CLASS[usize::from(b)], 1)
    } else {
        decode_class(text, i)
    }
}

/// The first character boundary at or after `i`.
fn boundary(text: &[u8], mut i: usize) -> usize {
    while i < text.len() && (0x80..0xC0).contains(&text[i]) {
        i += 1;
    }
    i
}

/// True when `text` has a run of at least [`LONG_RUN_BYTES`] bytes of one character class
/// (letters, whitespace or punctuation). A routing heuristic only: both engines count exactly.
///
/// Any such run covers a whole aligned window of `LONG_RUN_BYTES / 2` bytes, so only windows
/// are checked, each until its first class change (a few bytes in ordinary text); a window
/// of one class gets an exact scan of its neighbourhood.
pub fn has_long_run(text: &[u8]) -> bool {
    const WINDOW: usize = LONG_RUN_BYTES / 2;
    if text.len() < LONG_RUN_BYTES {
        return false;
    }
    let mut start = 0;
    while start + WINDOW <= text.len() {
        if window_is_one_class(text, start, start + WINDOW) {
            let lo = boundary(text, start.saturating_sub(LONG_RUN_BYTES));
            let hi = (start + WINDOW + LONG_RUN_BYTES).min(text.len());
            if scan_runs(&text[lo..hi]) {
                return true;
            }
        }
        start += WINDOW;
    }
    false
}

fn window_is_one_class(text: &[u8], start: usize, end: usize) -> bool {
    let mut i = boundary(text, start);
    if i >= end {
        return false;
    }
    let (first, width) = class_at(text, i);
    if first == DIGIT {
        return false;
    }
    i += width;
    while i < end {
        let (class, width) = class_at(text, i);
        if class != first {
            return false;
        }
        i += width;
    }
    true
}

/// The exact scan: any run of one class (digits excepted) of `LONG_RUN_BYTES` bytes.
fn scan_runs(text: &[u8]) -> bool {
    let mut run_class = DIGIT;
    let mut run_len = 0usize;
    let mut i = 0usize;
    while i < text.len() {
        let (class, width) = class_at(text, i);
        if class == run_class {
            run_len += width;
            if run_len >= LONG_RUN_BYTES && class != DIGIT {
                return true;
            }
        } else {
            run_class = class;
            run_len = width;
        }
        i += width;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for e in Encoding::ALL {
            assert_eq!(Encoding::from_name(e.name()), Some(e));
        }
        assert_eq!(
            Encoding::from_name(" CL100K_BASE "),
            Some(Encoding::Cl100kBase)
        );
        assert_eq!(Encoding::from_name("p50k_base"), None);
    }

    #[test]
    fn long_runs_are_detected_per_class() {
        assert!(!has_long_run(b"hello world"));
        assert!(has_long_run("a".repeat(LONG_RUN_BYTES).as_bytes()));
        assert!(!has_long_run("a".repeat(LONG_RUN_BYTES - 1).as_bytes()));
        assert!(has_long_run(" ".repeat(LONG_RUN_BYTES).as_bytes()));
        assert!(has_long_run("-".repeat(LONG_RUN_BYTES).as_bytes()));
        assert!(has_long_run("你".repeat(LONG_RUN_BYTES / 3 + 1).as_bytes()));
        assert!(!has_long_run("1".repeat(4 * LONG_RUN_BYTES).as_bytes()));
        let words = "word ".repeat(LONG_RUN_BYTES);
        assert!(!has_long_run(words.as_bytes()));
        let chinese = "你好，今天天气怎么样？我们一起去公园散步吧。".repeat(50);
        assert!(!has_long_run(chinese.as_bytes()));
        assert!(has_long_run("🌍".repeat(LONG_RUN_BYTES / 4).as_bytes()));
        assert!(has_long_run(
            "\u{3000}".repeat(LONG_RUN_BYTES / 3 + 1).as_bytes()
        ));
        // The run may start anywhere relative to the windows.
        for offset in 0..300 {
            let text = format!(
                "{}{}{}",
                "1".repeat(offset),
                "a".repeat(LONG_RUN_BYTES),
                "1".repeat(7)
            );
            assert!(has_long_run(text.as_bytes()), "offset {offset}");
            let text = format!(
                "{}{}{}",
                "1".repeat(offset),
                "a".repeat(LONG_RUN_BYTES - 1),
                "1".repeat(300)
            );
            assert!(!has_long_run(text.as_bytes()), "offset {offset}");
        }
    }

    #[test]
    fn engines_agree_and_guard_routes() {
        let engine = Engine::load(Encoding::Cl100kBase).expect("cl100k_base is compiled in");
        let long = "a".repeat(10_000);
        assert_eq!(engine.engine_for(&long), EngineKind::Linear);
        assert_eq!(engine.engine_for("Hello, world!"), EngineKind::Fast);
        assert_eq!(
            engine.count_with(EngineKind::Fast, &long),
            engine.count_with(EngineKind::Linear, &long)
        );
        assert_eq!(engine.count("Hello"), 1);
        assert_eq!(engine.count(""), 0);
    }
}
