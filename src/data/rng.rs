//! Deterministic seeds: every random choice of the data pipeline derives from
//! (seed, epoch, sample index), so results do not depend on thread count or rank.
use rand::rngs::StdRng;
use rand::SeedableRng;

/// SplitMix64 finaliser: a good 64-bit mix of a combined key.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub fn derive(parts: &[u64]) -> u64 {
    parts.iter().fold(0x5EED_u64, |acc, &p| mix(acc ^ mix(p)))
}

/// The RNG of one sample's augmentation.
pub fn sample_rng(seed: u64, epoch: u64, index: u64) -> StdRng {
    StdRng::seed_from_u64(derive(&[seed, epoch, index]))
}

/// The RNG of an epoch's shuffle (the same on every rank).
pub fn epoch_rng(seed: u64, epoch: u64) -> StdRng {
    StdRng::seed_from_u64(derive(&[seed, epoch, u64::MAX]))
}
