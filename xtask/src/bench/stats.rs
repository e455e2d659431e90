//! The few statistics the bench reports, and how a figure is judged against its target.

/// Median (mean of the two middle values for an even count); `None` when empty or when a
/// value is NaN.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// Median of `traced / untraced` over pairs of runs made back to back. Pairing each traced
/// run with the untraced run just before it cancels the machine's slow drifts (other
/// people's builds), which a ratio of two medians would not.
pub fn median_of_ratios(pairs: &[(f64, f64)]) -> Option<f64> {
    let ratios: Vec<f64> = pairs
        .iter()
        .filter(|(untraced, _)| *untraced > 0.0)
        .map(|(untraced, traced)| traced / untraced)
        .collect();
    median(&ratios)
}

/// Nearest-rank percentile (`p` in 0..=100): the smallest value with at least p% of the
/// values at or below it. `None` when empty.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// How a figure must compare with its target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// At most this value.
    AtMost(f64),
    /// Strictly below this value.
    Below(f64),
    /// At least this value.
    AtLeast(f64),
}

/// A figure judged against its target.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Met,
    /// Missed by this much (always positive, in the figure's unit).
    Missed(f64),
    /// No figure: why.
    NotAvailable(String),
}

impl Target {
    pub fn judge(self, value: Option<f64>, why_missing: &str) -> Verdict {
        let Some(value) = value else {
            return Verdict::NotAvailable(why_missing.to_owned());
        };
        let (ok, by) = match self {
            Target::AtMost(t) => (value <= t, value - t),
            Target::Below(t) => (value < t, value - t),
            Target::AtLeast(t) => (value >= t, t - value),
        };
        if ok {
            Verdict::Met
        } else {
            Verdict::Missed(by)
        }
    }

    /// The target as text, `≤ 1.02`, in the figure's unit.
    pub fn describe(self, unit: &str) -> String {
        let (op, t) = match self {
            Target::AtMost(t) => ("<=", t),
            Target::Below(t) => ("<", t),
            Target::AtLeast(t) => (">=", t),
        };
        format!("{op} {}{unit}", trim_float(t))
    }
}

/// `1.10` → `1.1`, `32.0` → `32`: targets as people write them.
pub fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn ratios_are_paired_not_medians_of_medians() {
        // Untraced runs drift (10, 20, 30); each traced run is 10% slower than its partner.
        let pairs = [(10.0, 11.0), (20.0, 22.0), (30.0, 33.0)];
        let r = median_of_ratios(&pairs).expect("ratio");
        assert!((r - 1.1).abs() < 1e-9, "{r}");
        // Pairwise ratios 1.2, 1.05, 2.0: the median is 1.2, where a ratio of the medians
        // (21 / 20) would say 1.05.
        let pairs = [(10.0, 12.0), (20.0, 21.0), (30.0, 60.0)];
        let r = median_of_ratios(&pairs).expect("ratio");
        assert!((r - 1.2).abs() < 1e-9, "{r}");
        assert_eq!(median_of_ratios(&[(0.0, 1.0)]), None);
        assert_eq!(median_of_ratios(&[]), None);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0, 1.0, 4.0], 50.0), Some(4.0));
        assert_eq!(percentile(&[2.0], 99.0), Some(2.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn verdicts() {
        assert_eq!(Target::AtMost(1.02).judge(Some(1.02), ""), Verdict::Met);
        match Target::AtMost(1.02).judge(Some(1.07), "") {
            Verdict::Missed(by) => assert!((by - 0.05).abs() < 1e-9),
            v => panic!("{v:?}"),
        }
        assert!(matches!(
            Target::Below(10.0).judge(Some(10.0), ""),
            Verdict::Missed(_)
        ));
        assert_eq!(Target::AtLeast(100.0).judge(Some(100.0), ""), Verdict::Met);
        match Target::AtLeast(100.0).judge(Some(99.5), "") {
            Verdict::Missed(by) => assert!((by - 0.5).abs() < 1e-9),
            v => panic!("{v:?}"),
        }
        assert_eq!(
            Target::AtMost(1.0).judge(None, "no bpftrace"),
            Verdict::NotAvailable("no bpftrace".into())
        );
        assert_eq!(Target::AtMost(1.1).describe("x"), "<= 1.1x");
        assert_eq!(Target::Below(32.0).describe(" MiB"), "< 32 MiB");
    }
}
