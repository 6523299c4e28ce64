//! Conflict decision for one key: fast-forward, no-op, last-write-wins, or
//! a three-way merge of JSON arrays of objects with an `id`. Pure and
//! deterministic: the outcome depends only on the two sides, never on which
//! arrived first.

use serde_json::Value;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

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

// ------------------------------------------------------------ merge by id

/// One side of a merge: the value's text and the write's edit time.
#[derive(Debug, Clone, Copy)]
pub struct Version<'a> {
    pub text: &'a str,
    pub updated_at: i64,
}

/// An array of objects keyed by `id`, in order.
struct IdArray {
    ids: Vec<String>,
    items: HashMap<String, Value>,
}

/// `id` as a map key: strings as they are, numbers as written (so `1` and
/// `"1"` name the same element, as they do in the JavaScript client).
fn id_key(element: &Value) -> Option<String> {
    match element.as_object()?.get("id")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `Some` when `text` is a JSON array whose elements are all objects with a
/// string or number `id`, no id twice.
fn parse_id_array(text: &str) -> Option<IdArray> {
    let Value::Array(elements) = serde_json::from_str(text).ok()? else {
        return None;
    };
    let mut ids = Vec::with_capacity(elements.len());
    let mut items = HashMap::with_capacity(elements.len());
    for element in elements {
        let id = id_key(&element)?;
        if items.insert(id.clone(), element).is_some() {
            return None;
        }
        ids.push(id);
    }
    Some(IdArray { ids, items })
}

/// An element's own edit time: a number of ms or an RFC 3339 string.
fn element_time(element: &Value) -> Option<i64> {
    match element.get("updatedAt")? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_millis()),
        _ => None,
    }
}

