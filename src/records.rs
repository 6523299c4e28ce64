//! Records: a value that is a compact JSON array of objects, each with a
//! unique string or number `id`, seen as its elements' verbatim texts.
//! `[` + the texts joined by `,` + `]` is exactly the value, so a key kept as
//! records gives back byte for byte what was written (what `JSON.stringify`
//! produced). Anything else (whitespace between elements, an element that
//! is not an object, a missing or repeated id) is not records and stays a
//! whole value. Pure; the storage and wire formats of records build on it.
//!
//! Ids follow the merge rule (`merge.rs`): strings as they are, numbers as
//! written, so `1` and `"1"` name the same record, as in the JS client.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// One element: its id and its exact JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub id: String,
    pub text: &'a str,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IdRepr {
    Str(String),
    Num(serde_json::Number),
}

/// The one field every record has; the others are not looked at.
#[derive(Deserialize)]
struct WithId {
    id: IdRepr,
}

/// The records of `value`, in order, or `None` when it is not records.
pub fn split(value: &str) -> Option<Vec<Record<'_>>> {
    let elements: Vec<&RawValue> = serde_json::from_str(value).ok()?;
    // Compact only: the texts must fill the value exactly.
    let joined = 2
        + elements.len().saturating_sub(1)
        + elements.iter().map(|e| e.get().len()).sum::<usize>();
    if joined != value.len() || !value.starts_with('[') {
        return None;
    }
    let mut seen = HashSet::with_capacity(elements.len());
    let mut records = Vec::with_capacity(elements.len());
    let mut at = 1;
    for raw in elements {
        let text = raw.get();
        // serde also reads a struct from an array of its fields.
        if !text.starts_with('{') || value.get(at..at + text.len()) != Some(text) {
            return None;
        }
        at += text.len() + 1;
        let id = match serde_json::from_str::<WithId>(text).ok()?.id {
            IdRepr::Str(s) => s,
            IdRepr::Num(n) => n.to_string(),
        };
        if !seen.insert(id.clone()) {
            return None;
        }
        records.push(Record { id, text });
    }
    Some(records)
}

/// The value the records make: `[` + texts joined by `,` + `]`.
pub fn join<'a>(texts: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::from("[");
    for (i, t) in texts.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(t);
    }
    out.push(']');
    out
}

/// What turns one list of records into another, as the wire carries it
/// (asyncapi.yaml `RecordPatch`): the records added or changed (verbatim),
/// the ids removed, and `[id, predecessor]` for each record that is new or
/// moved, in final order (`None`: first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patch {
    pub upserts: Vec<(String, String)>,
    pub removed: Vec<String>,
    pub after: Vec<(String, Option<String>)>,
}

impl Patch {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removed.is_empty() && self.after.is_empty()
    }
}

/// The patch from `old` to `new`: only what changed, and `after` only for
/// the records outside a longest run of `new` kept in `old`'s order (none
/// for an edit in place; one for an append, an insert or a move).
pub fn diff(old: &[Record<'_>], new: &[Record<'_>]) -> Patch {
    let before: HashMap<&str, &str> = old.iter().map(|r| (r.id.as_str(), r.text)).collect();
    let after: HashSet<&str> = new.iter().map(|r| r.id.as_str()).collect();
    let upserts = new
        .iter()
        .filter(|r| before.get(r.id.as_str()) != Some(&r.text))
        .map(|r| (r.id.clone(), r.text.to_owned()))
        .collect();
    let removed = old
        .iter()
        .filter(|r| !after.contains(r.id.as_str()))
        .map(|r| r.id.clone())
        .collect();
    let old_ids: Vec<&str> = old.iter().map(|r| r.id.as_str()).collect();
    let new_ids: Vec<&str> = new.iter().map(|r| r.id.as_str()).collect();
    Patch {
        upserts,
        removed,
        after: after_pairs(&old_ids, &new_ids),
    }
}

