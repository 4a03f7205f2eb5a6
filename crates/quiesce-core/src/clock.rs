//! Loop clocks: virtual (moves only when told) and real (follows the OS monotonic clock).

use std::fmt;

/// Which clock a loop runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockKind {
    /// Starts at 0.0 and moves only when the loop jumps to a timer or the test advances it.
    Virtual,
    /// Follows the monotonic clock, like stock asyncio.
    Real,
}

impl ClockKind {
    /// Parses the user-facing names `"virtual"` and `"real"`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "virtual" => Some(Self::Virtual),
            "real" => Some(Self::Real),
            _ => None,
        }
    }
}

/// A duration that cannot move a clock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DurationError {
    /// Below zero: clocks never go back.
    Negative(f64),
    /// NaN has no place on a time line.
    NotANumber,
    /// An infinite advance would never end.
    Infinite,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Negative(value) => write!(f, "cannot move the clock back: got {value} seconds; pass a duration >= 0"),
            Self::NotANumber => write!(f, "the duration is NaN; pass a finite number of seconds >= 0"),
            Self::Infinite => write!(f, "the duration is infinite; pass a finite number of seconds >= 0"),
        }
    }
}

impl std::error::Error for DurationError {}

/// Checks that `seconds` can move a clock forward.
pub fn validate_duration(seconds: f64) -> Result<f64, DurationError> {
    if seconds.is_nan() {
        Err(DurationError::NotANumber)
    } else if seconds.is_infinite() {
        Err(DurationError::Infinite)
    } else if seconds < 0.0 {
        Err(DurationError::Negative(seconds))
    } else {
        Ok(seconds)
    }
}

/// The virtual clock. Time only moves forward.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct VirtualClock {
    now: f64,
}

impl VirtualClock {
    /// A clock at 0.0.
    pub fn new() -> Self {
        Self { now: 0.0 }
    }

    /// The current instant.
    pub fn now(&self) -> f64 {
        self.now
    }

    /// Moves to `instant` if it is later than now (a timer scheduled in the past fires "now").
    pub fn move_to(&mut self, instant: f64) {
        if instant > self.now {
            self.now = instant;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(validate_duration(0.0), Ok(0.0));
        assert_eq!(validate_duration(-1.0), Err(DurationError::Negative(-1.0)));
        assert_eq!(validate_duration(f64::NAN), Err(DurationError::NotANumber));
        assert_eq!(validate_duration(f64::INFINITY), Err(DurationError::Infinite));
        assert!(DurationError::Negative(-1.0).to_string().contains("back"));
    }

    #[test]
    fn never_moves_back() {
        let mut c = VirtualClock::new();
        c.move_to(5.0);
        c.move_to(3.0);
        assert_eq!(c.now(), 5.0);
    }
}
