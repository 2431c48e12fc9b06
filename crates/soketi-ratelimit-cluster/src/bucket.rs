//! A token bucket that can also be charged for points admitted elsewhere.

use std::time::{Duration, Instant};

use soketi_adapter_core::Decision;

/// Holds at most a second's worth of points and refills continuously at `per_second`. Kept in
/// thousandths of a point so that refills between close calls are not lost to rounding.
#[derive(Debug)]
pub struct TokenBucket {
    per_second: u64,
    milli_tokens: i64,
    refilled: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(per_second: u64) -> Self {
        Self {
            per_second,
            milli_tokens: Self::milli(per_second),
            refilled: Instant::now(),
        }
    }

    fn milli(points: u64) -> i64 {
        i64::try_from(points.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// The budget per second.
    pub fn per_second(&self) -> u64 {
        self.per_second
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled);
        let earned = (elapsed.as_micros() * u128::from(self.per_second) / 1000) as i64;
        if earned > 0 {
            self.milli_tokens = self
                .milli_tokens
                .saturating_add(earned)
                .min(Self::milli(self.per_second));
            self.refilled = now;
        }
    }

    /// Points left now, in thousandths.
    pub fn milli_tokens(&mut self) -> i64 {
        self.refill();
        self.milli_tokens
    }

    /// Takes `points` if the bucket holds them.
    pub fn take(&mut self, points: u64) -> Decision {
        self.refill();
        let need = Self::milli(points);
        let allowed = self.milli_tokens >= need;
        if allowed {
            self.milli_tokens -= need;
        }
        let missing = (need - self.milli_tokens).max(0) as u64;
        Decision {
            allowed,
            limit: self.per_second,
            remaining: (self.milli_tokens.max(0) / 1000) as u64,
            retry_after: if allowed || self.per_second == 0 {
                Duration::ZERO
            } else {
                Duration::from_micros(missing.saturating_mul(1000) / self.per_second)
            },
        }
    }

    /// Charges points admitted by another node, even below zero: what was admitted is spent.
    pub fn force(&mut self, points: u64) {
        self.refill();
        self.milli_tokens = self.milli_tokens.saturating_sub(Self::milli(points));
    }

    /// Lowers the bucket to what the master reports, never raising it.
    pub fn lower_to(&mut self, milli_tokens: i64) {
        self.refill();
        self.milli_tokens = self.milli_tokens.min(milli_tokens);
    }
}
