//! Scheduling policies: who decides each scheduling choice, and the log of what was decided.
//!
//! A *decision* is any point where the loop had more than one correct thing to do next: which
//! lane of runnable work goes first ([`DecisionKind::Lane`]), in which order timers due at the
//! same instant fire ([`DecisionKind::TimerTie`]), whether a fault point fires
//! ([`DecisionKind::Fault`]). Every decision is a choice of an index in `0..options`, and index
//! 0 is always what stock asyncio would do: the oldest runnable work first, ties in scheduling
//! order, no fault. A run under any policy is therefore fully described by its list of chosen
//! indices, which is what a schedule string encodes (see [`crate::schedule`]), and the zeros
//! (the default) cost nothing to store.

use crate::pct::PctState;
pub use crate::pct::PCT_MAX_STREAK;
use crate::ready::LaneKey;
use crate::schedule::{Schedule, TraceDigest, TraceTag};

/// Identifies who a lane's work belongs to, for policies that keep per-owner state (PCT gives
/// each owner a priority). The binding passes a task's ordinal; [`FRESH_OWNER`] lets the queue
/// assign a new one.
pub type Owner = u64;

/// "No known owner": the queue assigns a fresh one when the lane appears.
pub const FRESH_OWNER: Owner = 0;

/// The owner of plain callbacks (one lane, one priority for the whole run).
pub const PLAIN_OWNER: Owner = u64::MAX;

/// Fresh owners are numbered from here, so they never meet the binding's task ordinals.
const FIRST_FRESH_OWNER: Owner = 1 << 62;

/// What a decision was about.
/// (The discriminants go into schedule digests: keep them.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DecisionKind {
    /// Which lane of runnable work goes next (index into the lanes, oldest head first).
    Lane = 0,
    /// Which of the timers due at one instant fires next (index into those left, in
    /// scheduling order).
    TimerTie = 1,
    /// Whether a fault point (`buggify`, hold points) fires: 0 no, 1 yes.
    Fault = 2,
}

impl DecisionKind {
    /// A short stable name, for logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            DecisionKind::Lane => "lane",
            DecisionKind::TimerTie => "timer-tie",
            DecisionKind::Fault => "fault",
        }
    }
}

/// One recorded decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    pub kind: DecisionKind,
    /// How many options there were (at least 2; a forced move is not a decision).
    pub options: u32,
    /// The index chosen; 0 is stock asyncio's choice.
    pub chosen: u32,
    /// The loop's virtual time when it was made.
    pub time: f64,
}

/// The deepest PCT bug depth a chooser takes: PCT draws `depth - 1` change points up front,
/// so the depth bounds that allocation; bugs deeper than a handful of preemptions are beyond
/// what PCT's guarantee makes findable anyway.
pub const MAX_PCT_DEPTH: u32 = 1024;

/// How choices are made.
#[derive(Clone, Debug, PartialEq)]
pub enum Policy {
    /// Always index 0: stock asyncio's order. Nothing is logged.
    Fifo,
    /// Uniformly random choices from a seeded generator.
    Random { seed: u64 },
    /// Probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010): each owner gets a
    /// random priority, the highest-priority runnable lane always goes next, and at `depth - 1`
    /// random decision points the running owner drops below everyone else. `horizon` is the
    /// expected number of lane decisions in a run (the change points are drawn from it).
    ///
    /// Strict priorities starve: a task polling in a loop (`while not ready: await
    /// asyncio.sleep(0)`) would win every decision and never let the task it waits for run,
    /// a livelock no fair asyncio loop has. So an owner that wins `max_streak` lane
    /// decisions in a row ([`PCT_MAX_STREAK`] by default) drops below every owner not yet
    /// demoted (but above those demoted at change points), as PCT implementations demote a
    /// thread that yields. A larger `max_streak` lets one task run further ahead of the
    /// others (a starved releaser), while a fair polling loop still ends.
    Pct { seed: u64, depth: u32, horizon: u64, max_streak: u32 },
    /// Replays recorded choices; after the last one, index 0.
    Replay(Schedule),
}

impl Policy {
    /// The stock-order policy.
    pub fn is_fifo(&self) -> bool {
        matches!(self, Policy::Fifo)
    }
}

/// Where a replayed schedule stopped fitting the run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mismatch {
    /// Index of the decision in the run's log.
    pub index: usize,
    pub kind: DecisionKind,
    /// The recorded choice, which was not below `options`.
    pub recorded: u32,
    pub options: u32,
}

