//! Long runs of one repeated ASCII character, counted exactly without tokenizing them.
//!
//! A megabyte of `a`, of spaces or of `-` is a single pre-tokenizer piece, and every BPE
//! engine pays for it: superlinear merges (`tiktoken-rs`, the `tiktoken` crate) or a linear
//! merge with a large constant (`bpe-openai` on punctuation, ~1 s/MiB). [`RunRules::shorten`]
//! cuts such runs down to a few hundred bytes before counting and adds back the tokens it
//! cut, so the count stays exact. Why it is exact:
//!
//! 1. Inside a run of byte `c`, every token is `c^k` for a length `k` in `K` (the lengths for
//!    which `c^k` is a token). A token sequence is the BPE encoding of its text exactly when
//!    every pair of neighbours is *compatible* (the encoding of `c^i c^j` is `[c^i, c^j]`):
//!    the property the `bpe` crate is built on.
//! 2. BPE is deterministic, so `c^n` has exactly one encoding for every `n`: one path through
//!    the compatibility graph on `K`. Two different cycles in that graph would give two
//!    encodings of the same string, so every cycle repeats one primitive cycle of `P` bytes
//!    and `Q` tokens.
//! 3. When a run is long enough that more than `|K|` tokens lie strictly inside it (past the
//!    tokens that may straddle its ends), some token repeats; the stretch between two
//!    consecutive repeats is one turn of that cycle, and removing it leaves a sequence whose
//!    pairs are all still compatible: the encoding of the same text with the run `P` bytes
//!    shorter, which has `Q` tokens fewer. The pre-tokenizer splits a long run the same way
//!    whatever its length (no bounded quantifier reaches into it; digits, grouped in threes,
//!    are excluded).
//!
//! The rule for each byte (`P`, `Q` and the minimum length where step 3 applies) is derived
//! from the vocabulary once per process ([`RunRules::derive`]) and checked as it is derived:
//! the derivation follows every run length up to well past the minimum and requires exactly
//! one encoding per length, the period to hold, and its counts to equal the real engine's at
//! sample lengths. A byte that fails gets no rule and is counted the ordinary way (GLM-4's
//! spaces fail: some of its long space tokens cannot be built by merges). Tests compare the
//! shortened counts with `tiktoken-rs` and with the unshortened engines for every ASCII byte.

use std::collections::HashMap;

/// Runs are found through aligned windows of this many bytes: a run of at least twice this
/// length always covers one whole window.
const WINDOW: usize = 64;

/// How a run of one byte can be shortened without changing its text's token count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunRule {
    /// Bytes removed per step (`P`).
    pub period: usize,
    /// Tokens removed per step (`Q`).
    pub tokens: usize,
    /// A run at least this long (plus one period) can lose one period.
    pub min_len: usize,
}

/// A text with its long runs shortened, and the tokens that were cut out with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortened {
    /// The shortened text (runs kept at `min_len ..< min_len + period` bytes).
    pub text: String,
    /// Tokens the removed bytes would have counted.
    pub removed_tokens: usize,
}

/// The run rules of one vocabulary, one per ASCII byte (`None`: never shortened).
#[derive(Debug, Clone)]
pub struct RunRules {
    rules: [Option<RunRule>; 128],
}

impl RunRules {
    /// No rules: nothing is ever shortened.
    pub fn none() -> Self {
        Self { rules: [None; 128] }
    }

    /// Derives and checks the rule of every ASCII byte from `bpe`'s vocabulary (tens of
    /// milliseconds; once per process and encoding).
    pub fn derive(bpe: &tiktoken::CoreBpe) -> Self {
        let vocab = RunVocab::scan(bpe);
        let rules = std::array::from_fn(|b| {
            let byte = u8::try_from(b).unwrap_or(b'0');
            derive_rule(bpe, byte, &vocab)
        });
        Self { rules }
    }

    /// The rule for `byte`, if it has one.
    pub fn rule(&self, byte: u8) -> Option<RunRule> {
        self.rules.get(usize::from(byte)).copied().flatten()
    }

