//! A hybrid logical clock: versions that follow wall time where it goes forward, only ever go up,
//! and rise above every version seen from elsewhere.
//!
//! A [`Version`] packs both HLC components in one u64 so it orders as a plain integer (the shard
//! store compares versions as u64): the high bits are wall time in ns with the low
//! [`LOGICAL_BITS`] cleared (one tick = 65 536 ns), the low bits a counter of versions handed out
//! within that tick. When the counter fills, it carries into the tick: the clock runs one tick
//! ahead instead of repeating a version. Versions stay comparable with the single-node versions
//! written before the cluster (plain ns since the epoch).
//!
//! What it does not do: read a clock (wall time is passed in) or persist itself; after a restart
//! the node seeds it with the highest version it stores (`starting_after`).

use std::fmt;

use crate::limits::CLOCK_DRIFT_NS_MAX;

/// Low bits of a version that count within one tick of wall time.
pub const LOGICAL_BITS: u32 = 16;
const LOGICAL_MASK: u64 = (1 << LOGICAL_BITS) - 1;

/// A write's version. Higher wins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(u64);

impl Version {
    /// Below every version a clock hands out.
    pub const ZERO: Version = Version(0);

    pub const fn from_u64(raw: u64) -> Self {
        Version(raw)
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The wall-time component, ns since the epoch, rounded down to the tick.
    pub const fn physical_ns(self) -> u64 {
        self.0 & !LOGICAL_MASK
    }

    /// The counter within the tick.
    pub const fn logical(self) -> u16 {
        (self.0 & LOGICAL_MASK) as u16
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a remote version was not merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// The version is further ahead of the local wall clock than `CLOCK_DRIFT_NS_MAX`: a peer's
    /// clock is wrong (or the version is garbage). Merging it would drag every later local
    /// version into the future.
    #[error(
        "version {remote} is {ahead_ns} ns ahead of the local clock (at most {CLOCK_DRIFT_NS_MAX})"
    )]
    TooFarAhead { remote: Version, ahead_ns: u64 },
}

/// The clock of one core (it is not shared: versions from two cores may tie, and the shard
/// store's per-key rule settles ties).
#[derive(Clone, Debug, Default)]
pub struct Hlc {
    last: Version,
}

impl Hlc {
    pub fn new() -> Self {
        Self::default()
    }

    /// A clock whose next version is above `version`: after a restart, seeded with the highest
    /// version the node stores, so a wall clock that went back meanwhile cannot reuse versions.
    pub fn starting_after(version: Version) -> Self {
        Self { last: version }
    }

    /// A new version: at least `wall_ns` rounded down to the tick, above every version this clock
    /// handed out or observed before.
    pub fn now(&mut self, wall_ns: u64) -> Version {
        let physical = wall_ns & !LOGICAL_MASK;
        let next = if physical > self.last.0 {
            physical
        } else {
            // Same tick or the wall clock went back: count on from the last version.
            self.last
                .0
                .checked_add(1)
                .expect("version space exhausted (an unchecked remote version?)")
        };
        assert!(next > self.last.0);
        self.last = Version(next);
        self.last
    }

    /// Merges a version seen elsewhere (a shard read, a stale refusal): later versions from this
    /// clock are above it. Trusts its input; use `observe_bounded` for versions from peers.
    pub fn observe(&mut self, remote: Version) {
        self.last = self.last.max(remote);
    }

    /// `observe`, but refuses a version more than `CLOCK_DRIFT_NS_MAX` ahead of `wall_ns`.
    pub fn observe_bounded(&mut self, wall_ns: u64, remote: Version) -> Result<(), ClockError> {
        let ahead_ns = remote.physical_ns().saturating_sub(wall_ns);
        if ahead_ns > CLOCK_DRIFT_NS_MAX {
            return Err(ClockError::TooFarAhead { remote, ahead_ns });
        }
        self.observe(remote);
        Ok(())
    }

