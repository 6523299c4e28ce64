//! Planning one group of writes: pure state in, the rows to persist and the
//! answers out. The session (`session.rs`) decides which writes form a group
//! and when; the Durable Object persists the returned `Plan` in one D1
//! transaction, and only then does the session adopt it.

use crate::auth::sha256_hex;
use crate::error::SyncError;
use crate::merge::{self, Decision, Side, Version};
use crate::protocol::{
    ack_from_answer, BatchResponse, Change, Conflict, Resolution, ServerMessage, Winner, Write,
    WriteResponse,
};
use crate::quota::Usage;
use crate::records::{self, RecordSet};
use std::borrow::{Borrow, Cow};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

mod lists;

/// What the hub remembers of a key's current value (never the value itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMeta {
    pub version: u64,
    pub deleted: bool,
    pub updated_at: i64,
    pub hash: String,
    /// The key's newest row in `sync_history`: its value, or for a record
    /// list the row its records belong to.
    pub hist_id: u64,
    /// The value is kept as records (`sync_records`); `hash` is then empty.
    pub records: bool,
    /// For a record list written since it started: the version it started at.
    pub epoch: Option<u64>,
}

impl KeyMeta {
    /// The version of the key's newest `sync_history` row: for a record
    /// list, the version its records started at.
    pub fn hist_version(&self) -> u64 {
        self.epoch.unwrap_or(self.version)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserState {
    /// The user's change counter: the highest version handed out.
    pub cursor: u64,
    /// Counter for `sync_history` rows (accepted values and conflict losers).
    pub hist_seq: u64,
    pub keys: HashMap<String, KeyMeta>,
    /// Versions of each key since retention last ran for it, as far as this
    /// object knows; a key missing here (after a wake) is pruned next time.
    pub unpruned: HashMap<String, u64>,
    /// Stored bytes and the day's write units, as of the last commit.
    pub usage: Usage,
    /// Record lists read so far (loaded on a key's first write after a wake).
    pub records: HashMap<String, RecordSet>,
}

/// Which endpoint a write came from decides the shape of its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Single,
    Batch,
}

#[derive(Debug, Clone)]
pub struct Op {
    pub device_id: String,
    pub request_id: Option<String>,
    pub shape: Shape,
    pub writes: Vec<Write>,
}

impl Op {
    /// Bytes of the values it writes.
    pub fn bytes(&self) -> usize {
        self.writes
            .iter()
            .map(|w| {
                let patch = w
                    .patch
                    .as_ref()
                    .map_or(0, |p| p.upserts.iter().map(|(_, t)| t.len()).sum::<usize>());
                w.value.as_ref().map_or(0, String::len) + patch
            })
            .sum()
    }
}

/// A value to keep: the new current value of a key, or a conflict's loser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// Index of the op in its group that wrote this row.
    pub op: usize,
    pub hist_id: u64,
    pub key: String,
    /// The version it holds as current; `None` for a loser never current.
    pub version: Option<u64>,
    pub value: Option<String>,
    pub hash: String,
    pub updated_at: i64,
    pub device_id: String,
    /// The row starts a record list: its records are rows of `sync_records`
    /// (`value` is `None` without meaning a deletion).
    pub records: bool,
    /// Bytes of the value this row stands for.
    pub size: usize,
}

impl HistoryRow {
    /// The key's metadata while this row is current; `None` for a loser.
    pub fn meta(&self) -> Option<KeyMeta> {
        Some(KeyMeta {
            version: self.version?,
            deleted: self.value.is_none() && !self.records,
            updated_at: self.updated_at,
            hash: self.hash.clone(),
            hist_id: self.hist_id,
            records: self.records,
            epoch: None,
        })
    }
}

/// One row of `sync_records`: a version of one record (or its removal), or
/// a record a stale write sent that did not win as sent (`version` `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRow {
    pub op: usize,
    /// Per user, from the same counter as history rows.
    pub seq: u64,
    pub key: String,
    pub id: Rc<str>,
    pub version: Option<u64>,
    /// `None`: the record was removed.
    pub text: Option<Rc<str>>,
    pub prev: Option<Rc<str>>,
    pub updated_at: i64,
    pub device_id: String,
    /// Bytes of the key's whole value at this version.
    pub size: usize,
}

/// A new version of a record list, for broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordVersion {
    pub op: usize,
    pub key: String,
    pub version: u64,
    pub updated_at: i64,
    pub device_id: String,
    /// The list at this version (its value is joined only for devices that
    /// take whole values).
    pub list: RecordSet,
    /// What changed since the key's previous version (that version, and
    /// the patch); `None` when the list started here.
    pub patch: Option<Rc<(u64, records::Patch)>>,
}

/// What a write is answered with: typed until it reaches the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Write(WriteResponse),
    Batch(BatchResponse),
    /// The first answer to a retried requestId, as D1 stored it: sent back
    /// byte for byte.
    Stored(String),
}

impl Answer {
    /// The REST body. A fresh answer serialises to exactly the text stored
    /// for its requestId, so a replay is byte-identical to the first answer.
    pub fn to_json(&self) -> String {
        let json = match self {
            Self::Write(r) => serde_json::to_string(r),
            Self::Batch(r) => serde_json::to_string(r),
            Self::Stored(s) => return s.clone(),
        };
        // Plain structs of strings, integers and options cannot fail.
        json.unwrap_or_default()
    }

    /// The WebSocket `ack` for the request `request_id`.
    pub fn ack(&self, request_id: &str) -> ServerMessage {
        match self {
            Self::Write(r) => ServerMessage::Ack {
                request_id: request_id.to_owned(),
                key: r.key.clone(),
                version: r.version,
                conflict: r.conflict.clone(),
            },
            Self::Batch(_) => ack_from_answer(request_id, ""),
            Self::Stored(s) => ack_from_answer(request_id, s),
        }
    }

    /// Whether this answer belongs to a request like `op`: the same endpoint
    /// shape, and for a single-key write the same key. A requestId reused
    /// for something else is refused rather than answered with another
    /// request's result.
    pub fn fits(&self, op: &Op) -> bool {
        let single_key = |key: &str| op.writes.iter().all(|w| w.key.as_str() == key);
        match (self, op.shape) {
            (Self::Write(r), Shape::Single) => single_key(&r.key),
            (Self::Batch(_), Shape::Batch) => true,
            (Self::Stored(s), Shape::Single) => {
                serde_json::from_str::<WriteResponse>(s).is_ok_and(|r| single_key(&r.key))
            }
            (Self::Stored(s), Shape::Batch) => serde_json::from_str::<BatchResponse>(s).is_ok(),
            _ => false,
        }
    }
}

