//! Schedule strings, and the bounded exhaustive search over them.
//!
//! A schedule is the list of indices chosen at a run's decisions (see [`crate::policy`]). Index
//! 0 is stock asyncio's choice, so schedules are mostly zeros: the string stores only the
//! non-zero choices, each as (number of zeros before it, value) in LEB128 varints, base64url
//! without padding, after a version prefix. Trailing zeros are dropped: replaying past the end
//! of a schedule chooses 0. FIFO order is `q1-`; a run that deviated twice is about `q1-BwIDAQ`.
//!
//! A schedule read from a run also carries a [`TraceTag`] after a `.` (not a base64url
//! character): how many decisions the run had made, a digest of them (kind, options, choice)
//! and the CPython version it ran on. A replay compares its own decisions with the tag and so
//! notices a run that no longer matches the recorded one, even where every recorded index
//! still fits (asyncio itself scheduling differently on another Python, a changed test).
//! Strings without a tag, as written before tags existed, replay unchecked.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

const PREFIX: &str = "q1-";

/// The chosen indices of one run, kept sparse: only the decisions that strayed from stock
/// order, so a schedule takes memory in proportion to its string, whatever decision indices
/// the string names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    /// `(decision index, chosen index)` of every non-zero choice, in increasing decision order.
    deviations: Vec<(u64, u32)>,
    /// What the recorded run was, for a replay to check against (None: unchecked).
    tag: Option<TraceTag>,
}

/// What a schedule records of the run it came from, beyond its choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceTag {
    /// Decisions the run had made when its schedule was read.
    pub decisions: u64,
    /// A digest of those decisions (see [`TraceDigest`]).
    pub digest: u32,
    /// The interpreter the run ran on, as `100 * major + minor` (311 for CPython 3.11; 0 if
    /// unknown).
    pub flavour: u32,
}

/// FNV-1a over each decision's kind, options and choice: stable across platforms and Rust
/// versions (a schedule string outlives both), and a few instructions per decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceDigest(u64);

impl Default for TraceDigest {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl TraceDigest {
    /// Adds one decision.
    pub fn add(&mut self, kind: u8, options: u32, chosen: u32) {
        let mut hash = self.0;
        for byte in [kind].into_iter().chain(options.to_le_bytes()).chain(chosen.to_le_bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = hash;
    }

    /// The digest as a schedule string stores it.
    pub fn value(self) -> u32 {
        (self.0 ^ (self.0 >> 32)) as u32
    }
}

/// Why a schedule string could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScheduleError {
    /// It does not start with the version prefix.
    Prefix,
    /// The part after the prefix is not base64url.
    Base64,
    /// The varints are cut short or out of range.
    Truncated,
}

impl std::fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScheduleError::Prefix => write!(f, "a quiesce schedule starts with {PREFIX:?}"),
            ScheduleError::Base64 => write!(f, "the part after {PREFIX:?} is not base64url text"),
            ScheduleError::Truncated => write!(f, "the schedule is cut short or corrupted"),
        }
    }
}

impl std::error::Error for ScheduleError {}

impl Schedule {
    /// A schedule from the chosen indices of every decision (zeros are stock order).
    pub fn from_choices(choices: Vec<u32>) -> Self {
        let deviations = choices
            .into_iter()
            .enumerate()
            .filter(|&(_, chosen)| chosen != 0)
            .map(|(index, chosen)| (index as u64, chosen))
            .collect();
        Self { deviations, tag: None }
    }

    /// A schedule from its deviations, `(decision index, chosen index)`; zero choices are
    /// dropped. `None` if the decision indices are not strictly increasing.
    pub fn from_deviations(deviations: Vec<(u64, u32)>) -> Option<Self> {
        let deviations: Vec<(u64, u32)> = deviations.into_iter().filter(|&(_, chosen)| chosen != 0).collect();
        if deviations.windows(2).any(|pair| pair[0].0 >= pair[1].0) {
            return None;
        }
        Some(Self { deviations, tag: None })
    }

