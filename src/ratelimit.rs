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

    /// Takes one token, or says how many whole seconds until one is free.
    pub fn take(&mut self, now_ms: i64) -> Result<(), u64> {
        let elapsed = (now_ms - self.last_ms).max(0) as f64;
        self.tokens = (self.tokens + elapsed * self.per_ms).min(self.capacity);
        self.last_ms = now_ms.max(self.last_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait_ms = (1.0 - self.tokens) / self.per_ms;
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
    /// `Err(retry_after_secs)` when `limit` failures already happened in the
    /// window that `now_ms` falls into.
    pub fn check(stored: Option<Window>, limit: u32, now_ms: i64) -> Result<(), u64> {
        match stored {
            Some(w) if now_ms - w.start_ms < WINDOW_MS && w.count >= limit => {
                let left = WINDOW_MS - (now_ms - w.start_ms);
                Err(((left + 999) / 1000).max(1) as u64)
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills() {
        let mut b = TokenBucket::new(3, 60, 0);
        assert!(b.take(0).is_ok());
        assert!(b.take(0).is_ok());
        assert!(b.take(0).is_ok());
        assert_eq!(b.take(0), Err(1));
        assert!(b.take(1_000).is_ok(), "one per second at 60/min");
        assert!(b.take(1_000).is_err());
        assert!(b.take(100_000).is_ok());
    }

    #[test]
    fn bucket_retry_after_is_whole_seconds() {
        let mut b = TokenBucket::new(1, 6, 0);
        b.take(0).unwrap();
        assert_eq!(b.take(0), Err(10));
        assert_eq!(b.take(5_500), Err(5));
    }

    #[test]
    fn window() {
        let w = Some(Window {
            start_ms: 1_000,
            count: 10,
        });
        assert_eq!(Window::check(w, 10, 1_000), Err(60));
        assert_eq!(Window::check(w, 10, 30_500), Err(31));
        assert_eq!(Window::check(w, 11, 30_500), Ok(()));
        assert_eq!(Window::check(w, 10, 61_000), Ok(()));
        assert_eq!(Window::check(None, 10, 0), Ok(()));
    }
}
