//! Virtual-clock tests of the controller against the acceptance cases of reference §8.3.

use super::*;
use crate::config::DEFAULT_RATE_LIMIT_WINDOW as WINDOW;

/// A virtual monotonic clock: an anchor plus an offset the test advances by hand.
struct VirtualClock {
    anchor: Instant,
    offset: Duration,
}

impl VirtualClock {
    fn new() -> Self {
        VirtualClock {
            anchor: Instant::now(),
            offset: Duration::ZERO,
        }
    }
    fn now(&self) -> Instant {
        self.anchor + self.offset
    }
    fn advance(&mut self, by: Duration) {
        self.offset += by;
    }
}

fn params(initial: f64, min: f64, max: f64) -> ControllerParams {
    ControllerParams {
        initial,
        min,
        max,
        alpha: 0.3,
        hold_margin: 0.02,
        probe_interval: 10,
        window: WINDOW,
        sample: CeilingSample::Rate,
    }
}

/// Feeds one full window of `successes` 2xx and `too_many` 429s; the last event lands
/// exactly one window after the previous window closed, which closes this one.
fn window(c: &mut Controller, clock: &mut VirtualClock, successes: u64, too_many: u64) -> Step {
    let mut events: Vec<Feedback> = Vec::new();
    events.extend(std::iter::repeat_n(
        Feedback::TooManyRequests,
        too_many as usize,
    ));
    events.extend(std::iter::repeat_n(Feedback::Success, successes as usize));
    let last = events.pop().expect("a window needs at least one event");
    clock.advance(Duration::from_millis(1));
    for event in events {
        assert_eq!(c.record(event, clock.now()), None, "window closed early");
    }
    clock.advance(WINDOW - Duration::from_millis(1));
    c.record(last, clock.now()).expect("window must close")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn starts_at_initial_with_ceiling_at_max() {
    let c = Controller::new(params(10.0, 1.0, 50.0), Instant::now());
    assert_eq!(c.current_rate(), 10.0);
    assert_eq!(c.ceiling(), 50.0);
    assert!(close(c.hold(), 49.0));
}

#[test]
fn events_inside_a_window_change_nothing() {
    let mut clock = VirtualClock::new();
    let mut c = Controller::new(params(10.0, 1.0, 50.0), clock.now());
    for _ in 0..100 {
        clock.advance(Duration::from_millis(100));
        assert_eq!(c.record(Feedback::TooManyRequests, clock.now()), None);
    }
    assert_eq!(c.current_rate(), 10.0);
    assert_eq!(c.ceiling(), 50.0);
}

#[test]
fn window_closes_lazily_on_the_first_event_after_the_window() {
    let mut clock = VirtualClock::new();
    let mut c = Controller::new(params(10.0, 1.0, 50.0), clock.now());
    clock.advance(WINDOW * 5);
    let step = c.record(Feedback::Success, clock.now()).expect("closes");
    assert_eq!(step.decision.direction(), Some("increase"));
    // The next window is measured from this adjustment, not from the original start.
    clock.advance(WINDOW - Duration::from_millis(1));
    assert_eq!(c.record(Feedback::Success, clock.now()), None);
}

#[test]
fn worked_example_converges_to_hold_then_probes_at_max() {
    let mut clock = VirtualClock::new();
    let mut c = Controller::new(params(10.0, 1.0, 50.0), clock.now());
    let expected = [
        29.5, 39.25, 44.125, 46.5625, 47.78125, 48.390625, 48.6953125,
    ];
    for want in expected {
        let step = window(&mut c, &mut clock, 100, 0);
        assert!(step.rate_changed);
        assert_eq!(step.decision.direction(), Some("increase"));
        assert!(
            close(c.current_rate(), want),
            "{} != {want}",
            c.current_rate()
        );
    }
    // Steps shrink below 0.25, so the minimum step applies and the rate lands on the target.
    let step = window(&mut c, &mut clock, 100, 0);
    assert!(matches!(step.decision, Decision::Converge { .. }));
    assert!(close(c.current_rate(), 48.9453125));
    let step = window(&mut c, &mut clock, 100, 0);
    assert!(close(c.current_rate(), 49.0), "{step:?}");
    assert_eq!(c.clean_windows(), 9);
    // 10th clean window: probe at min(ceiling × 1.02, max) = min(51, 50) = 50.
    let step = window(&mut c, &mut clock, 100, 0);
    assert_eq!(
        step.decision,
        Decision::Probe {
            rate: 50.0,
            ceiling: 50.0,
            clean_windows: 10
        }
    );
    assert_eq!(c.clean_windows(), 0);
    // No pull-back after a probe: the rate stays above the hold point.
    for _ in 0..25 {
        let step = window(&mut c, &mut clock, 100, 0);
        assert!(!step.rate_changed);
        assert_eq!(c.current_rate(), 50.0);
    }
}

#[test]
fn minimum_converge_step_is_a_quarter_request_per_second() {
    let mut clock = VirtualClock::new();
    // hold = 10 × 0.98 = 9.8; start 9.7: half the gap is 0.05, the step is 0.25, capped at target.
    let mut p = params(9.7, 1.0, 10.0);
    p.probe_interval = 0;
    let mut c = Controller::new(p, clock.now());
    window(&mut c, &mut clock, 10, 0);
    assert!(close(c.current_rate(), 9.8));
    let mut p = params(5.0, 1.0, 10.0);
    p.probe_interval = 0;
    let mut c = Controller::new(p, clock.now());
    // Gap 4.8: step 2.4.
    window(&mut c, &mut clock, 10, 0);
    assert!(close(c.current_rate(), 7.4));
}

#[test]
fn probe_fires_only_after_probe_interval_clean_windows() {
    let mut clock = VirtualClock::new();
    let mut p = params(20.0, 1.0, 100.0);
    p.probe_interval = 5;
    let mut c = Controller::new(p, clock.now());
    // Teach a ceiling of 0.3 × 20 + 0.7 × 100 = 76; rate → 74.48.
    window(&mut c, &mut clock, 90, 10);
    assert!(close(c.ceiling(), 76.0));
    let hold = c.hold();
    assert!(close(c.current_rate(), hold));
    for n in 1..5 {
        let step = window(&mut c, &mut clock, 200, 0);
        assert_ne!(step.decision.direction(), Some("probe"), "window {n}");
        assert_eq!(c.clean_windows(), n);
    }
    let step = window(&mut c, &mut clock, 200, 0);
    assert_eq!(step.decision.direction(), Some("probe"));
    assert!(c.current_rate() > hold);
    assert!(close(c.current_rate(), 76.0 * 1.02));
    assert!(c.current_rate() <= 100.0);
}

#[test]
fn one_429_window_resets_the_clean_window_counter() {
    let mut clock = VirtualClock::new();
    let mut p = params(40.0, 1.0, 50.0);
    p.probe_interval = 3;
    let mut c = Controller::new(p, clock.now());
    window(&mut c, &mut clock, 100, 0);
    window(&mut c, &mut clock, 100, 0);
    assert_eq!(c.clean_windows(), 2);
    let step = window(&mut c, &mut clock, 90, 10);
    assert_eq!(step.decision.direction(), Some("decrease"));
    assert_eq!(c.clean_windows(), 0);
    window(&mut c, &mut clock, 100, 0);
    window(&mut c, &mut clock, 100, 0);
    assert_eq!(
        c.clean_windows(),
        2,
        "probe must wait for 3 fresh clean windows"
    );
    let step = window(&mut c, &mut clock, 100, 0);
    assert_eq!(step.decision.direction(), Some("probe"));
}

#[test]
fn probe_is_capped_at_max() {
    let mut clock = VirtualClock::new();
    let mut p = params(40.0, 1.0, 45.0);
    p.probe_interval = 2;
    let mut c = Controller::new(p, clock.now());
    // Ceiling 45 → hold 44.1; converge then probe at min(45.9, 45) = 45.
    window(&mut c, &mut clock, 100, 0);
    let step = window(&mut c, &mut clock, 100, 0);
    assert!(matches!(step.decision, Decision::Probe { rate, .. } if rate == 45.0));
    assert_eq!(c.current_rate(), 45.0);
    // At max no further probe fires; clean windows just accumulate.
    for _ in 0..5 {
        let step = window(&mut c, &mut clock, 100, 0);
        assert_eq!(step.decision, Decision::Unchanged);
    }
    assert_eq!(c.current_rate(), 45.0);
}

#[test]
fn error_ratio_boundaries() {
    // < 1 % (0.99 %) is clean.
    let mut clock = VirtualClock::new();
    let mut c = Controller::new(params(49.0, 1.0, 50.0), clock.now());
    window(&mut c, &mut clock, 9_901, 99);
    assert_eq!(c.clean_windows(), 1);
    // Exactly 1 % preserves the counter and the rate.
    window(&mut c, &mut clock, 99, 1);
    assert_eq!(c.clean_windows(), 1);
    assert_eq!(c.current_rate(), 49.0);
    // Just above 1 % also preserves.
    window(&mut c, &mut clock, 9_899, 101);
    assert_eq!(c.clean_windows(), 1);
    // Exactly 5 % is not a decrease.
    let step = window(&mut c, &mut clock, 95, 5);
    assert_eq!(step.decision, Decision::Unchanged);
    assert_eq!(c.clean_windows(), 1);
    assert_eq!(c.ceiling(), 50.0);
    // Just above 5 % decreases.
    let step = window(&mut c, &mut clock, 9_499, 501);
    assert_eq!(step.decision.direction(), Some("decrease"));
    assert_eq!(c.clean_windows(), 0);
}

#[test]
fn decrease_is_an_ewma_of_the_current_rate() {
    // The production log line: max 40, current 8, alpha 0.3 → ceiling 40.00 → 30.40.
    let mut clock = VirtualClock::new();
    let mut c = Controller::new(params(8.0, 1.0, 40.0), clock.now());
    let step = window(&mut c, &mut clock, 10, 10);
    match step.decision {
        Decision::Decrease {
            old_ceiling,
            new_ceiling,
            rate,
            error_ratio,
        } => {
            assert_eq!(old_ceiling, 40.0);
            assert!(close(new_ceiling, 30.4));
            assert!(close(rate, 30.4 * 0.98));
            assert!(close(error_ratio, 0.5));
        }
        other => panic!("expected a decrease, got {other:?}"),
    }
    assert!(step.rate_changed);
}

#[test]
fn repeated_decreases_never_go_below_min() {
    let mut clock = VirtualClock::new();
    let mut c = Controller::new(params(10.0, 2.0, 50.0), clock.now());
    // Each decrease keeps 0.3 × 0.98 + 0.7 = 99.4 % of the ceiling: ~530 windows to the floor.
    for _ in 0..1_000 {
        let step = window(&mut c, &mut clock, 1, 9);
        assert_eq!(step.decision.direction(), Some("decrease"));
        assert!(c.current_rate() >= 2.0);
        assert!(c.current_rate() <= 50.0);
    }
    assert_eq!(c.current_rate(), 2.0);
    // At the floor the window still counts as a decrease but the rate does not move.
    let step = window(&mut c, &mut clock, 1, 9);
    assert!(!step.rate_changed);
}

#[test]
fn reset_sets_rate_and_ceiling_to_initial() {
    let mut clock = VirtualClock::new();
    let mut c = Controller::new(params(10.0, 1.0, 50.0), clock.now());
    window(&mut c, &mut clock, 100, 0);
    window(&mut c, &mut clock, 100, 0);
    window(&mut c, &mut clock, 50, 50);
    c.reset(clock.now());
    assert_eq!(c.current_rate(), 10.0);
    assert_eq!(c.ceiling(), 10.0);
    assert_eq!(c.clean_windows(), 0);
    // The next window starts at the reset; the ceiling is now the hold reference.
    let step = window(&mut c, &mut clock, 100, 0);
    assert_eq!(step.decision, Decision::Unchanged, "10 is above hold 9.8");
}

#[test]
fn restore_clamps_into_bounds() {
    let now = Instant::now();
    let mut c = Controller::new(params(10.0, 1.0, 40.0), now);
    c.restore(30.4, 29.79, now);
    assert_eq!((c.ceiling(), c.current_rate()), (30.4, 29.79));
    c.restore(500.0, 490.0, now);
    assert_eq!((c.ceiling(), c.current_rate()), (40.0, 40.0));
    let mut c = Controller::new(params(10.0, 0.5, 40.0), now);
    c.restore(20.0, 0.001, now);
    assert_eq!((c.ceiling(), c.current_rate()), (20.0, 0.5));
}

#[test]
fn probing_still_rises_above_a_restored_ceiling() {
    let mut clock = VirtualClock::new();
    let mut p = params(10.0, 1.0, 50.0);
    p.probe_interval = 2;
    let mut c = Controller::new(p, clock.now());
    c.restore(20.0, 19.6, clock.now());
    window(&mut c, &mut clock, 100, 0);
    let step = window(&mut c, &mut clock, 100, 0);
    assert_eq!(step.decision.direction(), Some("probe"));
    assert!(close(c.current_rate(), 20.4));
    assert!(c.current_rate() > c.ceiling());
}

#[test]
fn rate_stays_within_bounds_under_arbitrary_feedback() {
    // A deterministic pseudo-random mix of windows.
    let mut clock = VirtualClock::new();
    let mut c = Controller::new(params(5.0, 1.5, 30.0), clock.now());
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..2_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let too_many = seed % 7;
        let successes = 1 + (seed >> 8) % 60;
        window(&mut c, &mut clock, successes, too_many);
        assert!(
            (1.5..=30.0).contains(&c.current_rate()),
            "{}",
            c.current_rate()
        );
        assert!(c.ceiling() <= 30.0 && c.ceiling() > 0.0);
    }
}

