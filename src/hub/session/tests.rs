//! The session against a model of D1 (the guarded commit and the primary
//! key on answers, as migrations/0002 has them), with drivers advanced in
//! any order, commits that fail before or after landing, and stalls long
//! enough for a takeover.

use super::*;
use crate::hub::{HistoryRow, KeyMeta, Shape};
use crate::model::Key;
use crate::protocol::Write;
use crate::quota::Usage;
use proptest::prelude::*;

type Op_ = u32;
type Sock = u32;

/// What D1 holds for one user.
#[derive(Default)]
struct FakeD1 {
    cursor: u64,
    hist_seq: u64,
    commit_id: String,
    keys: HashMap<String, KeyMeta>,
    history: Vec<HistoryRow>,
    requests: HashMap<String, String>,
    usage: Usage,
    commits: usize,
    loads: usize,
    /// Commits refused because their plan was made from older counters.
    stale: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// D1 fails and nothing lands.
    Before,
    /// The commit lands but the answer is lost.
    After,
}

impl FakeD1 {
    fn load(&mut self) -> UserState {
        self.loads += 1;
        UserState {
            cursor: self.cursor,
            hist_seq: self.hist_seq,
            keys: self.keys.clone(),
            usage: self.usage,
            ..UserState::default()
        }
    }

    fn values(&self, wanted: &Wanted) -> Values {
        let versions = wanted
            .versions
            .iter()
            .filter_map(|(k, v)| {
                let h = self
                    .history
                    .iter()
                    .find(|h| &h.key == k && h.version == Some(*v))?;
                Some(((k.clone(), *v), h.value.clone()))
            })
            .collect();
        // Values here are never record lists.
        Values {
            versions,
            sets: Default::default(),
        }
    }

    fn commit(&mut self, plan: &Plan, fault: Fault) -> Result<(), SyncError> {
        if fault == Fault::Before {
            return Err(SyncError::Internal("D1 unreachable".into()));
        }
        if (self.cursor, self.hist_seq) != (plan.prev_cursor, plan.prev_hist_seq) {
            self.stale += 1;
            return Err(SyncError::Internal("NOT NULL constraint failed".into()));
        }
        if plan
            .requests
            .iter()
            .any(|(r, _)| self.requests.contains_key(r))
        {
            return Err(SyncError::Internal("UNIQUE constraint failed".into()));
        }
        self.cursor = plan.cursor;
        self.hist_seq = plan.hist_seq;
        self.commit_id.clone_from(&plan.commit_id);
        self.keys.clone_from(&plan.keys);
        self.usage = plan.usage;
        self.history.extend(plan.history.iter().cloned());
        for (r, a) in &plan.requests {
            self.requests.insert(r.clone(), a.clone());
        }
        self.commits += 1;
        if fault == Fault::After {
            return Err(SyncError::Internal("connection reset".into()));
        }
        Ok(())
    }

