//! Self-healing with real binaries (issue 6): repair after lost nodes, shards moving to nodes
//! that join, scrub finding and repairing records damaged on disk, draining a node, and the
//! `ds admin health --json` document.
//!
//! Every test starts its own cluster under `target/tmp` (`ds dev-cluster up`, repair passes
//! every 2 s) and polls with deadlines. The tests of this file run one at a time (a lock): each
//! cluster has six to nine daemons, and several at once would starve each other on a small
//! machine and turn deadlines into noise. The nodes killed or drained are drawn from a seed
//! printed at the start; set `REPAIR_SEED` to replay a run.
//!
//! What must hold:
//! - 8 nodes, 4+2, 300 objects: with 2 nodes killed, repair restores every stripe to 6 shards
//!   on 6 live nodes, so that 2 more can be killed and every object still reads back bit-exact;
//! - 3 nodes added to a 6-node cluster: shards move to the objects' new closest nodes while
//!   reads, running throughout, never return a wrong byte;
//! - 5 shard records damaged on disk: scrub counts all 5, repair writes them again (the intact
//!   bytes are back on the device and reads are no longer degraded), and later scrubs find none;
//! - a drained node stops; afterwards nothing is degraded or lost, no object names the node,
//!   every object reads back;
//! - `ds admin health --json` has every documented field, also on a lone node with no objects.

mod cluster;
mod node;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cluster::{
    alive, assert_all_exact, assert_health_fields, ds, is_appliance, log_tail, scheme, wait_until,
    Cluster, Obj, Outcome, Placement, Via, CONVERGE_TIMEOUT, HEALTH_COUNTERS, MIB,
};
use ds_proto::{ObjectId, Status, LENGTH_TO_END};
use node::workdir;
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use serde_json::Value;

/// Bytes of one data shard of a 4+2 stripe (stripes are 1 MiB).
const SHARD_BYTES: usize = 256 << 10;
/// Seconds between the nodes' repair passes.
const REPAIR_INTERVAL: u64 = 2;
/// How long repair gets to restore full redundancy (dead nodes drop out of the overlay ~25 s
/// after they stop answering; only then are their shards rebuilt elsewhere).
const REPAIR_TIMEOUT: Duration = Duration::from_secs(90);

static SERIAL: Mutex<()> = Mutex::new(());

/// One test of this file at a time (see the module docs).
fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The seed of the random choices of one test.
fn test_seed(test: &str) -> u64 {
    cluster::test_seed("REPAIR_SEED", test)
}

// ----- health -----

fn counter(health: &Value, field: &str) -> u64 {
    health[field]
        .as_u64()
        .unwrap_or_else(|| panic!("HEALTH has no counter {field}: {health}"))
}

fn health_summary(health: &Value) -> String {
    [
        "passes",
        "objects",
        "stripes",
        "full",
        "degraded",
        "lost",
        "repair_backlog",
        "shards_rebuilt",
        "bytes_rebuilt",
        "objects_moved",
        "repair_errors",
        "scrub_corrupt",
    ]
    .iter()
    .map(|field| format!("{field}={}", health[field]))
    .collect::<Vec<_>>()
    .join(" ")
}

/// Waits until every node of `nodes` has none of the ids `gone` in its overlay view and has
/// finished two repair passes since it was first seen so (so the last started after it), the
/// last with nothing degraded, lost or left in its backlog. Returns their health then.
fn wait_healthy(cluster: &Cluster, nodes: &[usize], gone: &[String], what: &str) -> Vec<Value> {
    let mut base: BTreeMap<usize, u64> = BTreeMap::new();
    wait_until(what, REPAIR_TIMEOUT, || {
        let mut problems = Vec::new();
        let mut healths = Vec::new();
        for &i in nodes {
            let view = cluster.view(i)?;
            let seen: Vec<&String> = gone.iter().filter(|id| view.contains(*id)).collect();
            if !seen.is_empty() {
                problems.push(format!("node {i} still sees {seen:?}"));
                continue;
            }
            let health = cluster.health(i)?;
            let passes = counter(&health, "passes");
            let first = *base.entry(i).or_insert(passes);
            if passes < first + 2 {
                problems.push(format!(
                    "node {i}: {passes} passes, waiting for {}",
                    first + 2
                ));
            } else if ["degraded", "lost", "repair_backlog"]
                .iter()
                .any(|field| counter(&health, field) != 0)
            {
                problems.push(format!("node {i}: {}", health_summary(&health)));
            }
            healths.push(health);
        }
        if problems.is_empty() {
            Ok(healths)
        } else {
            Err(problems.join("\n"))
        }
    })
}

