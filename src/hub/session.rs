//! The hub's session policy, platform-free. The Durable Object feeds it
//! events (a write arrived, D1 answered) and carries out what it returns:
//! a `Step` (the one D1 call to make next for the driving request) and
//! `Effect`s (answer a request, broadcast a change).
//!
//! The rules, each tested on the host:
//! - Writes are grouped first come, first served; a group is bounded, so a
//!   request's ack never waits for writes that arrived after it.
//! - One request at a time drives the queue. D1 awaits let other events in,
//!   so whoever finds no driver becomes it; a driver silent for `stall_ms`
//!   is replaced, and the state is then reloaded from D1 because the
//!   stalled commit may still land. D1's guard on the counters makes the
//!   later of two racing plans fail, so a stale plan never lands.
//! - A failed commit is never taken at its word: D1 is asked what it holds.
//!   A plan that landed after all is answered as committed; requestIds D1
//!   already holds are answered with their first answer; the rest go back to
//!   the front of the queue, a bounded number of times.
//! - Acks and broadcasts happen only after D1 committed.
//! - The rate bucket takes what a request writes (its units), and a group
//!   is counted against the quotas as it is planned, from the state then
//!   current; the usage is adopted with the plan, so a write counts once.
//!   A refusal for space is made from a fresh count of what D1 stores
//!   (retention frees space unseen), so it may first reload the state.

use super::plan::{self, merge_inputs, Answer, Op, Plan, UserState, Values, Wanted};
use crate::error::{Quota, SyncError};
use crate::protocol::{Change, PresenceDevice};
use crate::quota;
use crate::ratelimit::TokenBucket;
use std::collections::{HashMap, VecDeque};

/// How long an answer is remembered for retries (7 days).
pub const REQUEST_ID_TTL_MS: i64 = 7 * 86_400_000;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Writes planned and committed together, at most, and their bytes: a
    /// group's commit then needs few enough D1 statements (the first op is
    /// always taken, however big: an import is one atomic commit).
    pub max_group_writes: usize,
    pub max_group_bytes: usize,
    /// A driver that made no progress this long is replaced.
    pub stall_ms: i64,
    /// Tries of one write whose commits failed for reasons D1 cannot name.
    pub max_attempts: u32,
    pub write_burst: u32,
    pub writes_per_minute: u32,
    /// Old answers are pruned each time the cursor passes a multiple of this.
    pub prune_every: u64,
    /// A key's old history is pruned about once per this many of its versions.
    pub history_prune_every: u64,
    pub quota: quota::Limits,
    /// Under load (the last group held several writes), wait this long for
    /// the writers just acked to send their next writes before taking less
    /// than half of what that group held: groups stay large, and a D1 commit
    /// costs about the same for 1 write as for 10. A lone write never waits,
    /// nor does a queue that already holds about a group (a timer costs more
    /// than a millisecond in the runtime).
    pub linger_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_group_writes: 128,
            max_group_bytes: 12 * 1024 * 1024,
            // D1 caps a query at 30 s.
            stall_ms: 60_000,
            max_attempts: 3,
            write_burst: 300,
            writes_per_minute: 600,
            prune_every: 256,
            history_prune_every: 8,
            quota: quota::Limits::default(),
            linger_ms: 1,
        }
    }
}

/// A request that drives the queue. Only the current one may commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverId(u64);

/// One queued op with the handle to answer it (`R`) and, for a WebSocket
/// write, the socket that sent it (`S`), which gets an ack, not a change.
pub struct Pending<R, S> {
    pub op: Op,
    pub reply: R,
    pub socket: Option<S>,
    attempts: u32,
}

/// Ops taken from the queue together, in arrival order.
pub struct Group<R, S>(Vec<Pending<R, S>>);

impl<R, S> Group<R, S> {
    /// The group's ops, borrowed: planning reads them, never copies values.
    pub fn ops(&self) -> Vec<&Op> {
        self.0.iter().map(|p| &p.op).collect()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The requestIds of the group's ops.
    pub fn request_ids(&self) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|p| p.op.request_id.clone())
            .collect()
    }
}

/// The D1 call the driver makes next, then hands the result back.
pub enum Step<R, S> {
    /// Load the user's counters and key metadata, then `loaded`; with
    /// `count_bytes`, count the bytes D1 stores instead of reading the
    /// stored upper bound (a scan of the user's history: only before
    /// refusing a write for space).
    Load { count_bytes: bool },
    /// Read these past values for merging, then `values_read`.
    Read { group: Group<R, S>, wanted: Wanted },
    /// Persist the plan in one transaction, then `committed`.
    Commit { group: Group<R, S>, plan: Plan },
    /// The commit failed: read what D1 holds (`CommitCheck`), then `checked`.
    Check { group: Group<R, S>, plan: Plan },
    /// Wait this many ms (more writes are likely on their way), then `next`.
    Wait(u64),
    /// Nothing more for this driver.
    Done,
}

