//! Exact counting: both engines equal `tiktoken-rs`'s `encode_ordinary(..).len()` (the
//! reference) on a corpus and on random inputs, and the original's golden ranges hold.
//!
//! Long single-character runs: the exact run-length shortcut (`tokens/runs.rs`) must never
//! change a count. Checked against `tiktoken-rs` on the pathological inputs and random runs,
//! and against the unshortened engine for every ASCII byte of every encoding (glm4 has no
//! `tiktoken-rs` reference).
//!
//! Han runs: cutting them where no token can span (`tokens/han.rs`) must never change a
//! count either. Checked on texts dense in multi-character Han tokens, halves of them and the
//! neighbours that change pre-tokenizer pieces, against `tiktoken-rs` and, for glm4, the
//! unsplit engine.

use proptest::prelude::*;
use zai_proxy::tokens::runs::RunRule;
use zai_proxy::tokens::{Encoding, Engine, EngineKind, InputMethod, TokenCounter};

fn engine(encoding: Encoding) -> Engine {
    Engine::load(encoding).expect("vocabulary compiled in")
}

fn reference(encoding: Encoding) -> &'static tiktoken_rs::CoreBPE {
    match encoding {
        Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
        Encoding::O200kBase => tiktoken_rs::o200k_base_singleton(),
        Encoding::Glm4 | Encoding::Glm5 => unreachable!("tiktoken-rs has no {encoding}"),
    }
}

/// Checks every engine of `encoding` (not only the one the guard picks) against tiktoken-rs.
fn assert_exact(encoding: Encoding, e: &Engine, text: &str) {
    let expected = reference(encoding).encode_ordinary(text).len();
    assert_eq!(
        e.count(text),
        expected,
        "{encoding} guard-routed count of {text:?}"
    );
    for kind in [EngineKind::Fast, EngineKind::Linear] {
        if let Some(n) = e.count_with(kind, text) {
            assert_eq!(n, expected, "{encoding} {kind:?} count of {text:?}");
        }
    }
}

fn corpus() -> Vec<String> {
    let mut texts: Vec<String> = [
        "",
        "Hello",
        "Hello, world!",
        "The quick brown fox jumps over the lazy dog.",
        "def hello_world():\n    print('Hello, world!')\n",
        "Hello 世界! 🌍",
        "你好，今天天气怎么样？",
        "{\"name\": \"test\", \"value\": 123}",
        "<|endoftext|> is ordinary text here <|fim_prefix|>",
        "   leading and trailing   \n\n\t\r\n",
        "I'm, you're, they'll, we'd, it's — don't",
        "Ünïcödé ñ ß Œ ﬁ ǅ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u{200d}\u{fe0f} 👨‍👩‍👧‍👦",
        "12345678901234567890 3.14159 1e-10 0xDEADBEEF",
        "fn main() { let x: Vec<u8> = vec![1, 2, 3]; println!(\"{x:?}\"); }",
        "SELECT * FROM users WHERE id = 42; -- comment",
        "日本語のテキストとカタカナ、ひらがな。한국어 텍스트.",
        "Привет, мир! Ελληνικά. עברית. العربية.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (c, n) in [
        ('a', 5000),
        (' ', 5000),
        ('\n', 3000),
        ('-', 3000),
        ('你', 2000),
        ('1', 1000),
        ('é', 2000),
        ('\t', 1000),
    ] {
        texts.push(std::iter::repeat_n(c, n).collect());
    }
    texts.push(format!("x{}y", " ".repeat(1000)));
    texts.push(format!("{}\n{}", "=".repeat(700), "word ".repeat(200)));
    texts.push("ab".repeat(2000));
    texts.push(" \n".repeat(800));
    texts
}

#[test]
fn corpus_counts_equal_tiktoken_rs() {
    for encoding in [Encoding::Cl100kBase, Encoding::O200kBase] {
        let e = engine(encoding);
        for text in corpus() {
            assert_exact(encoding, &e, &text);
        }
    }
}

#[test]
fn vocabularies_have_the_expected_sizes_and_glm4_is_its_own() {
    for encoding in Encoding::ALL {
        let e = engine(encoding);
        assert_eq!(e.encoding(), encoding);
    }
    let glm = engine(Encoding::Glm4);
    let cl = engine(Encoding::Cl100kBase);
    // GLM's vocabulary is not cl100k's: Chinese needs fewer GLM tokens.
    let chinese = "今天天气很好，我们一起去公园散步吧。人工智能正在改变世界。";
    assert!(
        glm.count(chinese) < cl.count(chinese),
        "{} vs {}",
        glm.count(chinese),
        cl.count(chinese)
    );
    assert_eq!(glm.count("Hello"), 1);
    assert_eq!(glm.count(""), 0);
    // Only the fast engine exists for glm4; it still handles long runs.
    assert_eq!(glm.count_with(EngineKind::Linear, "x"), None);
    assert!(glm.count(&"a".repeat(20_000)) > 0);
}