/// Everything one group of writes changes. Persist all of it atomically.
#[derive(Debug, Default)]
pub struct Plan {
    /// Names this plan's commit, so that after an unclear D1 failure a read
    /// of `sync_state` tells whether it landed.
    pub commit_id: String,
    /// Counters and key metadata after the group.
    pub cursor: u64,
    pub hist_seq: u64,
    pub keys: HashMap<String, KeyMeta>,
    pub prev_cursor: u64,
    pub prev_hist_seq: u64,
    /// The group created a key (the stored key list must be rewritten).
    pub new_keys: bool,
    /// The group changed a record list's version (or which keys are lists):
    /// the counters row's map of lists must be rewritten.
    pub lists_changed: bool,
    pub history: Vec<HistoryRow>,
    /// Record rows to insert, in version order.
    pub record_rows: Vec<RecordRow>,
    /// Each new version of a record list, in version order.
    pub record_versions: Vec<RecordVersion>,
    /// Record lists after this plan: the ones it wrote or read.
    pub records: HashMap<String, RecordSet>,
    /// (requestId, answer JSON) to remember.
    pub requests: Vec<(String, String)>,
    /// Remembered answers created before this time may be dropped.
    pub prune_requests_before: Option<i64>,
    /// Keys whose old history retention looks at in this commit, sorted.
    pub prune_keys: Vec<String>,
    /// `UserState::unpruned` after this plan.
    pub unpruned: HashMap<String, u64>,
    /// One answer (or refusal) per op, in order.
    pub replies: Vec<Result<Answer, SyncError>>,
    /// The usage with this group counted; the commit stores the day's
    /// units in the counters row it updates anyway.
    pub usage: Usage,
}

impl UserState {
    /// Takes over a plan's state once D1 has committed it.
    pub fn adopt(&mut self, plan: &Plan) {
        self.cursor = plan.cursor;
        self.hist_seq = plan.hist_seq;
        self.keys.clone_from(&plan.keys);
        self.unpruned.clone_from(&plan.unpruned);
        self.usage = plan.usage;
        for (key, set) in &plan.records {
            self.records.insert(key.clone(), set.clone());
        }
        let keys = &self.keys;
        self.records
            .retain(|k, _| keys.get(k).is_some_and(|m| m.records && !m.deleted));
    }

    /// Keys that hold a value (deleted ones do not).
    pub fn live_keys(&self) -> u64 {
        self.keys.values().filter(|m| !m.deleted).count() as u64
    }

    pub fn is_live(&self, key: &str) -> bool {
        self.keys.get(key).is_some_and(|m| !m.deleted)
    }

    /// Whether `plan` was made from exactly this state's counters.
    pub fn is_base_of(&self, plan: &Plan) -> bool {
        (self.cursor, self.hist_seq) == (plan.prev_cursor, plan.prev_hist_seq)
    }
}

impl Plan {
    /// Bytes of values the plan's rows store.
    pub fn stored_bytes(&self) -> u64 {
        let whole: usize = self
            .history
            .iter()
            .filter_map(|h| h.value.as_ref())
            .map(String::len)
            .sum();
        let records: usize = self
            .record_rows
            .iter()
            .filter_map(|r| r.text.as_ref())
            .map(|t| t.len())
            .sum();
        (whole + records) as u64
    }

    pub fn writes_anything(&self) -> bool {
        !self.history.is_empty() || !self.record_rows.is_empty() || !self.requests.is_empty()
    }

    /// Each record list after this plan: key → [version, updated_at] of its
    /// newest write, as JSON, stored with the counters (rewritten only by a
    /// group that changes one, in the row the commit writes anyway), so a
    /// wake and a `hello` learn a list's version without reading its records.
    pub fn list_map(&self) -> String {
        let lists: BTreeMap<&str, (u64, i64)> = self
            .keys
            .iter()
            .filter(|(_, m)| m.records && !m.deleted)
            .map(|(k, m)| (k.as_str(), (m.version, m.updated_at)))
            .collect();
        serde_json::to_string(&lists).unwrap_or_default()
    }

    /// Every key the user has after this plan, sorted: stored with the
    /// counters so that a wake reads one row per key.
    pub fn key_list(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }

    /// The last accepted row of each key, in version order: what the key's
    /// current row must point at after the group.
    pub fn current(&self) -> Vec<&HistoryRow> {
        // History is in version order and a group is small (the object caps it at
        // 128 writes): walk it backwards and keep the first row of each key.
        let mut rows: Vec<&HistoryRow> = Vec::new();
        for h in self.history.iter().rev().filter(|h| h.version.is_some()) {
            if !rows.iter().any(|r| r.key == h.key) {
                rows.push(h);
            }
        }
        rows.reverse();
        rows
    }

    /// Every accepted change in version order, with the op that made it, for
    /// broadcast once the plan is committed. Two writes to one key in a
    /// group are both sent, so devices see every version without gaps.
    pub fn changes(&self) -> Vec<(usize, Change)> {
        let whole = self.history.iter().filter(|h| !h.records).filter_map(|h| {
            Some((
                h.op,
                Change {
                    key: h.key.clone(),
                    value: h.value.clone(),
                    version: h.version?,
                    deleted: h.value.is_none(),
                    updated_at: h.updated_at,
                    device_id: h.device_id.clone(),
                    patch: None,
                    list: None,
                },
            ))
        });
        let lists = self.record_versions.iter().map(|r| {
            (
                r.op,
                Change {
                    key: r.key.clone(),
                    value: None,
                    version: r.version,
                    deleted: false,
                    updated_at: r.updated_at,
                    device_id: r.device_id.clone(),
                    patch: r.patch.clone(),
                    list: Some(Rc::new(r.list.clone())),
                },
            )
        });
        let mut all: Vec<(usize, Change)> = whole.chain(lists).collect();
        all.sort_by_key(|(_, c)| c.version);
        all
    }
}

pub fn value_hash(value: Option<&str>) -> String {
    match value {
        Some(v) => sha256_hex(v.as_bytes()),
        None => String::new(),
    }
}

struct KeyResult {
    key: String,
    version: u64,
    applied: bool,
    conflict: Option<Conflict>,
}

/// The answer to an op whose requestId already has `answer`.
pub fn replay(op: &Op, answer: Answer) -> Result<Answer, SyncError> {
    if answer.fits(op) {
        Ok(answer)
    } else {
        Err(SyncError::InvalidRequest(
            "requestId was already used for another request".into(),
        ))
    }
}

