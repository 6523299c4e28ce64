//! Per-user quotas as pure arithmetic: what a write weighs, what an
//! account has used, and whether a write still fits. The hub's session
//! takes a request's units from the rate bucket when it is queued, counts
//! each group against the quotas when it plans it (the state is current
//! then), and the commit persists the day's count.

use crate::error::{Quota, SyncError};
use crate::protocol::Write;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

pub const DAY_MS: i64 = 86_400_000;
/// A write unit: one key written, plus one per this many bytes of values,
/// so a 16 MiB body or an import of 1,000 keys counts as what it writes.
pub const UNIT_BYTES: u64 = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Bytes of values stored, current and history together.
    pub bytes: u64,
    /// Keys holding a value (deleted keys do not count).
    pub keys: u64,
    /// Write units per UTC day.
    pub writes_per_day: u64,
}

impl Limits {
    /// 100 MB: five accounts cannot fill D1's 500 MB free database.
    pub const DEFAULT_BYTES: u64 = 100_000_000;
    pub const DEFAULT_KEYS: u64 = 10_000;
    /// About 5,000 edits a day: at 4-7 billed rows each, a third of D1's
    /// free 100,000 row writes a day at most.
    pub const DEFAULT_WRITES_PER_DAY: u64 = 5_000;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            bytes: Self::DEFAULT_BYTES,
            keys: Self::DEFAULT_KEYS,
            writes_per_day: Self::DEFAULT_WRITES_PER_DAY,
        }
    }
}

/// What one request adds, as far as it can be known before it is planned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Weight {
    pub units: u64,
    pub bytes: u64,
    /// Keys it gives a value that have none now.
    pub new_keys: u64,
}

/// The weight of `writes`; `live` says whether a key holds a value now.
pub fn weight<'a>(
    writes: impl IntoIterator<Item = &'a Write>,
    live: impl Fn(&str) -> bool,
) -> Weight {
    let mut w = Weight::default();
    let mut fresh = BTreeSet::new();
    for write in writes {
        w.units += 1;
        // A patch stores (at most) the records it carries.
        let stored = write.value.as_ref().map(String::len).or_else(|| {
            let p = write.patch.as_ref()?;
            Some(p.upserts.iter().map(|(_, t)| t.len()).sum())
        });
        if let Some(len) = stored {
            w.bytes += len as u64;
            let key = write.key.as_str();
            if !live(key) && fresh.insert(key) {
                w.new_keys += 1;
            }
        }
    }
    w.units += w.bytes / UNIT_BYTES;
    w
}

/// The write units of `writes` alone (what the rate bucket takes): they do
/// not depend on which keys hold a value.
pub fn units(writes: &[Write]) -> u64 {
    weight(writes, |_| true).units
}

/// Counts a group of requests (each its writes) against the quotas, in
/// order, from `usage` and the keys holding a value before the group
/// (`live`, `live_keys`): a request admitted before another counts for it.
/// Returns each request's verdict and the usage with the admitted counted.
pub fn admit<'a>(
    limits: &Limits,
    mut usage: Usage,
    live: impl Fn(&str) -> bool,
    mut live_keys: u64,
    requests: impl IntoIterator<Item = &'a [Write]>,
    now_ms: i64,
) -> (Vec<Result<(), SyncError>>, Usage) {
    // Keys the admitted requests gave a value (true) or deleted (false).
    let mut changed: HashMap<&str, bool> = HashMap::new();
    let mut verdicts = Vec::new();
    for writes in requests {
        let is_live = |k: &str| changed.get(k).copied().unwrap_or_else(|| live(k));
        let w = weight(writes, is_live);
        let verdict = usage.check(limits, live_keys, &w, now_ms);
        if verdict.is_ok() {
            usage.add(&w, now_ms);
            for write in writes {
                let key = write.key.as_str();
                let was = changed.get(key).copied().unwrap_or_else(|| live(key));
                let is = write.value.is_some();
                match (was, is) {
                    (false, true) => live_keys += 1,
                    (true, false) => live_keys = live_keys.saturating_sub(1),
                    _ => {}
                }
                changed.insert(key, is);
            }
        }
        verdicts.push(verdict);
    }
    (verdicts, usage)
}

/// An account's usage. `bytes` is exact when loaded and grows by what is
/// written; history retention only shrinks it at the next load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    /// The UTC day (`ms / DAY_MS`) that `day_units` counts.
    pub day: i64,
    pub day_units: u64,
}

impl Usage {
    pub fn units_today(&self, now_ms: i64) -> u64 {
        if self.day == now_ms.div_euclid(DAY_MS) {
            self.day_units
        } else {
            0
        }
    }

    /// Whether `w` fits, with `live_keys` keys holding a value now. A
    /// request that adds no bytes or keys (a deletion) is never refused
    /// for storage, so a full account can always make room.
    pub fn check(
        &self,
        limits: &Limits,
        live_keys: u64,
        w: &Weight,
        now_ms: i64,
    ) -> Result<(), SyncError> {
        if w.bytes > 0 && self.bytes.saturating_add(w.bytes) > limits.bytes {
            return Err(SyncError::QuotaExceeded {
                quota: Quota::Bytes,
                limit: limits.bytes,
            });
        }
        if w.new_keys > 0 && live_keys.saturating_add(w.new_keys) > limits.keys {
            return Err(SyncError::QuotaExceeded {
                quota: Quota::Keys,
                limit: limits.keys,
            });
        }
        if self.units_today(now_ms).saturating_add(w.units) > limits.writes_per_day {
            let next_day = (now_ms.div_euclid(DAY_MS) + 1) * DAY_MS;
            return Err(SyncError::QuotaExceeded {
                quota: Quota::WritesPerDay {
                    retry_after_secs: ((next_day - now_ms + 999) / 1000).max(1) as u64,
                },
                limit: limits.writes_per_day,
            });
        }
        Ok(())
    }