/// The `tiktoken` crate's own encoder (no run-length shortcut, no Han cuts): the reference
/// for the GLM vocabularies, which `tiktoken-rs` does not ship.
fn glm_reference(encoding: Encoding, text: &str) -> usize {
    tiktoken::get_encoding(encoding.name())
        .expect("vocabulary compiled in")
        .encode(text)
        .len()
}

#[test]
fn glm5_is_its_own_vocabulary_and_exact_against_the_crate_encoder() {
    let glm5 = engine(Encoding::Glm5);
    let glm4 = engine(Encoding::Glm4);
    assert_eq!(glm5.encoding(), Encoding::Glm5);
    assert_eq!(
        glm5.count_with(EngineKind::Linear, "x"),
        None,
        "no linear engine"
    );
    let mut texts = corpus();
    texts.extend([
        "今天天气很好，我们一起去公园散步吧。人工智能正在改变世界。".repeat(40),
        "a".repeat(100_000),
        " ".repeat(50_000),
        "-=".repeat(30_000),
        "你".repeat(20_000),
        format!("{}Hello{}", "\n".repeat(3_000), "!".repeat(3_000)),
    ]);
    let mut differs = false;
    for text in &texts {
        assert_eq!(
            glm5.count(text),
            glm_reference(Encoding::Glm5, text),
            "glm5 on {:?}",
            text.chars().take(60).collect::<String>()
        );
        assert_eq!(glm4.count(text), glm_reference(Encoding::Glm4, text));
        differs |= glm5.count(text) != glm4.count(text);
    }
    assert!(
        differs,
        "glm5 counts some of the corpus differently from glm4"
    );
}

/// The original's golden ranges (reference §8.2, `golden_test_data.json`), cl100k_base.
#[test]
fn golden_ranges_of_the_original() {
    let counter = TokenCounter::load(Encoding::Cl100kBase, 8 << 20).expect("loads");
    let basic: &[(&str, usize, usize)] = &[
        ("", 0, 0),
        ("Hello", 1, 1),
        ("Hello, world!", 3, 5),
        ("Hello, how are you?", 5, 8),
        ("The quick brown fox jumps over the lazy dog.", 9, 12),
        ("def hello_world():\n    print('Hello, world!')", 10, 18),
        ("Hello 世界! 🌍", 5, 12),
        ("你好，今天天气怎么样？", 5, 15),
        ("{\"name\": \"test\", \"value\": 123}", 8, 15),
    ];
    for (text, lo, hi) in basic {
        let n = counter.count(text);
        assert!((*lo..=*hi).contains(&n), "{text:?}: {n} not in {lo}..={hi}");
    }
    let pangram = "The quick brown fox jumps over the lazy dog. ".repeat(10);
    let n = counter.count(pangram.trim_end());
    assert!((90..=120).contains(&n), "long paragraph: {n}");
    for edge in [
        "   \t  ",
        "!@#$%^&*()_+-=[]{}|;':\",./<>?",
        "\n\n\n",
        "🎉🎊🎈🎁",
        "Hello世界Привет",
    ] {
        let _ = counter.count(edge); // must not panic
    }
    assert!(counter.count(&"a".repeat(50_000)) > 0);

    let requests: &[(&str, u64, u64)] = &[
        (
            r#"{"model":"glm-4","messages":[{"role":"user","content":"Hello"}]}"#,
            1,
            3,
        ),
        (
            r#"{"model":"glm-4","messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello there"}]}"#,
            2,
            6,
        ),
        (r#"{"model":"glm-4","messages":[]}"#, 0, 0),
    ];
    for (body, lo, hi) in requests {
        let est = counter.input_tokens(body.as_bytes());
        assert_eq!(est.method, InputMethod::Counted);
        assert!((*lo..=*hi).contains(&est.tokens), "{body}: {}", est.tokens);
    }
    for malformed in [
        &b"{\"model\": \"glm-4\""[..],
        b"{invalid json}",
        b"",
        b"{\"messages\": [{\"role\"",
    ] {
        assert_eq!(counter.input_tokens(malformed).tokens, 0);
    }

    let streams: &[(&str, u64, u64)] = &[
        (
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" world\"}}\n\n",
            2,
            4,
        ),
        (
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\"}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            0,
            0,
        ),
        (
            "data: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"你好\"}}\n\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"世界\"}}\n\n",
            2,
            8,
        ),
    ];
    for (sse, lo, hi) in streams {
        let mut stream = zai_proxy::tokens::StreamUsage::new();
        stream.feed(sse.as_bytes(), counter.engine());
        let report = stream.finish(counter.engine(), None);
        assert!(
            (*lo..=*hi).contains(&report.output_estimate),
            "{sse}: {}",
            report.output_estimate
        );
    }

    let bodies: &[(&str, u64, u64)] = &[
        (
            r#"{"content":[{"type":"text","text":"Hello there"}]}"#,
            2,
            4,
        ),
        (
            r#"{"content":[{"type":"text","text":"Hello"},{"type":"text","text":"How are you?"}]}"#,
            3,
            6,
        ),
        (r#"{"content":[]}"#, 0, 0),
    ];
    for (body, lo, hi) in bodies {
        let report = counter.body_usage(body.as_bytes(), None);
        assert!(
            (*lo..=*hi).contains(&report.usage.output),
            "{body}: {}",
            report.usage.output
        );
    }
}

fn unicode_soup() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9 ,.!?'\\n\\t]{0,200}",
        "[ \\t\\n\\r]{0,300}",
        "[\\p{Han}，。！？ ]{0,100}",
        "(fn|let|if|else|return|[{}();=<>+*/-]|[a-z_]{1,8}|[0-9]{1,6}| |\\n    ){0,80}",
        (prop::char::any(), 0usize..400).prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
        (
            "[a-z ]{0,20}",
            prop::char::any(),
            250usize..600,
            "[a-z ]{0,20}"
        )
            .prop_map(|(a, c, n, b)| format!(
                "{a}{}{b}",
                std::iter::repeat_n(c, n).collect::<String>()
            )),
    ]
}