/// Three-way merge of two JSON arrays of objects with an `id`, against the
/// value both started from. `None` unless all three are such arrays; then
/// LWW decides as for any other value.
///
/// - added on either side: added; removed on either side: removed, unless
///   the other side changed that element (an edit is never silently lost);
/// - changed on one side: that change; changed on both: the later element
///   `updatedAt` (the write's time when absent), then the newer side;
/// - order follows the newer side, the other side's additions placed after
///   their predecessor there.
///
/// "Newer side" is the later write, then the larger text: the result does
/// not depend on which side is `stored`. When one side equals the base, the
/// other side's text is returned as it is.
pub fn merge_by_id(base: &str, stored: Version<'_>, incoming: Version<'_>) -> Option<String> {
    let base_array = parse_id_array(base)?;
    let s = parse_id_array(stored.text)?;
    let i = parse_id_array(incoming.text)?;
    let same_as_base = |a: &IdArray| a.ids == base_array.ids && a.items == base_array.items;
    if same_as_base(&s) {
        return Some(incoming.text.to_owned());
    }
    if same_as_base(&i) {
        return Some(stored.text.to_owned());
    }
    let incoming_newer = (incoming.updated_at, incoming.text) > (stored.updated_at, stored.text);
    let (newer, older, newer_t, older_t) = if incoming_newer {
        (&i, &s, incoming.updated_at, stored.updated_at)
    } else {
        (&s, &i, stored.updated_at, incoming.updated_at)
    };

    let pick = |id: &str| -> Option<&Value> {
        let b = base_array.items.get(id);
        match (newer.items.get(id), older.items.get(id)) {
            (Some(n), Some(o)) => {
                if n == o || b == Some(o) {
                    Some(n)
                } else if b == Some(n) {
                    Some(o)
                } else {
                    let tn = element_time(n).unwrap_or(newer_t);
                    let to = element_time(o).unwrap_or(older_t);
                    Some(if to > tn { o } else { n })
                }
            }
            // Only on one side: an addition, a removal by the other side,
            // or an edit the other side removed (kept).
            (Some(only), None) | (None, Some(only)) => match b {
                Some(b) if b == only => None,
                _ => Some(only),
            },
            (None, None) => None,
        }
    };

    // The older side's additions, grouped after the last element before them
    // that the newer side also has (`None`: before everything).
    let in_newer: HashSet<&str> = newer.ids.iter().map(String::as_str).collect();
    let mut after: HashMap<Option<&str>, Vec<&Value>> = HashMap::new();
    let mut anchor: Option<&str> = None;
    for id in &older.ids {
        if in_newer.contains(id.as_str()) {
            anchor = Some(id);
        } else if let Some(v) = pick(id) {
            after.entry(anchor).or_default().push(v);
        }
    }
    let mut merged: Vec<&Value> = after.remove(&None).unwrap_or_default();
    for id in &newer.ids {
        if let Some(v) = pick(id) {
            merged.push(v);
        }
        // Additions anchored on an element are kept even if it was removed.
        if let Some(run) = after.remove(&Some(id.as_str())) {
            merged.extend(run);
        }
    }
    let same_as = |a: &IdArray| {
        a.ids.len() == merged.len()
            && a.ids
                .iter()
                .zip(&merged)
                .all(|(id, v)| a.items.get(id) == Some(v))
    };
    if same_as(&i) {
        return Some(incoming.text.to_owned());
    }
    if same_as(&s) {
        return Some(stored.text.to_owned());
    }
    serde_json::to_string(&merged).ok()
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

    // ------------------------------------------------------ merge by id

    fn at(text: &str, t: i64) -> Version<'_> {
        Version {
            text,
            updated_at: t,
        }
    }

    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    fn merged(base: &str, stored: &str, ts: i64, incoming: &str, ti: i64) -> Value {
        parsed(&merge_by_id(base, at(stored, ts), at(incoming, ti)).unwrap())
    }

    #[test]
    fn merge_adds_removes_and_changes() {
        let base = r#"[{"id":1,"t":"a"},{"id":2,"t":"b"},{"id":3,"t":"c"}]"#;
        // Stored removed 2 and changed 3; incoming changed 1 and added 4 after 1.
        let stored = r#"[{"id":1,"t":"a"},{"id":3,"t":"C"}]"#;
        let incoming = r#"[{"id":1,"t":"A"},{"id":4,"t":"d"},{"id":2,"t":"b"},{"id":3,"t":"c"}]"#;
        assert_eq!(
            merged(base, stored, 10, incoming, 20),
            parsed(r#"[{"id":1,"t":"A"},{"id":4,"t":"d"},{"id":3,"t":"C"}]"#)
        );
    }

    #[test]
    fn merge_both_changed_takes_later_element_time() {
        let base = r#"[{"id":"x","t":"base","updatedAt":1}]"#;
        let stored = r#"[{"id":"x","t":"stored","updatedAt":"1970-01-01T00:00:00.005Z"}]"#;
        let incoming = r#"[{"id":"x","t":"incoming","updatedAt":3}]"#;
        // The element times decide, not the writes' (incoming is the later write).
        assert_eq!(merged(base, stored, 1, incoming, 9)[0]["t"], "stored");
        // Without element times the later write wins.
        let base = r#"[{"id":"x","t":"base"}]"#;
        let stored = r#"[{"id":"x","t":"stored"}]"#;
        let incoming = r#"[{"id":"x","t":"incoming"}]"#;
        assert_eq!(merged(base, stored, 1, incoming, 9)[0]["t"], "incoming");
        assert_eq!(merged(base, stored, 9, incoming, 1)[0]["t"], "stored");
    }

    #[test]
    fn merge_keeps_an_edit_the_other_side_removed() {
        let base = r#"[{"id":1,"t":"a"},{"id":2,"t":"b"}]"#;
        let stored = r#"[{"id":1,"t":"a"}]"#;
        let incoming = r#"[{"id":1,"t":"a"},{"id":2,"t":"edited"}]"#;
        assert_eq!(
            merged(base, stored, 1, incoming, 2),
            parsed(r#"[{"id":1,"t":"a"},{"id":2,"t":"edited"}]"#)
        );
    }

    #[test]
    fn merge_order_follows_the_newer_side() {
        let base = r#"[{"id":1},{"id":2},{"id":3}]"#;
        let stored = r#"[{"id":3},{"id":2},{"id":1},{"id":5}]"#;
        let incoming = r#"[{"id":1},{"id":4},{"id":2},{"id":3}]"#;
        assert_eq!(
            merged(base, stored, 1, incoming, 2),
            // 5 follows 1, its predecessor on the stored side.
            parsed(r#"[{"id":1},{"id":5},{"id":4},{"id":2},{"id":3}]"#)
        );
        assert_eq!(
            merged(base, stored, 2, incoming, 1),
            parsed(r#"[{"id":3},{"id":2},{"id":1},{"id":4},{"id":5}]"#)
        );
    }

    #[test]
    fn merge_refuses_what_is_not_an_id_array() {
        let ok = r#"[{"id":1}]"#;
        for bad in [
            "{}",
            "[1,2]",
            r#"[{"id":1},{"id":1}]"#,
            r#"[{"id":null}]"#,
            r#"[{"name":"x"}]"#,
            "not json",
            r#"[{"id":[1]}]"#,
        ] {
            assert_eq!(merge_by_id(bad, at(ok, 1), at(ok, 2)), None, "base {bad}");
            assert_eq!(merge_by_id(ok, at(bad, 1), at(ok, 2)), None, "stored {bad}");
            assert_eq!(
                merge_by_id(ok, at(ok, 1), at(bad, 2)),
                None,
                "incoming {bad}"
            );
        }
        assert_eq!(
            merge_by_id("[]", at("[]", 1), at("[]", 2)).as_deref(),
            Some("[]")
        );
    }

    #[test]
    fn merge_keeps_field_order_and_returns_a_side_verbatim() {
        let base = r#"[{"id":1,"z":1,"a":1}]"#;
        let stored = r#"[{"id":1,"z":2,"a":1}]"#;
        let incoming = r#"[ {"id":1,"z":1,"a":1}, {"id":2,"z":0,"a":0} ]"#;
        assert_eq!(
            merge_by_id(base, at(stored, 1), at(incoming, 2)).unwrap(),
            r#"[{"id":1,"z":2,"a":1},{"id":2,"z":0,"a":0}]"#
        );
        // Only one side changed: its text comes back untouched.
        assert_eq!(
            merge_by_id(base, at(base, 5), at(incoming, 2)).unwrap(),
            incoming
        );
    }

    /// An array of objects with unique ids 0..8, values 0..3, in any order.
    fn arb_id_array() -> impl Strategy<Value = String> {
        proptest::collection::btree_map(0u8..8, (0u8..3, proptest::option::of(0i64..3)), 0..7)
            .prop_flat_map(|m| Just(m.into_iter().collect::<Vec<_>>()).prop_shuffle())
            .prop_map(|items| {
                let elements: Vec<Value> = items
                    .into_iter()
                    .map(|(id, (v, t))| match t {
                        Some(t) => serde_json::json!({"id": id, "v": v, "updatedAt": t}),
                        None => serde_json::json!({"id": id, "v": v}),
                    })
                    .collect();
                serde_json::to_string(&elements).unwrap()
            })
    }

    fn ids(text: &str) -> Vec<String> {
        parse_id_array(text).unwrap().ids
    }

    proptest! {
        /// The same inputs give the same result, whichever side is stored.
        #[test]
        fn merge_is_deterministic(b in arb_id_array(), s in arb_id_array(), i in arb_id_array(),
                                  ts in 0i64..3, ti in 0i64..3) {
            let one = merge_by_id(&b, at(&s, ts), at(&i, ti)).unwrap();
            let again = merge_by_id(&b, at(&s, ts), at(&i, ti)).unwrap();
            let swapped = merge_by_id(&b, at(&i, ti), at(&s, ts)).unwrap();
            prop_assert_eq!(&one, &again);
            prop_assert_eq!(parsed(&one), parsed(&swapped));
            prop_assert!(parse_id_array(&one).is_some(), "not an id array: {}", one);
        }

        /// Every element neither side removed is in the result, and no
        /// element one side removed and the other left alone is.
        #[test]
        fn merge_keeps_what_nobody_removed(b in arb_id_array(), s in arb_id_array(), i in arb_id_array(),
                                           ts in 0i64..3, ti in 0i64..3) {
            let out = merge_by_id(&b, at(&s, ts), at(&i, ti)).unwrap();
            let (base, st, inc, res) = (
                parse_id_array(&b).unwrap(), parse_id_array(&s).unwrap(),
                parse_id_array(&i).unwrap(), parse_id_array(&out).unwrap());
            for id in st.ids.iter().chain(&inc.ids) {
                let in_base = base.items.get(id);
                let removed_by = |side: &IdArray, other: &IdArray| {
                    in_base.is_some() && !side.items.contains_key(id)
                        && other.items.get(id) == in_base
                };
                let removed = removed_by(&st, &inc) || removed_by(&inc, &st);
                prop_assert_eq!(res.items.contains_key(id), !removed, "id {} in {}", id, out);
            }
            for id in &res.ids {
                prop_assert!(st.items.contains_key(id) || inc.items.contains_key(id));
            }
        }

        /// Merging with a side that did not change returns the other side.
        #[test]
        fn merge_with_an_unchanged_side_is_the_other(b in arb_id_array(), x in arb_id_array(),
                                                      tb in 0i64..3, tx in 0i64..3) {
            prop_assert_eq!(merge_by_id(&b, at(&b, tb), at(&x, tx)).unwrap(), x.clone());
            prop_assert_eq!(merge_by_id(&b, at(&x, tx), at(&b, tb)).unwrap(), x.clone());
            prop_assert_eq!(ids(&merge_by_id(&b, at(&x, tx), at(&x, tb)).unwrap()), ids(&x));
        }
    }
}
