//! Runs of Han characters (CJK ideographs, U+4E00–U+9FFF), cut where no token can cross.
//!
//! Chinese has no spaces, so a whole clause is one pre-tokenizer piece (`\p{L}+`), and
//! clauses are rarely repeated: every one misses the `tiktoken` crate's piece cache and pays
//! a full BPE merge, a few microseconds per clause, which is most of the time spent on a
//! megabyte of mixed text with 15 % Chinese. [`HanCuts::count`] cuts such runs into short
//! parts between characters `x y` that no vocabulary token can span, counts the parts (a
//! table lookup for a single character) and adds them up. Why the sum is exact:
//!
//! 1. **Pre-tokenizer.** Cutting the text between two Han characters (both letters, `Lo`)
//!    cuts the piece that contains them in two and changes no other piece. On the right, the
//!    letter alternative of every supported pattern (cl100k's, also GLM-4's, and o200k's)
//!    started at `y` ends where the whole piece ends: the end of the letter run, or, for
//!    o200k, the same backtracking point (the last lowercase-or-other letter, which is at or
//!    after `y`). On the left, the piece now ends at `x`, and the pieces before it ended at or
//!    before its start, decided by at most one character of look-ahead, which is unchanged.
//! 2. **BPE.** Merges only ever form vocabulary tokens. If no token can contain the bytes on
//!    both sides of the cut, no merge ever joins them, and the merges on each side happen in
//!    the same relative order (lowest rank first, leftmost on ties) as when each side is
//!    encoded alone. So the piece's encoding is the two sides' encodings, end to end.
//!
//! Which pairs a token might span is derived from the vocabulary once per process
//! ([`HanCuts::derive`]): for every token and every place in it where a UTF-8 continuation
//! byte is followed by the lead byte of a Han character, the token's bytes around that place
//! (up to three on each side) name the pairs `x y` it could span: exactly one pair when both
//! sides are whole characters, every character with that suffix or prefix otherwise. That is
//! a superset of the pairs any token really spans (a longer token may not fit the text
//! around), so the derivation can only cut less, never wrongly. The derivation checks itself
//! against the unsplit engine on a sample before it is used; tests compare the counts with
//! `tiktoken-rs` and with the unsplit engine for all three vocabularies.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, Ordering};

use rustc_hash::{FxHashMap, FxHashSet};

/// First code point of the range handled (CJK Unified Ideographs).
const FIRST: u32 = 0x4E00;
/// Number of code points handled: U+4E00..=U+9FFF, every one a letter (`Lo`).
const COUNT: usize = 0xA000 - 0x4E00;
/// Runs shorter than this many characters are left whole. Minimums of 2, 4 and 6 timed the
/// same once short parts were memoised, and 2 cuts the most (docs/TOKEN_COUNTING.md).
pub const MIN_RUN_CHARS: usize = 2;

/// The cut points of one vocabulary: which Han pairs a token may span, and what a single
/// Han character counts.
#[derive(Clone)]
pub struct HanCuts {
    /// The pairs some token may span, by left character `x` (indices from U+4E00): the
    /// right characters of `x` are `partners[starts[x]..starts[x + 1]]`, sorted.
    starts: Box<[u32]>,
    partners: Box<[u16]>,
    /// Per character: its token count alone ([`SINGLE`] bits) and the [`PINNED`], [`LEFT`]
    /// and [`RIGHT`] flags. One byte each, so the hot loop reads one small table.
    traits: Box<[u8]>,
    /// Tells this vocabulary's entries apart in the per-thread part cache (unique per
    /// derivation in the process).
    id: u32,
}

/// Bits of a character's trait byte holding its token count alone (a Han character is at
/// most three tokens: one per byte).
const SINGLE: u8 = 0b11;
/// The character is in a token that BPE merges cannot build: never cut next to it.
const PINNED: u8 = 1 << 2;
/// The character is the left one of some pair a token may span.
const LEFT: u8 = 1 << 3;
/// The character is the right one of some pair a token may span.
const RIGHT: u8 = 1 << 4;