enum Strategy {
    Fifo,
    Random,
    Pct(Box<PctState>),
    Replay(ReplayState),
}

/// Where a replay is in its schedule.
struct ReplayState {
    schedule: Schedule,
    /// The digest of this run's decisions when it had made as many as the recorded run.
    digest_at_recorded: Option<u32>,
    /// Decisions replayed so far (the log may be cleared during a run; this is not).
    decided: u64,
    /// The first deviation of the schedule not reached yet.
    next: usize,
}

/// Makes and logs the decisions of one run under a [`Policy`].
pub struct Chooser {
    strategy: Strategy,
    rng: fastrand::Rng,
    log: Vec<Decision>,
    now: f64,
    mismatch: Option<Mismatch>,
    next_fresh_owner: Owner,
    /// Decisions made in this run (the log may be cleared; this is not), and their digest.
    decided: u64,
    digest: TraceDigest,
    /// The interpreter, for the tags of schedules read from this run.
    flavour: u32,
}

/// How a replayed run differs from the run its schedule was recorded from, beyond a choice
/// that no longer fits (see [`Chooser::drift`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drift {
    /// What the schedule recorded.
    pub recorded: TraceTag,
    /// Decisions this run made.
    pub decisions: u64,
}

impl Chooser {
    /// A chooser for one run under `policy`.
    pub fn new(policy: Policy) -> Self {
        let (strategy, seed) = match policy {
            Policy::Fifo => (Strategy::Fifo, 0),
            Policy::Random { seed } => (Strategy::Random, seed),
            Policy::Pct { seed, depth, horizon, max_streak } => {
                let mut rng = fastrand::Rng::with_seed(seed);
                let depth = depth.clamp(1, MAX_PCT_DEPTH);
                let state = PctState::new(&mut rng, depth, horizon.max(1), max_streak.max(1));
                return Self::with(Strategy::Pct(Box::new(state)), rng);
            }
            Policy::Replay(schedule) => {
                (Strategy::Replay(ReplayState { schedule, digest_at_recorded: None, decided: 0, next: 0 }), 0)
            }
        };
        Self::with(strategy, fastrand::Rng::with_seed(seed))
    }

    fn with(strategy: Strategy, rng: fastrand::Rng) -> Self {
        Self {
            strategy,
            rng,
            log: Vec::new(),
            now: 0.0,
            mismatch: None,
            next_fresh_owner: FIRST_FRESH_OWNER,
            decided: 0,
            digest: TraceDigest::default(),
            flavour: 0,
        }
    }

    /// Whether every choice is index 0 (nothing to decide, nothing to log).
    pub fn is_fifo(&self) -> bool {
        matches!(self.strategy, Strategy::Fifo)
    }

    /// Whether lane owners matter (only PCT keeps per-owner state).
    pub fn uses_owners(&self) -> bool {
        matches!(self.strategy, Strategy::Pct(_))
    }

    /// Sets the time stamped on the next decisions.
    pub fn set_time(&mut self, now: f64) {
        self.now = now;
    }

    /// A new owner id for a lane whose owner the binding did not name.
    pub fn fresh_owner(&mut self) -> Owner {
        self.next_fresh_owner += 1;
        self.next_fresh_owner
    }

    /// The decisions made so far, in order.
    pub fn log(&self) -> &[Decision] {
        &self.log
    }

    /// Forgets the decisions made so far (their memory too); later ones are logged anew.
    pub fn clear_log(&mut self) {
        self.log = Vec::new();
    }

    /// Names the interpreter for the tags of the schedules read from this run (`100 * major
    /// + minor`).
    pub fn set_flavour(&mut self, flavour: u32) {
        self.flavour = flavour;
    }

    /// The chosen indices so far, as a replayable schedule tagged with this run's decisions
    /// (untagged if it made none: stock order has nothing to check).
    pub fn schedule(&self) -> Schedule {
        let schedule = Schedule::from_choices(self.log.iter().map(|d| d.chosen).collect());
        if self.decided == 0 {
            return schedule;
        }
        schedule.with_tag(TraceTag { decisions: self.decided, digest: self.digest.value(), flavour: self.flavour })
    }

    /// For a replay of a tagged schedule, once the run is over: whether it made other
    /// decisions than the recorded run (fewer, or others by kind, options or choice), though
    /// every recorded choice may have fit.
    pub fn drift(&self) -> Option<Drift> {
        let Strategy::Replay(replay) = &self.strategy else { return None };
        let recorded = replay.schedule.tag()?;
        if self.decided >= recorded.decisions && replay.digest_at_recorded == Some(recorded.digest) {
            return None;
        }
        Some(Drift { recorded, decisions: self.decided })
    }