    /// Counts an admitted request.
    pub fn add(&mut self, w: &Weight, now_ms: i64) {
        let day = now_ms.div_euclid(DAY_MS);
        if self.day != day {
            self.day = day;
            self.day_units = 0;
        }
        self.day_units = self.day_units.saturating_add(w.units);
        self.bytes = self.bytes.saturating_add(w.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Key;

    fn put(key: &str, len: usize) -> Write {
        Write {
            key: Key::parse(key).unwrap(),
            value: Some("x".repeat(len)),
            base_version: None,
            updated_at: None,
            patch: None,
        }
    }

    fn del(key: &str) -> Write {
        Write {
            value: None,
            ..put(key, 0)
        }
    }

    const LIMITS: Limits = Limits {
        bytes: 1_000,
        keys: 3,
        writes_per_day: 10,
    };

    #[test]
    fn weight_counts_keys_and_bytes() {
        let w = weight(&[put("a", 10), put("b", 5), del("c")], |k| k == "b");
        assert_eq!(
            w,
            Weight {
                units: 3,
                bytes: 15,
                new_keys: 1
            }
        );
        // One big value weighs what it writes.
        let w = weight(&[put("big", 16 * 1024 * 1024)], |_| false);
        assert_eq!(w.units, 1 + 64);
        // A thousand keys are a thousand units.
        let many: Vec<Write> = (0..1000).map(|i| put(&format!("k{i}"), 1)).collect();
        assert_eq!(weight(&many, |_| false).units, 1000);
        // A record patch weighs the records it carries, and can make a key.
        let patch = Write {
            patch: Some(std::rc::Rc::new(crate::records::Patch {
                upserts: vec![("1".into(), r#"{"id":1}"#.into())],
                ..Default::default()
            })),
            ..del("list")
        };
        let w = weight(&[patch], |_| false);
        assert_eq!((w.bytes, w.new_keys), (8, 1));
    }

    #[test]
    fn checks_each_limit_with_its_error() {
        let u = Usage {
            bytes: 990,
            day: 0,
            day_units: 0,
        };
        let code = |r: Result<(), SyncError>| r.map_err(|e| (e.status(), e.code()));
        assert_eq!(
            code(u.check(&LIMITS, 0, &weight(&[put("a", 10)], |_| false), 0)),
            Ok(())
        );
        assert_eq!(
            code(u.check(&LIMITS, 0, &weight(&[put("a", 11)], |_| false), 0)),
            Err((507, "quota_exceeded"))
        );
        assert_eq!(
            code(u.check(&LIMITS, 3, &weight(&[put("d", 1)], |_| false), 0)),
            Err((507, "quota_exceeded"))
        );
        // Deleting always fits, and overwriting a live key adds no key.
        assert_eq!(
            code(u.check(&LIMITS, 3, &weight(&[del("a")], |_| true), 0)),
            Ok(())
        );
        assert_eq!(
            code(u.check(&LIMITS, 3, &weight(&[put("a", 1)], |_| true), 0)),
            Ok(())
        );
    }

    #[test]
    fn a_group_is_admitted_in_order() {
        let a = [put("a", 10)];
        let b = [put("b", 10)];
        let del_a = [del("a")];
        let c = [put("c", 10)];
        let big = [put("d", 2_000)];
        let requests: Vec<&[Write]> = vec![&a, &b, &del_a, &c, &big];
        // Two keys held already: "a" and "b" make four, over the limit of
        // three; deleting "a" makes room for "c".
        let live = |k: &str| k == "x" || k == "y";
        let (verdicts, usage) = admit(&LIMITS, Usage::default(), live, 2, requests, 0);
        let codes: Vec<_> = verdicts
            .iter()
            .map(|v| v.as_ref().map_err(|e| e.status()))
            .collect();
        assert_eq!(codes, [Ok(&()), Err(507), Ok(&()), Ok(&()), Err(507)]);
        assert_eq!((usage.bytes, usage.day_units), (20, 3));
        assert_eq!(units(&big), 1);
        assert_eq!(units(&[put("e", 300 * 1024), del("f")]), 3);
    }

    #[test]
    fn daily_units_reset_at_utc_midnight() {
        let mut u = Usage::default();
        let noon = 10 * DAY_MS + DAY_MS / 2;
        u.add(
            &Weight {
                units: 10,
                bytes: 0,
                new_keys: 0,
            },
            noon,
        );
        let one = weight(&[del("a")], |_| true);
        let e = u.check(&LIMITS, 0, &one, noon).unwrap_err();
        assert_eq!((e.status(), e.code()), (429, "quota_exceeded"));
        assert_eq!(e.retry_after_secs(), Some(43_200));
        assert!(e.to_string().contains("10"), "{e}");
        assert_eq!(u.units_today(11 * DAY_MS), 0);
        assert!(u.check(&LIMITS, 0, &one, 11 * DAY_MS).is_ok());
        u.add(&one, 11 * DAY_MS);
        assert_eq!((u.day, u.day_units), (11, 1));
    }
}