/// STATs every object through node `via` until `check` finds nothing wrong with any (it
/// describes what is wrong with one), for up to `timeout`; then panics with how many objects
/// are wrong and a few of them.
fn wait_placements(
    cluster: &Cluster,
    via: usize,
    objects: &[Obj],
    what: &str,
    timeout: Duration,
    check: impl Fn(&Obj, &Placement) -> Option<String>,
) {
    let started = Instant::now();
    let mut client = cluster.client(via);
    wait_until(what, timeout, || {
        let mut wrong = Vec::new();
        for object in objects {
            let placement = cluster.placement(&mut client, object)?;
            if let Some(problem) = check(object, &placement) {
                wrong.push(format!(
                    "  {} ({} bytes): {problem}; shards (shard: node) {:?}, missing {:?}",
                    object.id, object.size, placement.stripes, placement.missing
                ));
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} of {} objects wrong, e.g.\n{}",
                wrong.len(),
                objects.len(),
                wrong[..wrong.len().min(8)].join("\n")
            ))
        }
    });
    eprintln!(
        "{what}: so for all {} objects in {:.1?}",
        objects.len(),
        started.elapsed()
    );
}

/// What is wrong with a placement that should have, in every stripe, 6 shards on 6 distinct
/// nodes of `allowed` and nothing missing.
fn not_whole_on(placement: &Placement, allowed: &BTreeSet<usize>) -> Option<String> {
    if !placement.missing.is_empty() {
        return Some(format!("{} shards missing", placement.missing.len()));
    }
    for (stripe, shards) in &placement.stripes {
        let nodes: BTreeSet<usize> = shards.values().copied().collect();
        if shards.len() != 6 || nodes.len() != 6 {
            return Some(format!(
                "stripe {stripe} has {} shards on {} nodes",
                shards.len(),
                nodes.len()
            ));
        }
        if !nodes.is_subset(allowed) {
            return Some(format!(
                "stripe {stripe} has shards on nodes {:?}",
                nodes.difference(allowed).collect::<Vec<_>>()
            ));
        }
    }
    None
}

// ----- objects -----

/// Writes `count` 4+2 objects of sizes cycling through `sizes` (seeds `seed_base + i`) through
/// every live node, one thread per node.
fn write_objects(cluster: &Cluster, count: u64, sizes: &[u64], seed_base: u64) -> Vec<Obj> {
    let started = Instant::now();
    let specs: Vec<(u64, u64)> = (0..count)
        .map(|i| (seed_base + i, sizes[i as usize % sizes.len()]))
        .collect();
    let objects = cluster::write_all(cluster, &cluster.live(), scheme("4+2"), &specs);
    eprintln!(
        "{} objects ({} bytes) written in {:.1?}",
        objects.len(),
        objects.iter().map(|o| o.size).sum::<u64>(),
        started.elapsed()
    );
    objects
}

// ----- the device files -----

/// Offsets at which `needle` occurs in the file at `path` (the data extents of a sparse file).
fn find_in_file(path: &Path, needle: &[u8]) -> Vec<u64> {
    use std::os::unix::fs::FileExt;
    use std::os::unix::io::AsRawFd;
    const CHUNK: u64 = 8 << 20;
    let file = fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let len = file.metadata().unwrap().len();
    let fd = file.as_raw_fd();
    let overlap = needle.len() as u64 - 1;
    let mut found = Vec::new();
    let mut buf = vec![0u8; (CHUNK + overlap) as usize];
    let mut pos = 0u64;
    while pos < len {
        // SAFETY: lseek(2) on a descriptor this function owns.
        let start = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
        if start < 0 {
            break; // ENXIO: no data after pos.
        }
        // SAFETY: as above.
        let end = unsafe { libc::lseek(fd, start, libc::SEEK_HOLE) };
        let (start, end) = (start as u64, (end.max(start) as u64).min(len));
        let mut at = start;
        while at < end {
            let want = (end - at).min(CHUNK + overlap) as usize;
            let chunk = &mut buf[..want];
            file.read_exact_at(chunk, at).unwrap();
            if chunk.len() >= needle.len() {
                for i in 0..=chunk.len() - needle.len() {
                    if chunk[i] == needle[0] && chunk[i..i + needle.len()] == *needle {
                        found.push(at + i as u64);
                    }
                }
            }
            if at + want as u64 >= end {
                break;
            }
            at += CHUNK;
        }
        pos = end.max(pos + 1);
    }
    found.dedup();
    found
}