    /// `text` with every run that has a rule and is longer than `min_len + period` cut down
    /// by whole periods, or `None` when there is nothing to cut (the usual case: a few byte
    /// comparisons per 64-byte window). Runs shorter than 128 bytes may be left alone: they
    /// are cheap to count anyway.
    pub fn shorten(&self, text: &str) -> Option<Shortened> {
        let bytes = text.as_bytes();
        let mut out: Option<String> = None;
        let mut removed_tokens = 0;
        let mut copied = 0;
        let mut start = 0;
        while start + WINDOW <= bytes.len() {
            let byte = bytes[start];
            let rule = match self.rule(byte) {
                Some(rule) if bytes[start..start + WINDOW].iter().all(|&b| b == byte) => rule,
                _ => {
                    start += WINDOW;
                    continue;
                }
            };
            let mut lo = start;
            while lo > copied && bytes[lo - 1] == byte {
                lo -= 1;
            }
            let mut hi = start + WINDOW;
            while hi < bytes.len() && bytes[hi] == byte {
                hi += 1;
            }
            let len = hi - lo;
            if len >= rule.min_len + rule.period {
                let keep = rule.min_len + (len - rule.min_len) % rule.period;
                removed_tokens += (len - keep) / rule.period * rule.tokens;
                // Cutting inside an ASCII run keeps `text` on character boundaries.
                let out = out.get_or_insert_with(|| String::with_capacity(text.len().min(1 << 16)));
                out.push_str(&text[copied..lo + keep]);
                copied = hi;
            }
            start = hi.div_ceil(WINDOW) * WINDOW;
        }
        let mut text_out = out?;
        text_out.push_str(&text[copied..]);
        Some(Shortened {
            text: text_out,
            removed_tokens,
        })
    }
}

/// What the vocabulary says about runs: the tokens made of one repeated ASCII byte, and how
/// far a run of a byte can reach into a token that also holds other bytes.
struct RunVocab {
    /// `pure[b]`: (length, id) of every token that is `b` repeated.
    pure: Vec<Vec<(usize, u32)>>,
    /// `edge[b]`: the longest run of `b` at the start or the end of a token that is not pure.
    edge: [usize; 128],
}

impl RunVocab {
    fn scan(bpe: &tiktoken::CoreBpe) -> Self {
        let mut pure = vec![Vec::new(); 128];
        let mut edge = [0usize; 128];
        for id in 0..u32::try_from(bpe.vocab_size()).unwrap_or(u32::MAX) {
            let bytes = bpe.decode(&[id]);
            let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
                continue;
            };
            let lead = bytes.iter().take_while(|&&b| b == first).count();
            if lead == bytes.len() {
                if first < 128 {
                    pure[usize::from(first)].push((bytes.len(), id));
                }
                continue;
            }
            let trail = bytes.iter().rev().take_while(|&&b| b == last).count();
            if first < 128 {
                edge[usize::from(first)] = edge[usize::from(first)].max(lead);
            }
            if last < 128 {
                edge[usize::from(last)] = edge[usize::from(last)].max(trail);
            }
        }
        Self { pure, edge }
    }
}

