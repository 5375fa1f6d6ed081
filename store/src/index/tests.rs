//! The index against a model multimap, across merges; memory and false-positive checks.

use super::*;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap};

/// The model: fingerprint to values, in insertion order.
#[derive(Default)]
struct Model {
    map: BTreeMap<u64, Vec<u64>>,
    len: usize,
}

impl Model {
    fn insert(&mut self, fp: u64, value: u64) {
        self.map.entry(fp).or_default().push(value);
        self.len += 1;
    }

    fn remove(&mut self, fp: u64, value: u64) -> bool {
        let Some(values) = self.map.get_mut(&fp) else {
            return false;
        };
        let Some(at) = values.iter().position(|&v| v == value) else {
            return false;
        };
        values.remove(at);
        if values.is_empty() {
            self.map.remove(&fp);
        }
        self.len -= 1;
        true
    }

    fn replace(&mut self, fp: u64, old: u64, new: u64) -> bool {
        let Some(values) = self.map.get_mut(&fp) else {
            return false;
        };
        let Some(at) = values.iter().position(|&v| v == old) else {
            return false;
        };
        values[at] = new;
        true
    }

    fn nth(&self, mut n: usize) -> (u64, u64) {
        for (&fp, values) in &self.map {
            if n < values.len() {
                return (fp, values[n]);
            }
            n -= values.len();
        }
        unreachable!("nth past the end")
    }

    fn sorted(&self, fp: u64) -> Vec<u64> {
        let mut values = self.map.get(&fp).cloned().unwrap_or_default();
        values.sort_unstable();
        values
    }
}

fn candidates(index: &Index, fp: u64) -> Vec<u64> {
    let mut out = Vec::new();
    index.candidates(fp, &mut out);
    out.sort_unstable();
    out
}

/// The index answers exactly as the model for every fingerprint the model has and for `probes`,
/// and so does an index rebuilt from `iter`.
fn assert_same(index: &Index, model: &Model, probes: &[u64]) {
    index.check();
    assert_eq!(index.len(), model.len);
    assert_eq!(index.is_empty(), model.len == 0);
    let mut rebuilt = Index::with_delta_entries_min(3);
    let mut entries: Vec<(u64, u64)> = index.iter().collect();
    for &(fp, value) in &entries {
        rebuilt.insert(fp, value);
    }
    rebuilt.check();
    let fps = model.map.keys().chain(probes);
    for &fp in fps {
        let expected = model.sorted(fp);
        assert_eq!(candidates(index, fp), expected, "fp {fp:#x}");
        assert_eq!(candidates(&rebuilt, fp), expected, "rebuilt, fp {fp:#x}");
    }
    let mut expected: Vec<(u64, u64)> = model
        .map
        .iter()
        .flat_map(|(&fp, values)| values.iter().map(move |&v| (fp, v)))
        .collect();
    entries.sort_unstable();
    expected.sort_unstable();
    assert_eq!(entries, expected);
}

#[derive(Clone, Debug)]
enum Op {
    Insert(u64),
    /// Removes the entry the index picks, if any.
    Remove(prop::sample::Index),
    RemoveAbsent(u64, u64),
    Replace(prop::sample::Index),
    ReplaceAbsent(u64, u64),
    Candidates(u64),
    Merge,
}

/// Fingerprints that collide outright, share a bucket, differ only in their top bits, sit at
/// both ends of the range (the delta's wrap-around), or are spread over the whole range.
fn fingerprint(wide: bool) -> BoxedStrategy<u64> {
    if wide {
        prop_oneof![
            any::<u64>(),
            (0..4u64),
            (0..4u64).prop_map(|i| u64::MAX - i)
        ]
        .boxed()
    } else {
        prop_oneof![
            0..8u64,
            (0..8u64).prop_map(|i| i << 61),
            (0..8u64).prop_map(|i| u64::MAX - i),
            (0..8u64).prop_map(|i| 0x5555_0000_0000_0000 | (i << 40) | i),
        ]
        .boxed()
    }
}

