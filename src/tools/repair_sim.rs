//! `ds repair-sim`: repair under churn, simulated: thousands of nodes and objects in one
//! thread, no sockets, no clock, the same seed giving the same answer.
//!
//! Node and object ids are random u128s. An object is placed on the K + M members closest to
//! its id by XOR ([`MemberList::closest`], what CREATE does). Each round a fraction of the
//! nodes fails at once (their shards are gone) and about as many new nodes join; then one
//! repair round runs over every object that survived: the new placement is the one the node
//! code computes ([`target_placement`]), the shards whose node failed are rebuilt on their new
//! node and the shards whose node is no longer among the closest are copied to theirs.
//! An object is lost when, at the failure step, more than M of its shards were on failed nodes.
//!
//! Traffic is counted per node and round, in two models:
//! - `minimal`: what a rebuild needs: the object's leader (its closest member, the node that
//!   repairs it) reads K surviving shards (its own first, then by shard index; reads from
//!   itself cost no network) and writes each lost shard to its new node; a moved shard is
//!   copied from its old node to its new one.
//! - `current_code`: what `repair_stripe` in `src/repair/object.rs` does now for every stripe
//!   of an object whose placement changed: the leader reads every shard from its new node and,
//!   where that differs, from its old node (each node that holds it sends it), then writes
//!   every shard its new node lacks.
//!
//! Every repair round checks the invariants: every surviving object has K + M shards on
//! distinct live nodes (when there are that many), and they are the K + M closest live nodes.
//!
//! Speed: [`MemberList::closest`] scans every member. The simulator gives it (and
//! [`target_placement`], which only calls `closest`) a list holding just the members that share
//! the longest id prefix with the object and number at least K + M + 1 — found by binary
//! search in the sorted live ids; every member outside that range is farther than every member
//! inside, so the answers are those of the full list (a test checks this).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use clap::Args;
use ds_objects::{Scheme, StripeLayout};
use serde::Serialize;

use crate::node::overlay::{Member, MemberList};
use crate::repair::object::target_placement;

/// `ds repair-sim` arguments.
#[derive(Args, Debug, Clone)]
pub struct RepairSimArgs {
    /// Nodes at the start.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Objects, placed at the start.
    #[arg(long, default_value_t = 10_000)]
    pub objects: usize,
    /// Erasure coding of every object: K data + M parity shards.
    #[arg(long, default_value = "4+2")]
    pub scheme: Scheme,
    /// Rounds of failures, joins and one repair.
    #[arg(long, default_value_t = 20)]
    pub rounds: u32,
    /// Fraction of the live nodes that fail at once in each round.
    #[arg(long, default_value_t = 0.01)]
    pub churn: f64,
    /// Fraction of the live nodes that join each round (default: --churn, so the cluster keeps
    /// its size).
    #[arg(long)]
    pub joins: Option<f64>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Bytes of every object.
    #[arg(long, default_value = "4M", value_parser = size_arg)]
    pub object_size: u64,
    /// Object bytes per stripe (K shards); default: what CREATE picks (about 1 MiB).
    #[arg(long, value_parser = size_arg)]
    pub stripe_size: Option<u64>,
    /// One JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

fn size_arg(text: &str) -> Result<u64, String> {
    crate::cli::parse_size(text).map_err(|e| e.to_string())
}

/// What one simulation runs.
#[derive(Clone, Debug)]
pub struct Spec {
    pub nodes: usize,
    pub objects: usize,
    pub scheme: Scheme,
    pub rounds: u32,
    pub churn: f64,
    pub joins: f64,
    pub seed: u64,
    pub object_bytes: u64,
    pub layout: StripeLayout,
}

impl Spec {
    pub fn from_args(args: &RepairSimArgs) -> anyhow::Result<Self> {
        let scheme = args.scheme;
        let layout = match args.stripe_size {
            None => StripeLayout::for_scheme(scheme),
            Some(stripe) => {
                let k = u64::from(scheme.k().max(1));
                let shard = u32::try_from(stripe.div_ceil(k))
                    .map_err(|_| anyhow::anyhow!("--stripe-size {stripe} is too large"))?;
                StripeLayout::new(scheme, shard)
                    .map_err(|e| anyhow::anyhow!("--stripe-size {stripe}: {e}"))?
            }
        };
        let spec = Spec {
            nodes: args.nodes,
            objects: args.objects,
            scheme,
            rounds: args.rounds,
            churn: args.churn,
            joins: args.joins.unwrap_or(args.churn),
            seed: args.seed,
            object_bytes: args.object_size,
            layout,
        };
        spec.check()?;
        Ok(spec)
    }

