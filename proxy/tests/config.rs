//! Configuration through the real binary: invalid values stop start-up with exit code 2 and
//! one message listing every invalid variable.

mod support;

use support::{FAKE_KEY, run_binary_to_exit};

#[test]
fn invalid_config_lists_every_problem_and_exits_2() {
    let (code, output) = run_binary_to_exit(&[
        ("MAX_WORKERS", "lots"),
        ("UPSTREAM_TIMEOUT", "-3"),
        ("ZAI_TARGET_URL", "api.z.ai"),
        ("RATE_LIMIT_HOLD_MARGIN", "1.5"),
        ("TOKEN_COUNTING_ENABLED", "perhaps"),
        ("QUOTA_POLL_INTERVAL", "0s"),
        ("LOG_FORMAT", "yaml"),
    ]);
    assert_eq!(code, Some(2), "{output}");
    for var in [
        "ZAI_API_KEY",
        "MAX_WORKERS",
        "UPSTREAM_TIMEOUT",
        "ZAI_TARGET_URL",
        "RATE_LIMIT_HOLD_MARGIN",
        "TOKEN_COUNTING_ENABLED",
        "QUOTA_POLL_INTERVAL",
        "LOG_FORMAT",
    ] {
        assert!(
            output.contains(&format!("{var}: ")),
            "{var} not reported:\n{output}"
        );
    }
    assert!(output.contains("8 problems"), "{output}");
}

#[test]
fn missing_key_alone_is_an_error() {
    let (code, output) = run_binary_to_exit(&[]);
    assert_eq!(code, Some(2), "{output}");
    assert!(output.contains("ZAI_API_KEY: is required"), "{output}");
}

#[test]
fn invalid_values_next_to_a_key_never_echo_the_key() {
    let (code, output) = run_binary_to_exit(&[("ZAI_API_KEY", FAKE_KEY), ("MAX_RETRIES", "-1")]);
    assert_eq!(code, Some(2), "{output}");
    assert!(output.contains("MAX_RETRIES"), "{output}");
    assert!(!output.contains(FAKE_KEY), "{output}");
}

#[test]
fn flags_are_twins_of_the_env_vars() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zai-proxy"))
        .arg("--help")
        .env_clear()
        .output()
        .expect("run --help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    for (flag, var) in [
        ("--zai-api-key", "ZAI_API_KEY"),
        ("--listen-addr", "LISTEN_ADDR"),
        ("--max-request-body-bytes", "MAX_REQUEST_BODY_BYTES"),
        ("--shutdown-grace-period", "SHUTDOWN_GRACE_PERIOD"),
        ("--rate-limit-state-file", "RATE_LIMIT_STATE_FILE"),
        ("--quota-max-response-bytes", "QUOTA_MAX_RESPONSE_BYTES"),
        ("--known-models", "KNOWN_MODELS"),
        ("--admin-token", "ADMIN_TOKEN"),
    ] {
        assert!(
            help.contains(flag) && help.contains(var),
            "{flag}/{var} missing:\n{help}"
        );
    }
}
