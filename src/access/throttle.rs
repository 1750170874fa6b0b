//! Per-client-address allowance of failed authentications, checked before any
//! cryptography so a flood of bogus signatures cannot burn the service's CPU.
//!
//! Each address (IPv6 grouped by /64, since one host owns a whole /64) has a token
//! bucket: every failed authentication takes a token, tokens refill at a steady rate,
//! and an address without a token is refused before its signature is looked at.
//! Successful requests take nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept before full ones are forgotten.
const PRUNE_ABOVE: usize = 50_000;
/// Shards of the map, to keep lock contention low under load.
const SHARDS: usize = 16;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets of failed authentications by client address.
#[derive(Debug)]
pub struct AuthThrottle {
    burst: f64,
    per_sec: f64,
    shards: Vec<Mutex<HashMap<IpAddr, Bucket>>>,
}

impl AuthThrottle {
    /// Allows `burst` failures at once, refilled at `per_minute` per minute.
    pub fn new(burst: u32, per_minute: u32) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            per_sec: f64::from(per_minute.max(1)) / 60.0,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn with_shard<T>(&self, ip: IpAddr, f: impl FnOnce(&mut HashMap<IpAddr, Bucket>) -> T) -> T {
        let index = match ip {
            IpAddr::V4(v4) => u32::from(v4) as usize,
            IpAddr::V6(v6) => (u128::from(v6) >> 64) as usize,
        } % SHARDS;
        // A poisoned shard only held plain numbers; keep using it.
        let mut map = self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut map)
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_sec).min(self.burst);
        bucket.at = now;
    }

    /// `Ok` when `ip` may try to authenticate; otherwise how long until it may.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let ip = group(ip);
        self.with_shard(ip, |map| {
            let Some(bucket) = map.get_mut(&ip) else {
                return Ok(());
            };
            self.refill(bucket, now);
            if bucket.tokens >= 1.0 {
                Ok(())
            } else {
                Err(Duration::from_secs_f64(
                    (1.0 - bucket.tokens) / self.per_sec,
                ))
            }
        })
    }

    /// Takes one token from `ip` for a failed authentication.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) {
        let ip = group(ip);
        let burst = self.burst;
        self.with_shard(ip, |map| {
            if map.len() > PRUNE_ABOVE / SHARDS {
                // Forget addresses that have refilled completely: they are as good as new.
                map.retain(|_, b| {
                    let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
                    b.tokens + elapsed * self.per_sec < burst
                });
            }
            let bucket = map.entry(ip).or_insert(Bucket {
                tokens: burst,
                at: now,
            });
            self.refill(bucket, now);
            bucket.tokens = (bucket.tokens - 1.0).max(0.0);
        });
    }
}

/// IPv6 addresses by their /64; IPv4 (and IPv4-mapped IPv6) as they are.
fn group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let t = AuthThrottle::new(3, 60);
        let ip: IpAddr = "203.0.113.7".parse().expect("ip");
        let other: IpAddr = "203.0.113.8".parse().expect("ip");
        let start = Instant::now();
        for _ in 0..3 {
            assert!(t.check(ip, start).is_ok());
            t.record_failure(ip, start);
        }
        let wait = t.check(ip, start).expect_err("throttled");
        assert!(wait <= Duration::from_secs(1) && wait > Duration::ZERO);
        // Others are unaffected; one second later one more try is allowed.
        assert!(t.check(other, start).is_ok());
        assert!(t.check(ip, start + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn ipv6_is_grouped_by_slash_64() {
        let t = AuthThrottle::new(1, 1);
        let now = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        t.record_failure(a, now);
        assert!(t.check(b, now).is_err());
        assert!(t.check(c, now).is_ok());
    }
}
