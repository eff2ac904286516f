//! Ollama's `keep_alive`: a JSON number of seconds or a Go duration string, negative meaning "forever".

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// How long a model stays loaded after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// A negative value: keep the model loaded until told otherwise (a pin).
    Forever,
    /// Unload this long after the last request; zero unloads as soon as the model is idle.
    For(Duration),
}

impl KeepAlive {
    /// Ollama's server default (`OLLAMA_KEEP_ALIVE` = 5m).
    pub const DEFAULT: KeepAlive = KeepAlive::For(Duration::from_secs(300));

    /// Parses a Go duration string as Ollama does: `"5m"`, `"1h30m"`, `"0"`, `"-1m"`, `"1.5h"`, `"250ms"`.
    /// A bare number other than zero (`"300"`, `"-1"`) is an error, as it is for Ollama; negative numbers of
    /// seconds are written as JSON numbers.
    pub fn parse_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (negative, body) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        if body == "0" {
            return Ok(KeepAlive::For(Duration::ZERO));
        }
        if body.is_empty() {
            return Err(format!("invalid duration {s:?}"));
        }
        let mut total = 0f64;
        let mut rest = body;
        while !rest.is_empty() {
            let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
            if num_end == 0 {
                return Err(format!("invalid duration {s:?}"));
            }
            let value: f64 = rest[..num_end].parse().map_err(|_| format!("invalid duration {s:?}"))?;
            rest = &rest[num_end..];
            let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
            let seconds_per_unit = match &rest[..unit_end] {
                "ns" => 1e-9,
                "us" | "µs" => 1e-6,
                "ms" => 1e-3,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                "" => return Err(format!("time: missing unit in duration {s:?}")),
                other => return Err(format!("time: unknown unit {other:?} in duration {s:?}")),
            };
            total += value * seconds_per_unit;
            rest = &rest[unit_end..];
        }
        if negative && total > 0.0 {
            return Ok(KeepAlive::Forever);
        }
        Ok(KeepAlive::For(Duration::from_secs_f64(total)))
    }

    /// From a JSON number of seconds; negative means forever.
    pub fn from_seconds(seconds: f64) -> Result<Self, String> {
        if !seconds.is_finite() {
            return Err("keep_alive must be a finite number".to_string());
        }
        if seconds < 0.0 {
            return Ok(KeepAlive::Forever);
        }
        Duration::try_from_secs_f64(seconds).map(KeepAlive::For).map_err(|_| "keep_alive is out of range".to_string())
    }

    /// Reads a `keep_alive` JSON value (number or string).
    pub fn from_json(value: &serde_json::Value) -> Result<Self, String> {
        match value {
            serde_json::Value::Number(n) => KeepAlive::from_seconds(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => KeepAlive::parse_str(s),
            _ => Err("keep_alive must be a number of seconds or a duration string such as \"5m\"".to_string()),
        }
    }

    /// The JSON value to send upstream: `-1` for forever, whole seconds otherwise.
    pub fn to_json(self) -> serde_json::Value {
        match self {
            KeepAlive::Forever => serde_json::Value::from(-1),
            KeepAlive::For(d) if d.subsec_nanos() == 0 => serde_json::Value::from(d.as_secs()),
            KeepAlive::For(d) => serde_json::Value::from(format!("{}ms", d.as_millis())),
        }
    }

    /// True for a zero duration: "unload when idle".
    pub fn is_zero(self) -> bool {
        self == KeepAlive::For(Duration::ZERO)
    }
}

impl fmt::Display for KeepAlive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepAlive::Forever => f.write_str("forever"),
            KeepAlive::For(d) => write!(f, "{}s", d.as_secs_f64()),
        }
    }
}

impl Serialize for KeepAlive {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl<'de> Deserialize<'de> for KeepAlive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        KeepAlive::from_json(&value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations_like_ollama() {
        let secs = |s: &str| match KeepAlive::parse_str(s).unwrap() {
            KeepAlive::For(d) => d.as_secs_f64(),
            KeepAlive::Forever => -1.0,
        };
        assert_eq!(secs("5m"), 300.0);
        assert_eq!(secs("1h30m"), 5400.0);
        assert_eq!(secs("0"), 0.0);
        assert_eq!(secs("0s"), 0.0);
        assert_eq!(secs("250ms"), 0.25);
        assert_eq!(secs("1.5h"), 5400.0);
        assert_eq!(secs("-1m"), -1.0);
        for bad in ["300", "-1", "", "5 m", "m", "5x", "abc"] {
            assert!(KeepAlive::parse_str(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn json_numbers_and_strings() {
        assert_eq!(KeepAlive::from_json(&serde_json::json!(-1)).unwrap(), KeepAlive::Forever);
        assert_eq!(KeepAlive::from_json(&serde_json::json!(0)).unwrap(), KeepAlive::For(Duration::ZERO));
        assert_eq!(KeepAlive::from_json(&serde_json::json!(60)).unwrap(), KeepAlive::For(Duration::from_secs(60)));
        assert_eq!(KeepAlive::from_json(&serde_json::json!("10m")).unwrap(), KeepAlive::For(Duration::from_secs(600)));
        assert!(KeepAlive::from_json(&serde_json::json!(true)).is_err());
        assert_eq!(KeepAlive::Forever.to_json(), serde_json::json!(-1));
        assert_eq!(KeepAlive::For(Duration::from_secs(300)).to_json(), serde_json::json!(300));
    }
}
