//! `zai-rehearse`'s `--seed` and `--repeat` are checked before anything starts: bad values
//! are refused with a message naming the flag and the accepted range.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test on purpose")]

use std::process::Command;

fn rehearse(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_zai-rehearse"))
        .args(args)
        .env_remove("ZAI_REHEARSE_SEED")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_repeat_and_seed_values_are_refused_with_a_clear_error() {
    for bad in ["0", "-3", "many", "1.5", "1001"] {
        let (code, stderr) = rehearse(&[&format!("--repeat={bad}"), "--scenario", "healthy"]);
        assert_eq!(code, 2, "--repeat {bad}: {stderr}");
        assert!(
            stderr.contains("--repeat")
                && stderr.contains("repeat must be a whole number of runs from 1 to 1000"),
            "--repeat {bad}: {stderr}"
        );
    }
    for bad in ["-1", "abc", "18446744073709551616", "2.5"] {
        let (code, stderr) = rehearse(&[&format!("--seed={bad}"), "--scenario", "healthy"]);
        assert_eq!(code, 2, "--seed {bad}: {stderr}");
        assert!(
            stderr.contains("--seed") && stderr.contains("seed must be a whole number"),
            "--seed {bad}: {stderr}"
        );
    }
}

#[test]
fn the_seed_can_come_from_the_environment_and_is_checked_there_too() {
    let output = Command::new(env!("CARGO_BIN_EXE_zai-rehearse"))
        .args(["--scenario", "no-such-scenario"])
        .env("ZAI_REHEARSE_SEED", "nope")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("seed must be a whole number"));
    // A valid seed passes parsing; the unknown scenario is then the error.
    let (code, stderr) = rehearse(&[
        "--seed",
        "0",
        "--repeat",
        "3",
        "--scenario",
        "no-such-scenario",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("unknown scenario"), "{stderr}");
}
