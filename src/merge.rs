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

/// One side of a record conflict: the record's JSON text (`None`: the
/// record is gone on that side) and the time of the write that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSide<'a> {
    pub text: Option<&'a str>,
    pub updated_at: i64,
}

/// How a record conflict was settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordMerge {
    /// One side's text (or absence) stands as it is.
    Stored,
    Incoming,
    /// A field-by-field merge of both edits.
    Merged(String),
}

/// Three-way merge of one record (a JSON object) edited on two sides,
/// against the record both started from (`base`, `None` when it did not
/// exist or is no longer kept):
/// - a side equal to the base takes the other side;
/// - deleted on one side and edited on the other: the edit is kept;
/// - edited on both with the base known: field by field (a field changed on
///   one side takes that change; on both, the later element `updatedAt`,
///   else the later write); fields keep the newer side's order, the other
///   side's new fields after them;
/// - otherwise the whole record by last-write-wins, the same way.
///
/// Deterministic and symmetric: swapping the sides never changes the
/// result, only which of them it is named after.
pub fn merge_record(
    base: Option<&str>,
    stored: RecordSide<'_>,
    incoming: RecordSide<'_>,
) -> RecordMerge {
    if stored.text == incoming.text || base == incoming.text {
        return RecordMerge::Stored;
    }
    if base == stored.text {
        return RecordMerge::Incoming;
    }
    let (s, i) = match (stored.text, incoming.text) {
        // Deleted on one side, changed on the other: keep the change.
        (None, Some(_)) => return RecordMerge::Incoming,
        (Some(_), None) | (None, None) => return RecordMerge::Stored,
        (Some(s), Some(i)) => (s, i),
    };
    let parse = |t: &str| match serde_json::from_str::<Value>(t) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    };
    let (Some(sm), Some(im)) = (parse(s), parse(i)) else {
        return lww_record(stored, incoming);
    };
    let time = |m: &serde_json::Map<String, Value>, write: i64| {
        element_time(&Value::Object(m.clone())).unwrap_or(write)
    };
    let (ts, ti) = (time(&sm, stored.updated_at), time(&im, incoming.updated_at));
    let incoming_newer = (ti, i) > (ts, s);
    let Some(bm) = base.and_then(parse) else {
        return if incoming_newer {
            RecordMerge::Incoming
        } else {
            RecordMerge::Stored
        };
    };
    let (newer, older) = if incoming_newer {
        (&im, &sm)
    } else {
        (&sm, &im)
    };
    let mut merged = serde_json::Map::new();
    let fields = newer
        .keys()
        .chain(older.keys().filter(|k| !newer.contains_key(*k)));
    for field in fields {
        let (n, o, b) = (newer.get(field), older.get(field), bm.get(field));
        // Changed on one side only: that change (a removal included).
        let v = if n == o || o == b {
            n
        } else if n == b {
            o
        } else {
            n
        };
        if let Some(v) = v {
            merged.insert(field.clone(), v.clone());
        }
    }
    let text = serde_json::to_string(&merged).unwrap_or_default();
    if text == i {
        RecordMerge::Incoming
    } else if text == s {
        RecordMerge::Stored
    } else {
        RecordMerge::Merged(text)
    }
}

/// Last-write-wins on a whole record: the later write, then the larger text.
fn lww_record(stored: RecordSide<'_>, incoming: RecordSide<'_>) -> RecordMerge {
    if (incoming.updated_at, incoming.text) > (stored.updated_at, stored.text) {
        RecordMerge::Incoming
    } else {
        RecordMerge::Stored
    }
}

// ------------------------------------------------------------ record lists

/// One side of a record-list merge: `(id, text)` in order, and the time of
/// each record's write.
pub struct ListSide<'a> {
    pub records: Vec<(&'a str, &'a str)>,
    pub updated_at: HashMap<&'a str, i64>,
    /// The write's own time (for records without one of their own).
    pub write_time: i64,
}

/// What merging a stale write of a record list gives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListMerge {
    /// The list to store, `(id, text)` in order.
    pub records: Vec<(String, String)>,
    /// Records changed on both sides, by id.
    pub conflicts: Vec<String>,
    /// What the writer sent for a record that did not win as sent.
    pub losers: Vec<(String, String)>,
}