fn read_file_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let file = fs::File::open(path).unwrap();
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset).unwrap();
    buf
}

// ----- the tests -----

/// 8 nodes, 4+2, 300 objects: 2 nodes SIGKILLed, repair rebuilds their shards on the other
/// nodes, then 2 more are killed and every object still reads back bit-exact.
///
/// Issue 6 says 6 nodes, but with 2 of 6 dead only 4 nodes remain, and a 4+2 stripe's 6 shards
/// cannot sit on 4 nodes such that any 2 more may die (two nodes would hold 2 shards each, and
/// losing both loses 4 shards of 6). With 8 nodes the 6 survivors can hold one shard of each
/// stripe each, so the test proves that repair restored full redundancy.
#[test]
fn repair_restores_redundancy_after_two_nodes_die() {
    let _serial = serial();
    let seed = test_seed("repair_restores_redundancy_after_two_nodes_die");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut cluster = Cluster::up("repair_loss", 8, "4+2", Some(REPAIR_INTERVAL));
    eprintln!("8 nodes up in {:.1?}", started.elapsed());
    let objects = write_objects(&cluster, 300, &[1, 4096, 100_000, MIB + 1], 1);
    let all: Vec<usize> = (0..cluster.len()).collect();
    let mut order = all.clone();
    order.shuffle(&mut rng);

    let first: Vec<usize> = order[..2].to_vec();
    let first_ids: Vec<String> = first.iter().map(|&i| cluster.nodes[i].id.clone()).collect();
    let mut via = cluster.client(order[2]);
    let touched = objects
        .iter()
        .filter(|o| {
            let nodes = cluster.placement(&mut via, o).unwrap().nodes();
            first.iter().any(|n| nodes.contains(n))
        })
        .count();
    drop(via);
    eprintln!("killing nodes {first:?} ({first_ids:?}), which hold shards of {touched} objects");
    let before: u64 = cluster.health_sum("bytes_rebuilt").unwrap();
    let moved_before: u64 = cluster.health_sum("objects_moved").unwrap();
    for &victim in &first {
        cluster.kill(victim);
    }
    let killed_at = Instant::now();
    let survivors = cluster.live();
    let healths = wait_healthy(
        &cluster,
        &survivors,
        &first_ids,
        "repair after 2 nodes died",
    );
    let rebuilt: u64 = healths.iter().map(|h| counter(h, "bytes_rebuilt")).sum();
    let shards: u64 = healths.iter().map(|h| counter(h, "shards_rebuilt")).sum();
    let stripes: u64 = healths.iter().map(|h| counter(h, "stripes")).sum();
    let moved: u64 = healths.iter().map(|h| counter(h, "objects_moved")).sum();
    eprintln!(
        "full redundancy {:.1?} after the kill: {shards} shards, {} bytes rebuilt, {} objects \
         moved; {stripes} stripes checked in the last passes",
        killed_at.elapsed(),
        rebuilt - before,
        moved - moved_before
    );
    for (i, health) in survivors.iter().zip(&healths) {
        eprintln!("  node {i}: {}", health_summary(health));
    }
    assert!(shards > 0, "no shard was rebuilt after 2 of 8 nodes died");

    // Every stripe of every object: 6 shards on 6 distinct live nodes, none missing.
    let live: BTreeSet<usize> = survivors.iter().copied().collect();
    wait_placements(
        &cluster,
        survivors[0],
        &objects,
        "every stripe whole on the survivors",
        Duration::from_secs(30),
        |_, placement| not_whole_on(placement, &live),
    );

    let second: Vec<usize> = order[2..4].to_vec();
    eprintln!("killing nodes {second:?}");
    for &victim in &second {
        cluster.kill(victim);
    }
    let last = cluster.live();
    assert_all_exact(&cluster, &last, &objects, "4 of 8 nodes dead");
    cluster.assert_running();
    eprintln!("total {:.1?}", started.elapsed());
}

