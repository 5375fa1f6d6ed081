//! Shared nothing: one store per data core on the same two device files, driven from two
//! threads at once, each in its own partitions; after a restart every core finds its own shards.

use std::path::Path;

use ds::local::{LocalStore, OpenSpec};
use ds_store::{FormatOptions, FormatPolicy, ShardKey, ShardMeta};

fn spec(dir: &Path, format: bool) -> OpenSpec {
    OpenSpec {
        paths: vec![dir.join("a.img"), dir.join("b.img")],
        create_bytes: Some(256 << 20),
        policy: if format {
            FormatPolicy::IfEmpty
        } else {
            FormatPolicy::Never
        },
        format: format.then(|| FormatOptions {
            segment_bytes: 4 << 20,
            ..FormatOptions::new(2, 9)
        }),
        sqpoll: false,
        durability: Default::default(),
    }
}

fn data(key: ShardKey) -> Vec<u8> {
    let len = (key.object % 20_000) as usize;
    (0..len).map(|i| (i as u128 ^ key.object) as u8).collect()
}

#[test]
fn two_cores_write_their_own_partitions_concurrently() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cores");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = LocalStore::open(&spec(&dir, true)).unwrap();
    assert_eq!(store.cores.len(), 2);
    let empty: Vec<Vec<u64>> = store
        .cores
        .iter()
        .map(|c| c.devices().iter().map(|d| d.2).collect())
        .collect();
    let mut threads = Vec::new();
    for mut core in store.cores {
        threads.push(std::thread::spawn(move || {
            core.rebind_queues().unwrap();
            let index = core.core();
            let mut mine = Vec::new();
            let mut n = 0u128;
            while mine.len() < 500 {
                n += 1;
                let key = ShardKey::new(n * 7919 + 13, 0, 0);
                if ds::local::core_of(key, 2) != index {
                    continue;
                }
                let meta = ShardMeta {
                    version: 1,
                    scheme_k: 1,
                    scheme_m: 0,
                    object_bytes: 0,
                };
                core.put(key, meta, &data(key)).unwrap();
                mine.push(key);
            }
            for key in &mine {
                assert_eq!(core.get(*key).unwrap().1, data(*key));
            }
            mine
        }));
    }
    let owned: Vec<Vec<ShardKey>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let mut store = LocalStore::open(&spec(&dir, false)).unwrap();
    for (index, keys) in owned.iter().enumerate() {
        assert_eq!(
            store.cores[index].len(),
            keys.len(),
            "core {index} holds only its own"
        );
        for key in keys {
            assert_eq!(store.store_for(*key).get(*key).unwrap().1, data(*key));
        }
    }
    // Both devices took records (new data goes where there is most space), evenly.
    for (core, before) in store.cores.iter().zip(&empty) {
        let free: Vec<u64> = core.devices().iter().map(|d| d.2).collect();
        for (now, was) in free.iter().zip(before) {
            assert!(now < was, "a device took nothing: {free:?} vs {before:?}");
        }
        let spread = free.iter().max().unwrap() - free.iter().min().unwrap();
        assert!(spread <= 4 << 20, "unbalanced: {free:?}");
    }
}
