//! The latency histogram of the aggregates: logarithmic buckets (the DDSketch mapping) whose
//! counts are plain counters, so two histograms merge by adding counts (`HINCRBY` on Redis).

use std::collections::BTreeMap;

/// Relative accuracy of a quantile: the value a bucket reports is within 2 % of every value it
/// counted.
pub(crate) const ALPHA: f64 = 0.02;

fn gamma_ln() -> f64 {
    ((1.0 + ALPHA) / (1.0 - ALPHA)).ln()
}

/// The bucket of a latency in microseconds: `0` for 0 µs, else `ceil(ln(v) / ln(γ))` with
/// `γ = (1 + α) / (1 - α)` (about 450 buckets span 1 µs to 60 s; a route's traffic fills a few
/// dozen of them).
pub(crate) fn bucket(micros: u64) -> u32 {
    if micros == 0 {
        return 0;
    }
    ((micros as f64).ln() / gamma_ln()).ceil().max(1.0) as u32
}

/// The value (µs) a bucket reports: `2γ^i / (γ + 1)`, within `α` of any value in it.
pub(crate) fn value(bucket: u32) -> f64 {
    if bucket == 0 {
        return 0.0;
    }
    let g = gamma_ln().exp();
    2.0 * (bucket as f64 * gamma_ln()).exp() / (g + 1.0)
}

/// Counts per bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Histogram {
    pub(crate) counts: BTreeMap<u32, u64>,
}

impl Histogram {
    pub(crate) fn add(&mut self, micros: u64) {
        *self.counts.entry(bucket(micros)).or_default() += 1;
    }

    pub(crate) fn add_count(&mut self, bucket: u32, n: u64) {
        *self.counts.entry(bucket).or_default() += n;
    }

    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (b, n) in &other.counts {
            self.add_count(*b, *n);
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.counts.values().sum()
    }

    /// The `q` quantile (0..=1) in microseconds; `None` when empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (n - 1) as f64).floor() as u64;
        let mut seen = 0;
        for (b, c) in &self.counts {
            seen += c;
            if seen > rank {
                return Some(value(*b));
            }
        }
        self.counts.keys().next_back().map(|b| value(*b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_values_are_within_alpha_of_what_they_count() {
        for v in [
            1u64, 2, 7, 99, 1_000, 12_345, 250_000, 3_000_000, 59_000_000,
        ] {
            let got = value(bucket(v));
            assert!(
                (got - v as f64).abs() <= ALPHA * v as f64 + 1e-9,
                "{v} -> {got}"
            );
        }
    }

    #[test]
    fn quantiles_of_merged_histograms_equal_those_of_one_histogram_of_all_values() {
        let (mut a, mut b, mut all) = (
            Histogram::default(),
            Histogram::default(),
            Histogram::default(),
        );
        for v in 1..=1000u64 {
            let v = v * 37;
            if v % 3 == 0 {
                a.add(v)
            } else {
                b.add(v)
            }
            all.add(v);
        }
        a.merge(&b);
        assert_eq!(a, all);
        let p99 = all.quantile(0.99).unwrap();
        assert!((p99 - 0.99 * 37_000.0).abs() <= 0.03 * 37_000.0, "{p99}");
        assert_eq!(Histogram::default().quantile(0.5), None);
    }
}