/// Applies `ops` in order to a copy of `state`. `values` holds what
/// `merge_inputs` asked for (missing entries only mean no merge). Answers
/// remembered from earlier groups are not known here: D1 refuses a second
/// answer for a requestId, and the session then replays the stored one.
pub fn plan<O: Borrow<Op>>(state: &UserState, ops: &[O], now_ms: i64, values: &Values) -> Plan {
    let mut p = Plan {
        cursor: state.cursor,
        hist_seq: state.hist_seq,
        keys: state.keys.clone(),
        prev_cursor: state.cursor,
        prev_hist_seq: state.hist_seq,
        usage: state.usage,
        records: values.sets.clone(),
        ..Plan::default()
    };
    let mut fresh: HashMap<&str, Answer> = HashMap::new();
    for (index, op) in ops.iter().map(Borrow::borrow).enumerate() {
        if let Some(answer) = op.request_id.as_deref().and_then(|r| fresh.get(r)) {
            p.replies.push(replay(op, answer.clone()));
            continue;
        }
        // A record list must be in memory before anything writes to it.
        let unread = op.writes.iter().any(|w| {
            p.keys
                .get(w.key.as_str())
                .is_some_and(|m| m.records && !m.deleted)
                && !p.records.contains_key(w.key.as_str())
                && !state.records.contains_key(w.key.as_str())
        });
        if unread {
            p.replies.push(Err(SyncError::Internal(
                "a record list was not read before its write".into(),
            )));
            continue;
        }
        // A patch is the list it makes from its base: checked whole first.
        let writes: Result<Vec<Patched<'_>>, SyncError> = op
            .writes
            .iter()
            .map(|w| match &w.patch {
                None => Ok((Cow::Borrowed(w), None, None)),
                Some(patch) => match in_place(&p, state, w, patch) {
                    Some(changes) => Ok((Cow::Borrowed(w), None, Some(changes))),
                    None => patched(&p, state, values, w, patch)
                        .map(|(w, l)| (Cow::Owned(w), Some(l), None)),
                },
            })
            .collect();
        let writes = match writes {
            Ok(w) => w,
            Err(e) => {
                p.replies.push(Err(e));
                continue;
            }
        };
        let results: Vec<KeyResult> = writes
            .iter()
            .map(|(w, list, in_place)| {
                let write = Incoming {
                    w,
                    list: list.as_deref(),
                    in_place: in_place.as_deref(),
                };
                apply_write(&mut p, state, index, write, &op.device_id, now_ms, values)
            })
            .collect();
        let answer = answer_of(op.shape, results, p.cursor);
        if let Some(rid) = &op.request_id {
            fresh.insert(rid, answer.clone());
            p.requests.push((rid.clone(), answer.to_json()));
        }
        p.replies.push(Ok(answer));
    }
    p.new_keys = p.keys.len() != state.keys.len();
    let list_version = |m: &KeyMeta| (m.records && !m.deleted).then_some(m.version);
    p.lists_changed = p
        .keys
        .iter()
        .any(|(k, m)| list_version(m) != state.keys.get(k).and_then(list_version));
    p
}

/// A write, and for a patch the list it makes (already split) or, when it
/// only edits records in place, its rows.
type Patched<'a> = (
    Cow<'a, Write>,
    Option<Vec<(String, String)>>,
    Option<Vec<records::RecordChange>>,
);

/// A write as `apply_write` takes it.
#[derive(Clone, Copy)]
struct Incoming<'a> {
    w: &'a Write,
    /// The record list `w.value` holds, when already known (a patch).
    list: Option<&'a [(String, String)]>,
    /// A patch that only edits records in place, fast-forward: its rows.
    in_place: Option<&'a [records::RecordChange]>,
}

/// The rows of a fast-forward patch that only edits records of a list the
/// hub holds, in place; `None` for any other patch (it goes the whole way).
fn in_place(
    p: &Plan,
    state: &UserState,
    w: &Write,
    patch: &records::Patch,
) -> Option<Vec<records::RecordChange>> {
    let key = w.key.as_str();
    let meta = p.keys.get(key).filter(|m| m.records && !m.deleted)?;
    if w.base_version != Some(meta.version) {
        return None;
    }
    p.records
        .get(key)
        .or_else(|| state.records.get(key))?
        .in_place(patch)
}

/// The whole-value write a patch stands for: its base list (the key's
/// list now, or as it was at the base version, which the hub read) with
/// the patch applied. Refused with `not_records` when there is no such
/// list to apply it to (the client then sends the whole value).
fn patched(
    p: &Plan,
    state: &UserState,
    values: &Values,
    w: &Write,
    patch: &records::Patch,
) -> Result<(Write, Vec<(String, String)>), SyncError> {
    let key = w.key.as_str();
    let not_records = || SyncError::NotRecords {
        key: key.to_owned(),
    };
    let base = w.base_version.unwrap_or(0);
    let meta = p.keys.get(key);
    let set = p.records.get(key).or_else(|| state.records.get(key));
    let owned: Vec<(String, String)>;
    let base_list: Vec<(&str, &str)> = match (meta, set) {
        (Some(m), Some(set)) if m.records && !m.deleted && base == m.version => set
            .order
            .iter()
            .filter_map(|id| set.recs.get(id).map(|r| (&**id, &*r.text)))
            .collect(),
        (Some(m), _) if m.deleted && base == m.version => Vec::new(),
        (None, _) if base == 0 => Vec::new(),
        (Some(m), _) if base > 0 && base < m.version => {
            match values.versions.get(&(key.to_owned(), base)) {
                Some(None) => Vec::new(),
                Some(Some(text)) => {
                    let list = records::split(text).ok_or_else(not_records)?;
                    owned = list
                        .into_iter()
                        .map(|r| (r.id, r.text.to_owned()))
                        .collect();
                    owned
                        .iter()
                        .map(|(i, t)| (i.as_str(), t.as_str()))
                        .collect()
                }
                None => return Err(not_records()),
            }
        }
        _ => return Err(not_records()),
    };
    let list = records::apply_patch(&base_list, patch).ok_or_else(|| {
        SyncError::InvalidRequest(
            "the patch does not fit its base: an `after` id or predecessor is not in the list"
                .into(),
        )
    })?;
    let value = records::join(list.iter().map(|(_, t)| *t));
    let list = list
        .into_iter()
        .map(|(id, text)| (id.to_owned(), text.to_owned()))
        .collect();
    let write = Write {
        key: w.key.clone(),
        value: Some(value),
        base_version: w.base_version,
        updated_at: w.updated_at,
        patch: None,
    };
    Ok((write, list))
}

/// Chooses the keys whose retention runs with `plan`: each key once per
/// `every` of its new versions (and on its first write after a wake,
/// unless the key is new), not
/// on every write, since each run reads the key's newest versions; a run
/// frees more rows than the writes in between add.
pub fn choose_prune_keys(state: &UserState, plan: &mut Plan, every: u64) {
    let mut unpruned = state.unpruned.clone();
    let mut keys = Vec::new();
    for (key, meta) in &plan.keys {
        let old = state.keys.get(key).map(|m| m.version);
        if old == Some(meta.version) {
            continue;
        }
        // A key new in this plan has no old history to look at.
        let count = match (old, unpruned.get(key)) {
            (None, _) => 1,
            (Some(_), Some(n)) => n + 1,
            (Some(_), None) => every,
        };
        if count >= every {
            keys.push(key.clone());
            unpruned.insert(key.clone(), 0);
        } else {
            unpruned.insert(key.clone(), count);
        }
    }
    keys.sort_unstable();
    plan.prune_keys = keys;
    plan.unpruned = unpruned;
}

