//! Hybrid logical clocks and stamps: the total order that decides every conflict.
//!
//! A [`Stamp`] is `(Hlc, DeviceId)`. Two stamps compare by clock first and by device id bytes
//! second, so every replica picks the same winner without talking to anyone.
//!
//! # Stamps from the future
//!
//! Merge never consults the local clock: a register with a greater stamp wins on every replica,
//! whatever the replicas' own clocks say. That is what makes convergence unconditional. The
//! local clock protects itself instead:
//!
//! - [`HybridClock::observe`] absorbs a remote stamp only when it is at most
//!   [`HybridClock::max_drift_millis`] ahead of the (server-corrected) wall clock. A device whose
//!   clock says 2031 therefore cannot drag every other device's clock into 2031.
//! - A local write always supersedes the value the writer currently sees for that field: its
//!   stamp is at least one tick past the field's current winner (see [`HybridClock::tick_after`]).
//!   A far-future stamp can thus never swallow a user's later edit. When that winner lies beyond
//!   the drift bound, the overwrite gets a one-off stamp just past it and the clock does not
//!   move, so the device's other writes keep normal stamps. (Such one-off stamps sit outside the
//!   device's stamp order; see [`crate::State::changes_since`].)

use std::cmp::Ordering;
use std::fmt;

use crate::device::DeviceId;
use crate::error::WriteError;

/// Number of bits of an [`Hlc`] that hold milliseconds since the Unix epoch.
pub const HLC_MILLIS_BITS: u32 = 48;
/// Default bound on how far ahead of the wall clock a remote stamp may be and still be absorbed.
pub const DEFAULT_MAX_DRIFT_MILLIS: u64 = 5 * 60 * 1000;

const COUNTER_BITS: u32 = 64 - HLC_MILLIS_BITS;
const MAX_MILLIS: u64 = (1 << HLC_MILLIS_BITS) - 1;

/// A hybrid logical clock reading: 48 bits of milliseconds since the Unix epoch and a 16-bit
/// logical counter, packed into one `u64` so that integer order is clock order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hlc(u64);

impl Hlc {
    /// The smallest reading; no real write carries it.
    pub const ZERO: Hlc = Hlc(0);
    /// The greatest reading (year 10889).
    pub const MAX: Hlc = Hlc(u64::MAX);

    /// A reading from milliseconds and a logical counter; `None` if `millis` needs more than
    /// 48 bits.
    pub const fn new(millis: u64, counter: u16) -> Option<Hlc> {
        if millis > MAX_MILLIS {
            None
        } else {
            Some(Hlc((millis << COUNTER_BITS) | counter as u64))
        }
    }

    /// The reading for a wall-clock time, with a zero counter; clamps beyond year 10889.
    pub const fn from_millis(millis: u64) -> Hlc {
        let millis = if millis > MAX_MILLIS {
            MAX_MILLIS
        } else {
            millis
        };
        Hlc(millis << COUNTER_BITS)
    }

    /// The packed `u64` form (what the codec stores).
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Rebuilds a reading from its packed form; every `u64` is a valid reading.
    pub const fn from_u64(raw: u64) -> Hlc {
        Hlc(raw)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn millis(self) -> u64 {
        self.0 >> COUNTER_BITS
    }

    /// The logical counter within the millisecond.
    pub const fn counter(self) -> u16 {
        (self.0 & ((1 << COUNTER_BITS) - 1)) as u16
    }

    /// The next reading: the counter plus one, carrying into the milliseconds when it wraps.
    /// `None` only at [`Hlc::MAX`].
    pub const fn successor(self) -> Option<Hlc> {
        match self.0.checked_add(1) {
            Some(next) => Some(Hlc(next)),
            None => None,
        }
    }
}

impl fmt::Debug for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hlc({}.{})", self.millis(), self.counter())
    }
}

/// The version of a write: a clock reading and the device that made it.
///
/// Ordered by clock, then by device id bytes: a total order, so "newer wins" is one `max`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Stamp {
    /// When, by the writer's hybrid clock.
    pub hlc: Hlc,
    /// Who wrote it.
    pub device: DeviceId,
}

impl Stamp {
    /// A stamp of `device` at `hlc`.
    pub const fn new(hlc: Hlc, device: DeviceId) -> Stamp {
        Stamp { hlc, device }
    }
}

