//! Value types that users write as text: byte sizes and the VRAM limit.

use crate::size::parse_bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A byte count written as `512MiB`, `8GB` or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// `n` mebibytes.
    pub const fn mib(n: u64) -> Self {
        Self(n * 1024 * 1024)
    }

    /// `n` gibibytes.
    pub const fn gib(n: u64) -> Self {
        Self(n * 1024 * 1024 * 1024)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const GIB: u64 = 1024 * 1024 * 1024;
        const MIB: u64 = 1024 * 1024;
        match self.0 {
            n if n >= GIB && n % GIB == 0 => write!(f, "{}GiB", n / GIB),
            n if n >= MIB && n % MIB == 0 => write!(f, "{}MiB", n / MIB),
            n => write!(f, "{n}"),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a size such as 512MiB or a number of bytes"))?
        {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(s) => parse_bytes(&s).map(ByteSize).map_err(serde::de::Error::custom),
        }
    }
}

/// How much VRAM Switchyard may fill: an absolute size or a share of each GPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum VramLimit {
    Bytes(u64),
    Percent(f64),
}

impl VramLimit {
    /// The limit on a GPU of `total` bytes.
    pub fn of(&self, total: u64) -> u64 {
        match *self {
            VramLimit::Bytes(b) => b.min(total),
            VramLimit::Percent(p) => ((total as f64) * p / 100.0) as u64,
        }
    }
}

impl fmt::Display for VramLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VramLimit::Bytes(b) => write!(f, "{}", ByteSize(*b)),
            VramLimit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl std::str::FromStr for VramLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(p) = s.trim().strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| format!("{s:?} is not a percentage"))?;
            if !(1.0..=100.0).contains(&p) {
                return Err(format!("{s:?}: a percentage must be between 1% and 100%"));
            }
            return Ok(VramLimit::Percent(p));
        }
        parse_bytes(s).map(VramLimit::Bytes).map_err(|m| format!("{m}; or give a percentage such as 90%"))
    }
}

impl Serialize for VramLimit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for VramLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a size (20GiB) or a percentage (90%)"))?
        {
            Raw::Int(n) => Ok(VramLimit::Bytes(n)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_round_trip() {
        assert_eq!(ByteSize::mib(512).to_string(), "512MiB");
        assert_eq!(ByteSize::gib(24).to_string(), "24GiB");
        assert_eq!(ByteSize(1000).to_string(), "1000");
    }

    #[test]
    fn limits_parse_and_apply() {
        let total = 1000;
        assert_eq!("90%".parse::<VramLimit>().unwrap().of(total), 900);
        assert_eq!("500".parse::<VramLimit>().unwrap().of(total), 500);
        assert_eq!("5000".parse::<VramLimit>().unwrap().of(total), 1000);
        assert!("150%".parse::<VramLimit>().is_err());
        assert!("lots".parse::<VramLimit>().is_err());
    }
}
