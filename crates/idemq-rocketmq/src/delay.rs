//! The broker's delay levels: RocketMQ delays a message by one of a fixed ladder of
//! durations, not by any duration.

use std::time::Duration;

/// The broker's default `messageDelayLevel`: level `i + 1` waits `LEVELS[i]` seconds.
const LEVELS: [u64; 18] = [
    1, 5, 10, 30, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 1200, 1800, 3600, 7200,
];

/// The smallest delay level that waits at least `delay` (the last one past two hours).
pub fn level_for(delay: Duration) -> i32 {
    let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    let index = LEVELS
        .iter()
        .position(|&l| l >= secs)
        .unwrap_or(LEVELS.len() - 1);
    index as i32 + 1
}

/// How long delay level `level` waits.
pub fn duration_of(level: i32) -> Duration {
    let index = usize::try_from(level.clamp(1, LEVELS.len() as i32) - 1).unwrap_or(0);
    Duration::from_secs(LEVELS[index])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delay_rounds_up_to_the_next_level() {
        assert_eq!(level_for(Duration::ZERO), 1);
        assert_eq!(level_for(Duration::from_millis(200)), 1);
        assert_eq!(level_for(Duration::from_secs(1)), 1);
        assert_eq!(level_for(Duration::from_millis(1001)), 2);
        assert_eq!(level_for(Duration::from_secs(30)), 4);
        assert_eq!(level_for(Duration::from_secs(86_400)), 18);
    }

    #[test]
    fn every_level_waits_at_least_what_it_was_chosen_for() {
        for ms in (0..8_000_000u64).step_by(997) {
            let d = Duration::from_millis(ms);
            let waits = duration_of(level_for(d));
            assert!(waits >= d || level_for(d) == 18, "{d:?} -> {waits:?}");
        }
    }
}