    /// The first point where a replayed schedule did not fit: a recorded index out of range,
    /// or (with `options` 0) a recorded non-default choice this run never reached.
    pub fn mismatch(&self) -> Option<Mismatch> {
        if self.mismatch.is_some() {
            return self.mismatch;
        }
        match &self.strategy {
            Strategy::Replay(replay) => replay.schedule.deviations().get(replay.next).map(|&(_, recorded)| Mismatch {
                index: self.log.len(),
                kind: DecisionKind::Lane,
                recorded,
                options: 0,
            }),
            _ => None,
        }
    }

    /// Chooses which of `options` lanes runs next; `owner_of(i)` is the owner of lane `i`
    /// (lanes ordered oldest head first). Under PCT this ranks the lanes anew at each call;
    /// a ready queue keeps them ranked instead (the lane events below and
    /// [`Chooser::choose_ranked_lane`]).
    pub fn choose_lane(&mut self, options: usize, owner_of: impl Fn(usize) -> Owner) -> usize {
        debug_assert!(options >= 2);
        let Strategy::Pct(pct) = &mut self.strategy else {
            return self.choose(DecisionKind::Lane, options as u32) as usize;
        };
        for index in 0..options {
            pct.lane_ready(&mut self.rng, index as LaneKey, owner_of(index), index as u64);
        }
        let chosen = pct.choose(|_| true) as usize;
        pct.clear_lanes();
        self.record(DecisionKind::Lane, options as u32, chosen as u32);
        chosen
    }

    /// A lane became runnable: its owner and the sequence number of its head entry (only
    /// PCT keeps lanes ranked; for the others this does nothing).
    pub fn lane_ready(&mut self, lane: LaneKey, owner: Owner, head: u64) {
        if let Strategy::Pct(pct) = &mut self.strategy {
            pct.lane_ready(&mut self.rng, lane, owner, head);
        }
    }

    /// A runnable lane's head entry changed (the old one ran).
    pub fn lane_head(&mut self, lane: LaneKey, head: u64) {
        if let Strategy::Pct(pct) = &mut self.strategy {
            pct.lane_head(lane, head);
        }
    }

    /// A lane ran out of entries.
    pub fn lane_gone(&mut self, lane: LaneKey) {
        if let Strategy::Pct(pct) = &mut self.strategy {
            pct.lane_gone(lane);
        }
    }

    /// Every lane was emptied at once.
    pub fn lanes_cleared(&mut self) {
        if let Strategy::Pct(pct) = &mut self.strategy {
            pct.clear_lanes();
        }
    }

    /// Under PCT, with its lanes kept ranked by the lane events: chooses which of the
    /// `options` runnable lanes that are `eligible` runs next, in O(log n), and logs the
    /// choice as `index_of(lane)`, the lane's index among the options (oldest head first).
    /// Under another policy, [`Chooser::choose_lane`]'s choice.
    pub fn choose_ranked_lane(
        &mut self,
        options: usize,
        eligible: impl Fn(LaneKey) -> bool,
        index_of: impl Fn(LaneKey) -> usize,
    ) -> usize {
        debug_assert!(options >= 2);
        let Strategy::Pct(pct) = &mut self.strategy else {
            return self.choose(DecisionKind::Lane, options as u32) as usize;
        };
        let chosen = index_of(pct.choose(eligible));
        self.record(DecisionKind::Lane, options as u32, chosen as u32);
        chosen
    }

    /// Chooses an index in `0..options` for a decision of `kind` (uniformly, under the random
    /// policies).
    pub fn choose(&mut self, kind: DecisionKind, options: u32) -> u32 {
        debug_assert!(options >= 2);
        let chosen = match &mut self.strategy {
            Strategy::Fifo => return 0,
            Strategy::Random | Strategy::Pct(_) => self.rng.u32(0..options),
            Strategy::Replay(_) => self.replayed(kind, options),
        };
        self.record(kind, options, chosen);
        chosen
    }

    /// Whether a fault point with firing `probability` fires.
    pub fn fault(&mut self, probability: f64) -> bool {
        let fired = match &mut self.strategy {
            Strategy::Fifo => return false,
            Strategy::Random | Strategy::Pct(_) => self.rng.f64() < probability,
            Strategy::Replay(_) => self.replayed(DecisionKind::Fault, 2) == 1,
        };
        self.record(DecisionKind::Fault, 2, u32::from(fired));
        fired
    }