/// `None` when every engine agrees with tiktoken-rs, else a description of the mismatch.
fn mismatch(encoding: Encoding, e: &Engine, text: &str) -> Option<String> {
    let expected = reference(encoding).encode_ordinary(text).len();
    let counts = [
        Some(e.count(text)),
        e.count_with(EngineKind::Fast, text),
        e.count_with(EngineKind::Linear, text),
    ];
    counts
        .iter()
        .flatten()
        .any(|n| *n != expected)
        .then(|| format!("{encoding}: expected {expected}, got {counts:?}"))
}

thread_local! {
    static ENGINES: [(Encoding, Engine); 2] = [
        (Encoding::Cl100kBase, engine(Encoding::Cl100kBase)),
        (Encoding::O200kBase, engine(Encoding::O200kBase)),
    ];
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_text_counts_equal_tiktoken_rs(parts in prop::collection::vec(unicode_soup(), 1..4)) {
        let text: String = parts.concat();
        let problems: Vec<String> = ENGINES.with(|engines| {
            engines.iter().filter_map(|(enc, e)| mismatch(*enc, e, &text)).collect()
        });
        prop_assert!(problems.is_empty(), "{:?} on {:?}", problems, text);
    }
}

// ---- long single-character runs (tokens/runs.rs) ----

fn run(byte: u8, len: usize) -> String {
    String::from_utf8(vec![byte; len]).expect("ASCII")
}

const CONTEXTS: [(&str, &str); 8] = [
    ("", ""),
    ("x", "y"),
    (" ", "\n"),
    ("\n", " word"),
    ("Hello, ", "'s"),
    ("'", "A"),
    ("A", "1"),
    ("世界", "🌍"),
];

#[test]
fn pathological_megabytes_equal_tiktoken_rs_and_are_shortened() {
    const LEN: usize = 200_000;
    for encoding in [Encoding::Cl100kBase, Encoding::O200kBase] {
        let e = engine(encoding);
        for byte in [b'a', b' ', b'-', b'=', b'\n', b'\t', b'*', b'.'] {
            let text = run(byte, LEN);
            let short = e.run_rules().shorten(&text).unwrap_or_else(|| {
                panic!("{encoding}: a run of {:?} is not shortened", byte as char)
            });
            assert!(short.text.len() < 20_000, "{encoding} {:?}", byte as char);
            assert_eq!(
                e.count(&text),
                reference(encoding).encode_ordinary(&text).len(),
                "{encoding}: {LEN} × {:?}",
                byte as char
            );
        }
    }
}