fn ops(wide: bool) -> impl Strategy<Value = Vec<Op>> {
    let fp = fingerprint(wide);
    let op = prop_oneof![
        6 => fp.clone().prop_map(Op::Insert),
        3 => any::<prop::sample::Index>().prop_map(Op::Remove),
        1 => (fp.clone(), any::<u64>()).prop_map(|(fp, v)| Op::RemoveAbsent(fp, v)),
        2 => any::<prop::sample::Index>().prop_map(Op::Replace),
        1 => (fp.clone(), any::<u64>()).prop_map(|(fp, v)| Op::ReplaceAbsent(fp, v)),
        3 => fp.prop_map(Op::Candidates),
        1 => Just(Op::Merge),
    ];
    prop::collection::vec(op, 1..400)
}

fn run(ops: &[Op], delta_entries_min: usize) {
    let mut index = Index::with_delta_entries_min(delta_entries_min);
    let mut model = Model::default();
    // Distinct values that are not in fingerprint order; the top bit set keeps them apart from
    // the absent ones below.
    let mut counter = 0u64;
    let mut fresh = || {
        counter += 1;
        counter.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1 << 63
    };
    let mut probes = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Insert(fp) => {
                let value = fresh();
                index.insert(fp, value);
                model.insert(fp, value);
                probes.push(fp);
            }
            Op::Remove(pick) => {
                if model.len > 0 {
                    let (fp, value) = model.nth(pick.index(model.len));
                    assert!(model.remove(fp, value));
                    assert!(index.remove(fp, value), "step {step}");
                    assert!(!index.remove(fp, value), "step {step}: removed twice");
                }
            }
            Op::RemoveAbsent(fp, value) => {
                let value = value & !(1 << 63);
                assert!(!index.remove(fp, value), "step {step}");
            }
            Op::Replace(pick) => {
                if model.len > 0 {
                    let (fp, old) = model.nth(pick.index(model.len));
                    let new = fresh();
                    assert!(model.replace(fp, old, new));
                    assert!(index.replace(fp, old, new), "step {step}");
                    assert!(
                        !index.replace(fp, old, fresh()),
                        "step {step}: old value still there"
                    );
                }
            }
            Op::ReplaceAbsent(fp, value) => {
                let value = value & !(1 << 63);
                assert!(!index.replace(fp, value, fresh()), "step {step}");
            }
            Op::Candidates(fp) => {
                assert_eq!(
                    candidates(&index, fp),
                    model.sorted(fp),
                    "step {step} fp {fp:#x}"
                );
                probes.push(fp);
            }
            Op::Merge => index.merge(),
        }
        assert_eq!(index.len(), model.len, "step {step}");
        if step % 64 == 0 {
            index.check();
        }
    }
    assert_same(&index, &model, &probes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn matches_model_with_narrow_fingerprints(ops in ops(false), delta_min in 1..8usize) {
        run(&ops, delta_min);
    }

    #[test]
    fn matches_model_with_wide_fingerprints(ops in ops(true), delta_min in 1..8usize) {
        run(&ops, delta_min);
    }

    #[test]
    fn matches_model_without_merges(ops in ops(true)) {
        run(&ops, DELTA_ENTRIES_MIN);
    }
}

#[test]
fn empty_index() {
    let mut index = Index::new();
    assert!(index.is_empty());
    assert_eq!(candidates(&index, 7), Vec::<u64>::new());
    assert!(!index.remove(7, 1));
    assert!(!index.replace(7, 1, 2));
    assert_eq!(index.iter().count(), 0);
    index.merge();
    index.check();
    assert!(index.heap_bytes() < 1 << 20);
}

#[test]
fn collisions_are_all_kept() {
    let mut index = Index::with_delta_entries_min(2);
    for value in 0..100 {
        index.insert(42, value);
    }
    assert_eq!(candidates(&index, 42), (0..100).collect::<Vec<_>>());
    assert!(index.remove(42, 50));
    assert!(index.replace(42, 51, 1000));
    let mut expected: Vec<u64> = (0..100).filter(|&v| v != 50 && v != 51).collect();
    expected.push(1000);
    assert_eq!(candidates(&index, 42), expected);
    assert_eq!(candidates(&index, 43), Vec::<u64>::new());
    index.check();
}

