//! Device-token lifetimes as arithmetic over times passed in: an idle
//! expiry that use slides forward, capped by an absolute lifetime, and when
//! an open WebSocket has to look at its device's row again.

/// Writing `last_seen_at` on every request would spend D1's write budget.
const TOUCH_INTERVAL_MS: i64 = 3_600_000;
/// An open socket re-reads its device row at most this often (on a frame).
const SOCKET_RECHECK_MS: i64 = 5 * 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Without use for this long, a token expires.
    pub idle_ms: i64,
    /// However much it is used, a token expires this long after sign-in.
    pub max_ms: i64,
}

impl Lifetimes {
    /// The expiry of a token created at `created_at` and used at `now`.
    pub fn expires_at(&self, created_at: i64, now: i64) -> i64 {
        now.saturating_add(self.idle_ms)
            .min(created_at.saturating_add(self.max_ms))
    }

    /// Whether a use at `now` should write the sliding expiry: often
    /// enough that a device in use never expires while idle.
    pub fn touch_due(&self, last_seen_at: i64, now: i64) -> bool {
        now - last_seen_at >= TOUCH_INTERVAL_MS.min(self.idle_ms / 4)
    }

    /// Whether a frame on a socket whose device was last read at
    /// `checked_at` (then expiring at `expires_at`) must read it again.
    pub fn socket_recheck_due(&self, expires_at: i64, checked_at: i64, now: i64) -> bool {
        now >= expires_at || now - checked_at >= SOCKET_RECHECK_MS.min(self.idle_ms / 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn idle_expiry_slides_up_to_the_absolute_lifetime() {
        let l = Lifetimes {
            idle_ms: 90 * DAY,
            max_ms: 365 * DAY,
        };
        assert_eq!(l.expires_at(0, 0), 90 * DAY);
        assert_eq!(l.expires_at(0, 100 * DAY), 190 * DAY);
        assert_eq!(l.expires_at(0, 300 * DAY), 365 * DAY);
        assert_eq!(l.expires_at(0, 400 * DAY), 365 * DAY);
        assert_eq!(l.expires_at(i64::MAX - 1, i64::MAX - 1), i64::MAX);
    }

    #[test]
    fn touches_and_rechecks_are_rare() {
        let l = Lifetimes {
            idle_ms: 90 * DAY,
            max_ms: 365 * DAY,
        };
        assert!(!l.touch_due(0, 3_599_999));
        assert!(l.touch_due(0, 3_600_000));
        assert!(!l.socket_recheck_due(DAY, 0, 299_999));
        assert!(l.socket_recheck_due(DAY, 0, 300_000));
        assert!(l.socket_recheck_due(DAY, DAY - 1, DAY), "expired");
        // Short test lifetimes recheck more often.
        let short = Lifetimes {
            idle_ms: 4_000,
            max_ms: 20_000,
        };
        assert!(short.socket_recheck_due(10_000, 0, 1_000));
        assert!(short.touch_due(0, 1_000));
    }
}
