//! Percentiles over durations, in milliseconds.

use serde_json::{json, Value};
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Milliseconds with two decimals, for JSON.
pub fn ms2(d: Duration) -> f64 {
    r2(ms(d))
}

/// Each sample as `ms2`, for JSON.
pub fn ms2_all(samples: &[Duration]) -> Vec<f64> {
    samples.iter().copied().map(ms2).collect()
}

/// Nearest-rank percentiles.
pub fn summarize(samples: &[Duration]) -> Summary {
    let mut v: Vec<f64> = samples.iter().copied().map(ms).collect();
    v.sort_by(f64::total_cmp);
    let pick = |p: f64| -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    };
    Summary {
        n: v.len(),
        p50: pick(50.0),
        p95: pick(95.0),
        p99: pick(99.0),
        max: v.last().copied().unwrap_or(f64::NAN),
    }
}

pub fn median(samples: &[Duration]) -> f64 {
    summarize(samples).p50
}

/// The median of a few figures (the mean of the middle two when even);
/// NaN when there are none.
pub fn median_f64(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

impl Summary {
    pub fn json(&self) -> Value {
        json!({"n": self.n, "p50Ms": r2(self.p50), "p95Ms": r2(self.p95), "p99Ms": r2(self.p99), "maxMs": r2(self.max)})
    }

    pub fn cell(&self) -> String {
        format!(
            "{} / {} / {} / {}",
            f(self.p50),
            f(self.p95),
            f(self.p99),
            f(self.max)
        )
    }
}

/// Two decimals, for JSON.
pub fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A number for the table: 3 significant figures or so.
pub fn f(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

pub fn ratio(ours: f64, base: f64) -> String {
    if ours.is_finite() && base.is_finite() && base > 0.0 {
        let r = ours / base;
        if r < 0.95 {
            format!("×{r:.3}")
        } else {
            format!("×{r:.1}")
        }
    } else {
        "-".into()
    }
}
