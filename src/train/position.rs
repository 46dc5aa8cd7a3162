//! Where a run is in its data, in terms that survive a change of world size: the global
//! batch of an optimiser step (`train.global_batch`, or per-rank batch × accumulation ×
//! ranks) and, within the epoch in progress, how many samples of its permutation the steps
//! so far consumed. Step s of an epoch takes the permutation's positions [s·G, (s+1)·G),
//! whatever the world size (`ShardedSampler::step_indices`), so a job that goes on with
//! fewer ranks and more accumulation takes the same optimiser steps.
use crate::config::Config;
use anyhow::bail;

/// `cfg` for a start on `ranks` ranks: with `train.global_batch` set, `accumulate_steps`
/// becomes global_batch / (batch_size × ranks), which must divide.
pub fn resolve(cfg: &Config, ranks: usize) -> anyhow::Result<Config> {
    let mut cfg = cfg.clone();
    let t = &mut cfg.train;
    if let Some(global) = t.global_batch {
        let per_micro = t.batch_size * ranks;
        if global % per_micro != 0 {
            bail!(
                "train.global_batch = {global} is not a multiple of train.batch_size ({}) × ranks ({ranks}) = \
                 {per_micro}: the accumulation steps would not be whole",
                t.batch_size
            );
        }
        t.accumulate_steps = global / per_micro;
    }
    Ok(cfg)
}

/// Images per optimiser step over the whole job, as `cfg` (resolved) trains on `ranks`.
pub fn global_batch(cfg: &Config, ranks: usize) -> usize {
    cfg.train.batch_size * cfg.train.accumulate_steps * ranks
}

/// Optimiser steps left in an epoch of `len` samples after `samples` of them.
pub fn steps_left(len: usize, samples: u64, global: usize) -> u64 {
    (len as u64).saturating_sub(samples) / global as u64
}

/// How a start's batching relates to the checkpoint's: the line said at the start.
pub fn change_note(saved: Option<(usize, usize)>, ranks: usize, global: usize, fixed: bool) -> Option<String> {
    let (saved_ranks, saved_global) = saved?;
    if (saved_ranks, saved_global) == (ranks, global) {
        return None;
    }
    Some(if saved_global == global {
        format!("world size {saved_ranks} → {ranks}: global batch {global} kept (train.global_batch)")
    } else if fixed {
        format!(
            "world size {saved_ranks} → {ranks}: global batch {saved_global} → {global} (train.global_batch changed)"
        )
    } else {
        format!(
            "world size {saved_ranks} → {ranks}: the global batch changed from {saved_global} to {global} (set \
             train.global_batch to keep it, and the optimisation trajectory, across world sizes)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_global_batch_fixes_the_accumulation_or_names_the_three_numbers() {
        let mut cfg = Config::default();
        cfg.train.batch_size = 2;
        cfg.train.global_batch = Some(8);
        assert_eq!(resolve(&cfg, 2).expect("divides").train.accumulate_steps, 2);
        assert_eq!(resolve(&cfg, 1).expect("divides").train.accumulate_steps, 4);
        assert_eq!(global_batch(&resolve(&cfg, 4).expect("divides"), 4), 8);
        let e = resolve(&cfg, 3).expect_err("6 does not divide 8").to_string();
        assert!(
            e.starts_with("train.global_batch = 8 is not a multiple of train.batch_size (2) × ranks (3) = 6"),
            "{e}"
        );
        cfg.train.global_batch = None;
        cfg.train.accumulate_steps = 3;
        assert_eq!(resolve(&cfg, 5).expect("unset").train.accumulate_steps, 3, "without it, as configured");
    }

    #[test]
    fn steps_left_and_the_start_line() {
        assert_eq!(steps_left(10, 0, 4), 2);
        assert_eq!(steps_left(10, 8, 4), 0);
        assert_eq!(steps_left(16, 6, 2), 5, "after a change of global batch mid-epoch");
        assert_eq!(change_note(None, 2, 4, true), None);
        assert_eq!(change_note(Some((2, 4)), 2, 4, true), None);
        assert_eq!(
            change_note(Some((2, 4)), 1, 4, true).as_deref(),
            Some("world size 2 → 1: global batch 4 kept (train.global_batch)")
        );
        assert!(change_note(Some((2, 4)), 1, 2, false).is_some_and(|n| n.contains("changed from 4 to 2")));
    }
}