/// Three nodes join a 6-node 4+2 cluster while a reader reads every object again and again:
/// the shards move to each object's 6 closest nodes (the new ones among them), and no read
/// ever returns a wrong byte.
#[test]
fn shards_move_to_joining_nodes_while_reads_stay_correct() {
    let _serial = serial();
    let started = Instant::now();
    let mut cluster = Cluster::up("repair_join", 6, "4+2", Some(REPAIR_INTERVAL));
    let objects = write_objects(&cluster, 100, &[1, 4096, 100_000, MIB + 1], 1000);
    let old = cluster.live();
    let stop = AtomicBool::new(false);
    let rounds = AtomicU64::new(0);

    #[derive(Default, Debug)]
    struct ReadLog {
        rounds: u64,
        exact: u64,
        /// Status (or "no status") -> (count, first message).
        failed: BTreeMap<String, (u64, String)>,
        wrong: Vec<String>,
    }
    let readers: Vec<Via> = old.iter().map(|&i| Via::new(&cluster, i)).collect();
    let (log, new) = std::thread::scope(|scope| {
        let (objects, stop, rounds) = (&objects, &stop, &rounds);
        let reader = scope.spawn(move || {
            let mut readers = readers;
            let mut log = ReadLog::default();
            for round in 0.. {
                for (index, object) in objects.iter().enumerate() {
                    if stop.load(Ordering::Relaxed) {
                        return log;
                    }
                    let count = readers.len();
                    let via = &mut readers[(index + round) % count];
                    match via.read(object) {
                        Outcome::Exact => log.exact += 1,
                        Outcome::Wrong(what) => log.wrong.push(what),
                        Outcome::Failed(error) => {
                            let status = error
                                .status()
                                .map_or("no status".to_string(), |s| s.to_string());
                            log.failed
                                .entry(status)
                                .or_insert((0, format!("through node {}: {error}", via.node)))
                                .0 += 1;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
                log.rounds += 1;
                rounds.fetch_add(1, Ordering::Relaxed);
            }
            log
        });
        // Whatever happens below (a failed check panics), the reader stops, so the scope ends.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop_reader = StopOnDrop(stop);
        let joined = Instant::now();
        let new: Vec<usize> = (0..3).map(|_| cluster.add_node()).collect();
        cluster.wait_converged();
        eprintln!(
            "nodes {new:?} joined and seen by all in {:.1?}",
            joined.elapsed()
        );
        // Each object's shards end on its 6 closest nodes (repair keeps the shards of nodes
        // still among them and moves the others), every stripe whole there.
        let ids: Vec<(u128, usize)> = cluster
            .live()
            .iter()
            .map(|&i| (cluster.nodes[i].id_number(), i))
            .collect();
        let closest = |object: &Obj| -> BTreeSet<usize> {
            let mut by_distance = ids.clone();
            by_distance.sort_by_key(|(id, _)| id ^ object.id.0);
            by_distance.iter().take(6).map(|&(_, i)| i).collect()
        };
        let to_new = objects
            .iter()
            .filter(|o| closest(o).iter().any(|n| new.contains(n)))
            .count();
        eprintln!(
            "{to_new} of {} objects have a new node among their 6 closest",
            objects.len()
        );
        wait_placements(
            &cluster,
            old[0],
            objects,
            "shards on the 6 closest nodes",
            REPAIR_TIMEOUT,
            |object, placement| not_whole_on(placement, &closest(object)),
        );
        eprintln!(
            "every object on its 6 closest nodes {:.1?} after the first join",
            joined.elapsed()
        );
        // One more full round of reads after the move.
        let done = rounds.load(Ordering::Relaxed);
        wait_until("a round of reads after the move", CONVERGE_TIMEOUT, || {
            if rounds.load(Ordering::Relaxed) > done {
                Ok(())
            } else {
                Err("the reader is still in its round".into())
            }
        });
        stop.store(true, Ordering::Relaxed);
        (reader.join().unwrap(), new)
    });
    eprintln!(
        "reader during the joins: {} rounds, {} reads exact, failed {:?}, wrong {}",
        log.rounds,
        log.exact,
        log.failed,
        log.wrong.len()
    );
    assert!(
        log.wrong.is_empty(),
        "reads returned wrong bytes while nodes joined:\n{}",
        log.wrong[..log.wrong.len().min(12)].join("\n")
    );
    assert!(log.rounds >= 1, "the reader did not read every object once");
    for (status, (count, first)) in &log.failed {
        assert_eq!(
            status,
            &Status::Unavailable.to_string(),
            "{count} reads failed with {status} while nodes joined (first: {first})"
        );
    }
    let healths = wait_healthy(&cluster, &cluster.live(), &[], "health after the joins");
    let moved: u64 = healths.iter().map(|h| counter(h, "objects_moved")).sum();
    for (i, health) in cluster.live().iter().zip(&healths) {
        eprintln!("  node {i}: {}", health_summary(health));
    }
    assert!(moved > 0, "no node moved an object after 3 joined");
    let mut on_new = 0;
    let mut via = cluster.client(new[0]);
    for object in &objects {
        if cluster
            .placement(&mut via, object)
            .unwrap()
            .nodes()
            .iter()
            .any(|n| new.contains(n))
        {
            on_new += 1;
        }
    }
    drop(via);
    eprintln!("{on_new} objects have shards on the new nodes; {moved} moves counted");
    assert!(on_new > 0, "no object has a shard on a new node");
    let all = cluster.live();
    assert_all_exact(&cluster, &all, &objects, "after the joins");
    cluster.assert_running();
    eprintln!("total {:.1?}", started.elapsed());
}

/// Bytes flipped inside 5 data shard records on the device files of the nodes: scrub counts
/// all 5 and repair writes each again (intact on the device, reads no longer degraded); later
/// scrubs find nothing more.
#[test]
fn scrub_finds_and_repairs_five_damaged_shards() {
    let _serial = serial();
    let seed = test_seed("scrub_finds_and_repairs_five_damaged_shards");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let cluster = Cluster::up("repair_scrub", 6, "4+2", Some(REPAIR_INTERVAL));
    let others = write_objects(&cluster, 20, &[1, 4096, 100_000, MIB + 1], 2000);
    // Five objects of one stripe of random bytes: every 64-byte run of a shard is unique.
    let mut client = cluster.client(0);
    let damaged: Vec<(ObjectId, Vec<u8>)> = (0..5)
        .map(|_| {
            let mut data = vec![0u8; MIB as usize];
            rng.fill_bytes(&mut data);
            let id = client.create(Some(scheme("4+2"))).unwrap();
            client.put(id, 0, &data).unwrap();
            (id, data)
        })
        .collect();
    // A data shard of each, spread over the nodes: shard i of stripe 0 holds the object's bytes
    // [i * 256 KiB, (i + 1) * 256 KiB).
    let mut used: BTreeMap<usize, usize> = BTreeMap::new();
    let mut flips = Vec::new();
    for (id, data) in &damaged {
        let stat = client.stat(*id).unwrap();
        let part = stat
            .parts
            .iter()
            .filter(|p| p.stripe == 0 && usize::from(p.shard) < 4)
            .min_by_key(|p| {
                let node = cluster.node_named(&p.node).expect("a node of the cluster");
                (used.get(&node).copied().unwrap_or(0), p.shard)
            })
            .unwrap_or_else(|| panic!("no data shard of stripe 0 in {stat:?}"))
            .clone();
        let node = cluster.node_named(&part.node).unwrap();
        *used.entry(node).or_default() += 1;
        let shard = usize::from(part.shard);
        let expected = data[shard * SHARD_BYTES..(shard + 1) * SHARD_BYTES].to_vec();
        let device = PathBuf::from(&part.device);
        let found = find_in_file(&device, &expected[..64]);
        assert_eq!(
            found.len(),
            1,
            "{id} shard {shard}: its first 64 bytes appear {} times in {}",
            found.len(),
            device.display()
        );
        let at = found[0] + 1000;
        let byte = read_file_at(&device, at, 1)[0];
        {
            use std::os::unix::fs::FileExt;
            let file = fs::OpenOptions::new().write(true).open(&device).unwrap();
            file.write_all_at(&[byte ^ 0x5a], at).unwrap();
            file.sync_all().unwrap();
        }
        eprintln!(
            "{id} shard {shard} on node {node}: byte {at} of {} flipped",
            device.display()
        );
        flips.push((*id, shard, node, device, found[0], expected));
    }
    drop(client);

    let flipped_at = Instant::now();
    wait_until("scrub counts the 5 damaged records", REPAIR_TIMEOUT, || {
        let corrupt = cluster.health_sum("scrub_corrupt")?;
        if corrupt >= 5 {
            Ok(())
        } else {
            Err(format!("scrub_corrupt summed over the nodes: {corrupt}"))
        }
    });
    eprintln!("scrub found all 5 in {:.1?}", flipped_at.elapsed());
    // Two passes on every node after that: the repair of each followed its walk.
    let all = cluster.live();
    let healths = wait_healthy(&cluster, &all, &[], "repair of the damaged records");
    let corrupt: u64 = healths.iter().map(|h| counter(h, "scrub_corrupt")).sum();
    let rebuilt: u64 = healths.iter().map(|h| counter(h, "shards_rebuilt")).sum();
    eprintln!(
        "repaired {:.1?} after the flips: scrub_corrupt {corrupt}, shards_rebuilt {rebuilt}",
        flipped_at.elapsed()
    );
    for (i, health) in all.iter().zip(&healths) {
        eprintln!("  node {i}: {}", health_summary(health));
    }
    assert!(rebuilt >= 5, "5 damaged shards, {rebuilt} rebuilt");

    // Each shard's bytes are whole on its device again (a new record; the damaged one is dead).
    for (id, shard, node, device, old_at, expected) in &flips {
        let found = find_in_file(device, &expected[..64]);
        let intact: Vec<u64> = found
            .iter()
            .copied()
            .filter(|&at| read_file_at(device, at, SHARD_BYTES) == *expected)
            .collect();
        eprintln!(
            "{id} shard {shard} on node {node}: copies at {found:?}, intact at {intact:?} \
             (the damaged one at {old_at})"
        );
        assert!(
            !intact.is_empty(),
            "{id} shard {shard}: no intact copy in {} after repair (copies at {found:?})",
            device.display()
        );
    }
    // Scrub finds nothing more: its count stays put over two more passes on every node.
    let healths = wait_healthy(&cluster, &all, &[], "two more passes");
    let later: u64 = healths.iter().map(|h| counter(h, "scrub_corrupt")).sum();
    assert_eq!(
        later, corrupt,
        "scrub still finds damaged records after the repair"
    );
    // Reads of the 5 are exact and no longer degraded (the live shards are intact).
    let degraded_before = cluster.counter_sum("ds_coding_degraded_reads_total");
    for &node in &all {
        let mut client = cluster.client(node);
        for (id, data) in &damaged {
            let mut out = Vec::new();
            client
                .get(*id, 0, LENGTH_TO_END, &mut out, &mut |_| {})
                .unwrap_or_else(|e| panic!("GET {id} through node {node}: {e}"));
            assert!(out == *data, "GET {id} through node {node}: wrong bytes");
        }
    }
    // Counters are published every 250 ms.
    std::thread::sleep(Duration::from_millis(600));
    let degraded_after = cluster.counter_sum("ds_coding_degraded_reads_total");
    assert_eq!(
        degraded_after, degraded_before,
        "reads of the repaired objects were degraded"
    );
    assert_all_exact(&cluster, &all, &others, "the other objects");
    cluster.assert_running();
    eprintln!("total {:.1?}", started.elapsed());
}

/// `ds admin drain --node ADDR` on a 7-node 4+2 cluster: the command succeeds, the node exits,
/// the others find nothing degraded or lost, no object names the node, every object reads.
#[test]
fn a_drained_node_leaves_with_nothing_degraded() {
    let _serial = serial();
    let seed = test_seed("a_drained_node_leaves_with_nothing_degraded");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut cluster = Cluster::up("repair_drain", 7, "4+2", Some(REPAIR_INTERVAL));
    let objects = write_objects(&cluster, 100, &[1, 4096, 100_000, MIB + 1], 3000);
    let all = cluster.live();
    let drained = *all.choose(&mut rng).unwrap();
    let drained_id = cluster.nodes[drained].id.clone();
    let pid = cluster.nodes[drained].pid.unwrap();
    let mut via = cluster.client(all[(drained + 1) % all.len()]);
    let holding = objects
        .iter()
        .filter(|o| {
            cluster
                .placement(&mut via, o)
                .unwrap()
                .nodes()
                .contains(&drained)
        })
        .count();
    drop(via);
    eprintln!("draining node {drained} ({drained_id}), which holds shards of {holding} objects");
    let phase = Instant::now();
    let addr = cluster.nodes[drained].addr.to_string();
    let out = ds(&["--node", &addr, "admin", "drain", "--timeout", "100"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "ds admin drain failed:\n{stdout}\n{stderr}\n{}",
        log_tail(&cluster.nodes[drained].log)
    );
    eprintln!(
        "ds admin drain answered in {:.1?}: {}",
        phase.elapsed(),
        stdout.trim()
    );
    wait_until("the drained node exits", Duration::from_secs(20), || {
        if alive(pid) && is_appliance(pid) {
            Err(format!("pid {pid} still runs"))
        } else {
            Ok(())
        }
    });
    cluster.nodes[drained].pid = None;
    eprintln!(
        "node {drained} exited; its log ends:\n{}",
        log_tail(&cluster.nodes[drained].log)
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let rest = cluster.live();
    let healths = wait_healthy(&cluster, &rest, &[drained_id], "the others after the drain");
    for (i, health) in rest.iter().zip(&healths) {
        eprintln!("  node {i}: {}", health_summary(health));
    }
    let allowed: BTreeSet<usize> = rest.iter().copied().collect();
    wait_placements(
        &cluster,
        rest[0],
        &objects,
        "every stripe whole on the nodes left",
        Duration::from_secs(30),
        |_, placement| not_whole_on(placement, &allowed),
    );
    assert_all_exact(&cluster, &rest, &objects, "after the drain");
    cluster.assert_running();
    eprintln!("total {:.1?}", started.elapsed());
}

/// `ds admin health --json` (and HEALTH through the client) has every documented field, on a
/// lone node with no objects: zero stripes, nothing degraded, scrub passes made.
#[test]
fn health_reports_every_field_on_an_empty_node() {
    let _serial = serial();
    let dir = workdir("repair_health");
    let config = node::write_config(&dir, 2, "1G", "\n[repair]\ninterval_secs = 1\n");
    let node = node::NodeProcess::start(&config);
    let addr = node.addr.to_string();
    let health = wait_until("a repair pass on the lone node", CONVERGE_TIMEOUT, || {
        let out = ds(&["--node", &addr, "admin", "health", "--json"]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let health: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "ds admin health --json printed no JSON ({e}):\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
        })?;
        assert_health_fields("ds admin health --json", &health);
        if counter(&health, "passes") >= 1 {
            Ok(health)
        } else {
            Err(format!("no pass yet: {health}"))
        }
    });
    eprintln!("{}", serde_json::to_string_pretty(&health).unwrap());
    assert_eq!(health["cores"].as_array().unwrap().len(), 2, "{health}");
    // Every counter but those of the passes that ran and what they read is 0 on an empty node.
    let ran = ["passes", "scrub_passes", "scrub_bytes", "scrub_records"];
    for field in HEALTH_COUNTERS.iter().filter(|f| !ran.contains(f)) {
        assert_eq!(
            counter(&health, field),
            0,
            "{field} on an empty node: {health}"
        );
    }
    assert!(counter(&health, "scrub_passes") >= 1, "{health}");
    assert_eq!(health["draining"], Value::Bool(false), "{health}");
    assert_eq!(health["drained"], Value::Bool(false), "{health}");
    // The client's HEALTH is the same document.
    let mut client = node.client();
    let direct = client.health().unwrap();
    assert_health_fields("Client::health", &direct);
    let keys = |v: &Value| {
        v.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(keys(&direct), keys(&health));
    // The plain form names the fields too.
    let out = ds(&["--node", &addr, "admin", "health"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for field in HEALTH_COUNTERS
        .iter()
        .chain(&["scrub_progress", "draining"])
    {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().next() == Some(field)),
            "ds admin health does not show {field}:\n{text}"
        );
    }
    node.stop();
    let _ = fs::remove_dir_all(&dir);
}
