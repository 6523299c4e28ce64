//! Conflict decision for one key: fast-forward, no-op, or last-write-wins.
//! Pure and deterministic: the outcome depends only on the two sides, never
//! on which arrived first.

use std::cmp::Ordering;

/// One side of a decision: what is stored, or what a write proposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side<'a> {
    pub deleted: bool,
    /// SHA-256 of the value (hex); compared instead of the value itself.
    pub hash: &'a str,
    /// Effective edit time in ms.
    pub updated_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Same content as stored (or deleting what does not exist): nothing to write.
    Unchanged,
    /// The write becomes the new current value.
    Accept { conflict: bool },
    /// The stored value stays; the write is kept in history as the loser.
    Reject,
}

impl Side<'_> {
    fn same_content(&self, other: &Side<'_>) -> bool {
        self.deleted == other.deleted && (self.deleted || self.hash == other.hash)
    }

    /// Total order for last-write-wins: later edit wins; on equal times a value
    /// beats a deletion, then the larger hash wins. Arbitrary but the same
    /// everywhere, so replicas replaying the same pair agree.
    fn lww_cmp(&self, other: &Side<'_>) -> Ordering {
        self.updated_at
            .cmp(&other.updated_at)
            .then((!self.deleted).cmp(&!other.deleted))
            .then(self.hash.cmp(other.hash))
    }
}

/// `stored` is `None` when the key has never existed, with its version.
pub fn decide(
    stored: Option<(&Side<'_>, u64)>,
    incoming: &Side<'_>,
    base_version: Option<u64>,
) -> Decision {
    let Some((stored, stored_version)) = stored else {
        return if incoming.deleted {
            Decision::Unchanged
        } else {
            Decision::Accept { conflict: false }
        };
    };
    if stored.same_content(incoming) {
        return Decision::Unchanged;
    }
    if base_version == Some(stored_version) {
        return Decision::Accept { conflict: false };
    }
    match incoming.lww_cmp(stored) {
        Ordering::Greater => Decision::Accept { conflict: true },
        _ => Decision::Reject,
    }
}

/// The edit time a write is judged by: the client's, but never later than the
/// server's clock, so one device with a clock set in the future cannot win
/// every conflict for ever. A missing time means "now".
pub fn effective_updated_at(client: Option<i64>, now_ms: i64) -> i64 {
    client.map_or(now_ms, |t| t.min(now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn side(deleted: bool, hash: &str, t: i64) -> Side<'_> {
        Side {
            deleted,
            hash,
            updated_at: t,
        }
    }

    #[test]
    fn new_key() {
        assert_eq!(
            decide(None, &side(false, "a", 1), None),
            Decision::Accept { conflict: false }
        );
        assert_eq!(decide(None, &side(true, "", 1), None), Decision::Unchanged);
    }

    #[test]
    fn fast_forward_and_no_op() {
        let s = side(false, "a", 10);
        assert_eq!(
            decide(Some((&s, 3)), &side(false, "b", 1), Some(3)),
            Decision::Accept { conflict: false }
        );
        assert_eq!(
            decide(Some((&s, 3)), &side(false, "a", 99), Some(1)),
            Decision::Unchanged
        );
        let tomb = side(true, "x", 10);
        assert_eq!(
            decide(Some((&tomb, 3)), &side(true, "y", 99), None),
            Decision::Unchanged
        );
    }

    #[test]
    fn stale_base_is_last_write_wins() {
        let s = side(false, "a", 10);
        assert_eq!(
            decide(Some((&s, 3)), &side(false, "b", 11), Some(2)),
            Decision::Accept { conflict: true }
        );
        assert_eq!(
            decide(Some((&s, 3)), &side(false, "b", 9), Some(2)),
            Decision::Reject
        );
        // No base at all on an existing key is a conflict too.
        assert_eq!(
            decide(Some((&s, 3)), &side(false, "b", 9), None),
            Decision::Reject
        );
        // A base from the future (server was reset) is not trusted either.
        assert_eq!(
            decide(Some((&s, 3)), &side(false, "b", 9), Some(7)),
            Decision::Reject
        );
    }

    #[test]
    fn ties_are_deterministic() {
        let a = side(false, "aaa", 5);
        let b = side(false, "bbb", 5);
        assert_eq!(
            decide(Some((&a, 1)), &b, None),
            Decision::Accept { conflict: true }
        );
        assert_eq!(decide(Some((&b, 1)), &a, None), Decision::Reject);
        let del = side(true, "zzz", 5);
        assert_eq!(decide(Some((&a, 1)), &del, None), Decision::Reject);
        assert_eq!(
            decide(Some((&del, 1)), &a, None),
            Decision::Accept { conflict: true }
        );
    }

    #[test]
    fn clock_clamp() {
        assert_eq!(effective_updated_at(None, 100), 100);
        assert_eq!(effective_updated_at(Some(50), 100), 50);
        assert_eq!(effective_updated_at(Some(5_000), 100), 100);
    }

    fn arb_side() -> impl Strategy<Value = (bool, String, i64)> {
        (any::<bool>(), "[a-d]", 0i64..4)
    }

    proptest! {
        /// Two conflicting writes applied in either order leave the same winner.
        #[test]
        fn lww_is_order_independent(x in arb_side(), y in arb_side()) {
            let (a, b) = (side(x.0, &x.1, x.2), side(y.0, &y.1, y.2));
            fn winner<'a>(stored: &Side<'a>, inc: &Side<'a>) -> Side<'a> { match decide(Some((stored, 1)), inc, Some(0)) {
                Decision::Accept { .. } => inc.clone(),
                Decision::Unchanged | Decision::Reject => stored.clone(),
            } }
            let ab = winner(&a, &b);
            let ba = winner(&b, &a);
            prop_assert!(ab.same_content(&ba), "{:?} vs {:?}", ab, ba);
        }

        /// A fast-forward is always accepted unless it changes nothing.
        #[test]
        fn fast_forward_always_lands(x in arb_side(), y in arb_side(), v in 1u64..100) {
            let (s, i) = (side(x.0, &x.1, x.2), side(y.0, &y.1, y.2));
            let d = decide(Some((&s, v)), &i, Some(v));
            if s.same_content(&i) {
                prop_assert_eq!(d, Decision::Unchanged);
            } else {
                prop_assert_eq!(d, Decision::Accept { conflict: false });
            }
        }
    }
}