fn apply_write(
    p: &mut Plan,
    state: &UserState,
    op: usize,
    incoming: Incoming<'_>,
    device_id: &str,
    now_ms: i64,
    values: &Values,
) -> KeyResult {
    let w = incoming.w;
    let key = w.key.as_str().to_owned();
    let incoming_updated_at = merge::effective_updated_at(w.updated_at, now_ms);
    let stored = p.keys.get(&key).cloned();
    if let Some(meta) = stored.as_ref().filter(|m| m.records && !m.deleted) {
        let set = p
            .records
            .remove(&key)
            .or_else(|| state.records.get(&key).cloned());
        if let Some(set) = set {
            let mut rows = Rows {
                p,
                op,
                key: &key,
                device_id,
            };
            return lists::write(&mut rows, incoming, meta, set, incoming_updated_at, values);
        }
    }
    let hash = value_hash(w.value.as_deref());
    let decision = {
        let incoming = Side {
            deleted: w.value.is_none(),
            hash: &hash,
            updated_at: incoming_updated_at,
        };
        let stored_side = stored.as_ref().map(|m| Side {
            deleted: m.deleted,
            hash: &m.hash,
            updated_at: m.updated_at,
        });
        let stored_pair = stored_side.as_ref().zip(stored.as_ref().map(|m| m.version));
        merge::decide(stored_pair, &incoming, w.base_version)
    };
    let stored_version = stored.as_ref().map_or(0, |m| m.version);
    let conflict = |resolution: Resolution, winner: Winner, version: u64| Conflict {
        key: key.clone(),
        resolution,
        winner,
        version,
        stored_version,
        base_version: w.base_version,
        incoming_updated_at,
        stored_updated_at: stored.as_ref().map_or(0, |m| m.updated_at),
        records: Vec::new(),
    };
    let mut rows = Rows {
        p,
        op,
        key: &key,
        device_id,
    };
    let (version, applied, conflict) = match decision {
        Decision::Unchanged => (stored_version, false, None),
        Decision::Accept { conflict: false } => {
            let version = rows.accept(w.value.clone(), hash, incoming_updated_at);
            (version, true, None)
        }
        Decision::Reject | Decision::Accept { conflict: true } => {
            let merged = stored
                .as_ref()
                .and_then(|s| try_merge(rows.p, values, &key, w, s, incoming_updated_at));
            match (merged, stored.as_ref()) {
                (Some(m), Some(s)) => {
                    let incoming = w.value.as_deref().unwrap_or_default();
                    if m == incoming {
                        let version = rows.accept(w.value.clone(), hash, incoming_updated_at);
                        let c = conflict(Resolution::Merged, Winner::Incoming, version);
                        (version, true, Some(c))
                    } else {
                        // What the user sent stays in history, merged or not.
                        rows.keep_loser(w.value.clone(), hash, incoming_updated_at);
                        let merged_hash = value_hash(Some(&m));
                        if merged_hash == s.hash {
                            let c = conflict(Resolution::Merged, Winner::Stored, stored_version);
                            (stored_version, false, Some(c))
                        } else {
                            let at = incoming_updated_at.max(s.updated_at);
                            let version = rows.accept(Some(m), merged_hash, at);
                            let c = conflict(Resolution::Merged, Winner::Merged, version);
                            (version, true, Some(c))
                        }
                    }
                }
                _ if decision == Decision::Reject => {
                    rows.keep_loser(w.value.clone(), hash, incoming_updated_at);
                    let c = conflict(Resolution::LastWriteWins, Winner::Stored, stored_version);
                    (stored_version, false, Some(c))
                }
                _ => {
                    let version = rows.accept(w.value.clone(), hash, incoming_updated_at);
                    let c = conflict(Resolution::LastWriteWins, Winner::Incoming, version);
                    (version, true, Some(c))
                }
            }
        }
    };
    KeyResult {
        key,
        version,
        applied,
        conflict,
    }
}

/// Appends one write's history rows to a plan.
struct Rows<'a> {
    p: &'a mut Plan,
    op: usize,
    key: &'a str,
    device_id: &'a str,
}

impl Rows<'_> {
    fn push(&mut self, version: Option<u64>, value: Option<String>, hash: String, at: i64) {
        self.p.hist_seq += 1;
        let row = HistoryRow {
            op: self.op,
            hist_id: self.p.hist_seq,
            key: self.key.to_owned(),
            version,
            size: value.as_ref().map_or(0, String::len),
            value,
            hash,
            updated_at: at,
            device_id: self.device_id.to_owned(),
            records: false,
        };
        if let Some(meta) = row.meta() {
            self.p.keys.insert(self.key.to_owned(), meta);
            self.p.records.remove(self.key);
        }
        self.p.history.push(row);
    }

    /// A new current value: the next version. A record list starts a new
    /// list of records (the first write of it, or after a value that was
    /// not one).
    fn accept(&mut self, value: Option<String>, hash: String, at: i64) -> u64 {
        self.p.cursor += 1;
        let version = self.p.cursor;
        match value.as_deref().and_then(records::split) {
            Some(list) => lists::start(self, version, &list, at),
            None => self.push(Some(version), value, hash, at),
        }
        version
    }

    /// A value that never became current, kept so nothing typed is lost.
    fn keep_loser(&mut self, value: Option<String>, hash: String, at: i64) {
        self.push(None, value, hash, at);
    }
}

/// The three-way merge of an array write with a stale base, when the base
/// and the stored value are known (from this group or read beforehand).
fn try_merge(
    p: &Plan,
    values: &Values,
    key: &str,
    w: &Write,
    stored: &KeyMeta,
    incoming_updated_at: i64,
) -> Option<String> {
    let incoming = w.value.as_deref()?;
    let base_version = w.base_version?;
    // A base from the future (the server was reset) is not trusted.
    if stored.deleted || base_version == 0 || base_version >= stored.version {
        return None;
    }
    let text_of = |version: u64| -> Option<&str> {
        match p
            .history
            .iter()
            .rev()
            .find(|h| h.key == key && h.version == Some(version))
        {
            Some(h) => h.value.as_deref(),
            None => values.versions.get(&(key.to_owned(), version))?.as_deref(),
        }
    };
    merge::merge_by_id(
        text_of(base_version)?,
        Version {
            text: text_of(stored.version)?,
            updated_at: stored.updated_at,
        },
        Version {
            text: incoming,
            updated_at: incoming_updated_at,
        },
    )
}

/// What a plan reads beyond the hub's state: values of past versions to
/// merge against ((key, version) → the value, `None` for a deletion), and
/// record lists not yet in memory. The object reads them from D1 first.
#[derive(Debug, Default)]
pub struct Values {
    pub versions: HashMap<(String, u64), Option<String>>,
    pub sets: HashMap<String, RecordSet>,
}

/// What `plan` needs read for a group (see `Values`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub versions: Vec<(String, u64)>,
    /// Record lists to load: (key, the version they started at).
    pub sets: Vec<(String, u64)>,
}

impl Wanted {
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty() && self.sets.is_empty()
    }
}

