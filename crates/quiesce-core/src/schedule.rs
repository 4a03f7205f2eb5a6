//! Schedule strings, and the bounded exhaustive search over them.
//!
//! A schedule is the list of indices chosen at a run's decisions (see [`crate::policy`]). Index
//! 0 is stock asyncio's choice, so schedules are mostly zeros: the string stores only the
//! non-zero choices, each as (number of zeros before it, value) in LEB128 varints, base64url
//! without padding, after a version prefix. Trailing zeros are dropped: replaying past the end
//! of a schedule chooses 0. FIFO order is `q1-`; a run that deviated twice is about `q1-BwIDAQ`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

const PREFIX: &str = "q1-";

/// The chosen indices of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    choices: Vec<u32>,
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
    /// A schedule from chosen indices (trailing zeros are dropped).
    pub fn from_choices(mut choices: Vec<u32>) -> Self {
        while choices.last() == Some(&0) {
            choices.pop();
        }
        Self { choices }
    }

    /// The chosen indices (without trailing zeros).
    pub fn choices(&self) -> &[u32] {
        &self.choices
    }

    /// The chosen indices, consuming the schedule.
    pub fn into_choices(self) -> Vec<u32> {
        self.choices
    }

    /// How far the schedule strays from stock order: the sum of its choices (a choice of
    /// index k passes over k older pieces of work).
    pub fn delays(&self) -> u64 {
        self.choices.iter().map(|c| u64::from(*c)).sum()
    }

    /// The schedule string, e.g. `q1-AwI`.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::new();
        let mut zeros: u32 = 0;
        for &choice in &self.choices {
            if choice == 0 {
                zeros += 1;
            } else {
                push_varint(&mut bytes, zeros);
                push_varint(&mut bytes, choice);
                zeros = 0;
            }
        }
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Reads a schedule string (surrounding whitespace is ignored).
    pub fn decode(text: &str) -> Result<Self, ScheduleError> {
        let body = text.trim().strip_prefix(PREFIX).ok_or(ScheduleError::Prefix)?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| ScheduleError::Base64)?;
        let mut choices = Vec::new();
        let mut rest = bytes.as_slice();
        while !rest.is_empty() {
            let zeros = take_varint(&mut rest)?;
            let value = take_varint(&mut rest)?;
            if value == 0 {
                return Err(ScheduleError::Truncated);
            }
            choices.extend(std::iter::repeat_n(0, zeros as usize));
            choices.push(value);
        }
        Ok(Self { choices })
    }
}

fn push_varint(bytes: &mut Vec<u8>, mut value: u32) {
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

fn take_varint(rest: &mut &[u8]) -> Result<u32, ScheduleError> {
    let mut value: u64 = 0;
    for shift in (0..35).step_by(7) {
        let (&byte, tail) = rest.split_first().ok_or(ScheduleError::Truncated)?;
        *rest = tail;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return u32::try_from(value).map_err(|_| ScheduleError::Truncated);
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
        assert_eq!(Schedule::decode("q1-").unwrap().choices(), &[] as &[u32]);
    }

    #[test]
    fn bad_strings_say_why() {
        assert_eq!(Schedule::decode("x"), Err(ScheduleError::Prefix));
        assert_eq!(Schedule::decode("q1-***"), Err(ScheduleError::Base64));
        assert_eq!(Schedule::decode("q1-gA"), Err(ScheduleError::Truncated));
    }

    proptest! {
        #[test]
        fn encoding_round_trips(choices in proptest::collection::vec(prop_oneof![3 => Just(0u32), 1 => 0u32..300], 0..200)) {
            let schedule = Schedule::from_choices(choices.clone());
            let decoded = Schedule::decode(&schedule.encode()).unwrap();
            let mut trimmed = choices;
            while trimmed.last() == Some(&0) { trimmed.pop(); }
            prop_assert_eq!(decoded.choices(), trimmed.as_slice());
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