/// Merges a stale write of a record list, record by record, against the
/// list both sides started from (`base`, `None` when it is no longer kept):
/// a record changed on one side takes that change; changed on both, it goes
/// through `merge_record`; deleted on one side and edited on the other, it
/// is kept; without a base, records on one side only are kept. The order
/// is the side that reordered (incoming when it moved anything), with the
/// other side's additions after their predecessor there.
pub fn merge_lists(
    base: Option<&[(&str, &str)]>,
    stored: &ListSide<'_>,
    incoming: &ListSide<'_>,
) -> ListMerge {
    let texts = |l: &[(&str, &str)]| -> HashMap<String, String> {
        l.iter()
            .map(|(i, t)| ((*i).to_owned(), (*t).to_owned()))
            .collect()
    };
    let b = base.map(texts);
    let s = texts(&stored.records);
    let i = texts(&incoming.records);
    let mut out = ListMerge::default();
    let mut result: HashMap<String, String> = HashMap::new();
    let ids = stored
        .records
        .iter()
        .chain(&incoming.records)
        .map(|(id, _)| *id)
        .collect::<HashSet<&str>>();
    for id in ids {
        let (sv, iv) = (s.get(id).map(String::as_str), i.get(id).map(String::as_str));
        let bv = b.as_ref().and_then(|b| b.get(id)).map(String::as_str);
        let keep = match &b {
            _ if sv == iv => sv.map(str::to_owned),
            Some(_) if iv == bv => sv.map(str::to_owned),
            Some(_) if sv == bv => iv.map(str::to_owned),
            None if sv.is_none() || iv.is_none() => sv.or(iv).map(str::to_owned),
            _ => {
                let side = |l: &ListSide<'_>, t| RecordSide {
                    text: t,
                    updated_at: l.updated_at.get(id).copied().unwrap_or(l.write_time),
                };
                out.conflicts.push(id.to_owned());
                match merge_record(bv, side(stored, sv), side(incoming, iv)) {
                    RecordMerge::Stored => sv.map(str::to_owned),
                    RecordMerge::Incoming => iv.map(str::to_owned),
                    RecordMerge::Merged(t) => Some(t),
                }
            }
        };
        if let Some(sent) = iv {
            if keep.as_deref() != Some(sent) && bv != Some(sent) {
                out.losers.push((id.to_owned(), sent.to_owned()));
            }
        }
        if let Some(t) = keep {
            result.insert(id.to_owned(), t);
        }
    }
    out.conflicts.sort();
    out.losers.sort();
    // Which side's order leads.
    let so: Vec<&str> = stored.records.iter().map(|(id, _)| *id).collect();
    let io: Vec<&str> = incoming.records.iter().map(|(id, _)| *id).collect();
    let incoming_moved = match &b {
        Some(b) => {
            fn common<'x>(o: &[&'x str], other: &HashMap<String, String>) -> Vec<&'x str> {
                o.iter()
                    .filter(|id| other.contains_key(**id))
                    .copied()
                    .collect()
            }
            let bo: Vec<&str> = base.unwrap_or_default().iter().map(|(id, _)| *id).collect();
            common(&io, b) != common(&bo, &i)
        }
        None => (incoming.write_time, &io) > (stored.write_time, &so),
    };
    let (primary, secondary) = if incoming_moved {
        (&io, &so)
    } else {
        (&so, &io)
    };
    let in_primary: HashSet<&str> = primary.iter().copied().collect();
    let mut after: HashMap<Option<&str>, Vec<&str>> = HashMap::new();
    let mut anchor: Option<&str> = None;
    for id in secondary.iter().copied() {
        if in_primary.contains(id) {
            anchor = Some(id);
        } else if result.contains_key(id) {
            after.entry(anchor).or_default().push(id);
        }
    }
    let mut ids: Vec<&str> = after.remove(&None).unwrap_or_default();
    for id in primary.iter().copied() {
        if result.contains_key(id) {
            ids.push(id);
        }
        if let Some(run) = after.remove(&Some(id)) {
            ids.extend(run);
        }
    }
    out.records = ids
        .into_iter()
        .filter_map(|id| result.remove(id).map(|t| (id.to_owned(), t)))
        .collect();
    out
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
                        Some(t) => {
                            serde_json::json!({"id": id, "v": v, "updatedAt": t})
                        }
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

    fn rec(text: Option<&str>, t: i64) -> RecordSide<'_> {
        RecordSide {
            text,
            updated_at: t,
        }
    }

    /// The text a merge result stands for.
    fn settled(m: &RecordMerge, stored: Option<&str>, incoming: Option<&str>) -> Option<String> {
        match m {
            RecordMerge::Stored => stored.map(str::to_owned),
            RecordMerge::Incoming => incoming.map(str::to_owned),
            RecordMerge::Merged(t) => Some(t.clone()),
        }
    }

    #[test]
    fn a_record_merges_field_by_field_against_its_base() {
        let base = r#"{"id":1,"amount":10,"note":"a","paid":false}"#;
        let stored = r#"{"id":1,"amount":12,"note":"a","paid":false}"#;
        let incoming = r#"{"id":1,"amount":10,"note":"b","paid":true,"tag":"x"}"#;
        let m = merge_record(Some(base), rec(Some(stored), 5), rec(Some(incoming), 9));
        assert_eq!(
            m,
            RecordMerge::Merged(r#"{"id":1,"amount":12,"note":"b","paid":true,"tag":"x"}"#.into())
        );
        // The same field changed on both: the later element updatedAt wins.
        let s = r#"{"id":1,"amount":11,"updatedAt":30}"#;
        let i = r#"{"id":1,"amount":13,"updatedAt":20}"#;
        let m = merge_record(
            Some(r#"{"id":1,"amount":10,"updatedAt":1}"#),
            rec(Some(s), 99),
            rec(Some(i), 100),
        );
        assert_eq!(m, RecordMerge::Stored);
    }

    #[test]
    fn a_record_deleted_on_one_side_and_edited_on_the_other_is_kept() {
        let base = r#"{"id":1,"v":1}"#;
        let edited = r#"{"id":1,"v":2}"#;
        assert_eq!(
            merge_record(Some(base), rec(None, 9), rec(Some(edited), 1)),
            RecordMerge::Incoming
        );
        assert_eq!(
            merge_record(Some(base), rec(Some(edited), 1), rec(None, 9)),
            RecordMerge::Stored
        );
        // Deleted on one side only, untouched on the other: deleted.
        assert_eq!(
            merge_record(Some(base), rec(Some(base), 1), rec(None, 9)),
            RecordMerge::Incoming
        );
    }

    #[test]
    fn without_a_base_the_later_write_wins_the_record() {
        let a = r#"{"id":1,"v":"a"}"#;
        let b = r#"{"id":1,"w":"b"}"#;
        assert_eq!(
            merge_record(None, rec(Some(a), 5), rec(Some(b), 6)),
            RecordMerge::Incoming
        );
        assert_eq!(
            merge_record(None, rec(Some(a), 7), rec(Some(b), 6)),
            RecordMerge::Stored
        );
    }

    fn arb_record() -> impl Strategy<Value = Option<String>> {
        proptest::option::weighted(
            0.85,
            proptest::collection::btree_map("[abc]", 0u8..3, 0..4).prop_map(|m| {
                let mut o = serde_json::Map::new();
                o.insert("id".into(), serde_json::json!(1));
                for (k, v) in m {
                    o.insert(k, serde_json::json!(v));
                }
                serde_json::to_string(&o).unwrap()
            }),
        )
    }

    proptest! {
        /// Swapping the sides never changes the merged record.
        #[test]
        fn record_merge_is_symmetric(b in arb_record(), s in arb_record(), i in arb_record(),
                                     ts in 0i64..4, ti in 0i64..4) {
            let one = merge_record(b.as_deref(), rec(s.as_deref(), ts), rec(i.as_deref(), ti));
            let two = merge_record(b.as_deref(), rec(i.as_deref(), ti), rec(s.as_deref(), ts));
            prop_assert_eq!(
                settled(&one, s.as_deref(), i.as_deref()),
                settled(&two, i.as_deref(), s.as_deref())
            );
        }

        /// An edit is never lost to a deletion, a side equal to the base
        /// gives the other, and a merge holds only fields one side had.
        #[test]
        fn record_merge_keeps_edits(b in arb_record(), s in arb_record(), i in arb_record(),
                                    ts in 0i64..4, ti in 0i64..4) {
            let m = merge_record(b.as_deref(), rec(s.as_deref(), ts), rec(i.as_deref(), ti));
            let out = settled(&m, s.as_deref(), i.as_deref());
            let edited = |x: &Option<String>| x.is_some() && x != &b;
            if edited(&s) || edited(&i) {
                prop_assert!(out.is_some(), "an edit was lost: {:?}", (&b, &s, &i));
            }
            if s == b { prop_assert_eq!(&out, &i); }
            if i == b { prop_assert_eq!(&out, &s); }
            if let RecordMerge::Merged(t) = &m {
                let o: serde_json::Map<String, Value> = serde_json::from_str(t).unwrap();
                for k in o.keys() {
                    let has = |x: &Option<String>| x.as_deref().is_some_and(|x| x.contains(&format!("\"{k}\"")));
                    prop_assert!(has(&s) || has(&i));
                }
            }
        }
    }
}
