use std::time::Duration;

use super::next_slot;

fn check(slot: u64, elapsed_ms: u64, expected: u64) {
    // Slots every 10 ms.
    let actual = next_slot(slot, Duration::from_millis(elapsed_ms), 0.010);
    assert_eq!(actual, expected, "slot {slot}, answered at {elapsed_ms} ms");
}

#[test]
fn a_late_answer_skips_the_slots_that_went_by() {
    // Answered within its own slot: the next slot, at its time.
    check(0, 3, 1);
    check(4, 45, 5);
    // Answered in the next slot's time: that slot, at once.
    check(0, 12, 1);
    // Answered three slots late: the slot running now; slots 1 and 2 are skipped.
    check(0, 31, 3);
    check(7, 125, 12);
}
