//! Planning writes to a key held as records (see `records.rs`): only the
//! records a write changes become rows; a stale write merges record by
//! record (`merge::merge_lists`), so edits to different records of one list
//! never conflict.

use super::{
    Conflict, HistoryRow, Incoming, KeyMeta, KeyResult, RecordRow, RecordVersion, Rows, Values,
};
use crate::merge::{merge_lists, ListSide};
use crate::protocol::{Resolution, Winner};
use crate::records::{self, applied, changes, Record, RecordChange, RecordSet};
use std::collections::HashMap;
use std::rc::Rc;

/// A key becomes a record list at `version`: a `sync_history` row marks
/// where its records start, then a row per record.
pub(super) fn start(rows: &mut Rows<'_>, version: u64, list: &[Record<'_>], at: i64) {
    rows.p.hist_seq += 1;
    let empty = RecordSet::default();
    let (all, order) = changes(&empty, list);
    let row = HistoryRow {
        op: rows.op,
        hist_id: rows.p.hist_seq,
        key: rows.key.to_owned(),
        version: Some(version),
        value: None,
        hash: String::new(),
        updated_at: at,
        device_id: rows.device_id.to_owned(),
        records: true,
        size: 2 + list.iter().map(|r| r.text.len() + 1).sum::<usize>()
            - usize::from(!list.is_empty()),
    };
    if let Some(meta) = row.meta() {
        rows.p.keys.insert(rows.key.to_owned(), meta);
    }
    rows.p.history.push(row);
    add_version(rows, empty, all, Some(order), version, at, None);
}

/// Records `changes` as version `version` of the list `before`.
fn add_version(
    rows: &mut Rows<'_>,
    before: RecordSet,
    changes: Vec<RecordChange>,
    order: Option<im_rc::Vector<Rc<str>>>,
    version: u64,
    at: i64,
    previous: Option<u64>,
) {
    let patch = previous.map(|p| Rc::new((p, wire_patch(&before, &changes, order.as_ref()))));
    let set = applied(&before, &changes, version, at, order);
    let size = set.value_len();
    for c in changes {
        rows.p.hist_seq += 1;
        rows.p.record_rows.push(RecordRow {
            op: rows.op,
            seq: rows.p.hist_seq,
            key: rows.key.to_owned(),
            id: c.id,
            version: Some(version),
            text: c.text,
            prev: c.prev,
            updated_at: at,
            device_id: rows.device_id.to_owned(),
            size,
        });
    }
    rows.p.record_versions.push(RecordVersion {
        op: rows.op,
        key: rows.key.to_owned(),
        version,
        updated_at: at,
        device_id: rows.device_id.to_owned(),
        list: set.clone(),
        patch,
    });
    rows.p.records.insert(rows.key.to_owned(), set);
}

/// A new version of the list made of `changes`.
fn accept_changes(
    rows: &mut Rows<'_>,
    meta: &KeyMeta,
    before: RecordSet,
    changes: Vec<RecordChange>,
    order: Option<im_rc::Vector<Rc<str>>>,
    at: i64,
) -> u64 {
    rows.p.cursor += 1;
    let version = rows.p.cursor;
    rows.p.keys.insert(
        rows.key.to_owned(),
        KeyMeta {
            version,
            deleted: false,
            updated_at: at,
            hash: String::new(),
            hist_id: meta.hist_id,
            records: true,
            epoch: Some(meta.hist_version()),
        },
    );
    add_version(
        rows,
        before,
        changes,
        order,
        version,
        at,
        Some(meta.version),
    );
    version
}

