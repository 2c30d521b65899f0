//! Counts kept by hour over a sliding window (`stats::HourlyTally`, `proxy::ProxyTally`).
//!
//! The buckets are a few dozen at most, so they are a `Vec` kept in hour order rather than a
//! `BTreeMap`: each `BTreeMap<i64, _>` compiled its own node code into the Worker (~8 KB of wasm
//! per value type), where a sorted `Vec` costs a fraction. They are written and read as the map
//! was (`{"<hour>": <counts>, ...}`, hours ascending), so stored tallies read as before.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;
use std::ops::RangeInclusive;

/// Counts by hour (hours since the epoch), in hour order, one bucket per hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buckets<T>(Vec<(i64, T)>);

impl<T> Default for Buckets<T> {
    fn default() -> Self {
        Buckets(Vec::new())
    }
}

impl<T: Default> Buckets<T> {
    /// The bucket of `hour`, made empty if there is none yet.
    pub fn hour_mut(&mut self, hour: i64) -> &mut T {
        let at = self.0.partition_point(|(h, _)| *h < hour);
        if self.0.get(at).is_none_or(|(h, _)| *h != hour) {
            self.0.insert(at, (hour, T::default()));
        }
        &mut self.0[at].1
    }
}

impl<T> Buckets<T> {
    /// Keeps only the buckets of hours after `hour`.
    pub fn keep_after(&mut self, hour: i64) {
        self.0.retain(|(h, _)| *h > hour);
    }

    /// The buckets of the hours in `hours`.
    pub fn range(&self, hours: RangeInclusive<i64>) -> impl Iterator<Item = &T> {
        self.0
            .iter()
            .filter(move |(h, _)| hours.contains(h))
            .map(|(_, t)| t)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T: Serialize> Serialize for Buckets<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(h, t)| (h, t)))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Buckets<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Hours<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Hours<T> {
            type Value = Buckets<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Buckets<T>, M::Error> {
                // In hour order whatever the text's order; a repeated hour keeps its last
                // counts, as a map read it.
                let mut v: Vec<(i64, T)> = Vec::new();
                while let Some((hour, t)) = map.next_entry::<i64, T>()? {
                    let at = v.partition_point(|(h, _)| *h < hour);
                    match v.get_mut(at) {
                        Some(slot) if slot.0 == hour => slot.1 = t,
                        _ => v.insert(at, (hour, t)),
                    }
                }
                Ok(Buckets(v))
            }
        }
        d.deserialize_map(Hours(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn reads_and_writes_as_the_map_did() {
        let text = r#"{"7":2,"3":1,"5":4,"3":9}"#;
        let b: Buckets<u64> = serde_json::from_str(text).unwrap();
        let m: BTreeMap<i64, u64> = serde_json::from_str(text).unwrap();
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            serde_json::to_string(&m).unwrap()
        );
        assert_eq!(serde_json::to_string(&b).unwrap(), r#"{"3":9,"5":4,"7":2}"#);
    }

    #[test]
    fn buckets_by_hour() {
        let mut b: Buckets<u64> = Buckets::default();
        *b.hour_mut(5) += 1;
        *b.hour_mut(2) += 1;
        *b.hour_mut(5) += 1;
        assert_eq!(b.range(0..=4).copied().collect::<Vec<_>>(), vec![1]);
        assert_eq!(b.range(2..=5).copied().collect::<Vec<_>>(), vec![1, 2]);
        b.keep_after(2);
        assert_eq!(b.len(), 1);
    }
}
