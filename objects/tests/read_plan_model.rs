//! `ReadPlan` against a model of the targets: random schemes, quorums, stored versions, dead
//! targets, answer orders and hedges. Every run must end within a bounded number of steps with
//! a decision that the truth supports, and a confirmed read must never miss an acknowledged
//! write.

use std::time::{Duration, Instant};

use ds_objects::hlc::Version;
use ds_objects::quorum::{ReadPlan, ReadState, ShardReply, WriteQuorum};
use ds_objects::scheme::Scheme;
use ds_objects::shard_set::ShardSet;
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Copy, Debug)]
struct Target {
    /// Highest version the target stores (None: nothing).
    stored: Option<u64>,
    reachable: bool,
}

impl Target {
    fn reply(self) -> ShardReply {
        match (self.reachable, self.stored) {
            (false, _) => ShardReply::Failed,
            (true, None) => ShardReply::Absent,
            (true, Some(v)) => ShardReply::Found(Version::from_u64(v)),
        }
    }
}

/// Targets holding `version` or newer: a write at `version` is acknowledgeable if there are W.
fn holding_at_least(targets: &[Target], version: u64) -> usize {
    targets
        .iter()
        .filter(|t| t.stored.is_some_and(|v| v >= version))
        .count()
}

fn run(seed: u64) -> Result<(), TestCaseError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let k = rng.gen_range(1..=8u8);
    let m = rng.gen_range(0..=6u8);
    let scheme = Scheme::new(k, m).unwrap();
    let n = scheme.n();
    let quorum = WriteQuorum::new(scheme, rng.gen_range(k..=n)).unwrap();
    // A history of writes reaching random subsets: each target keeps the highest it got.
    let mut targets = vec![
        Target {
            stored: None,
            reachable: true
        };
        usize::from(n)
    ];
    for version in 1..=rng.gen_range(0..4u64) {
        let reached = rng.gen_range(0..=usize::from(n));
        let mut order: Vec<usize> = (0..usize::from(n)).collect();
        order.shuffle(&mut rng);
        for &i in &order[..reached] {
            targets[i].stored = Some(version);
        }
    }
    for target in &mut targets {
        target.reachable = rng.gen_bool(0.8);
        // A replaced node: reachable, holds nothing.
        if rng.gen_bool(0.05) {
            target.stored = None;
        }
    }

    let hedge = Duration::from_millis(10);
    let mut now = Instant::now();
    let mut plan = ReadPlan::new(quorum, now, hedge);
    let mut in_flight: Vec<u8> = Vec::new();
    let mut answered = ShardSet::EMPTY;
    let mut steps = 0;
    while plan.state() == ReadState::Waiting {
        while let Some(shard) = plan.poll_request() {
            prop_assert!(!answered.contains(shard) && !in_flight.contains(&shard));
            in_flight.push(shard);
        }
        prop_assert!(
            !in_flight.is_empty(),
            "waiting with nothing in flight: {targets:?}"
        );
        steps += 1;
        prop_assert!(steps <= 2 * usize::from(n), "too many steps");
        match plan.poll_timeout() {
            Some(at) if rng.gen_bool(0.2) => {
                now = now.max(at);
                plan.handle_timeout(now);
            }
            _ => {
                let shard = in_flight.swap_remove(rng.gen_range(0..in_flight.len()));
                answered.insert(shard);
                plan.handle_reply(shard, targets[usize::from(shard)].reply());
            }
        }
    }
    let state = plan.state();
    let acknowledgeable = |version: u64| holding_at_least(&targets, version) >= quorum.w().into();
    // At the decision: could a version newer than `version` that was seen still reach K?
    let newer_still_possible = |version: u64, answered: ShardSet| {
        let unanswered = usize::from(n - answered.len());
        (version + 1..=4).any(|newer| {
            let seen = answered.iter().filter(|&s| {
                let target = targets[usize::from(s)];
                target.reachable && target.stored == Some(newer)
            });
            let seen = seen.count();
            seen > 0 && seen + unanswered >= usize::from(k)
        })
    };
    let newest_acknowledgeable = (1..=4).filter(|&v| acknowledgeable(v)).max().unwrap_or(0);
    match state {
        ReadState::Waiting => unreachable!(),
        ReadState::Ready(choice) => {
            prop_assert_eq!(choice.shards.len(), k);
            prop_assert!(choice.shards.difference(answered).is_empty());
            for shard in choice.shards.iter() {
                let target = targets[usize::from(shard)];
                prop_assert!(target.reachable);
                prop_assert_eq!(target.stored, Some(choice.version.as_u64()));
            }
            prop_assert_eq!(choice.degraded, choice.shards != ShardSet::first(k));
            if choice.confirmed {
                prop_assert!(
                    choice.version.as_u64() >= newest_acknowledgeable,
                    "{targets:?}"
                );
            }
            prop_assert!(!newer_still_possible(choice.version.as_u64(), answered));
        }
        ReadState::Hole { confirmed } => {
            let absent = targets.iter().filter(|t| t.reachable && t.stored.is_none());
            prop_assert!(absent.count() >= usize::from(k));
            if confirmed {
                prop_assert_eq!(newest_acknowledgeable, 0, "{:?}", targets);
            }
            prop_assert!(!newer_still_possible(0, answered));
        }
        ReadState::Failed(_) => {
            // Nothing restorable among the reachable targets: failing was right.
            for version in [None, Some(1), Some(2), Some(3)] {
                let alike = targets
                    .iter()
                    .filter(|t| t.reachable && t.stored == version);
                prop_assert!(alike.count() < usize::from(k), "{:?}", targets);
            }
        }
    }
    // Late answers change nothing.
    for shard in in_flight {
        plan.handle_reply(shard, targets[usize::from(shard)].reply());
        prop_assert_eq!(plan.state(), state);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn decisions_follow_the_truth(seed in any::<u64>()) {
        run(seed)?;
    }
}

#[test]
fn healthy_stripe_reads_only_data_shards() {
    for (k, m) in [(1, 0), (2, 1), (4, 2), (8, 3), (10, 4), (32, 32)] {
        let scheme = Scheme::new(k, m).unwrap();
        let quorum = WriteQuorum::default_for(scheme);
        let mut plan = ReadPlan::new(quorum, Instant::now(), Duration::from_secs(1));
        let asked: Vec<u8> = std::iter::from_fn(|| plan.poll_request()).collect();
        assert_eq!(asked, (0..k).collect::<Vec<_>>(), "{scheme}");
        for shard in asked {
            plan.handle_reply(shard, ShardReply::Found(Version::from_u64(1)));
        }
        let ReadState::Ready(choice) = plan.state() else {
            panic!("{scheme}: {:?}", plan.state());
        };
        assert!(!choice.degraded && choice.confirmed);
    }
}
