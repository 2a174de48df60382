//! Ceiling persistence (reference §3.5): the learned ceiling survives a container restart.
//!
//! On-disk shape: `{"ceiling":<f64>,"hold":<f64>,"ts":"<RFC3339 with nanoseconds>"}`. Written
//! only when a window lowers the ceiling, atomically (temporary file in the same directory,
//! mode 0644, rename). Restoring is a pure decision ([`evaluate`]) over the bytes read and the
//! file's modification time; [`load`] is the thin IO wrapper around it.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

/// A persisted ceiling snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CeilingState {
    /// The learned ceiling, req/s.
    pub ceiling: f64,
    /// The rate in force when the ceiling was learned, req/s.
    pub hold: f64,
    /// When the ceiling was learned (`None`/zero time: fall back to the file's mtime).
    #[serde(
        default,
        with = "rfc3339_nanos",
        skip_serializing_if = "Option::is_none"
    )]
    pub ts: Option<DateTime<Utc>>,
}

/// What a restore attempt found.
#[derive(Debug, Clone, PartialEq)]
pub enum Restore {
    /// No state file: start from RATE_LIMIT_MAX as usual.
    Missing,
    /// A usable snapshot; `learned_at` is `ts` or, when that is absent, the file's mtime.
    Restored {
        /// The snapshot as read.
        state: CeilingState,
        /// When the ceiling was learned.
        learned_at: Option<DateTime<Utc>>,
    },
    /// The file exists but is not used.
    Ignored(IgnoredBecause),
}

/// Why a state file was ignored.
#[derive(Debug, Clone, PartialEq)]
pub enum IgnoredBecause {
    /// Reading the file failed.
    Unreadable(String),
    /// The file is not the expected JSON.
    Corrupt(String),
    /// `ceiling` or `hold` is not a positive finite number.
    NonPositive,
    /// Older than RATE_LIMIT_STATE_MAX_AGE.
    Stale {
        /// Age of the snapshot.
        age: Duration,
        /// The configured maximum.
        max_age: Duration,
    },
    /// Neither `ts` nor the file's mtime give an age.
    NoTimestamp,
}

impl fmt::Display for IgnoredBecause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IgnoredBecause::Unreadable(e) => write!(f, "unreadable: {e}"),
            IgnoredBecause::Corrupt(e) => write!(f, "corrupt: {e}"),
            IgnoredBecause::NonPositive => f.write_str("ceiling and hold must be positive"),
            IgnoredBecause::Stale { age, max_age } => write!(
                f,
                "stale: {} old, max age {}",
                humantime::format_duration(Duration::from_secs(age.as_secs())),
                humantime::format_duration(*max_age)
            ),
            IgnoredBecause::NoTimestamp => f.write_str("no timestamp and no file mtime"),
        }
    }
}

/// Decides whether `bytes` (the file content) is a usable snapshot at `now`.
pub fn evaluate(
    bytes: &[u8],
    mtime: Option<DateTime<Utc>>,
    max_age: Duration,
    now: DateTime<Utc>,
) -> Restore {
    let state: CeilingState = match serde_json::from_slice(bytes) {
        Ok(state) => state,
        Err(e) => return Restore::Ignored(IgnoredBecause::Corrupt(e.to_string())),
    };
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if !positive(state.ceiling) || !positive(state.hold) {
        return Restore::Ignored(IgnoredBecause::NonPositive);
    }
    let learned_at = state.ts.or(mtime);
    let Some(stamp) = learned_at else {
        return Restore::Ignored(IgnoredBecause::NoTimestamp);
    };
    // A stamp in the future (clock skew) counts as age zero.
    let age = (now - stamp).to_std().unwrap_or(Duration::ZERO);
    if age > max_age {
        return Restore::Ignored(IgnoredBecause::Stale { age, max_age });
    }
    Restore::Restored { state, learned_at }
}

/// Reads and evaluates the state file at `path`.
pub fn load(path: &Path, max_age: Duration, now: DateTime<Utc>) -> Restore {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Restore::Missing,
        Err(e) => return Restore::Ignored(IgnoredBecause::Unreadable(e.to_string())),
    };
    let mtime = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .map(DateTime::<Utc>::from);
    evaluate(&bytes, mtime, max_age, now)
}