    fn check(&self) -> anyhow::Result<()> {
        let n = usize::from(self.scheme.n());
        anyhow::ensure!(self.scheme.k() >= 1, "the scheme needs K >= 1");
        anyhow::ensure!(
            self.nodes >= n,
            "--nodes {} is fewer than the {n} shards of {}",
            self.nodes,
            self.scheme
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.churn),
            "--churn is a fraction from 0 to 1"
        );
        anyhow::ensure!(
            self.joins >= 0.0 && self.joins.is_finite(),
            "--joins is a fraction of at least 0"
        );
        anyhow::ensure!(
            self.object_bytes >= 1,
            "--object-size must be at least 1 byte"
        );
        Ok(())
    }
}

/// Spread of one figure over nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Spread {
    pub mean: f64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl Spread {
    fn of(mut samples: Vec<u64>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            samples[((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1]
        };
        Spread {
            mean: samples.iter().map(|&s| s as f64).sum::<f64>() / samples.len() as f64,
            p50: at(0.50),
            p99: at(0.99),
            max: *samples.last().expect("not empty"),
        }
    }
}

/// Network bytes of repair in one traffic model.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Traffic {
    /// Bytes sent over the network in all rounds (each byte is received once too).
    pub bytes: u64,
    /// Per node and repair round (every node live in that round is one sample, idle ones too).
    pub sent_per_node_round: Spread,
    pub received_per_node_round: Spread,
    /// Per node over the whole run, sent plus received (every node live in some repair round).
    pub total_per_node_run: Spread,
}

/// One round.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RoundReport {
    pub round: u32,
    pub live_before: usize,
    pub failed: usize,
    pub joined: usize,
    pub objects_lost: u64,
    /// Objects that lost exactly M shards this round (survived with no redundancy left).
    pub objects_at_zero_redundancy: u64,
    pub shards_rebuilt: u64,
    pub shards_copied: u64,
    pub bytes_minimal: u64,
    pub bytes_current_code: u64,
    /// The busiest node of the round (sent + received), minimal model.
    pub busiest_node_bytes_minimal: u64,
    pub busiest_node_bytes_current_code: u64,
}

/// The whole answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    pub nodes: usize,
    pub objects: usize,
    pub scheme: String,
    pub rounds: u32,
    pub churn: f64,
    pub joins: f64,
    pub seed: u64,
    pub object_bytes: u64,
    pub stripe_bytes: u32,
    pub shard_bytes: u32,
    pub stripes_per_object: u64,
    /// Shard bytes of all objects at the start (K + M shards of every stripe).
    pub stored_bytes: u64,
    pub failed_total: u64,
    pub joined_total: u64,
    pub live_nodes_end: usize,
    pub objects_lost: u64,
    /// Losses expected from the odds alone: every round, surviving objects times the chance
    /// that more than M of an object's K + M distinct nodes are among the failed
    /// (hypergeometric). What the simulation finds should be near it.
    pub objects_lost_expected: f64,
    /// Object-rounds that lost exactly M shards (no redundancy left until the repair).
    pub objects_at_zero_redundancy: u64,
    /// The most shards one object lost in one round.
    pub max_shards_lost_in_a_round: u64,
    /// Object-rounds whose placement changed.
    pub objects_repaired: u64,
    /// Shard-stripes rebuilt from K others (their node failed) and their bytes.
    pub shards_rebuilt: u64,
    pub bytes_rebuilt: u64,
    /// Shard-stripes copied to a new node that is now closer, and their bytes.
    pub shards_copied: u64,
    pub bytes_copied: u64,
    pub traffic_minimal: Traffic,
    pub traffic_current_code: Traffic,
    /// `traffic_current_code.bytes / traffic_minimal.bytes`.
    pub current_code_over_minimal: f64,
    /// Placements checked after repair rounds, and how many broke an invariant (shards not on
    /// K + M distinct live nodes when there are that many, or not the closest live nodes).
    pub placements_checked: u64,
    pub placement_violations: u64,
    pub per_round: Vec<RoundReport>,
    pub wall_seconds: f64,
}