    /// This schedule with the tag of the run it came from.
    pub fn with_tag(mut self, tag: TraceTag) -> Self {
        self.tag = Some(tag);
        self
    }

    /// The tag of the recorded run, if the string had one.
    pub fn tag(&self) -> Option<TraceTag> {
        self.tag
    }

    /// The non-zero choices, `(decision index, chosen index)`, in decision order.
    pub fn deviations(&self) -> &[(u64, u32)] {
        &self.deviations
    }

    /// The choice recorded at decision `index` (0, stock order, where none is).
    pub fn choice_at(&self, index: u64) -> u32 {
        match self.deviations.binary_search_by_key(&index, |&(at, _)| at) {
            Ok(found) => self.deviations[found].1,
            Err(_) => 0,
        }
    }

    /// How far the schedule strays from stock order: the sum of its choices (a choice of
    /// index k passes over k older pieces of work).
    pub fn delays(&self) -> u64 {
        self.deviations.iter().map(|&(_, chosen)| u64::from(chosen)).sum()
    }

    /// The schedule string, e.g. `q1-AwI`.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::new();
        let mut next: u64 = 0;
        for &(index, chosen) in &self.deviations {
            push_varint(&mut bytes, index - next);
            push_varint(&mut bytes, u64::from(chosen));
            next = index + 1;
        }
        let mut text = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        if let Some(tag) = self.tag {
            let mut bytes = Vec::new();
            push_varint(&mut bytes, tag.decisions);
            push_varint(&mut bytes, u64::from(tag.flavour));
            bytes.extend(tag.digest.to_le_bytes());
            text.push('.');
            text.push_str(&URL_SAFE_NO_PAD.encode(bytes));
        }
        text
    }

    /// Reads a schedule string (surrounding whitespace is ignored). Takes memory in
    /// proportion to the string: a run of zeros, however long, is one number.
    pub fn decode(text: &str) -> Result<Self, ScheduleError> {
        let text = text.trim().strip_prefix(PREFIX).ok_or(ScheduleError::Prefix)?;
        let (body, tag) = match text.split_once('.') {
            Some((body, tag)) => (body, Some(decode_tag(tag)?)),
            None => (text, None),
        };
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| ScheduleError::Base64)?;
        let mut deviations = Vec::new();
        let mut rest = bytes.as_slice();
        let mut next: u64 = 0;
        while !rest.is_empty() {
            let zeros = take_varint(&mut rest)?;
            let value = u32::try_from(take_varint(&mut rest)?).map_err(|_| ScheduleError::Truncated)?;
            if value == 0 {
                return Err(ScheduleError::Truncated);
            }
            let index = next.checked_add(zeros).ok_or(ScheduleError::Truncated)?;
            deviations.push((index, value));
            next = index.checked_add(1).ok_or(ScheduleError::Truncated)?;
        }
        Ok(Self { deviations, tag })
    }
}

fn decode_tag(text: &str) -> Result<TraceTag, ScheduleError> {
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| ScheduleError::Base64)?;
    let mut rest = bytes.as_slice();
    let decisions = take_varint(&mut rest)?;
    let flavour = u32::try_from(take_varint(&mut rest)?).map_err(|_| ScheduleError::Truncated)?;
    let digest: [u8; 4] = rest.try_into().map_err(|_| ScheduleError::Truncated)?;
    Ok(TraceTag { decisions, digest: u32::from_le_bytes(digest), flavour })
}

fn push_varint(bytes: &mut Vec<u8>, mut value: u64) {
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            bytes.push(low);
            return;
        }
        bytes.push(low | 0x80);
    }
}

/// A LEB128 varint of at most 64 bits (10 bytes); a longer one is corrupt.
fn take_varint(rest: &mut &[u8]) -> Result<u64, ScheduleError> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&byte, tail) = rest.split_first().ok_or(ScheduleError::Truncated)?;
        *rest = tail;
        let bits = u64::from(byte & 0x7f);
        if shift == 63 && bits > 1 {
            return Err(ScheduleError::Truncated);
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(ScheduleError::Truncated)
}