/// `[id, predecessor]` for every id of `new` that is not in `old` or lies
/// outside a longest subsequence of `new` in `old`'s order, in `new`'s order.
pub fn after_pairs<S: AsRef<str>>(old: &[S], new: &[S]) -> Vec<(String, Option<String>)> {
    let old: Vec<&str> = old.iter().map(AsRef::as_ref).collect();
    let new: Vec<&str> = new.iter().map(AsRef::as_ref).collect();
    after_pairs_of(&old, &new)
}

fn after_pairs_of(old: &[&str], new: &[&str]) -> Vec<(String, Option<String>)> {
    let at: HashMap<&str, usize> = old.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    // Longest increasing subsequence of old positions (patience sorting).
    let positions: Vec<Option<usize>> = new.iter().map(|id| at.get(id).copied()).collect();
    let mut tails: Vec<usize> = Vec::new(); // index into `new` of each run's tail
    let mut back: Vec<Option<usize>> = vec![None; new.len()];
    for (i, p) in positions.iter().enumerate() {
        let Some(p) = *p else { continue };
        let k = tails.partition_point(|&t| positions[t].unwrap_or(0) < p);
        back[i] = k.checked_sub(1).map(|k| tails[k]);
        if k == tails.len() {
            tails.push(i);
        } else {
            tails[k] = i;
        }
    }
    let mut kept = vec![false; new.len()];
    let mut at_tail = tails.last().copied();
    while let Some(i) = at_tail {
        kept[i] = true;
        at_tail = back[i];
    }
    (0..new.len())
        .filter(|&i| !kept[i])
        .map(|i| {
            let prev = i.checked_sub(1).map(|p| new[p].to_owned());
            (new[i].to_owned(), prev)
        })
        .collect()
}

/// `old` with `patch` applied, as `(id, text)` in order; `None` when the
/// patch does not fit (an `after` naming an id that is not in the list, an
/// id twice). Applying: drop the removed ids, replace upserted texts in
/// place, move or insert each `after` id right after its predecessor (in
/// order; `None`: to the front), then append the remaining new ids in
/// upsert order.
pub fn apply_patch<'a>(
    old: &[(&'a str, &'a str)],
    patch: &'a Patch,
) -> Option<Vec<(&'a str, &'a str)>> {
    let removed: HashSet<&str> = patch.removed.iter().map(String::as_str).collect();
    let mut texts: HashMap<&str, &str> = old
        .iter()
        .filter(|(id, _)| !removed.contains(id))
        .copied()
        .collect();
    let mut order: Vec<&str> = old
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !removed.contains(id))
        .collect();
    let mut upserted = HashSet::with_capacity(patch.upserts.len());
    let mut added: Vec<&str> = Vec::new();
    for (id, text) in &patch.upserts {
        if !upserted.insert(id.as_str()) {
            return None;
        }
        if texts.insert(id, text).is_none() {
            added.push(id);
        }
    }
    let mut placed: HashSet<&str> = order.iter().copied().collect();
    for (id, prev) in &patch.after {
        if !texts.contains_key(id.as_str()) {
            return None;
        }
        if placed.contains(id.as_str()) {
            let i = order.iter().position(|x| *x == id)?;
            order.remove(i);
        }
        let at = match prev {
            None => 0,
            Some(p) if p == id => return None,
            Some(p) => order.iter().position(|x| *x == p)? + 1,
        };
        order.insert(at, id);
        placed.insert(id);
    }
    for id in added {
        if !placed.contains(id) {
            order.push(id);
            placed.insert(id);
        }
    }
    order
        .into_iter()
        .map(|id| texts.get(id).map(|t| (id, *t)))
        .collect()
}