/// SplitMix64: small, fast and the same on every platform and version (the seed is the run).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn id(&mut self) -> u128 {
        (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// The data address every simulated member announces (never used).
fn nowhere() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9))
}

/// The range of `ids` (sorted, distinct) holding the members that share the longest prefix
/// with `key` and number at least `want` (all of `ids` if fewer): every id outside it is
/// farther from `key` by XOR than every id inside, so it holds the `want` closest.
fn closest_range(ids: &[u128], key: u128, want: usize) -> Range<usize> {
    let (mut lo, mut hi) = (0, ids.len());
    for bit in (0..128).rev() {
        if hi - lo <= want {
            break;
        }
        // Every id in lo..hi shares the bits above `bit` with `key`; sorted, those with `bit`
        // clear come first.
        let mask = 1u128 << bit;
        let split = lo + ids[lo..hi].partition_point(|id| id & mask == 0);
        let (a, b) = if key & mask == 0 {
            (lo, split)
        } else {
            (split, hi)
        };
        if b - a < want {
            break;
        }
        (lo, hi) = (a, b);
    }
    lo..hi
}

/// Fills `list` with the members of `ids` that can be among the `want` closest to `key`.
fn near_list(list: &mut MemberList, ids: &[u128], key: u128, want: usize) {
    let range = closest_range(ids, key, want);
    list.members.clear();
    list.members.extend(ids[range].iter().map(|&id| Member {
        id,
        data: nowhere(),
    }));
}

fn ln_choose(a: usize, b: usize) -> f64 {
    if b > a {
        return f64::NEG_INFINITY;
    }
    (0..b)
        .map(|i| ((a - i) as f64).ln() - ((i + 1) as f64).ln())
        .sum()
}

/// The chance that more than `m` of `n` distinct nodes drawn from `live` are among `failed`.
fn loss_odds(live: usize, failed: usize, n: usize, m: usize) -> f64 {
    if live < n {
        return f64::NAN;
    }
    let all = ln_choose(live, n);
    (m + 1..=n.min(failed))
        .map(|x| (ln_choose(failed, x) + ln_choose(live - failed, n - x) - all).exp())
        .sum()
}

/// Per node and round: [minimal sent, minimal received, current sent, current received].
type Ledger = HashMap<u128, [u64; 4]>;

fn transfer(ledger: &mut Ledger, model: usize, from: u128, to: u128, bytes: u64) -> u64 {
    if from == to || bytes == 0 {
        return 0;
    }
    ledger.entry(from).or_default()[2 * model] += bytes;
    ledger.entry(to).or_default()[2 * model + 1] += bytes;
    bytes
}