    /// The highest version handed out or observed.
    pub fn last(&self) -> Version {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECOND_NS: u64 = 1_000_000_000;
    const EPOCH_2026_NS: u64 = 1_767_225_600 * SECOND_NS;

    #[test]
    fn follows_wall_time_and_counts_within_a_tick() {
        let mut clock = Hlc::new();
        let first = clock.now(EPOCH_2026_NS + 5);
        assert_eq!(first.physical_ns(), EPOCH_2026_NS & !LOGICAL_MASK);
        assert_eq!(first.logical(), 0);
        let second = clock.now(EPOCH_2026_NS + 6);
        assert_eq!(second.physical_ns(), first.physical_ns());
        assert_eq!(second.logical(), 1);
        let later = clock.now(EPOCH_2026_NS + SECOND_NS);
        assert_eq!(
            later.physical_ns(),
            (EPOCH_2026_NS + SECOND_NS) & !LOGICAL_MASK
        );
        assert_eq!(later.logical(), 0);
        assert!(Version::ZERO < first && first < second && second < later);
        assert_eq!(clock.last(), later);
    }

    #[test]
    fn wall_clock_going_back_never_lowers_versions() {
        let mut clock = Hlc::new();
        let before = clock.now(EPOCH_2026_NS + 60 * SECOND_NS);
        // NTP steps the clock back a minute.
        let after = clock.now(EPOCH_2026_NS);
        assert!(after > before);
        assert_eq!(after.physical_ns(), before.physical_ns());
        assert_eq!(after.logical(), before.logical() + 1);
        // Wall time catches up: back to following it.
        let caught_up = clock.now(EPOCH_2026_NS + 61 * SECOND_NS);
        assert_eq!(caught_up.logical(), 0);
        assert!(caught_up > after);
    }

    #[test]
    fn counter_carries_into_the_tick() {
        let mut clock = Hlc::new();
        let mut previous = clock.now(EPOCH_2026_NS);
        for _ in 0..=LOGICAL_MASK {
            let next = clock.now(EPOCH_2026_NS);
            assert!(next > previous);
            previous = next;
        }
        assert_eq!(
            previous.physical_ns(),
            (EPOCH_2026_NS & !LOGICAL_MASK) + (1 << LOGICAL_BITS)
        );
        assert_eq!(previous.logical(), 0);
    }

    #[test]
    fn observing_merges_remote_versions() {
        let mut clock = Hlc::new();
        let local = clock.now(EPOCH_2026_NS);
        // A peer a little ahead: the next local version is above it, even on the same wall time.
        let remote = Version::from_u64(local.as_u64() + 5 * SECOND_NS + 3);
        clock.observe(remote);
        let next = clock.now(EPOCH_2026_NS);
        assert_eq!(next, Version::from_u64(remote.as_u64() + 1));
        // An older remote version changes nothing.
        clock.observe(local);
        assert!(clock.now(EPOCH_2026_NS) > next);
        // Seeded after a restart with what the node stores.
        let mut restarted = Hlc::starting_after(next);
        assert!(restarted.now(EPOCH_2026_NS - SECOND_NS) > next);
    }

    #[test]
    fn remote_versions_far_ahead_are_refused() {
        let mut clock = Hlc::new();
        let wall = EPOCH_2026_NS;
        let near = Version::from_u64(wall + CLOCK_DRIFT_NS_MAX);
        assert_eq!(clock.observe_bounded(wall, near), Ok(()));
        assert_eq!(clock.last(), near);
        let far = Version::from_u64(wall + CLOCK_DRIFT_NS_MAX + 2 * (1 << LOGICAL_BITS));
        assert!(matches!(
            clock.observe_bounded(wall, far),
            Err(ClockError::TooFarAhead { .. })
        ));
        assert_eq!(clock.last(), near);
        assert!(clock
            .observe_bounded(wall, Version::from_u64(u64::MAX))
            .is_err());
    }

    #[derive(Clone, Debug)]
    enum Step {
        Now(u64),
        Observe(u64),
    }

    proptest! {
        #[test]
        fn versions_only_go_up(
            steps in proptest::collection::vec(
                prop_oneof![
                    (0u64..10 * SECOND_NS).prop_map(|d| Step::Now(EPOCH_2026_NS + d)),
                    (0u64..10 * SECOND_NS).prop_map(|d| Step::Observe(EPOCH_2026_NS + d)),
                ],
                1..200,
            )
        ) {
            let mut clock = Hlc::new();
            let mut highest = Version::ZERO;
            for step in steps {
                match step {
                    Step::Now(wall_ns) => {
                        let version = clock.now(wall_ns);
                        prop_assert!(version > highest);
                        prop_assert!(version.physical_ns() >= wall_ns & !LOGICAL_MASK);
                        highest = version;
                    }
                    Step::Observe(raw) => {
                        clock.observe(Version::from_u64(raw));
                        highest = highest.max(Version::from_u64(raw));
                    }
                }
                prop_assert_eq!(clock.last(), highest);
            }
        }
    }
}
