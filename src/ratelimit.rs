//! Rate limits, as pure arithmetic over time passed in.

/// Token bucket for a user's writes, kept in the user's Durable Object.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    per_ms: f64,
    tokens: f64,
    last_ms: i64,
}

impl TokenBucket {
    /// `burst` writes at once, refilled at `per_minute`.
    pub fn new(burst: u32, per_minute: u32, now_ms: i64) -> Self {
        Self {
            capacity: f64::from(burst.max(1)),
            per_ms: f64::from(per_minute.max(1)) / 60_000.0,
            tokens: f64::from(burst.max(1)),
            last_ms: now_ms,
        }
    }

    /// Takes `n` tokens (a write's weight), or says how many whole seconds
    /// until they are free. A write heavier than the whole burst waits for a
    /// full bucket and leaves it in debt, so it counts as what it writes.
    pub fn take(&mut self, n: u64, now_ms: i64) -> Result<(), u64> {
        let elapsed = (now_ms - self.last_ms).max(0) as f64;
        self.tokens = (self.tokens + elapsed * self.per_ms).min(self.capacity);
        self.last_ms = now_ms.max(self.last_ms);
        let n = n.max(1) as f64;
        let needed = n.min(self.capacity);
        if self.tokens >= needed {
            self.tokens -= n;
            Ok(())
        } else {
            let wait_ms = (needed - self.tokens) / self.per_ms;
            Err(((wait_ms / 1000.0).ceil() as u64).max(1))
        }
    }
}

/// A fixed one-minute window of failed logins, as stored in D1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ms: i64,
    pub count: u32,
}

pub const WINDOW_MS: i64 = 60_000;

impl Window {
    /// `Err(retry_after_secs)` when this window, already counting the
    /// attempt being made, holds more than `limit` attempts.
    pub fn admit(&self, limit: u32, now_ms: i64) -> Result<(), u64> {
        if self.count <= limit {
            return Ok(());
        }
        let left = WINDOW_MS - (now_ms - self.start_ms);
        Err(((left + 999) / 1000).clamp(1, WINDOW_MS / 1000) as u64)
    }
}

/// The rate-limit bucket of a client address: IPv6 clients by their /64
/// (one host usually holds a whole /64), IPv4 by the address.
pub fn ip_bucket(raw: &str) -> String {
    match raw.trim().parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Ok(std::net::IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => "unknown".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills() {
        let mut b = TokenBucket::new(3, 60, 0);
        assert!(b.take(1, 0).is_ok());
        assert!(b.take(1, 0).is_ok());
        assert!(b.take(1, 0).is_ok());
        assert_eq!(b.take(1, 0), Err(1));
        assert!(b.take(1, 1_000).is_ok(), "one per second at 60/min");
        assert!(b.take(1, 1_000).is_err());
        assert!(b.take(1, 100_000).is_ok());
    }

    #[test]
    fn bucket_retry_after_is_whole_seconds() {
        let mut b = TokenBucket::new(1, 6, 0);
        b.take(1, 0).unwrap();
        assert_eq!(b.take(1, 0), Err(10));
        assert_eq!(b.take(1, 5_500), Err(5));
    }

    #[test]
    fn heavy_writes_take_what_they_weigh() {
        let mut b = TokenBucket::new(10, 60, 0);
        assert!(b.take(4, 0).is_ok());
        assert_eq!(b.take(7, 0), Err(1), "6 left");
        assert!(b.take(6, 0).is_ok());
        // Heavier than the burst: waits for a full bucket, then owes the rest.
        assert_eq!(b.take(100, 0), Err(10));
        assert!(b.take(100, 10_000).is_ok());
        assert_eq!(b.take(1, 10_000), Err(91));
    }

    #[test]
    fn window() {
        let w = Window {
            start_ms: 1_000,
            count: 11,
        };
        assert_eq!(w.admit(10, 1_000), Err(60));
        assert_eq!(w.admit(10, 30_500), Err(31));
        assert_eq!(w.admit(11, 30_500), Ok(()));
        let first = Window {
            start_ms: 0,
            count: 1,
        };
        assert_eq!(first.admit(1, 0), Ok(()));
        assert_eq!(first.admit(0, 0), Err(60));
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        assert_eq!(ip_bucket("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(ip_bucket("2001:db8:1:2::ffff"), "2001:db8:1:2::/64");
        assert_ne!(ip_bucket("2001:db8:1:3::1"), ip_bucket("2001:db8:1:2::1"));
        assert_eq!(ip_bucket(" 203.0.113.7 "), "203.0.113.7");
        assert_eq!(ip_bucket("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(ip_bucket("garbage"), "unknown");
    }
}
