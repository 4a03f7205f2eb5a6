//! PCT (probabilistic concurrency testing): every owner of runnable work gets a random
//! priority, the highest-priority runnable lane always goes next, and at `depth - 1` random
//! lane decisions (the change points, among `horizon`) the owner about to run is demoted below
//! everyone. A bug that needs `depth - 1` preemptions is found in each run with probability at
//! least 1/(n·k^(depth-1)) for n owners and k decisions.
//!
//! The runnable lanes are kept ranked (a `BTreeSet` ordered by priority, then by the age of
//! their head) as the ready queue reports them ([`PctState::lane_ready`] and friends), so a
//! decision costs O(log n) in the runnable lanes, not a scan of all of them: with thousands of
//! runnable tasks a scan made PCT many times dearer than random scheduling.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use rustc_hash::FxHashMap;

use crate::policy::Owner;
use crate::ready::LaneKey;

/// Lane decisions in a row one owner may win under PCT before it is demoted (see
/// [`crate::Policy::Pct`]). Far above what a task that blocks now and then wins in a row, so
/// PCT's schedules of such tasks are untouched.
pub const PCT_MAX_STREAK: u32 = 64;

/// PCT priority bands, highest first: owners not yet demoted (`FRESH_BAND` and up, drawn at
/// random); owners demoted for a streak while only higher bands were in play (counting down
/// from `FRESH_BAND`); owners demoted at change points (`CHANGE_BAND + depth - k` for the
/// k-th change point); owners demoted for a streak while a change-point owner was in play
/// (counting down from `CHANGE_BAND`). A streak demotion always lands below every other
/// runnable owner, so the owner it waits for runs next.
const FRESH_BAND: u64 = 1 << 62;
pub(crate) const CHANGE_BAND: u64 = 1 << 40;

/// A runnable lane's rank: its owner's priority, then the older head first (the greater
/// `Reverse`), then the lane key (unique, so ranks never tie).
type Rank = (u64, Reverse<u64>, LaneKey);

pub(crate) struct PctState {
    depth: u32,
    /// Lane decisions in a row an owner may win before it is demoted.
    max_streak: u32,
    /// The owner that won the last lane decisions, and how many in a row.
    streak: (Owner, u32),
    /// The priorities the next owners demoted for a streak get, above and below the
    /// change-point band (each goes below the last).
    next_streak_priority: u64,
    next_floor_priority: u64,
    /// Lane decisions at which the chosen owner is demoted, ascending.
    change_points: Vec<u64>,
    next_change: usize,
    lane_decisions: u64,
    pub(crate) priorities: FxHashMap<Owner, u64>,
    /// The runnable lanes, lowest rank first.
    ranked: BTreeSet<Rank>,
    /// Each runnable lane's owner and head sequence number.
    lanes: FxHashMap<LaneKey, (Owner, u64)>,
    /// The runnable lanes of each owner (a demotion re-ranks them all).
    owner_lanes: FxHashMap<Owner, Vec<LaneKey>>,
}

impl PctState {
    /// The state of a run with bug depth `depth` (at least 1) over `horizon` lane decisions
    /// (at least 1); the change points take the generator's first draws.
    pub(crate) fn new(rng: &mut fastrand::Rng, depth: u32, horizon: u64, max_streak: u32) -> Self {
        let mut change_points: Vec<u64> = (1..depth).map(|_| rng.u64(1..=horizon)).collect();
        change_points.sort_unstable();
        Self {
            depth,
            max_streak,
            streak: (crate::policy::FRESH_OWNER, 0),
            next_streak_priority: FRESH_BAND - 1,
            next_floor_priority: CHANGE_BAND - 1,
            change_points,
            next_change: 0,
            lane_decisions: 0,
            priorities: FxHashMap::default(),
            ranked: BTreeSet::new(),
            lanes: FxHashMap::default(),
            owner_lanes: FxHashMap::default(),
        }
    }

    fn priority(&mut self, rng: &mut fastrand::Rng, owner: Owner) -> u64 {
        // Initial priorities live above every demoted one.
        *self.priorities.entry(owner).or_insert_with(|| FRESH_BAND + rng.u64(..FRESH_BAND))
    }

    /// `lane` became runnable, owned by `owner`, its head entry numbered `head`. An owner
    /// seen for the first time draws its priority now.
    pub(crate) fn lane_ready(&mut self, rng: &mut fastrand::Rng, lane: LaneKey, owner: Owner, head: u64) {
        let priority = self.priority(rng, owner);
        self.ranked.insert((priority, Reverse(head), lane));
        self.lanes.insert(lane, (owner, head));
        self.owner_lanes.entry(owner).or_default().push(lane);
    }

    /// `lane`'s head entry is now the one numbered `head`.
    pub(crate) fn lane_head(&mut self, lane: LaneKey, head: u64) {
        let Some(entry) = self.lanes.get_mut(&lane) else { return };
        let (owner, old) = *entry;
        entry.1 = head;
        let priority = self.priorities[&owner];
        self.ranked.remove(&(priority, Reverse(old), lane));
        self.ranked.insert((priority, Reverse(head), lane));
    }