#[test]
fn every_ascii_byte_with_a_rule_counts_as_without_it() {
    for encoding in Encoding::ALL {
        let e = engine(encoding);
        let mut with_rules = 0;
        for byte in 0u8..128 {
            let Some(RunRule {
                period, min_len, ..
            }) = e.run_rules().rule(byte)
            else {
                continue;
            };
            with_rules += 1;
            for (i, extra) in [0, 1, period - 1, 2 * period + 3].into_iter().enumerate() {
                let (before, after) = CONTEXTS[(usize::from(byte) + i) % CONTEXTS.len()];
                // Runs shorter than 128 bytes may be left alone (window scan).
                let len = min_len.max(128) + period + extra;
                let text = format!("{before}{}{after}", run(byte, len));
                assert!(e.run_rules().shorten(&text).is_some());
                assert_eq!(
                    e.count(&text),
                    e.count_with(EngineKind::Fast, &text).expect("fast engine"),
                    "{encoding}: {before:?} + {len} × {:?} + {after:?}",
                    byte as char
                );
            }
        }
        // Every ASCII byte but the ten digits has a rule in every shipped encoding.
        assert_eq!(with_rules, 118, "{encoding}");
    }
}

/// Random ASCII runs just past their rule's minimum, between random neighbours.
fn run_text() -> impl Strategy<Value = (u8, usize, String, String)> {
    (
        (0u8..128).prop_filter("digits have no rule", |b| !b.is_ascii_digit()),
        0usize..400,
        "[a-zA-Z0-9 ,.'\\n-]{0,6}",
        "[a-zA-Z0-9 ,.'\\n-]{0,6}",
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn random_runs_equal_tiktoken_rs((byte, extra, before, after) in run_text()) {
        for encoding in [Encoding::Cl100kBase, Encoding::O200kBase] {
            let e = ENGINES.with(|engines| engines[usize::from(encoding == Encoding::O200kBase)].1.run_rules().rule(byte));
            let Some(rule) = e else { continue };
            let text = format!("{before}{}{after}", run(byte, rule.min_len + rule.period + extra));
            let got = ENGINES.with(|engines| engines[usize::from(encoding == Encoding::O200kBase)].1.count(&text));
            let expected = reference(encoding).encode_ordinary(&text).len();
            prop_assert_eq!(got, expected, "{} on {:?} + {} × {:?} + {:?}", encoding, before, rule.min_len + rule.period + extra, byte as char, after);
        }
    }
}

// ---- Han runs cut where no token can span (tokens/han.rs) ----

/// Tokens of `encoding`'s vocabulary made of one to four Han characters, some led by a space
/// or CJK punctuation (how a pre-tokenizer piece starts): the material that makes some cuts
/// wrong (word tokens spanning pairs; GLM-4 tokens merges cannot build), so the generated
/// texts put them everywhere.
fn han_words(encoding: Encoding) -> &'static [String] {
    static WORDS: [std::sync::OnceLock<Vec<String>>; 4] = [
        std::sync::OnceLock::new(),
        std::sync::OnceLock::new(),
        std::sync::OnceLock::new(),
        std::sync::OnceLock::new(),
    ];
    let slot = &WORDS[Encoding::ALL
        .iter()
        .position(|e| *e == encoding)
        .unwrap_or(0)];
    slot.get_or_init(|| {
        let fast = tiktoken::get_encoding(encoding.name()).expect("vocabulary");
        let han = |c: char| ('\u{4e00}'..='\u{9fff}').contains(&c);
        let lead = |c: char| han(c) || [' ', '，', '。'].contains(&c);
        let words: Vec<String> = (0..fast.vocab_size() as u32)
            .filter_map(|id| String::from_utf8(fast.decode(&[id])).ok())
            .filter(|w| {
                let mut chars = w.chars();
                let first = chars.next().is_some_and(lead);
                let rest: Vec<char> = chars.collect();
                first && (1..=3).contains(&rest.len()) && rest.into_iter().all(han)
            })
            .collect();
        // Spread over the whole vocabulary (ranks run from frequent to rare).
        let step = (words.len() / 6000).max(1);
        words.into_iter().step_by(step).collect()
    })
}