/// Parts of up to this many bytes (five characters) are remembered per thread.
const PART_KEY_BYTES: usize = 15;
/// Remembered parts per thread; the cache is emptied when full (at most ~128 KB per thread:
/// 4096 buckets of 32 bytes).
const PART_CACHE_ENTRIES: usize = 2048;

/// The per-thread part cache: counts of short parts under one cuts' id (a process counts
/// with one vocabulary; a thread that switches vocabulary starts the cache afresh).
#[derive(Default)]
struct Parts {
    /// The id of the cuts the entries belong to.
    id: u32,
    /// Part (bytes and length, see [`part_key`]) → count.
    counts: FxHashMap<u128, u8>,
}

thread_local! {
    /// Words recur, so most parts are found here instead of being counted.
    static PARTS: RefCell<Parts> = RefCell::new(Parts::default());
}

/// The part cache key of `part` (at most [`PART_KEY_BYTES`] bytes): its bytes and length.
fn part_key(part: &[u8]) -> u128 {
    let mut bytes = [0u8; 16];
    bytes[..part.len()].copy_from_slice(part);
    bytes[15] = part.len() as u8;
    u128::from_le_bytes(bytes)
}

impl std::fmt::Debug for HanCuts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HanCuts")
            .field("spanned_pairs", &self.partners.len())
            .field("pinned_characters", &self.pinned_characters())
            .finish()
    }
}

/// The index (from U+4E00) of the Han character whose UTF-8 starts at `text[i]`.
#[inline]
fn han_at(text: &[u8], i: usize) -> Option<u32> {
    let (&lead, &b1, &b2) = (text.get(i)?, text.get(i + 1)?, text.get(i + 2)?);
    if !(0xE4..=0xE9).contains(&lead) || (b1 & 0xC0) != 0x80 || (b2 & 0xC0) != 0x80 {
        return None;
    }
    let cp = (u32::from(lead & 0x0F) << 12) | (u32::from(b1 & 0x3F) << 6) | u32::from(b2 & 0x3F);
    cp.checked_sub(FIRST)
}

