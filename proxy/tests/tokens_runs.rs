//! Long single-character runs: the exact run-length shortcut (`tokens/runs.rs`) must never
//! change a count. Checked against `tiktoken-rs` (the reference) on the pathological inputs
//! and random runs, and against the unshortened engine for every ASCII byte of every
//! encoding (glm4 has no `tiktoken-rs` reference).

use proptest::prelude::*;
use zai_proxy::tokens::runs::RunRule;
use zai_proxy::tokens::{Encoding, Engine, EngineKind};

fn engine(encoding: Encoding) -> Engine {
    Engine::load(encoding).expect("vocabulary compiled in")
}

fn reference(encoding: Encoding) -> &'static tiktoken_rs::CoreBPE {
    match encoding {
        Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
        Encoding::O200kBase => tiktoken_rs::o200k_base_singleton(),
        Encoding::Glm4 => unreachable!("tiktoken-rs has no glm4"),
    }
}

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

thread_local! {
    static ENGINES: [(Encoding, Engine); 2] = [
        (Encoding::Cl100kBase, engine(Encoding::Cl100kBase)),
        (Encoding::O200kBase, engine(Encoding::O200kBase)),
    ];
}
