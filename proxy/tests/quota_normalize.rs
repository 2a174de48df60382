//! Quota normalisation of both limit shapes (reference §6) from JSON fixtures.

use zai_proxy::quota::normalize::{Rejected, normalize};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/quota/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn legacy_tokens_limit_five_hour_only() {
    let sample = normalize(&fixture("legacy_tokens_limit.json")).expect("ok");
    assert_eq!(sample.plan_tier.as_deref(), Some("max"));
    assert_eq!(sample.windows.len(), 1, "the unit-5 TIME_LIMIT is ignored");
    let w = &sample.windows[0];
    assert_eq!((w.window, w.limit_type), ("five_hour", "TOKENS_LIMIT"));
    assert_eq!(w.used_fraction, 0.12);
    assert_eq!(w.remaining, None);
    assert_eq!(
        w.reset_at.map(|t| t.timestamp_millis()),
        Some(1_788_541_838_272)
    );
}

#[test]
fn credit_limit_both_windows_in_order() {
    let sample = normalize(&fixture("credit_limit_both_windows.json")).expect("ok");
    assert_eq!(sample.plan_tier.as_deref(), Some("lite"));
    let names: Vec<_> = sample.windows.iter().map(|w| w.window).collect();
    assert_eq!(
        names,
        ["five_hour", "weekly"],
        "five_hour first whatever the input order"
    );
    let five = &sample.windows[0];
    assert_eq!(five.limit_type, "CREDIT_LIMIT");
    assert_eq!(five.used_fraction, 740.0 / 2000.0);
    assert_eq!(five.remaining, Some(1259.0));
    let weekly = &sample.windows[1];
    assert_eq!(weekly.used_fraction, 0.25);
    assert_eq!(
        weekly.reset_at.map(|t| t.timestamp_millis()),
        Some(1_789_000_000_000)
    );
}

#[test]
fn over_allowance_clamps_first_entry_wins_and_negative_clamps() {
    let sample = normalize(&fixture("credit_limit_over_allowance.json")).expect("ok");
    assert_eq!(sample.plan_tier.as_deref(), Some("pro"));
    let five = &sample.windows[0];
    assert_eq!(
        five.limit_type, "CREDIT_LIMIT",
        "type matched case-insensitively"
    );
    assert_eq!(five.used_fraction, 1.0, "1250/1000 clamps to 1");
    assert_eq!(five.reset_at, None, "nextResetTime 0 means none");
    assert_eq!(
        five.remaining,
        Some(-250.0),
        "derived as usage - currentValue"
    );
    let weekly = &sample.windows[1];
    assert_eq!(weekly.used_fraction, 0.0, "negative percentage clamps to 0");
    assert_eq!(
        sample.windows.len(),
        2,
        "the second five-hour entry is ignored"
    );
}

#[test]
fn provider_rejections() {
    assert_eq!(
        normalize(&fixture("provider_rejected.json")),
        Err(Rejected::Provider { code: Some(1001) })
    );
    assert_eq!(
        normalize(&fixture("provider_code_without_success.json")),
        Err(Rejected::Provider { code: Some(500) })
    );
}

#[test]
fn malformed_answers() {
    for name in ["missing_limits.json", "wrong_types.json", "truncated.json"] {
        assert!(
            matches!(normalize(&fixture(name)), Err(Rejected::Malformed(_))),
            "{name}"
        );
    }
}