/// The first Han character at or after `i`. Skips 32 ASCII bytes at a time.
#[inline]
fn next_han(text: &[u8], mut i: usize) -> Option<usize> {
    while i < text.len() {
        if text[i] < 0x80
            && let Some(block) = text.get(i..i + 32)
            && block.iter().fold(0, |acc, &b| acc | b) < 0x80
        {
            i += 32;
            continue;
        }
        if text[i] >= 0xE4 && han_at(text, i).is_some() {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// True when no pre-tokenizer piece can go on past a letter at `text[at - 1]`: the text ends,
/// or the next character is ASCII other than a letter or `'` (o200k appends contractions to
/// letters), or common CJK punctuation. None of these is a letter, mark or contraction, so
/// every supported pattern ends the letter piece there and starts a new piece at `at`.
#[inline]
fn ends_piece(text: &[u8], at: usize) -> bool {
    match text.get(at..) {
        None | Some([]) => true,
        Some([b, ..]) if b.is_ascii() => !b.is_ascii_alphabetic() && *b != b'\'',
        // 、 。 「 」
        Some([0xE3, 0x80, 0x81 | 0x82 | 0x8C | 0x8D, ..]) => true,
        // ！ （ ） ， ： ； ？
        Some(
            [
                0xEF,
                0xBC,
                0x81 | 0x88 | 0x89 | 0x8C | 0x9A | 0x9B | 0x9F,
                ..,
            ],
        ) => true,
        // “ ” ‘ ’ are quotes (Pi/Pf), but ’ is an apostrophe to some contraction rules: only “ ”.
        Some([0xE2, 0x80, 0x9C | 0x9D, ..]) => true,
        _ => false,
    }
}

/// UTF-8 of the Han character with index `index`.
fn utf8(index: u32) -> [u8; 3] {
    let c = char::from_u32(FIRST + index).unwrap_or('\u{4E00}');
    let mut buf = [0; 4];
    c.encode_utf8(&mut buf);
    [buf[0], buf[1], buf[2]]
}

/// The Han characters of tokens that BPE merges cannot build from their bytes (GLM-4 has
/// some, e.g. ` 理`: the merges make ` \xe7` first and never reach it). The `tiktoken`
/// crate counts a piece that is a whole token as one token without merging, so a cut that
/// leaves such a token as a part of its own would count 1 where the uncut piece merges to
/// more. A part only equals such a token if a cut touches one of its Han characters, so no
/// cut is made next to any of them.
fn pinned_characters(tokens: &[(Vec<u8>, u32)]) -> Vec<bool> {
    let ranks: FxHashMap<&[u8], u32> = tokens.iter().map(|(t, id)| (t.as_slice(), *id)).collect();
    let mut pinned = vec![false; COUNT];
    for (token, _) in tokens {
        if std::str::from_utf8(token).is_err() {
            continue;
        }
        let hans: Vec<u32> = (0..token.len()).filter_map(|i| han_at(token, i)).collect();
        if hans.is_empty() || merges_to_one(token, &ranks) {
            continue;
        }
        for x in hans {
            pinned[x as usize] = true;
        }
    }
    pinned
}

/// True when byte-pair merges (lowest rank first, leftmost on ties) turn `token`'s bytes
/// into the single token.
fn merges_to_one(token: &[u8], ranks: &FxHashMap<&[u8], u32>) -> bool {
    // Boundaries between the current parts.
    let mut cuts: Vec<usize> = (0..=token.len()).collect();
    while cuts.len() > 2 {
        let best = (0..cuts.len() - 2)
            .filter_map(|i| {
                ranks
                    .get(&token[cuts[i]..cuts[i + 2]])
                    .map(|&rank| (rank, i))
            })
            .min();
        match best {
            Some((_, i)) => {
                cuts.remove(i + 1);
            }
            None => return false,
        }
    }
    true
}

/// Why derived cuts were rejected (logged at start-up; counting then goes on without them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeriveProblem {
    /// Fewer tokens could be read back than the vocabulary has.
    IncompleteVocabulary {
        /// Tokens read back.
        read: usize,
        /// Tokens the vocabulary has.
        expected: usize,
    },
    /// A sample counted differently with and without the cuts.
    SampleMismatch {
        /// Count with the cuts.
        cut: usize,
        /// Count of the unsplit engine.
        whole: usize,
    },
}

impl std::fmt::Display for DeriveProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeriveProblem::IncompleteVocabulary { read, expected } => {
                write!(f, "read back {read} of {expected} tokens")
            }
            DeriveProblem::SampleMismatch { cut, whole } => {
                write!(f, "a sample counts {cut} with cuts and {whole} without")
            }
        }
    }
}

