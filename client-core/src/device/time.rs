//! The time the device trusts, for index expiry.
//!
//! The wall clock can be wrong both ways: set back (by the user, or to replay an expired index)
//! or far ahead; and a server with a glitching clock can sign an index dated years ahead. So the
//! device keeps a floor, `last_trusted_secs`: the newest wall-clock reading it has seen, but never
//! past the expiry of the newest index it accepted. Expiry is checked against
//! `max(wall clock, floor)`:
//!
//! - a clock set back after an index expired cannot make it fresh again: the floor remembers a
//!   reading at or past that expiry;
//! - a clock (or an index) dated years ahead lifts the floor at most to the expiry of the newest
//!   index, and any later index from the server expires after that, so nothing is refused for
//!   good once the clock is right again; an index's own `issued_at` never lifts the floor.

use manifests::Timestamp;

use super::State;

/// The floor moves in steps of at least this much (or to the bound), so that a check does not
/// rewrite the state file each time only to record a few seconds.
const STEP_SECS: u64 = 3600;

/// Records a wall-clock reading in `state`'s floor, bounded by the newest index's expiry.
pub(crate) fn observe(state: &mut State, wall: Timestamp) {
    let bound = state.index_expires_secs;
    let seen = wall.unix_secs().min(bound);
    let floor = state.last_trusted_secs;
    if seen >= floor.saturating_add(STEP_SECS) || (seen == bound && seen > floor) {
        state.last_trusted_secs = seen;
    }
}

/// The time to check expiry against: the wall clock, never before the floor.
pub(crate) fn trusted_now(state: &State, wall: Timestamp) -> Timestamp {
    Timestamp::from_unix_secs(wall.unix_secs().max(state.last_trusted_secs))
}
