//! A sliding one-second window: at most `per_second` points in any second.
//!
//! The second is cut into 100 slots of 10 ms; a point counts in its slot until the slot is a
//! second old. Unlike a bucket that refills (which admits a full burst and then the rate, so
//! about twice the budget in the first second), no second ever holds more than the budget; and
//! unlike a fixed window, no burst at a window's edge doubles it.

use std::time::{Duration, Instant};

use crate::ratelimit::Decision;

const SLOTS: usize = 100;
const SLOT_MS: u64 = 10;

/// Points admitted in the last second, by 10 ms slot.
#[derive(Debug, Clone)]
pub struct SlidingWindow {
    per_second: u64,
    slots: [u64; SLOTS],
    /// The absolute index (milliseconds since `origin` / 10) of the newest slot.
    newest: u64,
    origin: Instant,
}

impl SlidingWindow {
    /// An empty window of `per_second` points.
    pub fn new(per_second: u64) -> Self {
        Self {
            per_second,
            slots: [0; SLOTS],
            newest: SLOTS as u64,
            origin: Instant::now(),
        }
    }

    /// The budget per second.
    pub fn per_second(&self) -> u64 {
        self.per_second
    }

    fn slot_now(&self) -> u64 {
        // Offset by a second's slots, so that a new window can hold points of the last second
        // (from another node's snapshot) without going below slot zero.
        self.origin.elapsed().as_millis() as u64 / SLOT_MS + SLOTS as u64
    }

    /// Forgets the slots older than a second.
    fn advance(&mut self) -> u64 {
        let now = self.slot_now();
        if now > self.newest {
            let stale = (now - self.newest).min(SLOTS as u64);
            for i in 1..=stale {
                self.slots[((self.newest + i) % SLOTS as u64) as usize] = 0;
            }
            self.newest = now;
        }
        now
    }

    /// Points admitted in the last second.
    pub fn used(&mut self) -> u64 {
        self.advance();
        self.slots.iter().sum()
    }

    /// Admits `points` if the last second leaves room for them.
    pub fn take(&mut self, points: u64) -> Decision {
        let now = self.advance();
        let used: u64 = self.slots.iter().sum();
        if used.saturating_add(points) <= self.per_second {
            self.slots[(now % SLOTS as u64) as usize] += points;
            return Decision {
                allowed: true,
                limit: self.per_second,
                remaining: self.per_second - used - points,
                retry_after: Duration::ZERO,
            };
        }
        Decision {
            allowed: false,
            limit: self.per_second,
            remaining: self.per_second.saturating_sub(used),
            retry_after: self.retry_after(now, used, points),
        }
    }

    /// When enough old points will have left the window for `points` to fit.
    fn retry_after(&self, now: u64, used: u64, points: u64) -> Duration {
        if points > self.per_second {
            return Duration::from_secs(1);
        }
        let mut freed = 0;
        // Oldest first: the slot after the newest is a second old next.
        for age in (0..SLOTS as u64).rev() {
            let slot = now.saturating_sub(age);
            freed += self.slots[(slot % SLOTS as u64) as usize];
            if used - freed + points <= self.per_second {
                return Duration::from_millis((SLOTS as u64 - age) * SLOT_MS);
            }
        }
        Duration::from_secs(1)
    }

    /// Counts points admitted elsewhere, even past the budget: what was admitted is spent.
    pub fn force(&mut self, points: u64) {
        let now = self.advance();
        self.slots[(now % SLOTS as u64) as usize] += points;
    }

    /// The window as `(age in slots, points)`, newest first, for a node that joins.
    pub fn snapshot(&mut self) -> Vec<(u32, u64)> {
        let now = self.advance();
        (0..SLOTS as u64)
            .filter_map(|age| {
                let points = self.slots[(now.saturating_sub(age) % SLOTS as u64) as usize];
                (points > 0 && age <= now).then_some((age as u32, points))
            })
            .collect()
    }

    /// Adds another node's window, slot by slot, keeping the larger count of each.
    pub fn merge(&mut self, snapshot: &[(u32, u64)]) {
        let now = self.advance();
        for &(age, points) in snapshot {
            let age = u64::from(age);
            if age < SLOTS as u64 && age <= now {
                let slot = &mut self.slots[((now - age) % SLOTS as u64) as usize];
                *slot = (*slot).max(points);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_second_holds_more_than_the_budget() {
        let mut w = SlidingWindow::new(10);
        assert!(w.take(4).allowed);
        let d = w.take(6);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        let refused = w.take(1);
        assert!(!refused.allowed);
        assert!(refused.retry_after > Duration::ZERO);
        assert!(refused.retry_after <= Duration::from_secs(1));
        assert!(
            !w.take(11).allowed,
            "more than a second's budget never fits"
        );
        w.force(3);
        assert_eq!(
            w.used(),
            13,
            "points admitted elsewhere count past the budget"
        );
        let mut other = SlidingWindow::new(10);
        other.merge(&w.snapshot());
        assert_eq!(other.used(), 13);
    }

    #[test]
    fn points_leave_after_a_second() {
        let mut w = SlidingWindow::new(2);
        w.origin -= Duration::from_secs(5);
        assert!(w.take(2).allowed);
        // Move the clock a second on: the slot is forgotten.
        w.origin -= Duration::from_millis(1010);
        assert_eq!(w.used(), 0);
        assert!(w.take(2).allowed);
    }
}