impl HanCuts {
    /// Derives the cuts of `fast`'s vocabulary (tens of milliseconds) and checks them on a
    /// sample. Call once per process, before the proxy reports ready.
    pub fn derive(fast: &tiktoken::CoreBpe) -> Result<Self, DeriveProblem> {
        let chars: Vec<[u8; 3]> = (0..COUNT as u32).map(utf8).collect();
        let matching = |keep: &dyn Fn(&[u8; 3]) -> bool| -> Vec<u32> {
            (0..COUNT as u32)
                .filter(|&i| keep(&chars[i as usize]))
                .collect()
        };
        let mut spanned = FxHashSet::default();
        let mut tokens: Vec<(Vec<u8>, u32)> = Vec::new();
        let mut read = 0;
        // Ranks may have gaps; special tokens (read back too) only add pairs, never remove.
        let ids = fast.vocab_size() + fast.num_special_tokens() + 1024;
        for id in 0..ids as u32 {
            let token = fast.decode(&[id]);
            if token.is_empty() {
                continue;
            }
            read += 1;
            tokens.push((token.clone(), id));
            for k in 1..token.len() {
                if (token[k - 1] & 0xC0) != 0x80 || !(0xE4..=0xE9).contains(&token[k]) {
                    continue;
                }
                let left = &token[k.saturating_sub(3)..k];
                let right = &token[k..(k + 3).min(token.len())];
                let xs = match han_at(left, 0) {
                    Some(x) if left.len() == 3 => vec![x],
                    _ if left.len() == 3 => Vec::new(),
                    _ => matching(&|c| c.ends_with(left)),
                };
                if xs.is_empty() {
                    continue;
                }
                let ys = match han_at(right, 0) {
                    Some(y) => vec![y],
                    None if right.len() == 3 => Vec::new(),
                    None => matching(&|c| c.starts_with(right)),
                };
                for &x in &xs {
                    spanned.extend(ys.iter().map(|&y| (x << 16) | y));
                }
            }
        }
        let expected = fast.vocab_size() + fast.num_special_tokens();
        if read < expected {
            return Err(DeriveProblem::IncompleteVocabulary { read, expected });
        }
        let pinned = pinned_characters(&tokens);
        let mut traits: Box<[u8]> = chars
            .iter()
            .zip(&pinned)
            .map(|(c, &pinned)| {
                let text = std::str::from_utf8(c).unwrap_or("");
                let alone = u8::try_from(fast.count(text))
                    .unwrap_or(u8::MAX)
                    .min(SINGLE);
                alone | if pinned { PINNED } else { 0 }
            })
            .collect();
        let mut pairs: Vec<u32> = spanned.into_iter().collect();
        pairs.sort_unstable();
        let mut starts = vec![0u32; COUNT + 1].into_boxed_slice();
        for &pair in &pairs {
            let (x, y) = ((pair >> 16) as usize, (pair & 0xFFFF) as usize);
            starts[x + 1] += 1;
            traits[x] |= LEFT;
            traits[y] |= RIGHT;
        }
        for x in 0..COUNT {
            starts[x + 1] += starts[x];
        }
        let partners = pairs.iter().map(|&pair| (pair & 0xFFFF) as u16).collect();
        static IDS: AtomicU32 = AtomicU32::new(0);
        let cuts = Self {
            starts,
            partners,
            traits,
            // Ids start at 1: 0 is the empty per-thread cache's.
            id: IDS.fetch_add(1, Ordering::Relaxed) + 1,
        };
        cuts.check(fast)?;
        Ok(cuts)
    }

    /// Counts a sample (every Han character in order, in clauses of varying length, between
    /// Latin words and punctuation) with and without the cuts.
    fn check(&self, fast: &tiktoken::CoreBpe) -> Result<(), DeriveProblem> {
        let mut sample = String::new();
        let mut index = 0u32;
        let mut len = 1;
        while (index as usize) < COUNT {
            for _ in 0..len {
                if (index as usize) < COUNT {
                    sample.push(char::from_u32(FIRST + index).unwrap_or('中'));
                }
                index += 1;
            }
            sample.push_str(["，", "。", " GLM", "的", "s ", "\n"][len % 6]);
            len = len % 37 + 1;
        }
        let (cut, whole) = (self.count(&sample, |t| fast.count(t)), fast.count(&sample));
        if cut != whole {
            return Err(DeriveProblem::SampleMismatch { cut, whole });
        }
        Ok(())
    }

    /// True when some token may span the pair `x y` (so the run must not be cut there).
    #[inline]
    fn may_span(&self, x: u32, y: u32) -> bool {
        let (tx, ty) = (self.traits[x as usize], self.traits[y as usize]);
        if (tx | ty) & PINNED != 0 {
            return true;
        }
        if tx & LEFT == 0 || ty & RIGHT == 0 {
            return false;
        }
        let (from, to) = (self.starts[x as usize], self.starts[x as usize + 1]);
        let partners = &self.partners[from as usize..to as usize];
        // `y` fits in 16 bits: indices are below COUNT.
        let y = y as u16;
        if partners.len() <= 8 {
            partners.contains(&y)
        } else {
            partners.binary_search(&y).is_ok()
        }
    }

