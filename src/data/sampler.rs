//! Sharding of a dataset across ranks: one permutation per epoch from (seed, epoch),
//! identical on every rank; rank r takes positions r, r+N, r+2N, …
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