    /// `lane` is no longer runnable.
    pub(crate) fn lane_gone(&mut self, lane: LaneKey) {
        let Some((owner, head)) = self.lanes.remove(&lane) else { return };
        self.ranked.remove(&(self.priorities[&owner], Reverse(head), lane));
        if let Some(lanes) = self.owner_lanes.get_mut(&owner) {
            lanes.retain(|other| *other != lane);
            if lanes.is_empty() {
                self.owner_lanes.remove(&owner);
            }
        }
    }

    /// No lane is runnable any more (owners keep their priorities).
    pub(crate) fn clear_lanes(&mut self) {
        self.ranked.clear();
        self.lanes.clear();
        self.owner_lanes.clear();
    }

    fn set_priority(&mut self, owner: Owner, priority: u64) {
        let old = self.priorities.insert(owner, priority);
        if let (Some(old), Some(lanes)) = (old, self.owner_lanes.get(&owner)) {
            for lane in lanes {
                let head = self.lanes[lane].1;
                self.ranked.remove(&(old, Reverse(head), *lane));
                self.ranked.insert((priority, Reverse(head), *lane));
            }
        }
    }

    /// The highest-ranked `eligible` lane. The caller guarantees one (the oldest head always
    /// is); with none, the highest-ranked lane, or 0 if no lane is runnable.
    fn best(&self, eligible: &impl Fn(LaneKey) -> bool) -> LaneKey {
        self.ranked
            .iter()
            .rev()
            .find(|rank| eligible(rank.2))
            .or_else(|| self.ranked.iter().next_back())
            .map_or(0, |rank| rank.2)
    }

    /// Makes a lane decision among the runnable lanes that are `eligible`: the lane to run.
    pub(crate) fn choose(&mut self, eligible: impl Fn(LaneKey) -> bool) -> LaneKey {
        self.lane_decisions += 1;
        let mut chosen = self.best(&eligible);
        while self.change_points.get(self.next_change) == Some(&self.lane_decisions) {
            // Demote the owner about to run below everyone; later change points go lower still.
            self.next_change += 1;
            let demoted = CHANGE_BAND + u64::from(self.depth) - self.next_change as u64;
            self.set_priority(self.owner_of(chosen), demoted);
            chosen = self.best(&eligible);
        }
        let owner = self.owner_of(chosen);
        self.streak = if self.streak.0 == owner { (owner, self.streak.1 + 1) } else { (owner, 1) };
        if self.streak.1 > self.max_streak {
            let lowest_other =
                self.ranked.iter().find(|rank| rank.2 != chosen && eligible(rank.2)).map_or(u64::MAX, |rank| rank.0);
            let counter = if lowest_other > CHANGE_BAND + u64::from(self.depth) {
                &mut self.next_streak_priority
            } else {
                &mut self.next_floor_priority
            };
            let lower = *counter;
            *counter = counter.saturating_sub(1);
            self.set_priority(owner, lower);
            chosen = self.best(&eligible);
            self.streak = (self.owner_of(chosen), 1);
        }
        chosen
    }

    fn owner_of(&self, lane: LaneKey) -> Owner {
        self.lanes.get(&lane).map_or(crate::policy::FRESH_OWNER, |entry| entry.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The ranked set agrees with the lanes and priorities it mirrors, and the best eligible
    /// lane is what a scan of all of them finds.
    fn check(state: &PctState, eligible: &impl Fn(LaneKey) -> bool) {
        let expected: BTreeSet<Rank> =
            state.lanes.iter().map(|(&lane, &(owner, head))| (state.priorities[&owner], Reverse(head), lane)).collect();
        assert_eq!(state.ranked, expected);
        let scanned = state
            .lanes
            .iter()
            .filter(|(lane, _)| eligible(**lane))
            .max_by_key(|(&lane, &(owner, head))| (state.priorities[&owner], Reverse(head), lane))
            .map(|(lane, _)| *lane);
        if let Some(lane) = scanned {
            assert_eq!(state.best(eligible), lane);
        }
    }

    proptest! {
        #[test]
        fn ranking_follows_every_lane_event(
            seed in any::<u64>(),
            depth in 1u32..5,
            events in proptest::collection::vec((0u8..4, 0u64..12, 0u64..5), 1..300),
        ) {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut state = PctState::new(&mut rng, depth, 50, 8);
            let mut next_head = 0u64;
            for (event, lane, owner) in events {
                next_head += 1;
                match event {
                    0 if !state.lanes.contains_key(&lane) => state.lane_ready(&mut rng, lane, owner, next_head),
                    1 if state.lanes.contains_key(&lane) => state.lane_head(lane, next_head),
                    2 => state.lane_gone(lane),
                    3 if !state.lanes.is_empty() => {
                        let chosen = state.choose(|key| key % 3 != 1 || key == 1);
                        prop_assert!(state.lanes.contains_key(&chosen));
                    }
                    _ => {}
                }
                check(&state, &|key| key % 3 != 1 || key == 1);
                check(&state, &|_| true);
            }
        }
    }
}