    /// The count of a part of several Han characters between two cuts (one pre-tokenizer
    /// piece of its own), remembered per thread when it is short.
    fn count_part(&self, part: &str, count: &mut impl FnMut(&str) -> usize) -> usize {
        if part.len() > PART_KEY_BYTES {
            return count(part);
        }
        let key = part_key(part.as_bytes());
        let found = PARTS.with_borrow(|parts| {
            (parts.id == self.id)
                .then(|| parts.counts.get(&key).copied())
                .flatten()
        });
        if let Some(n) = found {
            return usize::from(n);
        }
        let n = count(part);
        if let Ok(small) = u8::try_from(n) {
            PARTS.with_borrow_mut(|parts| {
                if parts.id != self.id || parts.counts.len() >= PART_CACHE_ENTRIES {
                    parts.counts.clear();
                    parts.id = self.id;
                }
                parts.counts.insert(key, small);
            });
        }
        n
    }

    /// Number of Han characters never cut next to (they are in tokens merges cannot build).
    pub fn pinned_characters(&self) -> usize {
        self.traits.iter().filter(|&&t| t & PINNED != 0).count()
    }

    /// Number of Han pairs some token may span.
    pub fn spanned_pairs(&self) -> usize {
        self.partners.len()
    }

    /// The token count of `text`, given `count`, the engine's exact count of any text:
    /// Han runs of [`MIN_RUN_CHARS`] or more are cut between pairs no token spans, each part
    /// between two cuts is counted alone (a table lookup for one character), and `count`
    /// gets everything else in stretches.
    pub fn count(&self, text: &str, mut count: impl FnMut(&str) -> usize) -> usize {
        let bytes = text.as_bytes();
        let mut total = 0;
        // `text[..counted]` is counted.
        let mut counted = 0;
        let mut i = 0;
        while let Some(start) = next_han(bytes, i) {
            // Short runs are left whole (and skipped in one step).
            if let Some(short) = (1..MIN_RUN_CHARS).find(|k| han_at(bytes, start + 3 * k).is_none())
            {
                i = start + 3 * short;
                continue;
            }
            let mut last_cut = None;
            let mut x = han_at(bytes, start).unwrap_or(0);
            let mut at = start + 3;
            while let Some(y) = han_at(bytes, at) {
                if !self.may_span(x, y) {
                    total += match last_cut {
                        None => self.count_part(&text[counted..at], &mut count),
                        Some(from) if at - from == 3 => {
                            usize::from(self.traits[x as usize] & SINGLE)
                        }
                        Some(from) => self.count_part(&text[from..at], &mut count),
                    };
                    last_cut = Some(at);
                }
                x = y;
                at += 3;
            }
            i = at;
            if ends_piece(bytes, at) {
                // The run ends its piece: count up to its end now, so the next stretch
                // starts at the punctuation (short, and often seen before).
                total += match last_cut {
                    None => count(&text[counted..at]),
                    Some(from) if at - from == 3 => usize::from(self.traits[x as usize] & SINGLE),
                    Some(from) => self.count_part(&text[from..at], &mut count),
                };
                counted = at;
            } else if let Some(cut) = last_cut {
                counted = cut;
            }
        }
        total + count(&text[counted..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn han_at_reads_only_the_ideograph_block() {
        assert_eq!(han_at("中".as_bytes(), 0), Some('中' as u32 - FIRST));
        assert_eq!(han_at("一".as_bytes(), 0), Some(0));
        assert_eq!(han_at("鿿".as_bytes(), 0), Some(COUNT as u32 - 1));
        // U+3400 (extension A) and U+3002 (。) are outside; so are truncated sequences.
        assert_eq!(han_at("㐀".as_bytes(), 0), None);
        assert_eq!(han_at("。".as_bytes(), 0), None);
        assert_eq!(han_at(&"中".as_bytes()[..2], 0), None);
    }

    #[test]
    fn next_han_skips_ascii_and_other_scripts() {
        let text = "plain ascii text, longer than a word é ü 。中";
        assert_eq!(next_han(text.as_bytes(), 0), text.find('中'));
        assert_eq!(next_han(b"no han here at all, only ascii", 0), None);
    }

    #[test]
    fn cuts_count_like_the_whole_engine_and_do_cut() {
        let fast = tiktoken::get_encoding("cl100k_base").expect("cl100k");
        let cuts = HanCuts::derive(fast).expect("derive");
        let text = "人工智能正在改变世界，模型推理速度非常快。Hello 世界 GLM模型的代理服务器请求响应令牌数量计算";
        let mut calls = 0;
        let counted = cuts.count(text, |t| {
            calls += 1;
            fast.count(t)
        });
        assert_eq!(counted, fast.count(text));
        assert!(calls > 2, "the long runs were cut ({calls} calls)");
    }

    /// Counts `text` cut before every Han character that follows another (what the cuts
    /// would do if they ignored the vocabulary).
    fn cut_everywhere(fast: &tiktoken::CoreBpe, text: &str) -> usize {
        let mut total = 0;
        let mut from = 0;
        for (at, _) in text.char_indices().skip(1) {
            let bytes = text.as_bytes();
            if han_at(bytes, at).is_some() && at >= 3 && han_at(bytes, at - 3).is_some() {
                total += fast.count(&text[from..at]);
                from = at;
            }
        }
        total + fast.count(&text[from..])
    }

    #[test]
    fn cutting_inside_a_word_token_would_miscount_and_the_cuts_do_not() {
        let fast = tiktoken::get_encoding("o200k_base").expect("o200k");
        let cuts = HanCuts::derive(fast).expect("derive");
        let text = "中华人民共和国的人工智能正在改变世界";
        assert_ne!(
            cut_everywhere(fast, text),
            fast.count(text),
            "word tokens span pairs"
        );
        assert_eq!(cuts.count(text, |t| fast.count(t)), fast.count(text));
    }

    #[test]
    fn remembered_parts_are_kept_apart_per_vocabulary() {
        let (cl, glm) = (
            tiktoken::get_encoding("cl100k_base").expect("cl100k"),
            tiktoken::get_encoding("glm4").expect("glm4"),
        );
        let (cl_cuts, glm_cuts) = (
            HanCuts::derive(cl).expect("derive"),
            HanCuts::derive(glm).expect("derive"),
        );
        // Same thread, same short parts, different counts per vocabulary.
        let text = "人工智能，人工智能。模型推理，模型推理。";
        assert_ne!(cl.count(text), glm.count(text));
        for _ in 0..2 {
            assert_eq!(cl_cuts.count(text, |t| cl.count(t)), cl.count(text));
            assert_eq!(glm_cuts.count(text, |t| glm.count(t)), glm.count(text));
        }
    }

    #[test]
    fn glm4_tokens_merges_cannot_build_are_never_cut_out() {
        let fast = tiktoken::get_encoding("glm4").expect("glm4");
        let cuts = HanCuts::derive(fast).expect("derive");
        assert!(cuts.pinned_characters() > 0);
        // ` 理` is a GLM-4 token that merges never build: alone it counts 1, inside the
        // piece ` 理琇…` it merges to 3 tokens.
        let text = " 理琇琈琉琊琋琌琍琎琏琐琑琒琓";
        assert_eq!(fast.count(" 理"), 1);
        assert_ne!(cut_everywhere(fast, text), fast.count(text));
        assert_eq!(cuts.count(text, |t| fast.count(t)), fast.count(text));
        for encoding in ["cl100k_base", "o200k_base"] {
            let fast = tiktoken::get_encoding(encoding).expect("vocabulary");
            let cuts = HanCuts::derive(fast).expect("derive");
            assert_eq!(
                cuts.pinned_characters(),
                0,
                "{encoding} merges build every token"
            );
        }
    }
}
