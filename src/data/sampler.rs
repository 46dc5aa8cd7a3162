//! Sharding of a dataset across ranks: one permutation per epoch from (seed, epoch),
//! identical on every rank; rank r takes positions r, r+N, r+2N, … For training, in whole
//! optimiser steps of a global batch G from a sample offset (`step_indices`): step s takes
//! positions [offset + s·G, offset + (s+1)·G) whatever the number of ranks, so a job
//! resumed on another world size takes the same samples in each step and sees every
//! sample of the epoch once.
use super::rng::epoch_rng;
use rand::seq::SliceRandom;

#[derive(Debug, Clone)]
pub struct ShardedSampler {
    pub len: usize,
    pub world: usize,
    pub rank: usize,
    pub shuffle: bool,
    /// Training: repeat the head of the permutation so every rank gets the same
    /// number of samples (as DistributedSampler). Evaluation: no padding, so no
    /// sample is counted twice.
    pub pad: bool,
    pub seed: u64,
}

impl ShardedSampler {
    pub fn train(len: usize, world: usize, rank: usize, seed: u64) -> Self {
        ShardedSampler { len, world, rank, shuffle: true, pad: true, seed }
    }

    pub fn eval(len: usize, world: usize, rank: usize) -> Self {
        ShardedSampler { len, world, rank, shuffle: false, pad: false, seed: 0 }
    }

    /// Samples per rank in one epoch.
    pub fn per_rank(&self) -> usize {
        if self.pad {
            self.len.div_ceil(self.world)
        } else {
            (self.len + self.world - 1 - self.rank.min(self.len)) / self.world
        }
    }

    /// This rank's samples for the rest of `epoch` after its first `offset`, in whole steps
    /// of `global` samples (the remainder too short for a step is dropped), in order: its
    /// micro-batches take them consecutively.
    pub fn step_indices(&self, epoch: u64, offset: usize, global: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len).collect();
        if self.shuffle {
            order.shuffle(&mut epoch_rng(self.seed, epoch));
        }
        let steps = self.len.saturating_sub(offset) / global.max(1);
        order.into_iter().skip(offset).take(steps * global).skip(self.rank).step_by(self.world).collect()
    }

    /// This rank's sample indices for `epoch`, in order.
    pub fn indices(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len).collect();
        if self.shuffle {
            order.shuffle(&mut epoch_rng(self.seed, epoch));
        }
        if self.pad && self.len > 0 {
            let total = self.len.div_ceil(self.world) * self.world;
            let extra: Vec<usize> = order.iter().cycle().take(total - self.len).copied().collect();
            order.extend(extra);
        }
        order.into_iter().skip(self.rank).step_by(self.world).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_shards_are_disjoint_and_complete() {
        for (len, world) in [(10, 3), (7, 2), (2, 4), (0, 2)] {
            let mut all: Vec<usize> = Vec::new();
            for r in 0..world {
                let s = ShardedSampler::eval(len, world, r);
                let idx = s.indices(0);
                assert_eq!(idx.len(), s.per_rank(), "len {len} world {world} rank {r}");
                all.extend(idx);
            }
            all.sort_unstable();
            assert_eq!(all, (0..len).collect::<Vec<_>>());
        }
    }

    #[test]
    fn train_shards_pad_to_equal_length_and_cover_everything() {
        let (len, world) = (10, 4);
        let shards: Vec<Vec<usize>> = (0..world).map(|r| ShardedSampler::train(len, world, r, 7).indices(3)).collect();
        assert!(shards.iter().all(|s| s.len() == 3));
        let mut all: Vec<usize> = shards.concat();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all, (0..len).collect::<Vec<_>>());
    }

    #[test]
    fn a_step_takes_the_same_samples_on_any_world_size_and_an_offset_resumes_the_epoch() {
        let (len, global, batch) = (22, 4, 2);
        // Step s's samples: on 2 ranks × batch 2, and on 1 rank × 2 micro-batches of 2.
        let step = |world: usize, s: usize| -> Vec<usize> {
            let mut all: Vec<usize> = (0..world)
                .flat_map(|r| {
                    let per = global / world;
                    ShardedSampler::train(len, world, r, 9).step_indices(3, 0, global)[s * per..(s + 1) * per].to_vec()
                })
                .collect();
            all.sort_unstable();
            all
        };
        for s in 0..5 {
            assert_eq!(step(2, s), step(1, s), "step {s}");
            assert_eq!(step(4, s), step(1, s), "step {s}");
        }
        assert_eq!(ShardedSampler::train(len, 2, 0, 9).step_indices(3, 0, global).len(), 5 * batch, "22 → 5 steps");
        // Two steps on 2 ranks, then the rest of the epoch on 1 rank: every sample once.
        let mut seen: Vec<usize> =
            (0..2).flat_map(|r| ShardedSampler::train(20, 2, r, 9).step_indices(1, 0, 4)[..4].to_vec()).collect();
        seen.extend(ShardedSampler::train(20, 1, 0, 9).step_indices(1, 8, 4));
        seen.sort_unstable();
        assert_eq!(seen, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn permutation_is_shared_by_ranks_and_changes_with_epoch() {
        let a = ShardedSampler::train(100, 1, 0, 7);
        assert_eq!(a.indices(1), ShardedSampler::train(100, 1, 0, 7).indices(1), "deterministic");
        assert_ne!(a.indices(1), a.indices(2), "reshuffled per epoch");
        // Rank r's shard is exactly every world-th element of the shared permutation.
        let full = a.indices(5);
        let r1 = ShardedSampler::train(100, 4, 1, 7).indices(5);
        assert_eq!(r1, full.iter().skip(1).step_by(4).copied().collect::<Vec<_>>());
    }
}