/// Derives the rule for `byte` (see the module docs), or `None` when the byte is excluded
/// or any check fails.
fn derive_rule(bpe: &tiktoken::CoreBpe, byte: u8, vocab: &RunVocab) -> Option<RunRule> {
    if byte >= 128 || byte.is_ascii_digit() {
        return None;
    }
    let run = |k: usize| String::from_utf8(vec![byte; k]).unwrap_or_default();
    // K: lengths whose token is its own encoding (a token that BPE never produces from its
    // own bytes cannot appear inside a run).
    let mut tokens: Vec<(usize, u32)> = vocab.pure[usize::from(byte)]
        .iter()
        .copied()
        .filter(|&(k, id)| bpe.encode(&run(k)) == [id])
        .collect();
    tokens.sort_unstable();
    let ids: HashMap<usize, u32> = tokens.iter().copied().collect();
    let lengths: Vec<usize> = tokens.iter().map(|&(k, _)| k).collect();
    let longest = *lengths.last()?;
    if lengths.first() != Some(&1) {
        return None;
    }
    let min_len = 2 * vocab.edge[usize::from(byte)] + (lengths.len() + 1) * longest;
    // A simple cycle weighs at most |K| · longest bytes; follow lengths well past that.
    let max_len = min_len + 2 * lengths.len() * longest + longest;

    // compatible[a][b]: is (K[a], K[b]) a compatible pair? Asked lazily: few pairs occur.
    let mut compatible: Vec<Vec<Option<bool>>> = vec![vec![None; lengths.len()]; lengths.len()];
    let mut compat = |a: usize, b: usize| -> bool {
        *compatible[a][b].get_or_insert_with(|| {
            bpe.encode(&run(lengths[a] + lengths[b])) == [ids[&lengths[a]], ids[&lengths[b]]]
        })
    };
    // last[n]: index in K of the last token of the (unique) encoding of byte^n;
    // count[n]: the number of tokens of that encoding.
    let mut last = vec![0usize; max_len + 1];
    let mut count = vec![0usize; max_len + 1];
    for n in 1..=max_len {
        let mut found = None;
        for (b, &k) in lengths.iter().enumerate().take_while(|&(_, &k)| k <= n) {
            if k == n || compat(last[n - k], b) {
                if found.is_some() {
                    return None; // two encodings: the theory does not hold here
                }
                found = Some(b);
            }
        }
        let b = found?;
        last[n] = b;
        count[n] = count[n - lengths[b]] + 1;
    }
    // The cycle: the first token that repeats along the encoding of the longest run.
    let mut path = Vec::new();
    let mut n = max_len;
    while n > 0 {
        path.push(lengths[last[n]]);
        n -= lengths[last[n]];
    }
    path.reverse();
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let (period, cycle_tokens) = path.iter().enumerate().find_map(|(i, &k)| {
        seen.insert(k, i)
            .map(|j| (path[j..i].iter().sum::<usize>(), i - j))
    })?;
    if period == 0 || max_len < min_len + period {
        return None;
    }
    let periodic =
        (min_len..=max_len - period).all(|n| count[n + period] == count[n] + cycle_tokens);
    // The derivation must agree with the real engine where it can be asked cheaply.
    let samples = (1..=longest).chain([2 * longest, min_len, min_len + period]);
    let agrees = samples.into_iter().all(|n| bpe.count(&run(n)) == count[n]);
    (periodic && agrees).then_some(RunRule {
        period,
        tokens: cycle_tokens,
        min_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cl100k() -> &'static tiktoken::CoreBpe {
        tiktoken::get_encoding("cl100k_base").expect("cl100k_base is compiled in")
    }

    #[test]
    fn rules_exist_for_the_pathological_bytes() {
        let rules = RunRules::derive(cl100k());
        for byte in [b'a', b' ', b'-', b'=', b'\n', b'\t', b'*', b'#', b'/', b'.'] {
            assert!(rules.rule(byte).is_some(), "no rule for {:?}", byte as char);
        }
        assert_eq!(
            rules.rule(b'7'),
            None,
            "digits are grouped in threes: excluded"
        );
        let a = rules.rule(b'a').expect("rule for a");
        assert_eq!((a.period, a.tokens), (8, 1));
    }

    #[test]
    fn shortening_keeps_the_count() {
        let bpe = cl100k();
        let rules = RunRules::derive(bpe);
        let run = |byte: u8, extra: usize| {
            let rule = rules.rule(byte).expect("rule");
            let len = rule.min_len.max(2 * WINDOW) + 3 * rule.period + extra;
            String::from_utf8(vec![byte; len]).expect("ascii")
        };
        for text in [
            format!("x{}y", run(b'a', 5)),
            format!("Hello{}world", run(b' ', 1)),
            format!("{}\n", run(b'-', 0)),
            format!("'{}s {}", run(b'=', 7), run(b'a', 3)),
        ] {
            let short = rules.shorten(&text).expect("a long run is shortened");
            assert!(short.text.len() < text.len());
            assert!(short.removed_tokens >= 3);
            assert_eq!(
                short.removed_tokens + bpe.count(&short.text),
                bpe.count(&text),
                "{:?}…",
                &text[..8]
            );
        }
    }

    #[test]
    fn short_and_ordinary_texts_are_left_alone() {
        let rules = RunRules::derive(cl100k());
        assert_eq!(rules.shorten("hello world"), None);
        assert_eq!(rules.shorten(&"word ".repeat(1000)), None);
        assert_eq!(rules.shorten(&"1".repeat(10_000)), None);
        assert_eq!(RunRules::none().shorten(&"a".repeat(10_000)), None);
    }
}