impl Ord for Stamp {
    fn cmp(&self, other: &Self) -> Ordering {
        self.hlc
            .cmp(&other.hlc)
            .then_with(|| self.device.cmp(&other.device))
    }
}

impl PartialOrd for Stamp {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A hybrid logical clock: never goes backwards, absorbs the stamps it merges (within a drift
/// bound), and reads wall time through an offset to a trusted clock (the server's).
///
/// The clock does no I/O: callers pass the local wall-clock time in milliseconds to every call.
#[derive(Clone, Debug)]
pub struct HybridClock {
    last: Hlc,
    offset_millis: i64,
    max_drift_millis: u64,
}

impl Default for HybridClock {
    fn default() -> Self {
        HybridClock::new()
    }
}

impl HybridClock {
    /// A clock that has issued nothing yet, with no offset and the default drift bound.
    pub const fn new() -> HybridClock {
        HybridClock {
            last: Hlc::ZERO,
            offset_millis: 0,
            max_drift_millis: DEFAULT_MAX_DRIFT_MILLIS,
        }
    }

    /// The last reading this clock issued or absorbed.
    pub const fn last(&self) -> Hlc {
        self.last
    }

    /// Offset added to the local wall clock to get trusted time (server time − local time).
    pub const fn offset_millis(&self) -> i64 {
        self.offset_millis
    }

    /// Sets the offset to trusted time, learned e.g. from the server at each grant.
    pub fn set_offset_millis(&mut self, offset_millis: i64) {
        self.offset_millis = offset_millis;
    }

    /// How far ahead of trusted time a remote stamp may be and still be absorbed.
    pub const fn max_drift_millis(&self) -> u64 {
        self.max_drift_millis
    }

    /// Changes the drift bound of [`HybridClock::observe`].
    pub fn set_max_drift_millis(&mut self, millis: u64) {
        self.max_drift_millis = millis;
    }

    /// Trusted wall-clock time: the local time plus the offset, clamped to the HLC's range.
    pub fn trusted_millis(&self, local_wall_millis: u64) -> u64 {
        let corrected = i128::from(local_wall_millis) + i128::from(self.offset_millis);
        corrected.clamp(0, i128::from(MAX_MILLIS)) as u64
    }

    /// Issues a new reading, strictly greater than every earlier one.
    pub fn tick(&mut self, local_wall_millis: u64) -> Result<Hlc, WriteError> {
        let wall = Hlc::from_millis(self.trusted_millis(local_wall_millis));
        let after = self.last.successor().ok_or(WriteError::ClockExhausted)?;
        self.last = wall.max(after);
        Ok(self.last)
    }

    /// Issues a reading strictly greater than every earlier one and than `floor`.
    ///
    /// Used for local writes: `floor` is the stamp of the value being overwritten, so a write
    /// always wins over what the writer saw. A floor within the drift bound is absorbed like
    /// any remote stamp. A floor beyond it (a value stamped far in the future) gets a one-off
    /// reading just past it, and the clock stays where it was: overwriting a poisoned field
    /// must not poison every later write of this device.
    pub fn tick_after(&mut self, local_wall_millis: u64, floor: Hlc) -> Result<Hlc, WriteError> {
        let next = self.tick(local_wall_millis)?;
        if next > floor {
            return Ok(next);
        }
        let past_floor = floor.successor().ok_or(WriteError::ClockExhausted)?;
        if floor.millis() <= self.horizon_millis(local_wall_millis) {
            self.last = past_floor;
        }
        Ok(past_floor)
    }

    fn horizon_millis(&self, local_wall_millis: u64) -> u64 {
        self.trusted_millis(local_wall_millis)
            .saturating_add(self.max_drift_millis)
    }

    /// Absorbs a remote reading so later local readings are greater, unless it lies more than
    /// the drift bound ahead of trusted time. Returns whether it was absorbed.
    pub fn observe(&mut self, remote: Hlc, local_wall_millis: u64) -> bool {
        if remote.millis() > self.horizon_millis(local_wall_millis) {
            return false;
        }
        self.last = self.last.max(remote);
        true
    }

    /// Moves the clock to at least `hlc` without a drift check; used when loading a device's
    /// own stamps from storage, which it issued itself.
    pub fn restore(&mut self, hlc: Hlc) {
        self.last = self.last.max(hlc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(n: u8) -> DeviceId {
        DeviceId::from_bytes([n; 32])
    }

    #[test]
    fn hlc_packs_millis_above_counter() {
        let hlc = Hlc::new(1_700_000_000_000, 7).unwrap();
        assert_eq!(hlc.millis(), 1_700_000_000_000);
        assert_eq!(hlc.counter(), 7);
        assert!(Hlc::new(1 << 48, 0).is_none());
        assert!(Hlc::new(1, 0).unwrap() > Hlc::new(0, u16::MAX).unwrap());
    }

    #[test]
    fn counter_overflow_carries_into_millis() {
        let hlc = Hlc::new(10, u16::MAX).unwrap();
        assert_eq!(hlc.successor(), Hlc::new(11, 0));
        assert_eq!(Hlc::MAX.successor(), None);
    }

    #[test]
    fn stamps_order_by_clock_then_device() {
        let early = Stamp::new(Hlc::new(5, 0).unwrap(), device(9));
        let late = Stamp::new(Hlc::new(6, 0).unwrap(), device(1));
        assert!(late > early);
        let tie_a = Stamp::new(Hlc::new(5, 0).unwrap(), device(1));
        assert!(early > tie_a, "equal clocks fall back to device bytes");
    }

    #[test]
    fn clock_never_goes_backwards() {
        let mut clock = HybridClock::new();
        let a = clock.tick(1_000).unwrap();
        let b = clock.tick(500).unwrap();
        let c = clock.tick(1_000).unwrap();
        assert!(a < b && b < c);
        assert_eq!(c.millis(), 1_000);
    }

    #[test]
    fn clock_follows_wall_time_when_it_advances() {
        let mut clock = HybridClock::new();
        clock.tick(1_000).unwrap();
        assert_eq!(clock.tick(2_000).unwrap(), Hlc::new(2_000, 0).unwrap());
    }

    #[test]
    fn offset_corrects_a_wrong_local_clock() {
        let mut clock = HybridClock::new();
        clock.set_offset_millis(-1_000_000);
        assert_eq!(clock.tick(5_000_000).unwrap().millis(), 4_000_000);
        clock.set_offset_millis(i64::MIN);
        assert_eq!(
            clock.trusted_millis(5),
            0,
            "offsets saturate instead of wrapping"
        );
    }

    #[test]
    fn observe_absorbs_stamps_within_drift_only() {
        let mut clock = HybridClock::new();
        let near = Hlc::new(1_000 + 60_000, 3).unwrap();
        assert!(clock.observe(near, 1_000));
        assert!(clock.tick(1_000).unwrap() > near);

        let far = Hlc::new(1_000 + 365 * 24 * 3_600_000, 0).unwrap();
        assert!(!clock.observe(far, 1_000));
        assert!(
            clock.tick(1_000).unwrap() < far,
            "a far-future stamp must not drag the clock"
        );
    }

    #[test]
    fn tick_after_beats_a_far_future_floor_without_moving_the_clock() {
        let mut clock = HybridClock::new();
        let future = Hlc::new(9_000_000_000_000, 0).unwrap();
        let stamp = clock.tick_after(1_000, future).unwrap();
        assert!(stamp > future);
        let next = clock.tick(1_000).unwrap();
        assert!(
            next < future,
            "the overwrite did not drag the clock into the future"
        );
        assert!(clock.tick_after(1_000, future).unwrap() > next);
    }

    #[test]
    fn tick_after_absorbs_a_floor_within_drift() {
        let mut clock = HybridClock::new();
        let near = Hlc::new(1_000 + 30_000, 0).unwrap();
        let stamp = clock.tick_after(1_000, near).unwrap();
        assert!(stamp > near);
        assert!(
            clock.tick(1_000).unwrap() > stamp,
            "near-future floors move the clock"
        );
    }

    #[test]
    fn exhausted_clock_is_an_error_not_a_panic() {
        let mut clock = HybridClock::new();
        assert_eq!(
            clock.tick_after(0, Hlc::MAX),
            Err(WriteError::ClockExhausted)
        );
    }
}
