//! Serde for `Duration` as humantime text ("30s", "2m", "1h 30m").

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Writes "2m".
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// Reads "2m" (or "120s", "1h 30m").
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(serde::de::Error::custom)
}

/// The same for `Option<Duration>`.
pub mod option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes "2m" or nothing.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    /// Reads "2m".
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Formats a duration for humans and reports: "2m", "30s", "250ms" (whole seconds above 1 s).
pub fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string();
    }
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// `at − d`, saturating at the earliest representable instant instead of panicking.
pub fn minus(at: chrono::DateTime<chrono::Utc>, d: Duration) -> chrono::DateTime<chrono::Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| at.checked_sub_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

/// `at + d`, saturating at the latest representable instant instead of panicking.
pub fn plus(at: chrono::DateTime<chrono::Utc>, d: Duration) -> chrono::DateTime<chrono::Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}