/// Runs the simulation.
pub fn run(spec: &Spec) -> anyhow::Result<Report> {
    spec.check()?;
    let started = Instant::now();
    let n = usize::from(spec.scheme.n());
    let k = usize::from(spec.scheme.k());
    let m = usize::from(spec.scheme.m());
    let layout = spec.layout;
    let stripes = layout.stripe_count(spec.object_bytes);
    // Bytes shard index i holds over all stripes of one object.
    let slot_bytes: Vec<u64> = (0..n)
        .map(|i| {
            (0..stripes)
                .map(|s| {
                    let len = layout.stripe_len(s as u32, spec.object_bytes);
                    u64::from(layout.stored_bytes(len, i as u8))
                })
                .sum()
        })
        .collect();
    let mut rng = Rng(spec.seed);
    let mut live: Vec<u128> = Vec::with_capacity(spec.nodes);
    let mut known = std::collections::HashSet::new();
    let mut new_id = |rng: &mut Rng| loop {
        let id = rng.id();
        if known.insert(id) {
            return id;
        }
    };
    for _ in 0..spec.nodes {
        live.push(new_id(&mut rng));
    }
    live.sort_unstable();
    let objects: Vec<u128> = (0..spec.objects).map(|_| rng.id()).collect();
    let mut list = MemberList::of_ids(&[], nowhere());
    // placement[o * n + i]: the node of shard i of object o.
    let mut placement: Vec<u128> = Vec::with_capacity(spec.objects * n);
    for &object in &objects {
        near_list(&mut list, &live, object, n);
        placement.extend(list.closest(object, n).iter().map(|member| member.id));
    }
    let mut alive = vec![true; spec.objects];
    let mut report = Report {
        nodes: spec.nodes,
        objects: spec.objects,
        scheme: spec.scheme.to_string(),
        rounds: spec.rounds,
        churn: spec.churn,
        joins: spec.joins,
        seed: spec.seed,
        object_bytes: spec.object_bytes,
        stripe_bytes: layout.stripe_bytes(),
        shard_bytes: layout.shard_bytes(),
        stripes_per_object: stripes,
        stored_bytes: slot_bytes.iter().sum::<u64>() * spec.objects as u64,
        ..Report::default()
    };
    // Samples per node and round: minimal sent, received; current sent, received.
    let mut samples: [Vec<u64>; 4] = Default::default();
    let mut run_totals: HashMap<u128, [u64; 2]> = HashMap::new();
    let mut ever_live: Vec<u128> = Vec::new();
    let mut old = vec![0u128; n];
    for round in 1..=spec.rounds {
        let live_before = live.len();
        // Failures: a uniform choice of distinct live nodes, all at once.
        let fail = ((spec.churn * live_before as f64).round() as usize).min(live_before);
        let mut order: Vec<usize> = (0..live_before).collect();
        for i in 0..fail {
            let j = i + rng.below(live_before - i);
            order.swap(i, j);
        }
        let mut failed: Vec<u128> = order[..fail].iter().map(|&i| live[i]).collect();
        failed.sort_unstable();
        let is_failed = |id: &u128| failed.binary_search(id).is_ok();
        let join = (spec.joins * live_before as f64).round() as usize;
        let mut next: Vec<u128> = live.iter().copied().filter(|id| !is_failed(id)).collect();
        for _ in 0..join {
            next.push(new_id(&mut rng));
        }
        next.sort_unstable();
        let mut this = RoundReport {
            round,
            live_before,
            failed: fail,
            joined: join,
            ..RoundReport::default()
        };
        // The failure step: objects with more than M shards on failed nodes are lost.
        let odds = loss_odds(live_before, fail, n, m);
        let mut survivors = 0u64;
        for (o, up) in alive.iter_mut().enumerate() {
            if !*up {
                continue;
            }
            survivors += 1;
            let lost = placement[o * n..(o + 1) * n]
                .iter()
                .filter(|id| is_failed(id))
                .count();
            report.max_shards_lost_in_a_round = report.max_shards_lost_in_a_round.max(lost as u64);
            if lost > m {
                *up = false;
                this.objects_lost += 1;
            } else if lost == m && m > 0 {
                this.objects_at_zero_redundancy += 1;
            }
        }
        if odds.is_finite() {
            report.objects_lost_expected += survivors as f64 * odds;
        }
        live = next;
        // The repair round.
        let mut ledger = Ledger::new();
        for (o, &object) in objects.iter().enumerate() {
            if !alive[o] || live.is_empty() {
                continue;
            }
            old.copy_from_slice(&placement[o * n..(o + 1) * n]);
            near_list(&mut list, &live, object, n + 1);
            let new = target_placement(&list, object, &old, None);
            let leader = list.closest(object, 1)[0].id;
            report.placements_checked += 1;
            let closest: Vec<u128> = list.closest(object, n).iter().map(|m| m.id).collect();
            let mut sorted = new.clone();
            sorted.sort_unstable();
            sorted.dedup();
            let mut want = closest.clone();
            want.sort_unstable();
            let whole = if live.len() >= n {
                sorted.len() == n && sorted == want
            } else {
                sorted == want
            };
            if !whole || new.iter().any(|id| live.binary_search(id).is_err()) {
                report.placement_violations += 1;
            }
            if new == old {
                placement[o * n..(o + 1) * n].copy_from_slice(&new);
                continue;
            }
            report.objects_repaired += 1;
            let lost: Vec<usize> = (0..n).filter(|&i| is_failed(&old[i])).collect();
            let moved: Vec<usize> = (0..n)
                .filter(|&i| !is_failed(&old[i]) && new[i] != old[i])
                .collect();
            let mut bytes = [0u64; 2];
            // Minimal: K reads and one write per rebuilt shard, one copy per moved shard.
            if !lost.is_empty() {
                let mut sources: Vec<usize> = (0..n).filter(|&i| !is_failed(&old[i])).collect();
                sources.sort_by_key(|&i| old[i] != leader);
                for &i in sources.iter().take(k) {
                    bytes[0] += transfer(&mut ledger, 0, old[i], leader, slot_bytes[i]);
                }
                for &i in &lost {
                    bytes[0] += transfer(&mut ledger, 0, leader, new[i], slot_bytes[i]);
                }
            }
            for &i in &moved {
                bytes[0] += transfer(&mut ledger, 0, old[i], new[i], slot_bytes[i]);
            }
            // As `repair_stripe` does it: every shard read from its new node and from its old
            // one where that differs (whoever holds it sends it), then every shard its new
            // node lacks written.
            for i in 0..n {
                let holds_old = !is_failed(&old[i]);
                if new[i] == old[i] {
                    if holds_old {
                        bytes[1] += transfer(&mut ledger, 1, new[i], leader, slot_bytes[i]);
                    }
                } else {
                    if holds_old {
                        bytes[1] += transfer(&mut ledger, 1, old[i], leader, slot_bytes[i]);
                    }
                    bytes[1] += transfer(&mut ledger, 1, leader, new[i], slot_bytes[i]);
                }
            }
            let rebuilt: u64 = lost.iter().map(|&i| slot_bytes[i]).sum();
            let copied: u64 = moved.iter().map(|&i| slot_bytes[i]).sum();
            this.shards_rebuilt += lost.len() as u64 * stripes;
            this.shards_copied += moved.len() as u64 * stripes;
            report.bytes_rebuilt += rebuilt;
            report.bytes_copied += copied;
            this.bytes_minimal += bytes[0];
            this.bytes_current_code += bytes[1];
            placement[o * n..(o + 1) * n].copy_from_slice(&new);
        }
        for &id in &live {
            let entry = ledger.get(&id).copied().unwrap_or_default();
            for (series, &value) in samples.iter_mut().zip(&entry) {
                series.push(value);
            }
            this.busiest_node_bytes_minimal =
                this.busiest_node_bytes_minimal.max(entry[0] + entry[1]);
            this.busiest_node_bytes_current_code = this
                .busiest_node_bytes_current_code
                .max(entry[2] + entry[3]);
            let total = run_totals.entry(id).or_insert_with(|| {
                ever_live.push(id);
                [0, 0]
            });
            total[0] += entry[0] + entry[1];
            total[1] += entry[2] + entry[3];
        }
        report.failed_total += fail as u64;
        report.joined_total += join as u64;
        report.objects_lost += this.objects_lost;
        report.objects_at_zero_redundancy += this.objects_at_zero_redundancy;
        report.shards_rebuilt += this.shards_rebuilt;
        report.shards_copied += this.shards_copied;
        report.traffic_minimal.bytes += this.bytes_minimal;
        report.traffic_current_code.bytes += this.bytes_current_code;
        report.per_round.push(this);
    }
    let [min_sent, min_received, cur_sent, cur_received] = samples;
    report.traffic_minimal.sent_per_node_round = Spread::of(min_sent);
    report.traffic_minimal.received_per_node_round = Spread::of(min_received);
    report.traffic_current_code.sent_per_node_round = Spread::of(cur_sent);
    report.traffic_current_code.received_per_node_round = Spread::of(cur_received);
    report.traffic_minimal.total_per_node_run =
        Spread::of(ever_live.iter().map(|id| run_totals[id][0]).collect());
    report.traffic_current_code.total_per_node_run =
        Spread::of(ever_live.iter().map(|id| run_totals[id][1]).collect());
    report.current_code_over_minimal = if report.traffic_minimal.bytes > 0 {
        report.traffic_current_code.bytes as f64 / report.traffic_minimal.bytes as f64
    } else {
        0.0
    };
    report.live_nodes_end = live.len();
    report.wall_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Bytes in KiB below 1 MiB, MiB below 10 GiB, GiB above.
fn size(bytes: f64) -> String {
    if bytes > 0.0 && bytes < f64::from(1u32 << 20) {
        format!("{:.0} KiB", bytes / 1024.0)
    } else if bytes >= f64::from(10u32 << 30) {
        format!("{:.1} GiB", bytes / f64::from(1u32 << 30))
    } else {
        format!("{:.1} MiB", bytes / f64::from(1u32 << 20))
    }
}

impl Report {
    /// The report as a table.
    pub fn human(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let fail = self.per_round.first().map_or(0, |r| r.failed);
        let join = self.per_round.first().map_or(0, |r| r.joined);
        let _ = writeln!(
            out,
            "repair-sim: {} nodes, {} objects of {} ({}: {} stripes of {}, shards of {}), \
             {} rounds, churn {} ({} fail and {} join in round 1), seed {}\n",
            self.nodes,
            self.objects,
            size(self.object_bytes as f64),
            self.scheme,
            self.stripes_per_object,
            size(f64::from(self.stripe_bytes)),
            size(f64::from(self.shard_bytes)),
            self.rounds,
            self.churn,
            fail,
            join,
            self.seed
        );
        let rows = [
            (
                "objects lost",
                format!(
                    "{} of {} (expected from the odds: {:.2})",
                    self.objects_lost, self.objects, self.objects_lost_expected
                ),
            ),
            (
                "object-rounds left with no parity",
                self.objects_at_zero_redundancy.to_string(),
            ),
            (
                "most shards one object lost",
                self.max_shards_lost_in_a_round.to_string(),
            ),
            (
                "objects repaired (object-rounds)",
                self.objects_repaired.to_string(),
            ),
            (
                "shard-stripes rebuilt",
                format!(
                    "{} ({})",
                    self.shards_rebuilt,
                    size(self.bytes_rebuilt as f64)
                ),
            ),
            (
                "shard-stripes copied (closer node)",
                format!(
                    "{} ({})",
                    self.shards_copied,
                    size(self.bytes_copied as f64)
                ),
            ),
            ("stored at the start", size(self.stored_bytes as f64)),
            (
                "placement invariant violations",
                format!(
                    "{} of {} checked",
                    self.placement_violations, self.placements_checked
                ),
            ),
        ];
        for (key, value) in rows {
            let _ = writeln!(out, "{key:<36} {value}");
        }
        let _ = writeln!(
            out,
            "\n{:<44} {:>11} {:>11} {:>11} {:>11}",
            "network bytes of repair", "all rounds", "mean", "p99", "max"
        );
        for (name, traffic) in [
            ("minimal", &self.traffic_minimal),
            ("current code", &self.traffic_current_code),
        ] {
            for (what, spread, total) in [
                (
                    "sent, per node and round",
                    traffic.sent_per_node_round,
                    size(traffic.bytes as f64),
                ),
                (
                    "received, per node and round",
                    traffic.received_per_node_round,
                    String::new(),
                ),
                (
                    "both, per node over the run",
                    traffic.total_per_node_run,
                    String::new(),
                ),
            ] {
                let _ = writeln!(
                    out,
                    "{:<44} {:>11} {:>11} {:>11} {:>11}",
                    format!("{name}: {what}"),
                    total,
                    size(spread.mean),
                    size(spread.p99 as f64),
                    size(spread.max as f64),
                );
            }
        }
        let _ = writeln!(
            out,
            "current code / minimal: {:.2}\n",
            self.current_code_over_minimal
        );
        let _ = writeln!(
            out,
            "{:>5} {:>7} {:>6} {:>6} {:>5} {:>9} {:>8} {:>8} {:>11} {:>11} {:>11}",
            "round",
            "live",
            "failed",
            "joined",
            "lost",
            "no parity",
            "rebuilt",
            "copied",
            "minimal",
            "code",
            "busiest"
        );
        for r in &self.per_round {
            let _ = writeln!(
                out,
                "{:>5} {:>7} {:>6} {:>6} {:>5} {:>9} {:>8} {:>8} {:>11} {:>11} {:>11}",
                r.round,
                r.live_before,
                r.failed,
                r.joined,
                r.objects_lost,
                r.objects_at_zero_redundancy,
                r.shards_rebuilt,
                r.shards_copied,
                size(r.bytes_minimal as f64),
                size(r.bytes_current_code as f64),
                size(r.busiest_node_bytes_minimal as f64),
            );
        }
        let _ = writeln!(
            out,
            "(rebuilt, copied: shard-stripes; minimal, code: network bytes in each model; \
             busiest: the busiest node's bytes sent + received, minimal model)"
        );
        let _ = writeln!(out, "\nwall time {:.2} s", self.wall_seconds);
        out
    }
}

/// `ds repair-sim`: runs and prints.
pub fn main(args: &RepairSimArgs) -> anyhow::Result<()> {
    let report = run(&Spec::from_args(args)?)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.human());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(nodes: usize, objects: usize, churn: f64, rounds: u32, seed: u64) -> Spec {
        let scheme: Scheme = "4+2".parse().expect("scheme");
        Spec {
            nodes,
            objects,
            scheme,
            rounds,
            churn,
            joins: churn,
            seed,
            object_bytes: 4 << 20,
            layout: StripeLayout::for_scheme(scheme),
        }
    }

    fn full_list(ids: &[u128]) -> MemberList {
        MemberList::of_ids(ids, nowhere())
    }

    #[test]
    fn the_near_list_answers_as_the_full_list() {
        let mut rng = Rng(7);
        for size in [1usize, 5, 6, 7, 8, 50, 1000] {
            let mut ids: Vec<u128> = (0..size).map(|_| rng.id()).collect();
            // Ids sharing long prefixes too, where the range logic is tested hardest.
            let base = ids[0] & !0xffff;
            ids.extend((0..size).map(|i| base | i as u128));
            ids.sort_unstable();
            ids.dedup();
            let full = full_list(&ids);
            let mut near = MemberList::default();
            for _ in 0..200 {
                let key = if rng.below(2) == 0 {
                    rng.id()
                } else {
                    ids[0] ^ rng.below(1 << 20) as u128
                };
                for want in [1, 6, 7] {
                    near_list(&mut near, &ids, key, want);
                    assert_eq!(near.closest(key, want), full.closest(key, want));
                }
                let old: Vec<u128> = (0..6).map(|_| ids[rng.below(ids.len())]).collect();
                near_list(&mut near, &ids, key, 7);
                assert_eq!(
                    target_placement(&near, key, &old, None),
                    target_placement(&full, key, &old, None)
                );
            }
        }
    }

    #[test]
    fn no_object_is_lost_while_at_most_m_nodes_fail_a_round() {
        // 2 of 100 nodes fail (and 2 join) every round: never more than M = 2 shards of one
        // object between repairs.
        for seed in 1..=5 {
            let report = run(&spec(100, 2000, 0.02, 40, seed)).expect("runs");
            assert!(report.per_round.iter().all(|r| r.failed == 2));
            assert_eq!(report.objects_lost, 0, "seed {seed}");
            assert_eq!(report.placement_violations, 0);
            assert!(report.shards_rebuilt > 0);
            assert!(report.max_shards_lost_in_a_round <= 2);
        }
        // 2 of 6 nodes fail every round: every object loses exactly M shards every round, and
        // still none is lost.
        let report = run(&spec(6, 500, 0.34, 20, 1)).expect("runs");
        assert_eq!(report.objects_at_zero_redundancy, 500 * 20);
        assert_eq!(report.objects_lost, 0);
        assert_eq!(report.placement_violations, 0);
    }

    #[test]
    fn placement_stays_on_live_distinct_closest_nodes() {
        let report = run(&spec(60, 3000, 0.05, 30, 3)).expect("runs");
        assert_eq!(report.placements_checked as usize, {
            // Every surviving object, every round.
            let mut alive = 3000u64;
            let mut checked = 0;
            for r in &report.per_round {
                alive -= r.objects_lost;
                checked += alive;
            }
            checked as usize
        });
        assert_eq!(report.placement_violations, 0);
    }

    #[test]
    fn placement_doubles_up_on_live_nodes_when_too_few_remain() {
        // Nodes fail and none join: the cluster shrinks below K + M.
        let mut shrink = spec(12, 300, 0.1, 12, 4);
        shrink.joins = 0.0;
        let report = run(&shrink).expect("runs");
        assert!(report.live_nodes_end < 6);
        assert_eq!(report.placement_violations, 0);
    }

    #[test]
    fn high_churn_loses_objects_about_as_the_odds_say() {
        let report = run(&spec(200, 5000, 0.3, 10, 9)).expect("runs");
        assert!(report.objects_lost > 0);
        let expected = report.objects_lost_expected;
        let lost = report.objects_lost as f64;
        assert!(
            (lost - expected).abs() < 5.0 * expected.sqrt() + 5.0,
            "lost {lost}, expected {expected}"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_report() {
        let mut a = run(&spec(300, 1000, 0.05, 5, 11)).expect("runs");
        let mut b = run(&spec(300, 1000, 0.05, 5, 11)).expect("runs");
        a.wall_seconds = 0.0;
        b.wall_seconds = 0.0;
        assert_eq!(a, b);
        let mut c = run(&spec(300, 1000, 0.05, 5, 12)).expect("runs");
        c.wall_seconds = 0.0;
        assert_ne!(a, c);
    }

    #[test]
    fn a_rebuild_reads_k_and_writes_one() {
        // One round, churn small enough for single losses: every rebuilt shard-stripe costs
        // at most K + 1 shard transfers (fewer when the leader holds a source or the target).
        let report = run(&spec(1000, 2000, 0.002, 1, 5)).expect("runs");
        let shard = report.bytes_rebuilt / report.shards_rebuilt.max(1);
        assert!(report.shards_rebuilt > 0);
        assert!(report.traffic_minimal.bytes <= (report.bytes_rebuilt * 5 + report.bytes_copied));
        assert!(report.traffic_minimal.bytes >= report.bytes_copied);
        assert_eq!(shard, 256 << 10);
        assert!(report.current_code_over_minimal >= 1.0);
    }

    #[test]
    fn loss_odds_match_a_hand_count() {
        // 6 of 10 nodes, 3 failed: P(all 3 failed among the 6) = C(3,3)·C(7,3)/C(10,6).
        let p = loss_odds(10, 3, 6, 2);
        assert!((p - 35.0 / 210.0).abs() < 1e-12, "{p}");
        assert_eq!(loss_odds(10, 2, 6, 2), 0.0);
    }
}