#[test]
fn burst_is_twice_the_rate_floored_and_at_least_one() {
    assert_eq!(burst_for(10.0), 20);
    assert_eq!(burst_for(29.5), 59);
    assert_eq!(burst_for(0.1), 1);
    assert_eq!(burst_for(0.6), 1);
    assert_eq!(burst_for(1000.0), 2000);
    assert_eq!(burst_for(0.0), 0);
    assert_eq!(burst_for(-3.0), 0);
    assert_eq!(burst_for(f64::NAN), 0);
}

#[test]
fn goodput_sample_converges_on_an_upstream_rate_limit() {
    // Demand always fills the admission rate; the upstream admits 20 req/s (a token
    // bucket): a window at rate r sees (r - 20)/r 429s when r > 20.
    let limit: f64 = 20.0;
    let run = |sample: CeilingSample| {
        let mut clock = VirtualClock::new();
        let mut p = params(10.0, 1.0, 50.0);
        p.sample = sample;
        let mut c = Controller::new(p, clock.now());
        for _ in 0..30 {
            let rate = c.current_rate();
            let per_window = (rate * WINDOW.as_secs_f64()).round() as u64;
            let ok = ((limit.min(rate)) * WINDOW.as_secs_f64()).round() as u64;
            window(&mut c, &mut clock, ok.max(1), per_window.saturating_sub(ok));
        }
        c.ceiling()
    };
    let goodput = run(CeilingSample::Goodput);
    assert!((goodput - limit).abs() / limit < 0.1, "goodput: {goodput}");
    // The original sample stays far above the limit after the same 30 windows.
    let original = run(CeilingSample::Rate);
    assert!(original > 1.5 * limit, "rate: {original}");
}

#[test]
fn goodput_sample_is_the_rate_that_got_through() {
    assert!(close(CeilingSample::Goodput.of(40.0, 0.5), 20.0));
    assert!(close(CeilingSample::Goodput.of(40.0, 1.5), 0.0));
    assert!(close(CeilingSample::Rate.of(40.0, 0.5), 40.0));
}