    fn check(&self, plan: &Plan) -> CommitCheck {
        CommitCheck {
            cursor: self.cursor,
            hist_seq: self.hist_seq,
            commit_id: self.commit_id.clone(),
            answers: plan
                .requests
                .iter()
                .filter_map(|(r, _)| Some((r.clone(), self.requests.get(r)?.clone())))
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
enum Action {
    /// A put (value `Some`) or delete of key `k{key}`; `retry` re-sends
    /// an earlier op with its requestId, as a client does after a lost ack.
    Submit {
        key: u8,
        value: Option<u8>,
        base: Option<u64>,
        rid: bool,
        retry: Option<usize>,
    },
    /// Carries out the step of one driver (index modulo the drivers).
    Advance { task: usize, fault: Fault },
    /// Time passes (long enough, and the next submit takes over).
    Tick { ms: i64 },
}

fn arb_action() -> impl Strategy<Value = Action> {
    let fault = prop_oneof![
        8 => Just(Fault::None),
        1 => Just(Fault::Before),
        1 => Just(Fault::After),
    ];
    prop_oneof![
        4 => (
            0u8..3,
            proptest::option::weighted(0.8, 0u8..4),
            proptest::option::of(0u64..8),
            proptest::bool::weighted(0.9),
            proptest::option::weighted(0.15, 0usize..64),
        )
            .prop_map(|(key, value, base, rid, retry)| Action::Submit {
                key,
                value,
                base,
                rid,
                retry
            }),
        5 => (0usize..8, fault).prop_map(|(task, fault)| Action::Advance { task, fault }),
        1 => prop_oneof![Just(10i64), Just(61_000i64)].prop_map(|ms| Action::Tick { ms }),
    ]
}

struct Sim {
    session: Session<Op_, Sock>,
    d1: FakeD1,
    now: i64,
    ops: Vec<Op>,
    tasks: Vec<(DriverId, Step<Op_, Sock>)>,
    /// (op, answer, whether D1 held the op's requestId when it was answered).
    replies: Vec<(Op_, Result<Answer, SyncError>, bool)>,
    broadcasts: Vec<(Change, Option<Sock>)>,
    takeovers: usize,
}

impl Sim {
    fn new(limits: Limits) -> Self {
        Self {
            session: Session::new(limits, "test".into()),
            d1: FakeD1::default(),
            now: 1_000,
            ops: Vec::new(),
            tasks: Vec::new(),
            replies: Vec::new(),
            broadcasts: Vec::new(),
            takeovers: 0,
        }
    }

    fn record(&mut self, effects: Vec<Effect<Op_, Sock>>) {
        for e in effects {
            match e {
                Effect::Reply { to, answer } => {
                    let held = self.ops[to as usize]
                        .request_id
                        .as_ref()
                        .is_some_and(|r| self.d1.requests.contains_key(r));
                    self.replies.push((to, answer, held));
                }
                Effect::Broadcast { change, except } => self.broadcasts.push((change, except)),
            }
        }
    }

    fn submit(&mut self, op: Op) {
        let id = self.ops.len() as Op_;
        self.ops.push(op.clone());
        let busy = self.session.driver.is_some();
        match self.session.submit(op, id, Some(id % 4), self.now) {
            Ok(Some(d)) => {
                self.takeovers += usize::from(busy);
                let next = self.session.next(d, self.now);
                self.record(next.effects);
                self.tasks.push((d, next.step));
            }
            Ok(None) => {}
            Err(e) => self.replies.push((id, Err(e), false)),
        }
    }

    fn advance(&mut self, task: usize, fault: Fault) {
        if self.tasks.is_empty() {
            return;
        }
        let i = task % self.tasks.len();
        let (d, step) = self.tasks.swap_remove(i);
        let now = self.now;
        let next = match step {
            Step::Done => return,
            Step::Wait(ms) => {
                self.now += ms as i64;
                self.session.next(d, self.now)
            }
            Step::Load { .. } => {
                let s = self.d1.load();
                self.session.loaded(d, Ok(s), now)
            }
            Step::Read { group, wanted } => {
                let v = self.d1.values(&wanted);
                self.session.values_read(d, group, Ok(v), now)
            }
            Step::Commit { group, plan } => {
                let r = self.d1.commit(&plan, fault);
                self.session.committed(d, group, plan, r, now)
            }
            Step::Check { group, plan } => {
                let c = self.d1.check(&plan);
                self.session.checked(d, group, plan, Ok(c), now)
            }
        };
        self.record(next.effects);
        self.tasks.push((d, next.step));
    }

    /// Runs every driver to the end without faults.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            self.tasks.retain(|(_, s)| !matches!(s, Step::Done));
            if self.tasks.is_empty() {
                return;
            }
            self.advance(0, Fault::None);
        }
        panic!("drivers did not finish");
    }

    fn run(&mut self, actions: &[Action]) {
        for a in actions {
            match a {
                Action::Submit {
                    key,
                    value,
                    base,
                    rid,
                    retry,
                } => {
                    let earlier = retry
                        .filter(|_| !self.ops.is_empty())
                        .map(|i| self.ops[i % self.ops.len()].clone())
                        .filter(|o| o.request_id.is_some());
                    let op = earlier.unwrap_or_else(|| {
                        let n = self.ops.len();
                        Op {
                            device_id: format!("dev{}", n % 3),
                            request_id: rid.then(|| format!("r{n}")),
                            shape: Shape::Single,
                            writes: vec![Write {
                                key: Key::parse(&format!("k{key}")).unwrap(),
                                value: value.map(|v| format!("v{v}-{n}")),
                                base_version: *base,
                                updated_at: Some(n as i64),
                                patch: None,
                            }],
                        }
                    });
                    self.submit(op);
                }
                Action::Advance { task, fault } => self.advance(*task, *fault),
                Action::Tick { ms } => self.now += ms,
            }
        }
        self.settle();
    }

    fn check_invariants(&self) -> Result<(), TestCaseError> {
        // Every op is answered exactly once.
        let mut answered = vec![0; self.ops.len()];
        for (op, _, _) in &self.replies {
            answered[*op as usize] += 1;
        }
        prop_assert!(answered.iter().all(|n| *n == 1), "answers {:?}", answered);
        prop_assert_eq!(self.session.queued(), 0);
        for (op, answer, held) in &self.replies {
            let o = &self.ops[*op as usize];
            match answer {
                Ok(a) => {
                    // Acked means persisted: the answer is what D1 holds for
                    // the requestId, byte for byte, and the value is stored.
                    if let Some(r) = &o.request_id {
                        prop_assert_eq!(self.d1.requests.get(r), Some(&a.to_json()));
                    }
                    let w = &o.writes[0];
                    let stored = self
                        .d1
                        .history
                        .iter()
                        .any(|h| h.key == w.key.as_str() && h.value == w.value);
                    let Some(Answer::Write(r)) = answer_of(a) else {
                        return Err(TestCaseError::fail(format!("{a:?}")));
                    };
                    prop_assert!(
                        stored || (w.value.is_none() && r.version == 0),
                        "acked {:?} -> {:?} is not in D1",
                        o,
                        r
                    );
                }
                Err(SyncError::RateLimited { .. }) => {}
                Err(e) => {
                    // A write D1 holds is never reported as failed.
                    prop_assert!(!held, "{:?} failed with {:?} but D1 holds it", o, e);
                }
            }
        }
        // The plans D1 took form one chain: no version twice.
        let mut versions: Vec<u64> = self.d1.history.iter().filter_map(|h| h.version).collect();
        let n = versions.len();
        versions.sort_unstable();
        versions.dedup();
        prop_assert_eq!(versions.len(), n);
        // Changes go out only once committed, each once (a replay is silent).
        for (c, _) in &self.broadcasts {
            prop_assert!(self
                .d1
                .history
                .iter()
                .any(|h| h.key == c.key && h.version == Some(c.version) && h.value == c.value));
        }
        let mut sent: Vec<u64> = self.broadcasts.iter().map(|(c, _)| c.version).collect();
        let m = sent.len();
        sent.sort_unstable();
        sent.dedup();
        prop_assert_eq!(sent.len(), m);
        Ok(())
    }
}

/// A stored answer as the typed one it was first given as.
fn answer_of(a: &Answer) -> Option<Answer> {
    match a {
        Answer::Stored(s) => serde_json::from_str(s).ok().map(Answer::Write),
        other => Some(other.clone()),
    }
}

fn limits() -> Limits {
    Limits {
        max_group_writes: 4,
        write_burst: 1_000_000,
        writes_per_minute: 1_000_000,
        ..Limits::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Drivers advanced in any order, faults before and after a commit
    /// lands, stalls and takeovers, client retries: every acked write is in
    /// D1, no write D1 holds is reported as failed, no version is handed
    /// out twice, every op is answered once.
    #[test]
    fn acked_writes_are_persisted_and_committed_ones_never_fail(
        actions in proptest::collection::vec(arb_action(), 1..80)
    ) {
        let mut sim = Sim::new(limits());
        sim.run(&actions);
        sim.check_invariants()?;
    }

    /// Without stalls, answers from commits come in the order the writes
    /// arrived: an ack is never held back by a write that came after it.
    #[test]
    fn acks_come_in_arrival_order(
        actions in proptest::collection::vec(arb_action(), 1..80)
    ) {
        let actions: Vec<Action> = actions
            .into_iter()
            .filter(|a| !matches!(a, Action::Tick { .. }))
            .collect();
        let mut sim = Sim::new(limits());
        sim.run(&actions);
        sim.check_invariants()?;
        prop_assert_eq!(sim.takeovers, 0);
        // Without a takeover the session never even tries a stale plan.
        prop_assert_eq!(sim.d1.stale, 0);
        let fresh: Vec<Op_> = sim
            .replies
            .iter()
            .filter(|(_, a, _)| matches!(a, Ok(Answer::Write(_))))
            .map(|(op, _, _)| *op)
            .collect();
        prop_assert!(fresh.windows(2).all(|w| w[0] < w[1]), "{:?}", fresh);
    }
}

fn put(n: usize, key: &str, rid: Option<&str>) -> Op {
    Op {
        device_id: "dev".into(),
        request_id: rid.map(str::to_owned),
        shape: Shape::Single,
        writes: vec![Write {
            key: Key::parse(key).unwrap(),
            value: Some(format!("v{n}")),
            base_version: None,
            updated_at: Some(n as i64),
            patch: None,
        }],
    }
}

#[test]
fn writes_arriving_during_a_commit_share_the_next_one() {
    let mut sim = Sim::new(Limits::default());
    sim.submit(put(0, "a", Some("r0")));
    assert_eq!(sim.tasks.len(), 1);
    sim.advance(0, Fault::None); // load
    assert!(matches!(sim.tasks[0].1, Step::Commit { .. }));
    for n in 1..5 {
        sim.submit(put(n, "b", Some(&format!("r{n}"))));
    }
    assert_eq!(sim.tasks.len(), 1, "a driver is already committing");
    sim.advance(0, Fault::None); // commit of r0
    assert_eq!(sim.replies.len(), 1);
    match &sim.tasks[0].1 {
        Step::Commit { group, .. } => assert_eq!(group.len(), 4),
        _ => panic!("the four waiting writes form the next group"),
    }
    sim.settle();
    assert_eq!(sim.d1.commits, 2);
    assert_eq!(sim.replies.len(), 5);
}

#[test]
fn under_load_the_driver_waits_briefly_for_more_writes_and_a_lone_write_never_waits() {
    let mut sim = Sim::new(Limits::default());
    sim.submit(put(0, "a", Some("r0")));
    sim.settle();
    assert_eq!(sim.d1.commits, 1, "a lone write is committed at once");
    // A group of three, then only one is waiting: wait once for more.
    for n in 1..5 {
        sim.submit(put(n, "b", Some(&format!("r{n}"))));
    }
    sim.advance(0, Fault::None); // r1 alone, then r2..r4 together
    sim.submit(put(5, "c", Some("r5")));
    sim.advance(0, Fault::None);
    assert!(matches!(sim.tasks[0].1, Step::Wait(1)), "waits for more");
    for n in 6..8 {
        sim.submit(put(n, "c", Some(&format!("r{n}"))));
    }
    sim.advance(0, Fault::None);
    match &sim.tasks[0].1 {
        Step::Commit { group, .. } => assert_eq!(group.len(), 3, "r5..r7 together"),
        _ => panic!("expected a commit"),
    }
    sim.settle();
    assert_eq!(sim.replies.len(), 8);
}

#[test]
fn groups_are_bounded_by_writes_and_bytes_but_one_big_op_stays_whole() {
    let mut sim = Sim::new(Limits {
        max_group_writes: 3,
        max_group_bytes: 10,
        ..Limits::default()
    });
    let big = |n: usize, len: usize| Op {
        writes: vec![Write {
            value: Some(n.to_string().repeat(len)),
            ..put(n, "k", None).writes[0].clone()
        }],
        ..put(n, "k", None)
    };
    sim.submit(big(0, 1));
    sim.advance(0, Fault::None); // load: commit of op 0 alone
    for (n, len) in [(1, 4), (2, 4), (3, 4), (4, 50)] {
        sim.submit(big(n, len));
    }
    let import = Op {
        shape: Shape::Batch,
        writes: (0..5)
            .map(|i| put(i, &format!("b{i}"), None).writes[0].clone())
            .collect(),
        ..put(5, "b", None)
    };
    sim.submit(import);
    let mut sizes = Vec::new();
    for _ in 0..20 {
        match sim.tasks.first() {
            Some((_, Step::Commit { group, .. })) => sizes.push(group.len()),
            Some((_, Step::Done)) | None => break,
            _ => {}
        }
        sim.advance(0, Fault::None);
    }
    // 1 | 4+4 (a third would pass 10 bytes) | 4 | 50 alone | the import of
    // 5 writes alone (over the cap, but one op is never split).
    assert_eq!(sizes, [1, 2, 1, 1, 1]);
    sim.settle();
    assert_eq!(sim.replies.len(), 6);
}

#[test]
fn a_retried_request_id_is_answered_from_d1_without_a_write() {
    let mut sim = Sim::new(Limits::default());
    sim.submit(put(0, "a", Some("r0")));
    sim.settle();
    let first = sim.replies[0].1.clone().unwrap();
    // A new object instance (a wake): D1 remembers, memory does not.
    sim.session = Session::new(Limits::default(), "woken".into());
    sim.submit(put(0, "a", Some("r0")));
    sim.settle();
    assert_eq!(sim.d1.commits, 1, "the replay changed nothing");
    let again = sim.replies[1].1.clone().unwrap();
    assert_eq!(again, Answer::Stored(first.to_json()));
    assert_eq!(again.to_json(), first.to_json());
    // The same requestId for another key is refused.
    sim.submit(put(1, "other", Some("r0")));
    sim.settle();
    assert_eq!(
        sim.replies[2].1.as_ref().unwrap_err().code(),
        "invalid_request"
    );
}

#[test]
fn a_commit_that_landed_but_failed_to_answer_is_reported_committed() {
    let mut sim = Sim::new(Limits::default());
    sim.submit(put(0, "a", Some("r0")));
    sim.advance(0, Fault::None); // load
    sim.advance(0, Fault::After); // lands, answer lost
    assert!(matches!(sim.tasks[0].1, Step::Check { .. }));
    sim.settle();
    assert!(matches!(sim.replies[0].1, Ok(Answer::Write(_))));
    assert_eq!(sim.d1.commits, 1);
    assert_eq!(sim.broadcasts.len(), 1);
}

#[test]
fn a_failing_d1_is_retried_a_bounded_number_of_times() {
    let mut sim = Sim::new(Limits::default());
    sim.submit(put(0, "a", Some("r0")));
    sim.advance(0, Fault::None); // load
    for _ in 0..Limits::default().max_attempts {
        sim.advance(0, Fault::Before); // commit fails
        sim.advance(0, Fault::None); // check: nothing landed
    }
    assert_eq!(sim.replies.len(), 1);
    assert_eq!(sim.replies[0].1.as_ref().unwrap_err().code(), "unavailable");
    assert!(sim.d1.history.is_empty());
}

#[test]
fn a_stalled_driver_is_replaced_and_its_late_commit_is_not_lost() {
    let mut sim = Sim::new(Limits::default());
    sim.submit(put(0, "a", Some("r0")));
    sim.advance(0, Fault::None); // load; driver 1 now holds a plan, then hangs
    sim.now += Limits::default().stall_ms + 1;
    sim.submit(put(1, "b", Some("r1")));
    assert_eq!(sim.tasks.len(), 2, "the second request took over");
    assert_eq!(sim.takeovers, 1);
    // The new driver reloads (the stalled commit may land) and commits.
    sim.advance(1, Fault::None);
    sim.advance(1, Fault::None);
    // The stalled commit wakes up: its plan is stale now, D1 refuses it,
    // and its write goes again instead of being reported as failed.
    sim.settle();
    assert!(
        sim.replies.iter().all(|(_, a, _)| a.is_ok()),
        "{:?}",
        sim.replies
    );
    assert_eq!(sim.d1.history.len(), 2);
}

#[test]
fn broadcasts_skip_the_writer_and_replays_are_silent() {
    let mut sim = Sim::new(Limits::default());
    sim.submit(put(0, "a", Some("r0")));
    sim.settle();
    assert_eq!(sim.broadcasts.len(), 1);
    assert_eq!(
        sim.broadcasts[0].1,
        Some(0),
        "the writer's socket is excluded"
    );
    sim.submit(put(0, "a", Some("r0")));
    sim.settle();
    assert_eq!(sim.broadcasts.len(), 1);
}

#[test]
fn the_rate_bucket_refuses_a_flood() {
    let mut sim = Sim::new(Limits {
        write_burst: 2,
        writes_per_minute: 1,
        ..Limits::default()
    });
    for n in 0..3 {
        sim.submit(put(n, "a", None));
    }
    sim.settle();
    let refused: Vec<_> = sim
        .replies
        .iter()
        .filter(|(_, a, _)| matches!(a, Err(SyncError::RateLimited { .. })))
        .collect();
    assert_eq!(refused.len(), 1);
}

#[test]
fn the_rate_bucket_takes_what_a_request_writes() {
    let mut sim = Sim::new(Limits {
        write_burst: 3,
        writes_per_minute: 1,
        ..Limits::default()
    });
    let mut batch = put(0, "a", None);
    batch.shape = Shape::Batch;
    batch.writes = (0..3)
        .map(|n| put(n, &format!("k{n}"), None).writes.remove(0))
        .collect();
    sim.submit(batch);
    sim.submit(put(3, "b", None));
    sim.settle();
    assert!(sim.replies.iter().any(|(op, a, _)| *op == 0 && a.is_ok()));
    assert!(sim
        .replies
        .iter()
        .any(|(op, a, _)| *op == 1 && matches!(a, Err(SyncError::RateLimited { .. }))));
}

#[test]
fn quotas_refuse_within_a_group_and_the_usage_rides_on_the_commit() {
    let mut sim = Sim::new(Limits {
        quota: crate::quota::Limits {
            bytes: 1_000,
            keys: 1,
            writes_per_day: 1_000,
        },
        ..Limits::default()
    });
    sim.submit(put(0, "a", Some("r0")));
    sim.advance(0, Fault::None); // load; r0 planned
    sim.submit(put(1, "b", Some("r1")));
    sim.submit(put(2, "a", Some("r2")));
    sim.settle();
    let code = |op: Op_| {
        sim.replies
            .iter()
            .find(|(o, _, _)| *o == op)
            .map(|(_, a, _)| a.as_ref().map(|_| ()).map_err(|e| e.code()))
    };
    assert_eq!(code(0), Some(Ok(())));
    assert_eq!(code(1), Some(Err("quota_exceeded")), "a second key");
    assert_eq!(code(2), Some(Ok(())), "a key that has a value adds none");
    assert!(!sim.d1.keys.contains_key("b"));
    assert_eq!((sim.d1.usage.day_units, sim.d1.usage.bytes), (2, 4));
    // A refused write is not counted, and a replayed one counts once.
    sim.session = Session::new(sim.session.limits.clone(), "woken".into());
    sim.submit(put(2, "a", Some("r2")));
    sim.settle();
    assert_eq!(sim.d1.usage.day_units, 2);
}

#[test]
fn a_refusal_for_space_counts_what_d1_stores_first() {
    let mut sim = Sim::new(Limits {
        quota: crate::quota::Limits {
            bytes: 5,
            ..crate::quota::Limits::default()
        },
        ..Limits::default()
    });
    sim.submit(put(0, "a", None));
    sim.settle();
    sim.submit(put(1, "a", None));
    sim.settle();
    assert_eq!(sim.d1.usage.bytes, 4);
    // Retention frees space that the session's count does not know of.
    sim.d1.usage.bytes = 2;
    sim.session.bytes_counted = false;
    let loads = sim.d1.loads;
    sim.submit(put(2, "a", None));
    sim.settle();
    assert_eq!(sim.d1.loads, loads + 1, "counted again before refusing");
    assert!(sim.replies[2].1.is_ok(), "{:?}", sim.replies[2]);
    // That commit ran retention (the first after a load does), so the next
    // refusal counts again; with nothing committed since, one more does not.
    for n in 3..5 {
        sim.submit(put(n, "a", None));
        sim.settle();
        assert_eq!(sim.d1.loads, loads + 2);
        assert_eq!(
            sim.replies[n].1.as_ref().unwrap_err().code(),
            "quota_exceeded"
        );
    }
}

#[test]
fn old_answers_are_pruned_now_and_then_not_on_every_commit() {
    let mut sim = Sim::new(Limits {
        prune_every: 4,
        ..Limits::default()
    });
    let mut pruned = 0;
    for n in 0..12 {
        sim.submit(put(n, "a", Some(&format!("r{n}"))));
        if matches!(sim.tasks.first(), Some((_, Step::Load { .. }))) {
            sim.advance(0, Fault::None);
        }
        if let Some((_, Step::Commit { plan, .. })) = sim.tasks.first() {
            pruned += usize::from(plan.prune_requests_before.is_some());
        }
        sim.settle();
    }
    assert_eq!(pruned, 3);
}

#[test]
fn catch_up_from_the_future_sends_everything() {
    assert_eq!(catch_up_from(9, 5), Some(0));
    assert_eq!(catch_up_from(5, 5), None);
    assert_eq!(catch_up_from(0, 5), None);
}

#[test]
fn presence_lists_each_device_once() {
    let d = |id: &str| PresenceDevice {
        device_id: id.into(),
        name: id.into(),
    };
    let p = presence(vec![d("b"), d("a"), d("b")]);
    assert_eq!(
        p.iter().map(|d| d.device_id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
}