/// Writes `state` to `path` atomically: a temporary file `<name>.tmp-<pid>-<nanos>` in the
/// same directory, flushed, mode 0644, renamed over the target. No temporary file is left
/// behind on failure.
pub fn save(path: &Path, state: &CeilingState) -> std::io::Result<()> {
    let json = serde_json::to_vec(state).map_err(std::io::Error::other)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("state file path has no file name"))?;
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let tmp = dir.join(format!(
        "{}.tmp-{}-{nanos}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = write_then_rename(&tmp, path, &json);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_then_rename(tmp: &Path, path: &Path, json: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)?;
    file.write_all(json)?;
    file.sync_all()?;
    set_mode_0644(&file)?;
    drop(file);
    std::fs::rename(tmp, path)
}

#[cfg(unix)]
fn set_mode_0644(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn set_mode_0644(_file: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

/// Deletes the state file; a missing file is not an error.
pub fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// `ts` as RFC3339 with nanoseconds; the Go zero time (year 1) reads as "absent".
mod rfc3339_nanos {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match ts {
            Some(ts) => s.serialize_str(&ts.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let raw: Option<String> = Option::deserialize(d)?;
        let Some(raw) = raw else { return Ok(None) };
        let ts = DateTime::parse_from_rfc3339(&raw)
            .map_err(serde::de::Error::custom)?
            .with_timezone(&Utc);
        Ok(if ts.year() <= 1 { None } else { Some(ts) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test timestamp")
            .with_timezone(&Utc)
    }

    const SIX_HOURS: Duration = Duration::from_secs(6 * 3600);

    #[test]
    fn round_trips_the_on_disk_shape() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ceiling.json");
        let state = CeilingState {
            ceiling: 30.4,
            hold: 29.792,
            ts: Some(at("2026-09-02T10:00:00.123456789Z")),
        };
        save(&path, &state).expect("save");
        let raw: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert_eq!(raw["ceiling"], 30.4);
        assert_eq!(raw["hold"], 29.792);
        assert_eq!(raw["ts"], "2026-09-02T10:00:00.123456789Z");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("ceiling.json")],
            "no temp files left"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
        match load(&path, SIX_HOURS, at("2026-09-02T11:00:00Z")) {
            Restore::Restored {
                state: got,
                learned_at,
            } => {
                assert_eq!(got, state);
                assert_eq!(learned_at, state.ts);
            }
            other => panic!("expected restore, got {other:?}"),
        }
    }

    #[test]
    fn save_replaces_an_existing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ceiling.json");
        std::fs::write(&path, b"garbage").expect("seed");
        let state = CeilingState {
            ceiling: 12.0,
            hold: 11.76,
            ts: Some(at("2026-09-02T10:00:00Z")),
        };
        save(&path, &state).expect("save");
        assert!(matches!(
            load(&path, SIX_HOURS, at("2026-09-02T10:00:01Z")),
            Restore::Restored { .. }
        ));
    }

    #[test]
    fn missing_file_is_not_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            load(&dir.path().join("nope.json"), SIX_HOURS, Utc::now()),
            Restore::Missing
        );
        assert!(remove(&dir.path().join("nope.json")).is_ok());
    }

    #[test]
    fn unwritable_path_is_an_error_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("no-such-dir").join("ceiling.json");
        let state = CeilingState {
            ceiling: 1.0,
            hold: 1.0,
            ts: None,
        };
        assert!(save(&path, &state).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }

    #[test]
    fn stale_by_ts_is_ignored() {
        let body = br#"{"ceiling":20,"hold":19.6,"ts":"2026-09-02T00:00:00Z"}"#;
        let fresh = evaluate(body, None, SIX_HOURS, at("2026-09-02T05:59:59Z"));
        assert!(matches!(fresh, Restore::Restored { .. }));
        let stale = evaluate(body, None, SIX_HOURS, at("2026-09-02T06:00:01Z"));
        assert!(matches!(
            stale,
            Restore::Ignored(IgnoredBecause::Stale { .. })
        ));
    }

    #[test]
    fn zero_or_absent_ts_falls_back_to_mtime() {
        let mtime = Some(at("2026-09-02T00:00:00Z"));
        for body in [
            &br#"{"ceiling":20,"hold":19.6,"ts":"0001-01-01T00:00:00Z"}"#[..],
            &br#"{"ceiling":20,"hold":19.6}"#[..],
        ] {
            match evaluate(body, mtime, SIX_HOURS, at("2026-09-02T01:00:00Z")) {
                Restore::Restored { learned_at, .. } => assert_eq!(learned_at, mtime),
                other => panic!("expected restore, got {other:?}"),
            }
            assert!(matches!(
                evaluate(body, mtime, SIX_HOURS, at("2026-09-02T07:00:00Z")),
                Restore::Ignored(IgnoredBecause::Stale { .. })
            ));
        }
    }

    #[test]
    fn stale_by_mtime_on_disk_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ceiling.json");
        std::fs::write(&path, br#"{"ceiling":20,"hold":19.6}"#).expect("write");
        // The file was just written: fresh now, stale seven hours from now.
        assert!(matches!(
            load(&path, SIX_HOURS, Utc::now()),
            Restore::Restored { .. }
        ));
        assert!(matches!(
            load(&path, SIX_HOURS, Utc::now() + chrono::Duration::hours(7)),
            Restore::Ignored(IgnoredBecause::Stale { .. })
        ));
    }

    #[test]
    fn corrupt_or_non_positive_is_ignored() {
        let now = at("2026-09-02T00:00:00Z");
        for body in [
            &b"{not json"[..],
            &b""[..],
            &b"[]"[..],
            &br#"{"ceiling":"fast","hold":1}"#[..],
            &br#"{"ceiling":20,"hold":19.6,"ts":"yesterday"}"#[..],
        ] {
            assert!(
                matches!(
                    evaluate(body, Some(now), SIX_HOURS, now),
                    Restore::Ignored(IgnoredBecause::Corrupt(_))
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        for body in [
            &br#"{"ceiling":0,"hold":19.6}"#[..],
            &br#"{"ceiling":20,"hold":0}"#[..],
            &br#"{"ceiling":-3,"hold":1}"#[..],
        ] {
            assert_eq!(
                evaluate(body, Some(now), SIX_HOURS, now),
                Restore::Ignored(IgnoredBecause::NonPositive)
            );
        }
    }

    #[test]
    fn future_timestamp_counts_as_fresh() {
        let body = br#"{"ceiling":20,"hold":19.6,"ts":"2026-09-03T00:00:00Z"}"#;
        assert!(matches!(
            evaluate(body, None, SIX_HOURS, at("2026-09-02T00:00:00Z")),
            Restore::Restored { .. }
        ));
    }

    #[test]
    fn remove_deletes_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ceiling.json");
        std::fs::write(&path, b"{}").expect("write");
        remove(&path).expect("remove");
        assert!(!path.exists());
    }
}
