//! Per-IP and per-key rate limits: token buckets refilled at `limits.per_ip_rps` / `limits.per_key_rps` with
//! `limits.burst` capacity. Off when the rates are 0. The tables are bounded: idle buckets are forgotten.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Most buckets kept per table before idle ones are swept.
const MAX_BUCKETS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Debug)]
struct Table<K> {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: std::hash::Hash + Eq + Clone> Table<K> {
    fn new(rate: f64, burst: u32) -> Self {
        Self { rate, burst: f64::from(burst.max(1)), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes a token for `key`; `Err(seconds)` until one is available.
    fn take(&self, key: &K, now: Instant) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.updated).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket { tokens: self.burst, updated: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.updated).as_secs_f64() * self.rate).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    Ip(u64),
    Key(u64),
}

/// Both limiters.
#[derive(Debug)]
pub struct RateLimiter {
    per_ip: Table<IpAddr>,
    per_key: Table<String>,
}

impl RateLimiter {
    pub fn new(per_ip_rps: f64, per_key_rps: f64, burst: u32) -> Self {
        Self { per_ip: Table::new(per_ip_rps, burst), per_key: Table::new(per_key_rps, burst) }
    }

    /// True when any limit is configured.
    pub fn enabled(&self) -> bool {
        self.per_ip.rate > 0.0 || self.per_key.rate > 0.0
    }

    /// Admits one request from `ip` with `key`.
    pub fn check(&self, ip: IpAddr, key: Option<&str>) -> Result<(), Limited> {
        let now = Instant::now();
        self.per_ip.take(&ip, now).map_err(Limited::Ip)?;
        if let Some(key) = key {
            self.per_key.take(&key.to_string(), now).map_err(Limited::Key)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refuses_with_a_retry_time() {
        let limiter = RateLimiter::new(1.0, 0.0, 3);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check(ip, None).is_ok());
        }
        assert_eq!(limiter.check(ip, None), Err(Limited::Ip(1)));
        // Another client has its own bucket.
        assert!(limiter.check("10.0.0.2".parse().unwrap(), None).is_ok());
    }

    #[test]
    fn keys_are_limited_separately() {
        let limiter = RateLimiter::new(0.0, 1.0, 1);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(limiter.check(ip, Some("a")).is_ok());
        assert_eq!(limiter.check(ip, Some("a")), Err(Limited::Key(1)));
        assert!(limiter.check(ip, Some("b")).is_ok());
        assert!(limiter.check(ip, None).is_ok(), "no per-IP limit");
        assert!(!RateLimiter::new(0.0, 0.0, 1).enabled());
    }
}