pub enum Effect<R, S> {
    Reply {
        to: R,
        answer: Result<Answer, SyncError>,
    },
    /// Send to every socket but `except` (the writer's own).
    Broadcast { change: Change, except: Option<S> },
}

pub struct Next<R, S> {
    pub effects: Vec<Effect<R, S>>,
    pub step: Step<R, S>,
}

impl<R, S> Next<R, S> {
    fn step(step: Step<R, S>) -> Self {
        Self {
            effects: Vec::new(),
            step,
        }
    }

    fn with(mut self, mut effects: Vec<Effect<R, S>>) -> Self {
        effects.append(&mut self.effects);
        self.effects = effects;
        self
    }
}

/// What D1 holds after a failed commit.
#[derive(Debug, Clone, Default)]
pub struct CommitCheck {
    pub cursor: u64,
    pub hist_seq: u64,
    pub commit_id: String,
    /// Stored answers for the group's requestIds.
    pub answers: HashMap<String, String>,
}

pub struct Session<R, S> {
    limits: Limits,
    /// Makes commit ids unique to this object instance.
    nonce: String,
    commits: u64,
    /// `None` until loaded, and whenever it may be stale.
    state: Option<UserState>,
    queue: VecDeque<Pending<R, S>>,
    /// The current driver and when it last made progress.
    driver: Option<(DriverId, i64)>,
    drivers: u64,
    bucket: Option<TokenBucket>,
    /// The state's stored bytes were counted by D1 and no retention ran
    /// since: a refusal for space may be made from them.
    bytes_counted: bool,
    /// The load under way counts the bytes (`Load { count_bytes: true }`).
    counting: bool,
    /// Writes in the last group taken, and whether the driver already
    /// waited for more since.
    last_group: usize,
    lingered: bool,
}

impl<R, S: Clone> Session<R, S> {
    pub fn new(limits: Limits, nonce: String) -> Self {
        Self {
            limits,
            nonce,
            commits: 0,
            state: None,
            queue: VecDeque::new(),
            driver: None,
            drivers: 0,
            bucket: None,
            bytes_counted: false,
            counting: false,
            last_group: 0,
            lingered: false,
        }
    }

    /// The loaded state, if it is known to be current.
    pub fn state(&self) -> Option<&UserState> {
        self.state.as_ref()
    }