/// What `plan` needs for `ops`: for each write of an array whose base is
/// behind the stored version (or whose key another write of the group also
/// touches), its base and the key's current value (a record list's current
/// value is its records); and the record lists written to that are not in
/// memory yet.
pub fn merge_inputs<O: Borrow<Op>>(state: &UserState, ops: &[O]) -> Wanted {
    let writes = || ops.iter().flat_map(|o| &o.borrow().writes);
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    for w in writes() {
        *per_key.entry(w.key.as_str()).or_default() += 1;
    }
    let mut needed = BTreeSet::new();
    let mut sets = BTreeSet::new();
    for w in writes() {
        let Some(meta) = state.keys.get(w.key.as_str()) else {
            continue;
        };
        let list = meta.records && !meta.deleted;
        if list && !state.records.contains_key(w.key.as_str()) {
            sets.insert((w.key.as_str().to_owned(), meta.hist_version()));
        }
        let Some(base) = w.base_version else {
            continue;
        };
        let arrayish = w.patch.is_some()
            || w.value
                .as_deref()
                .is_some_and(|v| v.trim_start().starts_with('['));
        let shared = per_key.get(w.key.as_str()).is_some_and(|n| *n > 1);
        if !meta.deleted
            && base > 0
            && (base < meta.version || (shared && base == meta.version))
            && arrayish
        {
            needed.insert((w.key.as_str().to_owned(), base));
            if !list {
                needed.insert((w.key.as_str().to_owned(), meta.version));
            }
        }
    }
    Wanted {
        versions: needed.into_iter().collect(),
        sets: sets.into_iter().collect(),
    }
}

