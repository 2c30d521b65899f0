//! A small map kept as a `Vec` in key order: hourly tallies (`stats::HourlyTally`,
//! `proxy::ProxyTally`), Keap apps' throttles (`quota::QuotaView`), a query's parameters.
//!
//! These maps hold a few dozen entries at most, and each `BTreeMap<K, V>` compiled its own node
//! code into the Worker (~8 KB of wasm per key and value type), where a sorted `Vec` costs a
//! fraction. A `VecMap` is written and read as the `BTreeMap` was (a JSON object, keys
//! ascending; a repeated key keeps its last value), so stored values read as before.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, Serializer};
use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::RangeInclusive;

/// Entries in key order, one per key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VecMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap(Vec::new())
    }
}

impl<K: Ord, V> VecMap<K, V> {
    /// Where `key` is, or would go.
    fn place<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.0.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.place(key).ok().map(|i| &self.0[i].1)
    }

    pub fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.place(key).ok().map(|i| &mut self.0[i].1)
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.place(key).is_ok()
    }

    /// Sets `key` to `value`; answers the value it had.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.place(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    /// The value of `key`, made by `new` if there is none yet.
    pub fn get_or_insert_with(&mut self, key: K, new: impl FnOnce() -> V) -> &mut V {
        let i = match self.place(&key) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (key, new()));
                i
            }
        };
        &mut self.0[i].1
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.place(key).ok().map(|i| self.0.remove(i).1)
    }

    /// The values of the keys in `keys`.
    pub fn range(&self, keys: RangeInclusive<K>) -> impl Iterator<Item = &V> {
        self.0
            .iter()
            .filter(move |(k, _)| keys.contains(k))
            .map(|(_, v)| v)
    }
}

impl<K, V> VecMap<K, V> {
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.0.retain_mut(|(k, v)| keep(k, v));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a, K, V> IntoIterator for &'a VecMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<K: Ord + Borrow<Q>, V, Q: Ord + ?Sized> std::ops::Index<&Q> for VecMap<K, V> {
    type Output = V;
    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("no entry for this key")
    }
}

impl<K: Serialize, V: Serialize> Serialize for VecMap<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de, K: Ord + Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for VecMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries<K, V>(PhantomData<(K, V)>);
        impl<'de, K: Ord + Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for Entries<K, V> {
            type Value = VecMap<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<VecMap<K, V>, M::Error> {
                // In key order whatever the text's order; a repeated key keeps its last value.
                let mut m = VecMap::default();
                while let Some((k, v)) = map.next_entry::<K, V>()? {
                    m.insert(k, v);
                }
                Ok(m)
            }
        }
        d.deserialize_map(Entries(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn reads_and_writes_as_a_btree_map_did() {
        let text = r#"{"7":2,"3":1,"5":4,"3":9}"#;
        let v: VecMap<i64, u64> = serde_json::from_str(text).unwrap();
        let b: BTreeMap<i64, u64> = serde_json::from_str(text).unwrap();
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"3":9,"5":4,"7":2}"#);
        let text = r#"{"b":1,"a":2}"#;
        let v: VecMap<String, u64> = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"a":2,"b":1}"#);
        assert_eq!(v["b"], 1);
    }

    #[test]
    fn keeps_key_order() {
        let mut m: VecMap<i64, u64> = VecMap::default();
        *m.get_or_insert_with(5, u64::default) += 1;
        *m.get_or_insert_with(2, u64::default) += 1;
        *m.get_or_insert_with(5, u64::default) += 1;
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), vec![2, 5]);
        assert_eq!(m.range(0..=4).copied().collect::<Vec<_>>(), vec![1]);
        assert_eq!(m.range(2..=5).copied().collect::<Vec<_>>(), vec![1, 2]);
        m.retain(|k, _| *k > 2);
        assert_eq!(m.len(), 1);
        assert_eq!(m.remove(&5), Some(2));
        assert!(m.is_empty());
    }
}