/// `old` with `patch` applied, as the value's text.
pub fn apply(old: &[Record<'_>], patch: &Patch) -> Option<String> {
    let pairs: Vec<(&str, &str)> = old.iter().map(|r| (r.id.as_str(), r.text)).collect();
    Some(join(
        apply_patch(&pairs, patch)?.into_iter().map(|(_, t)| t),
    ))
}

/// `list` with record `id` set to `text` (in its place; when the list lacks
/// it, after `prev` if the list has that record, first if `prev` is `None`,
/// else at the end) or removed (`text` `None`); `None` when there is
/// nothing to do that way (removing a record the list lacks).
pub fn put_record(
    list: &[Record<'_>],
    id: &str,
    text: Option<&str>,
    prev: Option<&str>,
) -> Option<String> {
    let at = list.iter().position(|r| r.id == id);
    let mut texts: Vec<&str> = list.iter().map(|r| r.text).collect();
    match (at, text) {
        (Some(i), Some(t)) => texts[i] = t,
        (None, Some(t)) => {
            let after = match prev {
                None => Some(0),
                Some(p) => list.iter().position(|r| r.id == p).map(|i| i + 1),
            };
            texts.insert(after.unwrap_or(texts.len()), t);
        }
        (Some(i), None) => {
            texts.remove(i);
        }
        (None, None) => return None,
    }
    Some(join(texts))
}

/// The id of one element's text (an object with a string or number `id`).
pub fn id_of(text: &str) -> Option<String> {
    match serde_json::from_str::<WithId>(text).ok()?.id {
        IdRepr::Str(s) => Some(s),
        IdRepr::Num(n) => Some(n.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(v: &str) -> Vec<String> {
        split(v).unwrap().into_iter().map(|r| r.id).collect()
    }

    #[test]
    fn compact_arrays_of_objects_with_ids_are_records() {
        let v = r#"[{"id":1,"t":"a"},{"id":"x","n":{"id":9}},{"t":"b","id":2.5}]"#;
        let r = split(v).unwrap();
        assert_eq!(ids(v), ["1", "x", "2.5"]);
        assert_eq!(r[1].text, r#"{"id":"x","n":{"id":9}}"#);
        assert_eq!(join(r.iter().map(|r| r.text)), v);
        assert_eq!(split("[]").unwrap(), []);
    }

    #[test]
    fn anything_else_stays_whole() {
        for v in [
            r#"[{"id":1}, {"id":2}]"#,
            r#" [{"id":1}]"#,
            r#"[{"id":1}]  "#,
            r#"[{"id":1},{"id":1}]"#,
            r#"[{"id":1},{"id":"1"}]"#,
            r#"[{"id":1},{"t":2}]"#,
            r#"[{"id":1},["x"]]"#,
            r#"[{"id":true}]"#,
            r#"[{"id":1,"id":2}]"#,
            r#"[{"id":null}]"#,
            r#"[1,2]"#,
            r#"{"id":1}"#,
            "not json",
            "",
        ] {
            assert!(split(v).is_none(), "{v}");
        }
    }

    #[test]
    fn a_patch_carries_only_what_changed() {
        let old = r#"[{"id":1,"t":"a"},{"id":2,"t":"b"},{"id":3,"t":"c"}]"#;
        let new = r#"[{"id":1,"t":"a"},{"id":3,"t":"C"},{"id":4,"t":"d"}]"#;
        let (o, n) = (split(old).unwrap(), split(new).unwrap());
        let p = diff(&o, &n);
        assert_eq!(
            p.upserts,
            [
                ("3".to_string(), r#"{"id":3,"t":"C"}"#.to_string()),
                ("4".to_string(), r#"{"id":4,"t":"d"}"#.to_string())
            ]
        );
        assert_eq!(p.removed, ["2"]);
        assert_eq!(p.after, [("4".to_string(), Some("3".to_string()))]);
        assert_eq!(apply(&o, &p).as_deref(), Some(new));
        let moved = r#"[{"id":3,"t":"c"},{"id":1,"t":"a"},{"id":2,"t":"b"}]"#;
        let p = diff(&o, &split(moved).unwrap());
        assert!(p.upserts.is_empty() && p.removed.is_empty());
        assert_eq!(p.after, [("3".to_string(), None)], "one move");
        assert_eq!(apply(&o, &p).as_deref(), Some(moved));
        // An edit in place carries no order at all.
        let edited = r#"[{"id":1,"t":"a"},{"id":2,"t":"B"},{"id":3,"t":"c"}]"#;
        let p = diff(&o, &split(edited).unwrap());
        assert_eq!((p.upserts.len(), p.after.len()), (1, 0));
        assert!(diff(&o, &o).is_empty());
    }

    #[test]
    fn a_record_put_back_goes_where_it_was() {
        let l = split(r#"[{"id":1},{"id":3}]"#).unwrap();
        let put = |id, text, prev| put_record(&l, id, text, prev);
        assert_eq!(
            put("2", Some(r#"{"id":2}"#), Some("1")).as_deref(),
            Some(r#"[{"id":1},{"id":2},{"id":3}]"#)
        );
        assert_eq!(
            put("0", Some(r#"{"id":0}"#), None).as_deref(),
            Some(r#"[{"id":0},{"id":1},{"id":3}]"#)
        );
        // Its predecessor gone too: at the end.
        assert_eq!(
            put("9", Some(r#"{"id":9}"#), Some("8")).as_deref(),
            Some(r#"[{"id":1},{"id":3},{"id":9}]"#)
        );
        assert_eq!(
            put("3", Some(r#"{"id":3,"x":1}"#), None).as_deref(),
            Some(r#"[{"id":1},{"id":3,"x":1}]"#)
        );
        assert_eq!(put("1", None, None).as_deref(), Some(r#"[{"id":3}]"#));
        assert_eq!(put("7", None, None), None);
    }

    #[test]
    fn a_patch_that_does_not_fit_is_refused() {
        let o = split(r#"[{"id":1},{"id":2}]"#).unwrap();
        let unknown = Patch {
            after: vec![("9".into(), None)],
            ..Patch::default()
        };
        assert_eq!(apply(&o, &unknown), None);
        let unknown_prev = Patch {
            after: vec![("1".into(), Some("9".into()))],
            ..Patch::default()
        };
        assert_eq!(apply(&o, &unknown_prev), None);
        let twice = Patch {
            upserts: vec![
                ("3".into(), r#"{"id":3}"#.into()),
                ("3".into(), r#"{"id":3}"#.into()),
            ],
            ..Patch::default()
        };
        assert_eq!(apply(&o, &twice), None);
        let itself = Patch {
            after: vec![("1".into(), Some("1".into()))],
            ..Patch::default()
        };
        assert_eq!(apply(&o, &itself), None);
        // Removing an id the list lacks is nothing to do.
        let gone = Patch {
            removed: vec!["9".into()],
            ..Patch::default()
        };
        assert_eq!(apply(&o, &gone).as_deref(), Some(r#"[{"id":1},{"id":2}]"#));
    }

    /// What `JSON.stringify` makes of an array of small objects with ids.
    fn arb_records() -> impl Strategy<Value = String> {
        proptest::collection::btree_map(0u8..20, ("[a-z\"\\\\ é]{0,6}", any::<bool>()), 0..8)
            .prop_flat_map(|m| {
                let elems: Vec<String> = m
                    .into_iter()
                    .map(|(id, (t, s))| {
                        let id = if s {
                            serde_json::to_string(&id.to_string()).unwrap()
                        } else {
                            id.to_string()
                        };
                        format!(
                            r#"{{"id":{id},"t":{}}}"#,
                            serde_json::to_string(&t).unwrap()
                        )
                    })
                    .collect();
                Just(elems).prop_shuffle()
            })
            .prop_map(|e| format!("[{}]", e.join(",")))
    }

    proptest! {
        /// Splitting and joining gives back the value byte for byte.
        #[test]
        fn join_of_split_is_the_value(v in arb_records()) {
            let r = split(&v);
            prop_assert!(r.is_some(), "{} is records", v);
            let r = r.unwrap_or_default();
            prop_assert_eq!(join(r.iter().map(|r| r.text)), v);
        }

        /// Applying the diff of two lists to the first gives the second,
        /// byte for byte.
        #[test]
        fn apply_of_diff_is_the_new_value(a in arb_records(), b in arb_records()) {
            let (Some(old), Some(new)) = (split(&a), split(&b)) else {
                return Err(TestCaseError::fail("generated values are records"));
            };
            let p = diff(&old, &new);
            prop_assert_eq!(apply(&old, &p), Some(b.clone()));
            // A patch holds no record that did not change.
            for (id, text) in &p.upserts {
                prop_assert!(!old.iter().any(|r| &r.id == id && r.text == text));
            }
        }
    }
}

// ------------------------------------------------------------ stored sets

/// One stored record: its verbatim text, the id before it (the key's order
/// is the chain of predecessors, so an edit or an append rewrites one
/// record, an insert or a removal two), and the key version that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub text: Rc<str>,
    pub prev: Option<Rc<str>>,
    pub version: u64,
    /// The edit time of the write that made this row.
    pub updated_at: i64,
}

/// A key held as records: what the hub keeps in memory of it. Persistent
/// (`im_rc`): a clone shares everything, and a new version costs what it
/// changed, so a hub holding a 5,000-record list edits it in time that does
/// not grow with the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordSet {
    pub order: im_rc::Vector<Rc<str>>,
    pub recs: im_rc::HashMap<Rc<str>, Rec>,
    /// Bytes of the records' texts.
    pub text_bytes: usize,
}

/// A stored row of one record, as read back.
#[derive(Debug, Clone)]
pub struct StoredRec {
    pub id: String,
    pub text: String,
    pub prev: Option<String>,
    pub version: u64,
    pub updated_at: i64,
}

impl RecordSet {
    /// The set the live rows make. Their predecessors give the order; rows
    /// that the chain does not reach (which a consistent store never has)
    /// still come back, after it, by id, so nothing stored is dropped.
    pub fn from_rows(rows: Vec<StoredRec>) -> Self {
        let mut recs: im_rc::HashMap<Rc<str>, Rec> = im_rc::HashMap::new();
        let mut next: HashMap<Option<Rc<str>>, Vec<Rc<str>>> = HashMap::new();
        let mut text_bytes = 0;
        for r in rows {
            let id: Rc<str> = Rc::from(r.id);
            let prev: Option<Rc<str>> = r.prev.map(Rc::from);
            next.entry(prev.clone()).or_default().push(id.clone());
            text_bytes += r.text.len();
            recs.insert(
                id,
                Rec {
                    text: Rc::from(r.text),
                    prev,
                    version: r.version,
                    updated_at: r.updated_at,
                },
            );
        }
        let mut order = im_rc::Vector::new();
        let mut seen: HashSet<Rc<str>> = HashSet::with_capacity(recs.len());
        let mut at: Option<Rc<str>> = None;
        while let Some(id) = next
            .get(&at)
            .and_then(|ids| ids.iter().find(|id| !seen.contains(*id)).cloned())
        {
            seen.insert(id.clone());
            order.push_back(id.clone());
            at = Some(id);
        }
        if order.len() < recs.len() {
            let mut rest: Vec<Rc<str>> = recs
                .keys()
                .filter(|id| !seen.contains(*id))
                .cloned()
                .collect();
            rest.sort();
            order.extend(rest);
        }
        Self {
            order,
            recs,
            text_bytes,
        }
    }

    /// The value: `[` + texts in order + `]`.
    pub fn value(&self) -> String {
        let mut out = String::with_capacity(self.value_len());
        out.push('[');
        for (i, r) in self
            .order
            .iter()
            .filter_map(|id| self.recs.get(id))
            .enumerate()
        {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&r.text);
        }
        out.push(']');
        out
    }

    /// Bytes of `value()`, without building it.
    pub fn value_len(&self) -> usize {
        2 + self.text_bytes + self.recs.len().saturating_sub(1)
    }

    /// The set as `Record`s, in order.
    pub fn records(&self) -> Vec<Record<'_>> {
        self.order
            .iter()
            .filter_map(|id| {
                self.recs.get(id).map(|r| Record {
                    id: id.to_string(),
                    text: &r.text,
                })
            })
            .collect()
    }

    /// The changes of a patch that only edits records the list has, in
    /// place (the common edit: one field of one invoice), made without
    /// looking at the rest of the list; `None` for any other patch.
    pub fn in_place(&self, patch: &Patch) -> Option<Vec<RecordChange>> {
        if !patch.removed.is_empty() || !patch.after.is_empty() {
            return None;
        }
        let mut seen = HashSet::with_capacity(patch.upserts.len());
        let mut out = Vec::with_capacity(patch.upserts.len());
        for (id, text) in &patch.upserts {
            let (key, rec) = self.recs.get_key_value(id.as_str())?;
            if !seen.insert(id.as_str()) {
                return None;
            }
            if &*rec.text != text.as_str() {
                out.push(RecordChange {
                    id: key.clone(),
                    text: Some(Rc::from(text.as_str())),
                    prev: rec.prev.clone(),
                });
            }
        }
        Some(out)
    }
}

/// One record row a write adds: a new text or position (`text` set) or a
/// removal (`text` `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordChange {
    pub id: Rc<str>,
    pub text: Option<Rc<str>>,
    pub prev: Option<Rc<str>>,
}

/// The rows that turn `old` into `new`: each record that is new, changed or
/// whose predecessor changed, and each removed one; and `new`'s order. A
/// one-field edit is one row, whatever the size of the list.
pub fn changes(old: &RecordSet, new: &[Record<'_>]) -> (Vec<RecordChange>, im_rc::Vector<Rc<str>>) {
    let mut out = Vec::new();
    let mut order = im_rc::Vector::new();
    let mut prev: Option<Rc<str>> = None;
    let mut kept: HashSet<&str> = HashSet::with_capacity(new.len());
    for r in new {
        kept.insert(r.id.as_str());
        let stored = old.recs.get_key_value(r.id.as_str());
        let id: Rc<str> = stored
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| Rc::from(r.id.as_str()));
        let stored = stored.map(|(_, s)| s);
        let same = stored.is_some_and(|s| &*s.text == r.text && s.prev == prev);
        if !same {
            let text = match stored {
                Some(s) if &*s.text == r.text => s.text.clone(),
                _ => Rc::from(r.text),
            };
            out.push(RecordChange {
                id: id.clone(),
                text: Some(text),
                prev: prev.clone(),
            });
        }
        order.push_back(id.clone());
        prev = Some(id);
    }
    for id in &old.order {
        if !kept.contains(&**id) {
            out.push(RecordChange {
                id: id.clone(),
                text: None,
                prev: None,
            });
        }
    }
    (out, order)
}

/// `set` with `changes` applied, as written at `version`; `new_order` when
/// the order changed (`None`: it is `set`'s).
pub fn applied(
    set: &RecordSet,
    changes: &[RecordChange],
    version: u64,
    updated_at: i64,
    new_order: Option<im_rc::Vector<Rc<str>>>,
) -> RecordSet {
    let mut next = set.clone();
    for c in changes {
        let old = match &c.text {
            Some(text) => {
                next.text_bytes += text.len();
                next.recs.insert(
                    c.id.clone(),
                    Rec {
                        text: text.clone(),
                        prev: c.prev.clone(),
                        version,
                        updated_at,
                    },
                )
            }
            None => next.recs.remove(&c.id),
        };
        if let Some(old) = old {
            next.text_bytes -= old.text.len();
        }
    }
    if let Some(order) = new_order {
        next.order = order;
    }
    next
}