/// What other devices need to go from `before` to the list `changes` make:
/// records new or changed (one only moved travels in `after`), removals,
/// and the moves.
fn wire_patch(
    before: &RecordSet,
    changes: &[RecordChange],
    order: Option<&im_rc::Vector<Rc<str>>>,
) -> records::Patch {
    let mut patch = records::Patch::default();
    for c in changes {
        match &c.text {
            Some(t) if before.recs.get(&c.id).is_some_and(|r| r.text == *t) => {}
            Some(t) => patch.upserts.push((c.id.to_string(), t.to_string())),
            None => patch.removed.push(c.id.to_string()),
        }
    }
    let moved_or_new = changes
        .iter()
        .any(|c| c.text.is_some() && before.recs.get(&c.id).is_none_or(|r| r.prev != c.prev));
    // Only a changed order costs a walk of the list.
    if let Some(order) = order.filter(|_| moved_or_new || patch.upserts.len() > 1) {
        let old: Vec<&str> = before.order.iter().map(|id| &**id).collect();
        let new: Vec<&str> = order.iter().map(|id| &**id).collect();
        if moved_or_new {
            patch.after = records::after_pairs(&old, &new);
        }
        // Upserts in the list's final order, as the wire wants them.
        let position: HashMap<&str, usize> =
            new.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        patch
            .upserts
            .sort_by_key(|(id, _)| position.get(id.as_str()).copied().unwrap_or(usize::MAX));
    }
    patch
}

/// Records a write sent that never became current, kept in their history.
fn keep_losers(rows: &mut Rows<'_>, losers: Vec<(Rc<str>, Rc<str>)>, at: i64) {
    for (id, text) in losers {
        rows.p.hist_seq += 1;
        rows.p.record_rows.push(RecordRow {
            op: rows.op,
            seq: rows.p.hist_seq,
            key: rows.key.to_owned(),
            id,
            version: None,
            text: Some(text),
            prev: None,
            updated_at: at,
            device_id: rows.device_id.to_owned(),
            size: 0,
        });
    }
}