    fn replayed(&mut self, kind: DecisionKind, options: u32) -> u32 {
        let Strategy::Replay(replay) = &mut self.strategy else { return 0 };
        let index = replay.decided;
        replay.decided += 1;
        let recorded = match replay.schedule.deviations().get(replay.next) {
            Some(&(at, chosen)) if at == index => {
                replay.next += 1;
                chosen
            }
            _ => 0,
        };
        if recorded < options {
            return recorded;
        }
        if self.mismatch.is_none() {
            self.mismatch = Some(Mismatch { index: self.log.len(), kind, recorded, options });
        }
        0
    }

    fn record(&mut self, kind: DecisionKind, options: u32, chosen: u32) {
        self.log.push(Decision { kind, options, chosen, time: self.now });
        self.decided += 1;
        self.digest.add(kind as u8, options, chosen);
        if let Strategy::Replay(replay) = &mut self.strategy {
            if replay.schedule.tag().map(|tag| tag.decisions) == Some(self.decided) {
                replay.digest_at_recorded = Some(self.digest.value());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pct::CHANGE_BAND;

    #[test]
    fn fifo_always_picks_the_default_and_logs_nothing() {
        let mut c = Chooser::new(Policy::Fifo);
        assert_eq!(c.choose_lane(3, |i| i as u64), 0);
        assert_eq!(c.choose(DecisionKind::TimerTie, 4), 0);
        assert!(!c.fault(1.0));
        assert!(c.log().is_empty());
    }

    #[test]
    fn random_is_reproducible_and_logged() {
        let draw = |seed| {
            let mut c = Chooser::new(Policy::Random { seed });
            let picks: Vec<usize> = (0..50).map(|_| c.choose_lane(5, |i| i as u64)).collect();
            (picks, c.schedule())
        };
        let (a, schedule) = draw(9);
        assert_eq!(draw(9).0, a);
        assert_ne!(draw(10).0, a);
        let mut replay = Chooser::new(Policy::Replay(schedule));
        let again: Vec<usize> = (0..50).map(|_| replay.choose_lane(5, |i| i as u64)).collect();
        assert_eq!(again, a);
        assert_eq!(replay.mismatch(), None);
    }

    #[test]
    fn a_replay_notices_a_run_that_decides_differently() {
        let record = |options: u32| {
            let mut c = Chooser::new(Policy::Random { seed: 4 });
            c.set_flavour(311);
            for _ in 0..20 {
                c.choose(DecisionKind::Lane, options);
            }
            c.schedule()
        };
        let schedule = record(3);
        assert_eq!(schedule.tag().map(|tag| (tag.decisions, tag.flavour)), Some((20, 311)));
        let replay = |schedule: &Schedule, options: u32, decisions: usize| {
            let mut c = Chooser::new(Policy::Replay(schedule.clone()));
            for _ in 0..decisions {
                c.choose(DecisionKind::Lane, options);
            }
            c.drift()
        };
        assert_eq!(replay(&schedule, 3, 20), None, "the same run");
        assert_eq!(replay(&schedule, 3, 25), None, "more decisions after the recorded ones");
        let fewer = replay(&schedule, 3, 12).expect("fewer decisions");
        assert_eq!(fewer.decisions, 12);
        // Every recorded choice (< 3) fits 4 options, but the runs differ.
        assert!(replay(&schedule, 4, 20).is_some());
        // An untagged schedule is not checked.
        let untagged = Schedule::from_deviations(schedule.deviations().to_vec()).unwrap();
        assert_eq!(replay(&untagged, 4, 20), None);
    }

    #[test]
    fn replay_reports_a_choice_that_no_longer_fits() {
        let mut c = Chooser::new(Policy::Replay(Schedule::from_choices(vec![0, 3])));
        assert_eq!(c.choose(DecisionKind::Lane, 2), 0);
        assert_eq!(c.choose(DecisionKind::Lane, 2), 0);
        let mismatch = c.mismatch().expect("recorded 3 of 2 options");
        assert_eq!((mismatch.index, mismatch.recorded, mismatch.options), (1, 3, 2));
        assert_eq!(c.choose(DecisionKind::Lane, 2), 0, "past the recording: the default");

        let short = Chooser::new(Policy::Replay(Schedule::from_choices(vec![0, 2])));
        let unused = short.mismatch().expect("the run ended before the recorded choices");
        assert_eq!((unused.index, unused.recorded, unused.options), (0, 2, 0));
    }

    #[test]
    fn pct_runs_the_highest_priority_owner_until_a_change_point() {
        // Depth 1: no change points, so one owner keeps winning whatever the lane order.
        let mut c = Chooser::new(Policy::Pct { seed: 3, depth: 1, horizon: 10, max_streak: PCT_MAX_STREAK });
        let first = c.choose_lane(3, |i| [10, 20, 30][i]);
        let owner = [10, 20, 30][first];
        for rotation in 0..3 {
            let owners = [[10, 20, 30], [20, 30, 10], [30, 10, 20]][rotation];
            let pick = c.choose_lane(3, |i| owners[i]);
            assert_eq!(owners[pick], owner);
        }
        // Depth 2 with horizon 1: the change point is the first decision, so the owner that
        // would have run first is demoted there and loses to everyone from then on.
        let mut c = Chooser::new(Policy::Pct { seed: 3, depth: 2, horizon: 1, max_streak: PCT_MAX_STREAK });
        let pick = [10, 20, 30][c.choose_lane(3, |i| [10, 20, 30][i])];
        let Strategy::Pct(state) = &c.strategy else { unreachable!() };
        let demoted: Vec<Owner> =
            state.priorities.iter().filter(|(_, p)| **p < CHANGE_BAND + 2).map(|(o, _)| *o).collect();
        assert_eq!(demoted.len(), 1);
        assert_ne!(demoted[0], pick);
        for _ in 0..5 {
            assert_ne!([10, 20, 30][c.choose_lane(3, |i| [10, 20, 30][i])], demoted[0]);
        }
    }

    #[test]
    fn pct_demotes_an_owner_that_wins_too_many_decisions_in_a_row() {
        // Whatever the seed, the owner that keeps winning (a task polling in a loop) gives way
        // after PCT_MAX_STREAK decisions, and the other owner gets to run.
        for seed in 0..20 {
            let mut c = Chooser::new(Policy::Pct { seed, depth: 1, horizon: 10, max_streak: PCT_MAX_STREAK });
            let picks: Vec<usize> = (0..=PCT_MAX_STREAK as usize).map(|_| c.choose_lane(2, |i| [7, 8][i])).collect();
            let first = picks[0];
            assert!(picks[..PCT_MAX_STREAK as usize].iter().all(|p| *p == first), "seed {seed}");
            assert_ne!(picks[PCT_MAX_STREAK as usize], first, "seed {seed}: the streak was not broken");
            // Both now demoted for streaks in turn: they keep alternating in bursts, never starve.
            let later: Vec<usize> = (0..4 * PCT_MAX_STREAK as usize).map(|_| c.choose_lane(2, |i| [7, 8][i])).collect();
            assert!(later.contains(&0) && later.contains(&1), "seed {seed}");
        }
    }

    #[test]
    fn pct_streak_demotion_goes_below_a_change_point_owner_it_waits_for() {
        // Depth 2, horizon 1: the first decision's owner is demoted at the change point; the
        // other one then wins a streak (polling for the demoted one, say) and must give way.
        let mut c = Chooser::new(Policy::Pct { seed: 5, depth: 2, horizon: 1, max_streak: PCT_MAX_STREAK });
        let owners = [1, 2];
        let winner = owners[c.choose_lane(2, |i| owners[i])];
        for _ in 0..PCT_MAX_STREAK - 1 {
            assert_eq!(owners[c.choose_lane(2, |i| owners[i])], winner);
        }
        assert_ne!(owners[c.choose_lane(2, |i| owners[i])], winner);
    }

    #[test]
    fn pct_streak_demotion_keeps_other_owners_order() {
        // Three owners; the top one streaks and drops below both others, which keep their
        // relative order (the second-highest runs next, not the lowest).
        let mut c = Chooser::new(Policy::Pct { seed: 11, depth: 1, horizon: 10, max_streak: PCT_MAX_STREAK });
        let owners = [1, 2, 3];
        let top = owners[c.choose_lane(3, |i| owners[i])];
        for _ in 0..PCT_MAX_STREAK - 1 {
            c.choose_lane(3, |i| owners[i]);
        }
        let second = owners[c.choose_lane(3, |i| owners[i])];
        assert_ne!(second, top);
        let Strategy::Pct(state) = &c.strategy else { unreachable!() };
        let others: Vec<u64> = owners.iter().filter(|o| **o != top).map(|o| state.priorities[o]).collect();
        assert!(others.iter().all(|p| *p > state.priorities[&top]));
        assert_eq!(state.priorities[&second], *others.iter().max().unwrap());
    }
}
