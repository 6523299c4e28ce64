//! Integers as JSON Schema counts them: `3` and `3.0` alike (some JSON
//! encoders write every number with a fraction). Anything with a fraction,
//! or beyond what a JavaScript number holds exactly, is refused.

use serde::de::Error;
use serde::{Deserialize, Deserializer};
use serde_json::Number;
use std::collections::BTreeMap;

const MAX_SAFE: f64 = 9_007_199_254_740_991.0;

fn as_u64(n: &Number) -> Option<u64> {
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=MAX_SAFE).contains(f))
            .map(|f| f as u64)
    })
}

fn as_i64(n: &Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && (-MAX_SAFE..=MAX_SAFE).contains(f))
            .map(|f| f as i64)
    })
}

fn read<'de, D: Deserializer<'de>, T>(
    n: Number,
    convert: fn(&Number) -> Option<T>,
    what: &str,
) -> Result<T, D::Error> {
    convert(&n).ok_or_else(|| D::Error::custom(format!("expected {what}, got {n}")))
}

pub(super) fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    read::<D, _>(Number::deserialize(d)?, as_u64, "a non-negative integer")
}

pub(super) fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<Number>::deserialize(d)?
        .map(|n| read::<D, _>(n, as_u64, "a non-negative integer"))
        .transpose()
}

pub(super) fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<Number>::deserialize(d)?
        .map(|n| read::<D, _>(n, as_i64, "an integer"))
        .transpose()
}

pub(super) fn map_u64<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, u64>, D::Error> {
    BTreeMap::<String, Number>::deserialize(d)?
        .into_iter()
        .map(|(k, n)| Ok((k, read::<D, _>(n, as_u64, "a non-negative integer")?)))
        .collect()
}

pub(super) fn map_i64<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, i64>, D::Error> {
    BTreeMap::<String, Number>::deserialize(d)?
        .into_iter()
        .map(|(k, n)| Ok((k, read::<D, _>(n, as_i64, "an integer")?)))
        .collect()
}