/// A write to a key that holds the record list `set` (metadata `meta`).
pub(super) fn write(
    rows: &mut Rows<'_>,
    incoming: Incoming<'_>,
    meta: &KeyMeta,
    set: RecordSet,
    at: i64,
    values: &Values,
) -> KeyResult {
    let w = incoming.w;
    let key = rows.key.to_owned();
    let conflict = |resolution, winner, version, records: Vec<String>| Conflict {
        key: key.clone(),
        resolution,
        winner,
        version,
        stored_version: meta.version,
        base_version: w.base_version,
        incoming_updated_at: at,
        stored_updated_at: meta.updated_at,
        records,
    };
    let result = |version, applied, conflict| KeyResult {
        key: key.clone(),
        version,
        applied,
        conflict,
    };
    let fast = w.base_version == Some(meta.version);
    // A patch that edits records in place: its rows, nothing else to look at.
    if let Some(changed) = incoming.in_place {
        if changed.is_empty() {
            rows.p.records.insert(key.clone(), set);
            return result(meta.version, false, None);
        }
        let version = accept_changes(rows, meta, set, changed.to_vec(), None, at);
        return result(version, true, None);
    }
    // No usable base: a missing one, or one from the future (a reset server).
    let no_base = w.base_version.is_none_or(|b| b == 0 || b > meta.version);
    // Last-write-wins between whole writes, as for any value (ties: the write).
    let incoming_wins = at >= meta.updated_at;
    // A patch's list is known already: no need to parse the whole value.
    let list = match incoming.list {
        Some(l) => Some(
            l.iter()
                .map(|(id, text)| Record {
                    id: id.clone(),
                    text,
                })
                .collect(),
        ),
        None => w.value.as_deref().and_then(records::split),
    };
    let Some(list) = list else {
        // A deletion, or a value that is not a record list.
        if fast || incoming_wins {
            let hash = super::value_hash(w.value.as_deref());
            let version = rows.accept(w.value.clone(), hash, at);
            let c = (!fast)
                .then(|| conflict(Resolution::LastWriteWins, Winner::Incoming, version, vec![]));
            return result(version, true, c);
        }
        if w.value.is_some() {
            let hash = super::value_hash(w.value.as_deref());
            rows.keep_loser(w.value.clone(), hash, at);
        }
        rows.p.records.insert(key.clone(), set);
        let c = conflict(
            Resolution::LastWriteWins,
            Winner::Stored,
            meta.version,
            vec![],
        );
        return result(meta.version, false, Some(c));
    };
    if fast || no_base {
        let (changed, order) = changes(&set, &list);
        if changed.is_empty() {
            rows.p.records.insert(key.clone(), set);
            return result(meta.version, false, None);
        }
        if fast || incoming_wins {
            let version = accept_changes(rows, meta, set, changed, Some(order), at);
            let c = (!fast)
                .then(|| conflict(Resolution::LastWriteWins, Winner::Incoming, version, vec![]));
            return result(version, true, c);
        }
        // The stored list stays; what the write sent for each record it
        // changed is kept in that record's history.
        let losers: Vec<(Rc<str>, Rc<str>)> = changed
            .into_iter()
            .filter_map(|c| {
                let text = c.text?;
                let same = set.recs.get(&c.id).is_some_and(|r| r.text == text);
                (!same).then_some((c.id, text))
            })
            .collect();
        let ids = losers.iter().map(|(id, _)| id.to_string()).collect();
        keep_losers(rows, losers, at);
        rows.p.records.insert(key.clone(), set);
        let c = conflict(Resolution::LastWriteWins, Winner::Stored, meta.version, ids);
        return result(meta.version, false, Some(c));
    }
    // A stale write: merge record by record against its base.
    let base_version = w.base_version.unwrap_or_default();
    let base: Option<Vec<Record<'_>>> = match values.versions.get(&(key.clone(), base_version)) {
        Some(None) => Some(Vec::new()),
        Some(Some(text)) => records::split(text),
        None => None,
    };
    let base_pairs: Option<Vec<(&str, &str)>> = base
        .as_ref()
        .map(|b| b.iter().map(|r| (r.id.as_str(), r.text)).collect());
    let stored_side = ListSide {
        records: set
            .order
            .iter()
            .filter_map(|id| set.recs.get(id).map(|r| (&**id, &*r.text)))
            .collect(),
        updated_at: set
            .recs
            .iter()
            .map(|(id, r)| (&**id, r.updated_at))
            .collect(),
        write_time: meta.updated_at,
    };
    let incoming_side = ListSide {
        records: list.iter().map(|r| (r.id.as_str(), r.text)).collect(),
        updated_at: HashMap::new(),
        write_time: at,
    };
    let merged = merge_lists(base_pairs.as_deref(), &stored_side, &incoming_side);
    let as_sent = merged.records.len() == list.len()
        && merged
            .records
            .iter()
            .zip(&list)
            .all(|((id, text), r)| *id == r.id && text == r.text);
    let merged_list: Vec<Record<'_>> = merged
        .records
        .iter()
        .map(|(id, text)| Record {
            id: id.clone(),
            text,
        })
        .collect();
    let (changed, order) = changes(&set, &merged_list);
    // The writer must learn when what is stored is not what it sent (it
    // then reads the merge): `merged`, with `records` naming the records
    // edited on both sides (none when the edits were to different records).
    let reported = !as_sent || !merged.conflicts.is_empty();
    let losers = merged
        .losers
        .iter()
        .map(|(id, text)| (Rc::from(id.as_str()), Rc::from(text.as_str())))
        .collect();
    keep_losers(rows, losers, at);
    if changed.is_empty() {
        rows.p.records.insert(key.clone(), set);
        let c = reported.then(|| {
            conflict(
                Resolution::Merged,
                Winner::Stored,
                meta.version,
                merged.conflicts.clone(),
            )
        });
        return result(meta.version, false, c);
    }
    let version = accept_changes(
        rows,
        meta,
        set,
        changed,
        Some(order),
        at.max(meta.updated_at),
    );
    let winner = if as_sent {
        Winner::Incoming
    } else {
        Winner::Merged
    };
    let c = reported.then(|| conflict(Resolution::Merged, winner, version, merged.conflicts));
    result(version, true, c)
}