/// Text dense in Han runs: vocabulary words, halves of words glued to other words, single
/// characters (also outside U+4E00–U+9FFF), and the neighbours that change pre-tokenizer
/// pieces (Latin upper and lower case, `'s`, digits, CJK punctuation, spaces, newlines).
fn han_text(encoding: Encoding) -> impl Strategy<Value = String> {
    let words = han_words(encoding);
    assert!(
        words.len() > 20,
        "{encoding} has multi-character Han tokens"
    );
    let word = (0..words.len()).prop_map(move |i| words[i].clone());
    let half = (0..words.len(), any::<bool>()).prop_map(move |(i, front)| {
        let chars: Vec<char> = words[i].chars().collect();
        let mid = chars.len() / 2;
        let part = if front {
            &chars[..mid.max(1)]
        } else {
            &chars[mid..]
        };
        part.iter().collect::<String>()
    });
    let piece = prop_oneof![
        6 => word,
        3 => half,
        2 => "[\\p{Han}]{1,3}",
        1 => prop_oneof![
            Just("，".to_owned()),
            Just("。".to_owned()),
            Just(" ".to_owned()),
            Just("\n".to_owned()),
            Just("'s".to_owned()),
            Just("'S".to_owned()),
            Just("ABC".to_owned()),
            Just("Glm".to_owned()),
            Just("abc".to_owned()),
            Just("42".to_owned()),
            Just("\u{301}".to_owned()),
            Just("的".to_owned()),
        ],
        1 => prop::sample::select(vec![
            "、", "「", "」", "（", "）", "：", "？", "！", "；", "“", "”", "’s", "'t", "-", "(",
            "\r\n", "7", "の", "㐀", "한", "x", "\t", ".", "'",
        ])
        .prop_map(str::to_owned),
    ];
    prop::collection::vec(piece, 1..60).prop_map(|pieces| pieces.concat())
}

#[test]
fn han_cuts_are_derived_for_every_encoding() {
    for encoding in Encoding::ALL {
        let e = engine(encoding);
        let cuts = e.han_cuts().expect("Han cuts derived and self-checked");
        assert!(
            cuts.spanned_pairs() > 0,
            "{encoding} has tokens spanning Han pairs"
        );
        assert!(e.name().contains("Han cuts"), "{}", e.name());
    }
}

#[test]
fn chinese_corpus_equals_tiktoken_rs_and_the_unsplit_engine() {
    let clauses = [
        "人工智能正在改变世界，模型推理速度非常快。",
        "中华人民共和国成立于一九四九年，首都是北京。",
        "我们今天一起去公园散步吧！天气很好，阳光明媚。",
        "请使用GLM模型回答这个问题：什么是大语言模型的上下文窗口？",
        "代理服务器将请求转发给上游，并统计令牌数量和估算费用。",
        "日本語の文章と中文混合，还有English words和数字123。",
    ];
    let text: String = clauses.iter().cycle().take(600).copied().collect();
    for encoding in Encoding::ALL {
        let e = engine(encoding);
        let whole = e.count_with(EngineKind::Fast, &text).expect("fast engine");
        assert_eq!(e.count(&text), whole, "{encoding}: cut vs unsplit");
        if !matches!(encoding, Encoding::Glm4 | Encoding::Glm5) {
            assert_exact(encoding, &e, &text);
            for clause in clauses {
                assert_exact(encoding, &e, clause);
            }
        }
    }
}

thread_local! {
    static GLM4: Engine = engine(Encoding::Glm4);
    static GLM5: Engine = engine(Encoding::Glm5);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn han_heavy_text_equals_tiktoken_rs_cl100k(text in han_text(Encoding::Cl100kBase)) {
        let problem = ENGINES.with(|engines| mismatch(Encoding::Cl100kBase, &engines[0].1, &text));
        prop_assert!(problem.is_none(), "{:?} on {:?}", problem, text);
    }

    #[test]
    fn han_heavy_text_equals_tiktoken_rs_o200k(text in han_text(Encoding::O200kBase)) {
        let problem = ENGINES.with(|engines| mismatch(Encoding::O200kBase, &engines[1].1, &text));
        prop_assert!(problem.is_none(), "{:?} on {:?}", problem, text);
    }

    #[test]
    fn han_heavy_text_counts_as_the_unsplit_engine_glm4(text in han_text(Encoding::Glm4)) {
        let (cut, whole) = GLM4.with(|e| (e.count(&text), e.count_with(EngineKind::Fast, &text)));
        prop_assert_eq!(Some(cut), whole, "glm4 on {:?}", text);
    }

    #[test]
    fn han_heavy_text_counts_as_the_reference_encoder_glm5(text in han_text(Encoding::Glm5)) {
        let cut = GLM5.with(|e| e.count(&text));
        prop_assert_eq!(cut, glm_reference(Encoding::Glm5, &text), "glm5 on {:?}", text);
    }

    #[test]
    fn random_text_counts_equal_the_reference_encoder_glm(parts in prop::collection::vec(unicode_soup(), 1..4)) {
        let text: String = parts.concat();
        for (encoding, got) in [
            (Encoding::Glm4, GLM4.with(|e| e.count(&text))),
            (Encoding::Glm5, GLM5.with(|e| e.count(&text))),
        ] {
            prop_assert_eq!(got, glm_reference(encoding, &text), "{} on {:?}", encoding, text);
        }
    }
}
