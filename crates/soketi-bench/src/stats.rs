//! What the generator counts: the mark each published event carries, latency histograms and
//! their summary, and the set of sequence numbers one connection has seen.

#[cfg(test)]
mod tests;

use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;

/// The highest latency a histogram holds, in microseconds (a minute); higher values are clamped.
const MAX_MICROS: u64 = 60_000_000;

/// A histogram of microseconds from 1 µs to a minute, to three significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3)
        .unwrap_or_else(|_| unreachable!("the bounds are constant and valid"))
}

/// Records `micros`, clamped into the histogram's range.
pub(crate) fn record(histogram: &mut Histogram<u64>, micros: u64) {
    histogram.saturating_record(micros.clamp(1, MAX_MICROS));
}

/// Microseconds since the Unix epoch. The wall clock, not a monotonic one, so that processes
/// that publish and processes that receive compare the same timestamps.
pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as u64)
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// How many values were recorded.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Highest.
    pub max: f64,
}

impl Latency {
    /// The summary of a histogram of microseconds.
    pub(crate) fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            count: histogram.len(),
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p99_9: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
        }
    }
}

/// The mark of one published event, carried in its `data` as `B|step|seq|micros|publisher|`: the
/// step of the run, the event's number within its channel, when it was published, and which
/// publisher sent it (whose events must arrive in the order it sent them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mark {
    pub(crate) step: u32,
    pub(crate) seq: u32,
    pub(crate) micros: u64,
    pub(crate) publisher: u32,
}

impl Mark {
    /// The `data` of an event, padded with `x` to at least `size` bytes.
    pub(crate) fn data(&self, size: usize) -> String {
        let mut data = format!(
            "B|{}|{}|{}|{}|",
            self.step, self.seq, self.micros, self.publisher
        );
        while data.len() < size {
            data.push('x');
        }
        data
    }

    /// Finds the mark in a received frame without parsing its JSON: the generator reads far more
    /// frames than any other work it does.
    pub(crate) fn find(frame: &[u8]) -> Option<Self> {
        let start = frame.windows(2).position(|pair| pair == b"B|")? + 2;
        let mut fields = frame[start..].splitn(5, |&byte| byte == b'|');
        let step = number(fields.next()?)?;
        let seq = number(fields.next()?)?;
        let micros = number(fields.next()?)?;
        let publisher = number(fields.next()?)?;
        // The fifth part must exist: the mark ended with its `|`.
        fields.next()?;
        Some(Self {
            step: u32::try_from(step).ok()?,
            seq: u32::try_from(seq).ok()?,
            micros,
            publisher: u32::try_from(publisher).ok()?,
        })
    }
}

fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &digit| {
        digit
            .is_ascii_digit()
            .then(|| value * 10 + u64::from(digit - b'0'))
    })
}

/// The sequence numbers one connection has received on its channel, to tell duplicates.
#[derive(Debug, Default)]
pub(crate) struct SeqSet {
    words: Vec<u64>,
    /// How many distinct numbers were inserted.
    pub(crate) unique: u64,
    /// How many inserts found their number already there.
    pub(crate) duplicates: u64,
}

impl SeqSet {
    /// Notes `seq` and tells whether it is new; a second time counts as a duplicate.
    pub(crate) fn insert(&mut self, seq: u32) -> bool {
        let (word, bit) = (seq as usize / 64, seq % 64);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let mask = 1u64 << bit;
        if self.words[word] & mask == 0 {
            self.words[word] |= mask;
            self.unique += 1;
            true
        } else {
            self.duplicates += 1;
            false
        }
    }
}