/// Bounded exhaustive search: given the decisions of the run just made, as `(options,
/// chosen)` pairs, the prefix of choices for the next run in depth-first order among all
/// schedules of at most `bound` delays (see [`Schedule::delays`]), or `None` when every one has
/// been run. The next run replays the prefix and chooses 0 after it.
///
/// Starting from the all-zero (stock) run, repeatedly feeding each run's decisions back visits
/// every schedule within the bound exactly once, provided the program is deterministic.
pub fn next_bounded(decisions: &[(u32, u32)], bound: u64) -> Option<Vec<u32>> {
    let mut spent: u64 = decisions.iter().map(|&(_, chosen)| u64::from(chosen)).sum();
    for index in (0..decisions.len()).rev() {
        let (options, chosen) = decisions[index];
        spent -= u64::from(chosen);
        if chosen + 1 < options && spent + u64::from(chosen) < bound {
            let mut prefix: Vec<u32> = decisions[..index].iter().map(|&(_, c)| c).collect();
            prefix.push(chosen + 1);
            return Some(prefix);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stock_order_is_the_bare_prefix() {
        assert_eq!(Schedule::from_choices(vec![0, 0, 0]).encode(), "q1-");
        assert_eq!(Schedule::decode("q1-").unwrap().deviations(), &[] as &[(u64, u32)]);
    }

    #[test]
    fn bad_strings_say_why() {
        assert_eq!(Schedule::decode("x"), Err(ScheduleError::Prefix));
        assert_eq!(Schedule::decode("q1-***"), Err(ScheduleError::Base64));
        assert_eq!(Schedule::decode("q1-gA"), Err(ScheduleError::Truncated));
    }

    #[test]
    fn a_long_run_of_zeros_is_one_number_not_an_allocation() {
        // Once expanded eagerly: 4 billion zeros, 16 GiB, and the interpreter aborted.
        let schedule = Schedule::decode("q1-_____w8B").unwrap();
        assert_eq!(schedule.deviations(), &[(u64::from(u32::MAX), 1)]);
        assert_eq!(schedule.choice_at(u64::from(u32::MAX)), 1);
        assert_eq!(schedule.choice_at(7), 0);
        assert_eq!(Schedule::decode(&schedule.encode()).unwrap(), schedule);
        // Decision indices past u64 are corrupt, not wrapped.
        let huge = Schedule::from_deviations(vec![(u64::MAX - 1, 1)]).unwrap().encode();
        assert!(Schedule::decode(&huge).is_ok());
        let mut bytes = Vec::new();
        push_varint(&mut bytes, u64::MAX);
        push_varint(&mut bytes, 1);
        push_varint(&mut bytes, 0);
        push_varint(&mut bytes, 1);
        let overflow = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        assert_eq!(Schedule::decode(&overflow), Err(ScheduleError::Truncated));
        assert_eq!(Schedule::decode("q1-_____________w"), Err(ScheduleError::Truncated));
    }

    #[test]
    fn a_tag_round_trips_and_old_strings_have_none() {
        let tag = TraceTag { decisions: 70_000, digest: 0xdead_beef, flavour: 313 };
        let schedule = Schedule::from_choices(vec![0, 2, 0, 1]).with_tag(tag);
        let text = schedule.encode();
        assert!(text.starts_with("q1-AQIBAQ."), "{text}");
        assert_eq!(Schedule::decode(&text).unwrap(), schedule);
        assert_eq!(Schedule::decode(&text).unwrap().tag(), Some(tag));
        assert_eq!(Schedule::decode("q1-AQIBAQ").unwrap().tag(), None);
        assert_eq!(Schedule::decode("q1-AQIBAQ.AA"), Err(ScheduleError::Truncated));
        assert_eq!(Schedule::decode("q1-AQIBAQ.*"), Err(ScheduleError::Base64));
    }

    #[test]
    fn the_digest_sees_every_part_of_a_decision() {
        let digest = |decisions: &[(u8, u32, u32)]| {
            let mut digest = TraceDigest::default();
            for &(kind, options, chosen) in decisions {
                digest.add(kind, options, chosen);
            }
            digest.value()
        };
        let base = digest(&[(0, 2, 1), (1, 3, 0)]);
        assert_eq!(base, digest(&[(0, 2, 1), (1, 3, 0)]));
        for other in [[(1, 2, 1), (1, 3, 0)], [(0, 3, 1), (1, 3, 0)], [(0, 2, 0), (1, 3, 0)], [(1, 3, 0), (0, 2, 1)]] {
            assert_ne!(base, digest(&other));
        }
    }

    #[test]
    fn deviations_must_increase() {
        assert!(Schedule::from_deviations(vec![(3, 1), (3, 2)]).is_none());
        assert!(Schedule::from_deviations(vec![(3, 1), (2, 2)]).is_none());
        assert_eq!(Schedule::from_deviations(vec![(1, 0), (3, 2)]).unwrap().deviations(), &[(3, 2)]);
    }

    proptest! {
        #[test]
        fn encoding_round_trips(choices in proptest::collection::vec(prop_oneof![3 => Just(0u32), 1 => 0u32..300], 0..200)) {
            let schedule = Schedule::from_choices(choices.clone());
            let decoded = Schedule::decode(&schedule.encode()).unwrap();
            prop_assert_eq!(&decoded, &schedule);
            for (index, chosen) in choices.iter().enumerate() {
                prop_assert_eq!(decoded.choice_at(index as u64), *chosen);
            }
        }

        #[test]
        fn any_string_decodes_within_its_own_size(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            // Arbitrary bytes, as a pasted string might hold: an error or a schedule whose
            // memory is bounded by the input (each deviation takes at least two bytes).
            let text = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&bytes));
            if let Ok(schedule) = Schedule::decode(&text) {
                prop_assert!(schedule.deviations().len() * 2 <= bytes.len());
                // A vector's growth at most doubles its length (and starts at 4 entries).
                prop_assert!(schedule.deviations.capacity() <= bytes.len().max(4));
                prop_assert_eq!(Schedule::decode(&schedule.encode()).unwrap(), schedule);
            }
        }
    }

    /// A toy deterministic program: `depth` decisions of `width` options each.
    fn run(prefix: &[u32], width: u32, depth: usize) -> Vec<(u32, u32)> {
        (0..depth).map(|i| (width, prefix.get(i).copied().unwrap_or(0))).collect()
    }

    fn visit_all(width: u32, depth: usize, bound: u64) -> Vec<Vec<u32>> {
        let mut seen = vec![];
        let mut prefix = vec![];
        loop {
            let decisions = run(&prefix, width, depth);
            seen.push(decisions.iter().map(|d| d.1).collect::<Vec<_>>());
            match next_bounded(&decisions, bound) {
                Some(next) => prefix = next,
                None => return seen,
            }
        }
    }

    #[test]
    fn bounded_search_visits_each_schedule_within_the_bound_once() {
        let seen = visit_all(3, 4, 2);
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "no schedule twice");
        // Sequences of 4 choices in 0..3 with sum <= 2: 1 (sum 0) + 4*2 (one 1 or one 2)... count directly.
        let expected = (0..81u32)
            .map(|n| (0..4).map(|i| (n / 3u32.pow(i)) % 3).collect::<Vec<_>>())
            .filter(|v| v.iter().sum::<u32>() <= 2)
            .count();
        assert_eq!(seen.len(), expected);
        assert!(seen.iter().all(|v| v.iter().sum::<u32>() <= 2));
        assert_eq!(visit_all(2, 5, 0).len(), 1, "bound 0 is the stock run alone");
    }
}