    /// Adopts a state read outside a commit (for a read-only request),
    /// unless a commit could be changing it right now.
    pub fn offer_state(&mut self, state: UserState) {
        if self.state.is_none() && self.driver.is_none() {
            self.state = Some(state);
            self.bytes_counted = false;
        }
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Queues an op. `Ok(Some(driver))` when the caller must drive the
    /// queue (call `next` with it), `Ok(None)` when a driver will answer it.
    pub fn submit(
        &mut self,
        op: Op,
        reply: R,
        socket: Option<S>,
        now: i64,
    ) -> Result<Option<DriverId>, SyncError> {
        let limits = &self.limits;
        self.bucket
            .get_or_insert_with(|| {
                TokenBucket::new(limits.write_burst, limits.writes_per_minute, now)
            })
            .take(quota::units(&op.writes), now)
            .map_err(|retry_after_secs| SyncError::RateLimited { retry_after_secs })?;
        self.queue.push_back(Pending {
            op,
            reply,
            socket,
            attempts: 0,
        });
        let take_over = match self.driver {
            None => true,
            Some((_, progress)) => now - progress > self.limits.stall_ms,
        };
        if !take_over {
            return Ok(None);
        }
        if self.driver.is_some() {
            // The stalled commit may still land: plan from D1's truth.
            self.state = None;
        }
        self.drivers += 1;
        let id = DriverId(self.drivers);
        self.driver = Some((id, now));
        Ok(Some(id))
    }

    /// Whether `d` may go on driving: it is the driver, or nobody is.
    fn resume(&mut self, d: DriverId, now: i64) -> bool {
        match self.driver {
            Some((current, _)) if current != d => false,
            _ => {
                self.driver = Some((d, now));
                true
            }
        }
    }

    /// The next step for driver `d`.
    pub fn next(&mut self, d: DriverId, now: i64) -> Next<R, S> {
        if !self.resume(d, now) {
            return Next::step(Step::Done);
        }
        if self.queue.is_empty() {
            self.driver = None;
            return Next::step(Step::Done);
        }
        let Some(state) = &self.state else {
            return Next::step(Step::Load { count_bytes: false });
        };
        let waiting: usize = self.queue.iter().map(|p| p.op.writes.len()).sum();
        if self.limits.linger_ms > 0
            && !self.lingered
            && self.last_group > 1
            && waiting * 2 < self.last_group.min(self.limits.max_group_writes)
        {
            self.lingered = true;
            return Next::step(Step::Wait(self.limits.linger_ms));
        }
        self.lingered = false;
        let (mut writes, mut bytes) = (0, 0);
        let take = self
            .queue
            .iter()
            .take_while(|p| {
                writes += p.op.writes.len();
                bytes += p.op.bytes();
                writes <= self.limits.max_group_writes && bytes <= self.limits.max_group_bytes
            })
            .count()
            .max(1);
        let group = Group(self.queue.drain(..take).collect());
        self.last_group = group.0.iter().map(|p| p.op.writes.len()).sum();
        let wanted = merge_inputs(state, &group.ops());
        if wanted.is_empty() {
            self.plan_group(d, group, &Values::default(), now)
        } else {
            Next::step(Step::Read { group, wanted })
        }
    }

    pub fn loaded(
        &mut self,
        d: DriverId,
        state: Result<UserState, SyncError>,
        now: i64,
    ) -> Next<R, S> {
        if !self.resume(d, now) {
            return Next::step(Step::Done);
        }
        match state {
            Ok(s) => {
                self.state = Some(s);
                self.bytes_counted = std::mem::take(&mut self.counting);
                self.next(d, now)
            }
            Err(e) => {
                // Without a state nothing can be planned: answer what waits,
                // so clients retry instead of hanging.
                self.driver = None;
                let effects = self
                    .queue
                    .drain(..)
                    .map(|p| Effect::Reply {
                        to: p.reply,
                        answer: Err(e.clone()),
                    })
                    .collect();
                Next {
                    effects,
                    step: Step::Done,
                }
            }
        }
    }

    pub fn values_read(
        &mut self,
        d: DriverId,
        group: Group<R, S>,
        values: Result<Values, SyncError>,
        now: i64,
    ) -> Next<R, S> {
        if !self.resume(d, now) {
            self.requeue(group.0);
            return Next::step(Step::Done);
        }
        match values {
            Ok(values) => self.plan_group(d, group, &values, now),
            Err(e) => {
                let effects = self.retry(group.0, &e);
                self.next(d, now).with(effects)
            }
        }
    }

    fn plan_group(
        &mut self,
        d: DriverId,
        group: Group<R, S>,
        values: &Values,
        now: i64,
    ) -> Next<R, S> {
        let Some(state) = &self.state else {
            self.requeue(group.0);
            return Next::step(Step::Load { count_bytes: false });
        };
        let (verdicts, usage) = quota::admit(
            &self.limits.quota,
            state.usage,
            |k| state.is_live(k),
            state.live_keys(),
            group.0.iter().map(|p| p.op.writes.as_slice()),
            now,
        );
        let no_space = verdicts.iter().any(|v| {
            matches!(
                v,
                Err(SyncError::QuotaExceeded {
                    quota: Quota::Bytes,
                    ..
                })
            )
        });
        if no_space && !self.bytes_counted {
            // Count what D1 stores before refusing anyone for space.
            self.state = None;
            self.requeue(group.0);
            self.counting = true;
            return Next::step(Step::Load { count_bytes: true });
        }
        let mut refused = Vec::new();
        let mut admitted = Vec::with_capacity(group.len());
        for (p, verdict) in group.0.into_iter().zip(verdicts) {
            match verdict {
                Ok(()) => admitted.push(p),
                Err(e) => refused.push(Effect::Reply {
                    to: p.reply,
                    answer: Err(e),
                }),
            }
        }
        if admitted.is_empty() {
            return self.next(d, now).with(refused);
        }
        let group = Group(admitted);
        self.commits += 1;
        let mut plan = plan::plan(state, &group.ops(), now, values);
        plan.usage = usage;
        // What D1 will hold more: records store far less than the list
        // that was sent.
        plan.usage.bytes = state.usage.bytes.saturating_add(plan.stored_bytes());
        plan.commit_id = format!("{}-{}", self.nonce, self.commits);
        plan::choose_prune_keys(state, &mut plan, self.limits.history_prune_every);
        let every = self.limits.prune_every.max(1);
        if plan.cursor / every != plan.prev_cursor / every {
            plan.prune_requests_before = Some(now - REQUEST_ID_TTL_MS);
        }
        if plan.writes_anything() {
            Next {
                effects: refused,
                step: Step::Commit { group, plan },
            }
        } else {
            refused.extend(self.finish(group, plan));
            self.next(d, now).with(refused)
        }
    }

    pub fn committed(
        &mut self,
        d: DriverId,
        group: Group<R, S>,
        plan: Plan,
        result: Result<(), SyncError>,
        now: i64,
    ) -> Next<R, S> {
        match result {
            Ok(()) => {
                let effects = self.finish(group, plan);
                self.next(d, now).with(effects)
            }
            // Whatever D1 said, ask it what it holds.
            Err(_) => Next::step(Step::Check { group, plan }),
        }
    }

    pub fn checked(
        &mut self,
        d: DriverId,
        group: Group<R, S>,
        plan: Plan,
        check: Result<CommitCheck, SyncError>,
        now: i64,
    ) -> Next<R, S> {
        let effects = match check {
            Ok(c) if c.commit_id == plan.commit_id => self.finish(group, plan),
            Ok(c) => {
                let stale = (c.cursor, c.hist_seq) != (plan.prev_cursor, plan.prev_hist_seq);
                if stale {
                    self.state = None;
                }
                let mut effects = Vec::new();
                let mut rest = Vec::new();
                for p in group.0 {
                    match p.op.request_id.as_ref().and_then(|r| c.answers.get(r)) {
                        Some(stored) => effects.push(Effect::Reply {
                            answer: plan::replay(&p.op, Answer::Stored(stored.clone())),
                            to: p.reply,
                        }),
                        None => rest.push(p),
                    }
                }
                if stale || !effects.is_empty() {
                    // The failure is explained: the rest just go again.
                    self.requeue(rest);
                } else {
                    effects.extend(self.retry(rest, &SyncError::Unavailable));
                }
                effects
            }
            Err(e) => {
                // Nothing is known: reload, and let requestIds catch repeats.
                self.state = None;
                self.retry(group.0, &e)
            }
        };
        if self.resume(d, now) {
            self.next(d, now).with(effects)
        } else {
            Next {
                effects,
                step: Step::Done,
            }
        }
    }

    /// Answers and broadcasts a group whose plan D1 holds.
    fn finish(&mut self, group: Group<R, S>, plan: Plan) -> Vec<Effect<R, S>> {
        if !plan.prune_keys.is_empty() {
            // Retention may have freed space the state does not know of.
            self.bytes_counted = false;
        }
        match &mut self.state {
            Some(s) if s.is_base_of(&plan) => s.adopt(&plan),
            // Planned from a state replaced since (a takeover): reload.
            _ => self.state = None,
        }
        let mut sockets: Vec<Option<S>> = Vec::with_capacity(group.len());
        let mut effects = Vec::new();
        let mut replies = Vec::with_capacity(group.len());
        for p in group.0 {
            sockets.push(p.socket);
            replies.push(p.reply);
        }
        for (op, change) in plan.changes() {
            effects.push(Effect::Broadcast {
                change,
                except: sockets.get(op).cloned().flatten(),
            });
        }
        for (to, answer) in replies.into_iter().zip(plan.replies) {
            effects.push(Effect::Reply { to, answer });
        }
        effects
    }

    /// Puts ops back at the front of the queue, in their order.
    fn requeue(&mut self, ops: Vec<Pending<R, S>>) {
        for p in ops.into_iter().rev() {
            self.queue.push_front(p);
        }
    }

    /// Requeues ops for another try; those out of tries are answered `e`.
    fn retry(&mut self, ops: Vec<Pending<R, S>>, e: &SyncError) -> Vec<Effect<R, S>> {
        let mut again = Vec::new();
        let mut effects = Vec::new();
        for mut p in ops {
            p.attempts += 1;
            if p.attempts >= self.limits.max_attempts {
                effects.push(Effect::Reply {
                    to: p.reply,
                    answer: Err(e.clone()),
                });
            } else {
                again.push(p);
            }
        }
        self.requeue(again);
        effects
    }
}

/// The presence list: each connected device once, in a stable order.
pub fn presence(mut devices: Vec<PresenceDevice>) -> Vec<PresenceDevice> {
    devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    devices.dedup_by(|a, b| a.device_id == b.device_id);
    devices
}

/// A `hello {since}` from the future (the server's data was reset or
/// restored) gets the whole state instead of nothing.
pub fn catch_up_from(since: u64, cursor: u64) -> Option<u64> {
    (since > cursor).then_some(0)
}

#[cfg(test)]
mod tests;