/// Grows through many directory sizes, shrinks back by removing most entries, and grows again,
/// comparing with a model along the way.
#[test]
fn grows_and_shrinks_across_merges() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut index = Index::with_delta_entries_min(64);
    let mut model: HashMap<u64, u64> = HashMap::new(); // value -> fp (values are unique)
    let mut value = 0;
    let mut live: Vec<u64> = Vec::new();
    fn check(index: &Index, model: &HashMap<u64, u64>) {
        index.check();
        assert_eq!(index.len(), model.len());
        let mut by_fp: HashMap<u64, Vec<u64>> = HashMap::new();
        for (&v, &fp) in model {
            by_fp.entry(fp).or_default().push(v);
        }
        for (fp, mut values) in by_fp {
            values.sort_unstable();
            assert_eq!(candidates(index, fp), values);
        }
    }
    for (target, removal_percent) in [(100_000, 0), (3_000, 97), (60_000, 20), (0, 100)] {
        while live.len() < target {
            // Clustered fingerprints now and then, so some buckets overflow their share.
            let fp = if rng.gen_bool(0.1) {
                rng.gen::<u64>() & 0xff00_0000_0000_00ff
            } else {
                rng.gen()
            };
            value += 1;
            index.insert(fp, value);
            model.insert(value, fp);
            live.push(value);
        }
        check(&index, &model);
        let removals = live.len() * removal_percent / 100;
        for _ in 0..removals {
            let at = rng.gen_range(0..live.len());
            let v = live.swap_remove(at);
            let fp = model.remove(&v).unwrap();
            if rng.gen_bool(0.5) {
                // Move it first: a replaced base entry must still be found and removed.
                value += 1;
                assert!(index.replace(fp, v, value));
                assert!(index.remove(fp, value));
            } else {
                assert!(index.remove(fp, v));
            }
        }
        check(&index, &model);
    }
    assert!(index.is_empty());
    index.merge();
    assert!(
        index.heap_bytes() < 1 << 20,
        "{} bytes left",
        index.heap_bytes()
    );
}

/// With full-width random fingerprints no false positive shows up at 1M entries (all 64 bits
/// are kept: a false positive needs two equal 64-bit fingerprints, about 1 in 2^64 per pair);
/// and the memory target holds at this size too.
#[test]
fn no_false_positives_at_1m_entries() {
    const ENTRIES: u64 = 1_000_000;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let fps: Vec<u64> = (0..ENTRIES).map(|_| rng.gen()).collect();
    let mut index = Index::new();
    for (value, &fp) in fps.iter().enumerate() {
        index.insert(fp, value as u64);
    }
    assert_eq!(index.len(), ENTRIES as usize);
    let bytes_per_entry = index.heap_bytes() as f64 / ENTRIES as f64;
    assert!(bytes_per_entry <= 16.0, "{bytes_per_entry} bytes per entry");
    let mut out = Vec::new();
    for (value, &fp) in fps.iter().enumerate() {
        out.clear();
        index.candidates(fp, &mut out);
        assert_eq!(out, [value as u64]);
    }
    for _ in 0..ENTRIES {
        out.clear();
        index.candidates(rng.gen(), &mut out);
        assert!(out.is_empty());
    }
}

#[test]
fn with_capacity_keeps_its_reservation() {
    let mut index = Index::with_capacity(50_000);
    let reserved = index.heap_bytes();
    assert!(reserved >= 50_000 * 13);
    for value in 0..50_000u64 {
        index.insert(value.wrapping_mul(0x9e37_79b9_7f4a_7c15), value);
    }
    index.check();
    assert_eq!(index.len(), 50_000);
    assert!(
        index.heap_bytes() >= reserved,
        "the reservation was given back"
    );
}