fn answer_of(shape: Shape, mut results: Vec<KeyResult>, cursor: u64) -> Answer {
    match shape {
        Shape::Single => {
            let r = results.pop();
            Answer::Write(WriteResponse {
                success: true,
                key: r.as_ref().map(|r| r.key.clone()).unwrap_or_default(),
                version: r.as_ref().map_or(0, |r| r.version),
                conflict: r.and_then(|r| r.conflict),
            })
        }
        Shape::Batch => {
            let mut versions = BTreeMap::new();
            let mut synced = Vec::new();
            let mut conflicts = Vec::new();
            for r in results {
                versions.insert(r.key.clone(), r.version);
                if r.applied {
                    synced.push(r.key);
                }
                conflicts.extend(r.conflict);
            }
            Answer::Batch(BatchResponse {
                success: true,
                synced,
                conflicts,
                versions,
                cursor,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Key;
    use proptest::prelude::*;

    fn put(key: &str, value: &str, base: Option<u64>, t: Option<i64>) -> Write {
        Write {
            key: Key::parse(key).unwrap(),
            value: Some(value.into()),
            base_version: base,
            updated_at: t,
            patch: None,
        }
    }

    fn single(w: Write, rid: Option<&str>) -> Op {
        Op {
            device_id: "dev".into(),
            request_id: rid.map(str::to_owned),
            shape: Shape::Single,
            writes: vec![w],
        }
    }

    /// `plan` with no stored values to merge against.
    fn plan_(s: &UserState, ops: Vec<Op>, now: i64) -> Plan {
        plan(s, &ops, now, &Values::default())
    }

    fn write_answer(r: &Result<Answer, SyncError>) -> WriteResponse {
        match r {
            Ok(Answer::Write(w)) => w.clone(),
            other => panic!("not a write answer: {other:?}"),
        }
    }

    fn adopt(state: &mut UserState, p: Plan) -> Vec<WriteResponse> {
        state.adopt(&p);
        p.replies.iter().map(write_answer).collect()
    }

    #[test]
    fn versions_increase_per_accepted_write() {
        let mut s = UserState::default();
        let p = plan_(
            &s,
            vec![
                single(put("a", "1", None, Some(1)), None),
                single(put("b", "1", None, Some(1)), None),
                single(put("a", "2", Some(1), Some(2)), None),
            ],
            100,
        );
        assert_eq!(p.history.len(), 3);
        assert_eq!(
            p.current().len(),
            2,
            "a's first row replaced in the same group"
        );
        let r = adopt(&mut s, p);
        assert_eq!(r.iter().map(|r| r.version).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(s.cursor, 3);
        assert!(r.iter().all(|r| r.conflict.is_none()));
    }

    #[test]
    fn changes_for_broadcast_are_in_version_order() {
        let s = UserState::default();
        let del = Write {
            key: Key::parse("a").unwrap(),
            value: None,
            base_version: Some(1),
            updated_at: None,
            patch: None,
        };
        let p = plan_(
            &s,
            vec![
                single(put("a", "1", None, None), None),
                single(put("b", "1", None, None), None),
                single(del, None),
                // Loses against "b" = "1" (older, no base): not broadcast.
                single(put("b", "0", Some(0), Some(-1)), None),
            ],
            100,
        );
        let c = p.changes();
        assert_eq!(
            c.iter()
                .map(|(op, c)| (*op, c.key.as_str(), c.version, c.deleted))
                .collect::<Vec<_>>(),
            [(0, "a", 1, false), (1, "b", 2, false), (2, "a", 3, true)]
        );
        assert_eq!(c[0].1.value_text().as_deref(), Some("1"));
        assert_eq!(c[2].1.value_text(), None);
    }

    #[test]
    fn retention_runs_for_a_key_once_per_few_versions() {
        let mut s = UserState::default();
        // Two keys written in turn: versions of each jump by two.
        let mut runs: HashMap<String, usize> = HashMap::new();
        for n in 0..64 {
            let key = if n % 2 == 0 { "a" } else { "b" };
            let base = s.keys.get(key).map(|m| m.version);
            let mut p = plan_(
                &s,
                vec![single(put(key, &n.to_string(), base, None), None)],
                5,
            );
            choose_prune_keys(&s, &mut p, 8);
            for k in &p.prune_keys {
                *runs.entry(k.clone()).or_default() += 1;
            }
            adopt(&mut s, p);
        }
        // Every 8th write of each key (a new key has nothing to prune).
        assert_eq!((runs["a"], runs["b"]), (4, 4));
        // After a wake nothing is known: the next write of a key prunes.
        s.unpruned.clear();
        let base = s.keys.get("a").map(|m| m.version);
        let mut p = plan_(&s, vec![single(put("a", "y", base, None), None)], 5);
        choose_prune_keys(&s, &mut p, 8);
        assert_eq!(p.prune_keys, ["a"]);
        // Every write with `every` 1.
        let base = s.keys.get("a").map(|m| m.version);
        let mut p = plan_(&s, vec![single(put("a", "x", base, None), None)], 5);
        choose_prune_keys(&s, &mut p, 1);
        assert_eq!(p.prune_keys, ["a"]);
    }

    #[test]
    fn identical_value_is_a_no_op() {
        let mut s = UserState::default();
        let p = plan_(&s, vec![single(put("a", "1", None, None), None)], 5);
        adopt(&mut s, p);
        let p = plan_(&s, vec![single(put("a", "1", None, None), None)], 6);
        assert!(!p.writes_anything());
        assert_eq!(adopt(&mut s, p)[0].version, 1);
    }

    #[test]
    fn stale_write_loses_and_is_kept() {
        let mut s = UserState::default();
        let p = plan_(&s, vec![single(put("a", "new", None, Some(50)), None)], 100);
        adopt(&mut s, p);
        let p = plan_(
            &s,
            vec![single(put("a", "old", Some(0), Some(40)), None)],
            100,
        );
        assert_eq!(p.history.len(), 1);
        assert_eq!(p.history[0].version, None);
        assert_eq!(p.history[0].value.as_deref(), Some("old"));
        assert!(p.current().is_empty());
        let r = adopt(&mut s, p);
        let c = r[0].conflict.as_ref().unwrap();
        assert_eq!(c.winner, Winner::Stored);
        assert_eq!((r[0].version, s.cursor, s.hist_seq), (1, 1, 2));
    }

    #[test]
    fn request_id_replays_first_answer() {
        let mut s = UserState::default();
        let op = single(put("a", "1", None, None), Some("r1"));
        let p = plan_(&s, vec![op.clone(), op.clone()], 5);
        assert_eq!(
            p.history.len(),
            1,
            "the duplicate in the same group is not applied"
        );
        assert_eq!(p.replies[0], p.replies[1]);
        // What is stored for the requestId is the answer's exact text.
        let first = p.replies[0].clone().unwrap();
        assert_eq!(p.requests, [("r1".to_string(), first.to_json())]);
        adopt(&mut s, p);
        // An answer from an earlier group (D1 holds it) replays as stored;
        // the same id for another key, or for a batch, is refused.
        let stored = Answer::Stored(first.to_json());
        let again = single(put("a", "different", None, None), Some("r1"));
        assert_eq!(replay(&again, stored.clone()), Ok(stored.clone()));
        assert_eq!(stored.to_json(), first.to_json());
        let other_key = single(put("b", "1", None, None), Some("r1"));
        let batch = Op {
            shape: Shape::Batch,
            ..single(put("a", "1", None, None), Some("r1"))
        };
        for op in [&other_key, &batch] {
            let e = replay(op, stored.clone()).unwrap_err();
            assert_eq!(e.code(), "invalid_request");
        }
        // Within one group the same rules hold.
        let batch = Op {
            request_id: Some("r2".into()),
            ..batch
        };
        let p = plan_(
            &s,
            vec![single(put("c", "1", None, None), Some("r2")), batch],
            7,
        );
        assert_eq!(p.history.len(), 1);
        assert_eq!(p.replies[1].as_ref().unwrap_err().code(), "invalid_request");
    }

    #[test]
    fn batch_answer_lists_versions_and_conflicts() {
        let mut s = UserState::default();
        let p = plan_(&s, vec![single(put("a", "x", None, Some(10)), None)], 100);
        adopt(&mut s, p);
        let op = Op {
            device_id: "d".into(),
            request_id: None,
            shape: Shape::Batch,
            writes: vec![
                put("a", "y", Some(0), Some(20)),
                put("b", "z", None, None),
                Write {
                    key: Key::parse("c").unwrap(),
                    value: None,
                    base_version: None,
                    updated_at: None,
                    patch: None,
                },
            ],
        };
        let p = plan_(&s, vec![op], 100);
        let Ok(Answer::Batch(b)) = &p.replies[0] else {
            panic!("{:?}", p.replies[0]);
        };
        assert_eq!(b.synced, ["a", "b"]);
        assert_eq!(b.conflicts.len(), 1);
        assert_eq!(b.conflicts[0].winner, Winner::Incoming);
        assert_eq!(b.versions["c"], 0);
        assert_eq!(b.cursor, 3);
    }

    const BASE: &str = r#"[{"id":1,"t":"a"},{"id":2,"t":"b"}]"#;

    /// A state where key "list" holds BASE at version 1.
    fn with_list() -> (UserState, Values) {
        let mut s = UserState::default();
        let p = plan_(&s, vec![single(put("list", BASE, None, Some(1)), None)], 10);
        adopt(&mut s, p);
        let mut values = Values::default();
        values
            .versions
            .insert(("list".into(), 1), Some(BASE.into()));
        (s, values)
    }

    /// The value of `key` after `p`, as its last change says.
    fn value_after(p: &Plan, key: &str) -> String {
        p.changes()
            .into_iter()
            .rev()
            .find(|(_, c)| c.key == key)
            .and_then(|(_, c)| c.value_text())
            .unwrap()
    }

    #[test]
    fn edits_to_different_records_never_conflict() {
        let (mut s, values) = with_list();
        let stored = r#"[{"id":1,"t":"a"},{"id":2,"t":"b"},{"id":3,"t":"c"}]"#;
        let p = plan_(
            &s,
            vec![single(put("list", stored, Some(1), Some(20)), None)],
            30,
        );
        assert!(
            p.history.is_empty(),
            "an edit of a list adds no history row"
        );
        assert_eq!(p.record_rows.len(), 1, "only the new record is a row");
        assert_eq!(p.record_rows[0].prev.as_deref(), Some("2"));
        adopt(&mut s, p);
        let incoming = r#"[{"id":1,"t":"A"},{"id":2,"t":"b"}]"#;
        let ops = vec![single(put("list", incoming, Some(1), Some(25)), None)];
        let wanted = merge_inputs(&s, &ops);
        assert_eq!(wanted.versions, [("list".to_string(), 1)]);
        assert!(wanted.sets.is_empty(), "the list is in memory");
        let p = plan(&s, &ops, 30, &values);
        assert_eq!(p.record_rows.len(), 1);
        assert_eq!(
            p.record_rows[0].text.as_deref(),
            Some(r#"{"id":1,"t":"A"}"#)
        );
        assert_eq!(
            value_after(&p, "list"),
            r#"[{"id":1,"t":"A"},{"id":2,"t":"b"},{"id":3,"t":"c"}]"#
        );
        let r = adopt(&mut s, p);
        // Not a record conflict, but the writer must read the merge.
        let c = r[0].conflict.as_ref().unwrap();
        assert_eq!(
            (c.resolution, c.winner),
            (Resolution::Merged, Winner::Merged)
        );
        assert!(c.records.is_empty(), "no record edited on both sides");
        assert_eq!((r[0].version, s.keys["list"].version), (3, 3));
    }

    #[test]
    fn a_record_edited_on_both_sides_merges_field_by_field() {
        let mut s = UserState::default();
        let base = r#"[{"id":1,"a":1,"b":1},{"id":2}]"#;
        let p = plan_(&s, vec![single(put("k", base, None, Some(1)), None)], 10);
        adopt(&mut s, p);
        let stored = r#"[{"id":1,"a":2,"b":1},{"id":2}]"#;
        let p = plan_(
            &s,
            vec![single(put("k", stored, Some(1), Some(5)), None)],
            10,
        );
        adopt(&mut s, p);
        let mut values = Values::default();
        values.versions.insert(("k".into(), 1), Some(base.into()));
        let incoming = r#"[{"id":1,"a":1,"b":2}]"#;
        let p = plan(
            &s,
            &[single(put("k", incoming, Some(1), Some(6)), None)],
            10,
            &values,
        );
        // b changed here, a there; record 2 was removed here, untouched there.
        assert_eq!(value_after(&p, "k"), r#"[{"id":1,"a":2,"b":2}]"#);
        let loser = p.record_rows.iter().find(|r| r.version.is_none()).unwrap();
        assert_eq!(loser.text.as_deref(), Some(r#"{"id":1,"a":1,"b":2}"#));
        let r = adopt(&mut s, p);
        let c = r[0].conflict.as_ref().unwrap();
        assert_eq!(
            (c.resolution, c.winner),
            (Resolution::Merged, Winner::Merged)
        );
        assert_eq!(c.records, ["1"]);
    }

    #[test]
    fn a_record_deleted_on_one_side_and_edited_on_the_other_is_kept() {
        let mut s = UserState::default();
        let base = r#"[{"id":1,"t":"a"},{"id":2,"t":"b"}]"#;
        let p = plan_(&s, vec![single(put("k", base, None, Some(1)), None)], 10);
        adopt(&mut s, p);
        let p = plan_(
            &s,
            vec![single(
                put("k", r#"[{"id":2,"t":"b"}]"#, Some(1), Some(5)),
                None,
            )],
            10,
        );
        adopt(&mut s, p);
        let mut values = Values::default();
        values.versions.insert(("k".into(), 1), Some(base.into()));
        let edit = r#"[{"id":1,"t":"A"},{"id":2,"t":"b"}]"#;
        let p = plan(
            &s,
            &[single(put("k", edit, Some(1), Some(6)), None)],
            10,
            &values,
        );
        assert_eq!(value_after(&p, "k"), edit);
    }

    #[test]
    fn concurrent_array_writes_in_one_group_merge() {
        let (s, values) = with_list();
        let a = r#"[{"id":1,"t":"a"},{"id":2,"t":"b"},{"id":3,"t":"from a"}]"#;
        let b = r#"[{"id":2,"t":"b"}]"#;
        let ops = vec![
            single(put("list", a, Some(1), Some(20)), None),
            single(put("list", b, Some(1), Some(21)), None),
        ];
        assert_eq!(merge_inputs(&s, &ops).versions, [("list".to_string(), 1)]);
        let p = plan(&s, &ops, 30, &values);
        // b removed 1, a added 3: both hold.
        assert_eq!(
            value_after(&p, "list"),
            r#"[{"id":2,"t":"b"},{"id":3,"t":"from a"}]"#
        );
    }

    #[test]
    fn stale_whole_arrays_merge_by_id() {
        // Not record lists (a space after each comma): kept whole, merged whole.
        let base = r#"[{"id":1,"t":"a"}, {"id":2,"t":"b"}]"#;
        let mut s = UserState::default();
        let p = plan_(&s, vec![single(put("list", base, None, Some(1)), None)], 10);
        assert!(p.record_rows.is_empty());
        adopt(&mut s, p);
        let stored = r#"[{"id":1,"t":"a"}, {"id":2,"t":"b"}, {"id":3,"t":"c"}]"#;
        let p = plan_(
            &s,
            vec![single(put("list", stored, Some(1), Some(20)), None)],
            30,
        );
        adopt(&mut s, p);
        let mut values = Values::default();
        values
            .versions
            .insert(("list".into(), 1), Some(base.into()));
        values
            .versions
            .insert(("list".into(), 2), Some(stored.into()));
        let incoming = r#"[{"id":1,"t":"A"}, {"id":2,"t":"b"}]"#;
        let ops = vec![single(put("list", incoming, Some(1), Some(25)), None)];
        assert_eq!(
            merge_inputs(&s, &ops).versions,
            [("list".to_string(), 1), ("list".to_string(), 2)]
        );
        let p = plan(&s, &ops, 30, &values);
        assert_eq!(
            p.history.len(),
            2,
            "the incoming value is kept, then the merge"
        );
        assert_eq!(p.history[0].version, None);
        assert_eq!(p.history[0].value.as_deref(), Some(incoming));
        // The merge is compact, so it is stored as records from now on.
        assert!(p.history[1].records);
        assert_eq!(
            value_after(&p, "list"),
            r#"[{"id":1,"t":"A"},{"id":2,"t":"b"},{"id":3,"t":"c"}]"#
        );
        let r = adopt(&mut s, p);
        let c = r[0].conflict.as_ref().unwrap();
        assert_eq!(
            (c.resolution, c.winner, c.version),
            (Resolution::Merged, Winner::Merged, 3)
        );
        assert!(s.keys["list"].records && s.records.contains_key("list"));
    }

    #[test]
    fn without_a_base_array_writes_fall_back_to_lww() {
        let (s, _) = with_list();
        let incoming = r#"[{"id":9}]"#;
        let p = plan_(
            &s,
            vec![single(put("list", incoming, Some(0), Some(20)), None)],
            30,
        );
        let r = write_answer(&p.replies[0]);
        assert_eq!(r.conflict.unwrap().resolution, Resolution::LastWriteWins);
        // A base from the future is not used either.
        let ops = vec![single(put("list", incoming, Some(7), Some(20)), None)];
        assert!(merge_inputs(&s, &ops).is_empty());
        // Nor is anything for values that are not arrays.
        let ops = vec![single(put("list", "{}", Some(0), Some(20)), None)];
        assert!(merge_inputs(&s, &ops).is_empty());
    }

    #[derive(Debug, Clone)]
    struct W {
        key: u8,
        value: Option<u8>,
        base: Option<u64>,
        t: i64,
    }

    fn arb_writes() -> impl Strategy<Value = Vec<Vec<W>>> {
        let w = (
            0u8..3,
            proptest::option::weighted(0.8, 0u8..4),
            proptest::option::of(0u64..6),
            0i64..5,
        )
            .prop_map(|(key, value, base, t)| W {
                key,
                value,
                base,
                t,
            });
        proptest::collection::vec(proptest::collection::vec(w, 1..5), 1..8)
    }

    proptest! {
        /// Every write the hub accepts or rejects leaves a history row, versions
        /// strictly increase, and the current rows always point at the latest
        /// accepted history row of their key: nothing acknowledged disappears.
        #[test]
        fn nothing_acknowledged_is_lost(groups in arb_writes()) {
            let mut s = UserState::default();
            let mut history: Vec<HistoryRow> = Vec::new();
            let mut current: HashMap<String, HistoryRow> = HashMap::new();
            let mut last_version = 0;
            for group in groups {
                let ops = group.iter().map(|w| single(Write {
                    key: Key::parse(&format!("k{}", w.key)).unwrap(),
                    value: w.value.map(|v| format!("v{v}")),
                    base_version: w.base,
                    updated_at: Some(w.t),
                    patch: None,
                }, None)).collect();
                let p = plan_(&s, ops, 10);
                for h in &p.history {
                    if let Some(v) = h.version {
                        prop_assert!(v > last_version);
                        last_version = v;
                    }
                }
                history.extend(p.history.iter().cloned());
                for c in p.current() {
                    current.insert(c.key.clone(), c.clone());
                }
                let answers = adopt(&mut s, p);
                for (w, a) in group.iter().zip(&answers) {
                    let key = format!("k{}", w.key);
                    let value = w.value.map(|v| format!("v{v}"));
                    // The acknowledged value is in history (current or kept as a
                    // loser); only deleting a key that never existed leaves no row.
                    let kept = history.iter().any(|h| h.key == key && h.value == value)
                        || (value.is_none() && a.version == 0);
                    prop_assert!(kept, "{:?} -> {:?}", w, a);
                }
            }
            for (key, meta) in &s.keys {
                let row = &current[key];
                prop_assert_eq!(row.meta(), Some(meta.clone()));
                let h = history.iter().find(|h| h.hist_id == meta.hist_id).unwrap();
                prop_assert_eq!(h.version, Some(meta.version));
                prop_assert_eq!(&h.hash, &meta.hash);
            }
            prop_assert_eq!(s.cursor, last_version);
        }
    }

    /// One random write to a record list: which earlier version it was made
    /// from (an index into the versions so far), and the edits.
    #[derive(Debug, Clone)]
    struct ListEdit {
        base: usize,
        edits: Vec<(u8, u8)>,
        t: i64,
        /// Sent as a patch against its base rather than the whole list.
        patch: bool,
    }

    fn arb_list_edits() -> impl Strategy<Value = Vec<ListEdit>> {
        let edit = (0u8..8, 0u8..4);
        let e = (
            0usize..8,
            proptest::collection::vec(edit, 1..4),
            0i64..20,
            any::<bool>(),
        )
            .prop_map(|(base, edits, t, patch)| ListEdit {
                base,
                edits,
                t,
                patch,
            });
        proptest::collection::vec(e, 1..12)
    }

    /// `base` with `edits` applied: (id, action) where action 0 removes the
    /// record, 1 and 2 set one of two fields, 3 moves it to the front (or
    /// adds it there).
    fn edited(base: &str, edits: &[(u8, u8)], t: i64) -> String {
        let mut recs: Vec<(String, serde_json::Map<String, serde_json::Value>)> =
            records::split(base)
                .unwrap_or_default()
                .into_iter()
                .map(|r| (r.id, serde_json::from_str(r.text).unwrap_or_default()))
                .collect();
        for (id, action) in edits {
            let id = id.to_string();
            let at = recs.iter().position(|(i, _)| *i == id);
            let fresh = || {
                let mut m = serde_json::Map::new();
                m.insert(
                    "id".into(),
                    serde_json::json!(id.parse::<u8>().unwrap_or(0)),
                );
                m
            };
            match (action, at) {
                (0, Some(i)) => {
                    recs.remove(i);
                }
                (0, None) => {}
                (3, Some(i)) => {
                    let r = recs.remove(i);
                    recs.insert(0, r);
                }
                (3, None) => recs.insert(0, (id.clone(), fresh())),
                (f, at) => {
                    let i = match at {
                        Some(i) => i,
                        None => {
                            recs.push((id.clone(), fresh()));
                            recs.len() - 1
                        }
                    };
                    recs[i].1.insert(format!("f{f}"), serde_json::json!(t));
                }
            }
        }
        let texts: Vec<String> = recs
            .iter()
            .map(|(_, m)| serde_json::to_string(m).unwrap_or_default())
            .collect();
        records::join(texts.iter().map(String::as_str))
    }

    /// The list stored rows give at version `at`: each record's newest row
    /// with a version up to `at`, unless it removed the record.
    fn rebuilt(rows: &[RecordRow], at: u64) -> String {
        let mut newest: HashMap<&str, &RecordRow> = HashMap::new();
        for r in rows.iter().filter(|r| r.version.is_some_and(|v| v <= at)) {
            if newest.get(&*r.id).is_none_or(|n| n.seq < r.seq) {
                newest.insert(&r.id, r);
            }
        }
        let live = newest
            .values()
            .filter_map(|r| {
                Some(records::StoredRec {
                    id: r.id.to_string(),
                    text: r.text.as_deref()?.to_owned(),
                    prev: r.prev.as_deref().map(str::to_owned),
                    version: r.version?,
                    updated_at: r.updated_at,
                })
            })
            .collect();
        RecordSet::from_rows(live).value()
    }

    proptest! {
        /// Writes of a record list made from random earlier versions (so
        /// most are stale and merge): rebuilding any version from the
        /// stored record rows gives exactly the value broadcast for it;
        /// every record an acknowledged write sent is stored (current or
        /// in its history); planning the same write twice gives the same
        /// rows (the merge does not depend on hash order).
        #[test]
        fn record_lists_rebuild_and_keep_every_acked_record(edits in arb_list_edits()) {
            let mut s = UserState::default();
            let start = r#"[{"id":0,"f1":0},{"id":1,"f1":0},{"id":2,"f1":0}]"#;
            let p = plan_(&s, vec![single(put("k", start, None, Some(0)), None)], 100);
            let mut rows: Vec<RecordRow> = p.record_rows.clone();
            let mut versions: Vec<(u64, String)> = vec![(1, start.to_owned())];
            adopt(&mut s, p);
            for e in edits {
                let (base_version, base) = versions[e.base % versions.len()].clone();
                let value = edited(&base, &e.edits, e.t);
                let mut values = Values::default();
                values.versions.insert(("k".into(), base_version), Some(base.clone()));
                let mut w = put("k", &value, Some(base_version), Some(e.t));
                if e.patch {
                    let (old, new) = (records::split(&base), records::split(&value));
                    let diff = records::diff(&old.unwrap_or_default(), &new.unwrap_or_default());
                    w.value = None;
                    w.patch = Some(Rc::new(diff));
                }
                let ops = vec![single(w, None)];
                let p = plan(&s, &ops, 100, &values);
                let again = plan(&s, &ops, 100, &values);
                prop_assert_eq!(&p.record_rows, &again.record_rows);
                for (_, c) in p.changes() {
                    versions.push((c.version, c.value_text().unwrap_or_default()));
                }
                rows.extend(p.record_rows.iter().cloned());
                let answer = adopt(&mut s, p);
                prop_assert!(answer[0].version >= base_version);
                // Every record the write sent is kept somewhere.
                for r in records::split(&value).unwrap_or_default() {
                    let kept = rows.iter().any(|row| row.id.as_ref() == r.id && row.text.as_deref() == Some(r.text));
                    prop_assert!(kept, "record {} of {} lost", r.text, value);
                }
            }
            for (v, value) in &versions {
                prop_assert_eq!(&rebuilt(&rows, *v), value, "version {}", v);
            }
            let current = s.records["k"].value();
            prop_assert_eq!(&versions.last().map(|(_, v)| v.clone()).unwrap_or_default(), &current);
        }
    }
}
