//! PowerSGD (Vogels et al. 2019), as PyTorch's `powerSGD_hook` and `PowerSGDState`: each
//! gradient matrix M (a tensor viewed as rows × the rest) plus its error feedback is sent as
//! two thin factors, P = M·Q (rows × r) then, after P is summed and orthogonalised,
//! Q = Mᵀ·P (columns × r); the rank-r approximation P·Qᵀ / N replaces the mean, and what
//! it misses stays in this rank's error buffer for the next step. Q is reused from the
//! previous step (warm start), so one power iteration per step suffices. Vectors (biases,
//! BN) and matrices too small to gain go uncompressed, with the P round. Before
//! `start_step` optimiser steps every bucket goes uncompressed, as PyTorch's guidance.
use super::compression::{pack, unpack, Codec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

/// A matrix compresses when n·m ≥ this × (n + m)·r (PyTorch's `min_compression_rate`).
pub const MIN_COMPRESSION_RATE: f64 = 2.0;

pub struct PowerSgd {
    pub rank: usize,
    pub start_step: u64,
    pub world: f64,
    /// Seed of the initial Q matrices (the same on every rank).
    pub seed: u64,
    pub min_compression_rate: f64,
    /// Optimiser steps done (the current one included once `encode` ran).
    step: u64,
    /// Per (bucket, member): the error buffer and the last Q.
    error: HashMap<(usize, usize), Tensor>,
    q: HashMap<(usize, usize), Tensor>,
    /// Per bucket in flight: its M matrices and summed Ps between the rounds.
    rounds: HashMap<usize, Round>,
}

/// A bucket between its two rounds.
struct Round {
    plain: bool,
    /// Members sent uncompressed, and the compressed ones with their M and P.
    uncompressed: Vec<usize>,
    compressed: Vec<(usize, Tensor, Tensor)>,
}

/// Columns of `m` orthonormal, in order (modified Gram–Schmidt, as PyTorch's).
fn orthogonalize(m: &Tensor) -> Tensor {
    let cols = m.size()[1];
    let mut out: Vec<Tensor> = Vec::with_capacity(cols as usize);
    for i in 0..cols {
        let mut c = m.narrow(1, i, 1).copy();
        for prev in &out {
            c -= prev * (prev * &c).sum(c.kind());
        }
        let norm = c.norm();
        out.push(c / (norm + 1e-8));
    }
    Tensor::cat(&out, 1)
}

impl PowerSgd {
    pub fn new(rank: usize, start_step: u64, world: usize, seed: u64) -> Self {
        PowerSgd {
            rank: rank.max(1),
            start_step,
            world: world as f64,
            seed,
            min_compression_rate: MIN_COMPRESSION_RATE,
            step: 0,
            error: HashMap::new(),
            q: HashMap::new(),
            rounds: HashMap::new(),
        }
    }

    /// A tensor as the matrix PowerSGD approximates: rows × the rest.
    fn matrix(t: &Tensor) -> Tensor {
        let rows = t.size()[0];
        t.reshape([rows, -1])
    }

    /// Whether `t` goes compressed, and at which rank.
    fn compresses(&self, t: &Tensor) -> Option<i64> {
        if t.dim() < 2 || t.kind() != Kind::Float {
            return None;
        }
        let m = Self::matrix(t).size();
        let r = (self.rank as i64).min(m[0]).min(m[1]);
        let worth = (m[0] * m[1]) as f64 >= self.min_compression_rate * ((m[0] + m[1]) * r) as f64;
        worth.then_some(r)
    }

    /// The initial Q of (bucket, member): columns × r, orthonormal, from the seed alone.
    fn initial_q(&self, key: (usize, usize), cols: i64, r: i64, device: Device) -> Tensor {
        let mut rng = StdRng::seed_from_u64(crate::data::rng::derive(&[self.seed, key.0 as u64, key.1 as u64]));
        let values: Vec<f32> = (0..cols * r).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        orthogonalize(&Tensor::from_slice(&values).view([cols, r])).to_device(device)
    }
}

impl Codec for PowerSgd {
    fn encode(&mut self, b: usize, grads: &[Tensor]) -> Tensor {
        if self.step < self.start_step {
            self.rounds.insert(b, Round { plain: true, uncompressed: Vec::new(), compressed: Vec::new() });
            return pack(grads);
        }
        tch::no_grad(|| {
            let mut round = Round { plain: false, uncompressed: Vec::new(), compressed: Vec::new() };
            let mut parts: Vec<Tensor> = Vec::new();
            for (i, g) in grads.iter().enumerate() {
                let Some(r) = self.compresses(g) else {
                    round.uncompressed.push(i);
                    continue;
                };
                let mut m = Self::matrix(g).copy();
                if let Some(e) = self.error.get(&(b, i)) {
                    m += e;
                }
                let cols = m.size()[1];
                let q = match self.q.get(&(b, i)) {
                    Some(q) => q.shallow_clone(),
                    None => self.initial_q((b, i), cols, r, m.device()),
                };
                let p = m.matmul(&q);
                round.compressed.push((i, m, p));
            }
            parts.extend(round.uncompressed.iter().map(|&i| grads[i].reshape([-1])));
            parts.extend(round.compressed.iter().map(|(_, _, p)| p.reshape([-1])));
            self.rounds.insert(b, round);
            if parts.is_empty() {
                Tensor::zeros([0], (Kind::Float, grads.first().map_or(Device::Cpu, Tensor::device)))
            } else {
                Tensor::cat(&parts, 0)
            }
        })
    }

    fn first(&mut self, b: usize, sum: Tensor, grads: &mut [Tensor]) -> Option<Tensor> {
        let world = self.world;
        let round = self.rounds.get_mut(&b)?;
        if round.plain {
            self.rounds.remove(&b);
            unpack(sum, grads, 1.0 / world);
            return None;
        }
        let second = tch::no_grad(|| {
            let mut offset = 0i64;
            for &i in &round.uncompressed {
                let n = grads[i].numel() as i64;
                let shape = grads[i].size();
                grads[i].copy_(&(sum.narrow(0, offset, n).view(shape.as_slice()) / world));
                offset += n;
            }
            let mut qs = Vec::new();
            for (_, m, p) in &mut round.compressed {
                let n = p.numel() as i64;
                let summed = sum.narrow(0, offset, n).view(p.size().as_slice());
                offset += n;
                *p = orthogonalize(&summed);
                qs.push(m.transpose(0, 1).matmul(p).reshape([-1]));
            }
            (!qs.is_empty()).then(|| Tensor::cat(&qs, 0))
        });
        if second.is_none() {
            self.rounds.remove(&b);
        }
        second
    }

    fn second(&mut self, b: usize, sum: Tensor, grads: &mut [Tensor]) {
        let Some(round) = self.rounds.remove(&b) else { return };
        tch::no_grad(|| {
            let mut offset = 0i64;
            for (i, m, p) in round.compressed {
                let (cols, r) = (m.size()[1], p.size()[1]);
                let q = sum.narrow(0, offset, cols * r).view([cols, r]) / self.world;
                offset += cols * r;
                let approx = p.matmul(&q.transpose(0, 1));
                self.error.insert((b, i), &m - &approx);
                let shape = grads[i].size();
                grads[i].copy_(&approx.view(shape.as_slice()));
                // Warm start: next step's power iteration begins from this Q.
                self.q.insert((b, i), q);
            }
        });
    }

    fn end_step(&mut self, applied: bool) {
        self.step += 1;
        if !applied {
            // An fp16 overflow: the errors and factors hold inf/NaN; start them afresh (PyTorch
            // would carry the poison into every later step).
            self.error.clear();
            self.q.clear();
        }
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = Vec::new();
        for ((b, i), e) in &self.error {
            out.push((format!("error.{b}.{i}"), e.shallow_clone()));
        }
        for ((b, i), q) in &self.q {
            out.push((format!("q.{b}.{i}"), q.shallow_clone()));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn load_state(&mut self, tensors: &[(String, Tensor)], step: u64) -> anyhow::Result<()> {
        let (mut error, mut q) = (HashMap::new(), HashMap::new());
        for (name, t) in tensors {
            let mut parts = name.split('.');
            let (what, b, i) = (parts.next(), parts.next(), parts.next());
            let key = b.and_then(|b| b.parse().ok()).zip(i.and_then(|i| i.parse().ok()));
            match (what, key) {
                (Some("error"), Some(k)) => error.insert(k, t.shallow_clone()),
                (Some("q"), Some(k)) => q.insert(k, t.shallow_clone()),
                _ => anyhow::bail!("`{name}` is no PowerSGD state"),
            };
        }
        (self.error, self.q, self.step) = (error, q, step);
        Ok(())
    }

    fn set_step(&mut self, step: u64) {
        self.step = step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributed::compression::Mean;

    fn over_two_ranks(codecs: &mut [&mut dyn Codec; 2], grads: [&[Tensor]; 2]) -> Vec<Vec<Tensor>> {
        crate::distributed::compression::tests::over_two_ranks(codecs, grads)
    }

    fn grads(seed: i64) -> Vec<Tensor> {
        tch::manual_seed(seed);
        vec![Tensor::randn([4, 3, 3], (Kind::Float, Device::Cpu)), Tensor::randn([4], (Kind::Float, Device::Cpu))]
    }

    /// With rank ≥ the matrix's smaller side the approximation is the mean itself.
    #[test]
    fn powersgd_of_full_rank_reproduces_the_plain_all_reduce() {
        let (a, b) = (grads(1), grads(2));
        let (mut m0, mut m1) = (Mean { scale: 0.5 }, Mean { scale: 0.5 });
        let want = over_two_ranks(&mut [&mut m0, &mut m1], [&a, &b]);
        let mk = || PowerSgd { min_compression_rate: 0.0, ..PowerSgd::new(4, 0, 2, 7) };
        let (mut p0, mut p1) = (mk(), mk());
        for step in 0..3 {
            let got = over_two_ranks(&mut [&mut p0, &mut p1], [&a, &b]);
            for t in 0..2 {
                let d = (&got[0][t] - &want[0][t]).abs().max().double_value(&[]);
                assert!(d < 1e-5, "step {step}, tensor {t}: differs by {d}");
                assert!(got[0][t].equal(&got[1][t]));
            }
            p0.end_step(true);
            p1.end_step(true);
        }
        assert!(p0.state().iter().any(|(n, _)| n == "q.0.0"), "warm start kept Q");
    }

    /// Rank 1 of a 4×9 matrix: a real approximation, whose miss is kept as error feedback,
    /// and before the start step the bucket goes as it is.
    #[test]
    fn a_low_rank_step_keeps_what_it_misses_for_the_next() {
        tch::manual_seed(3);
        let g = vec![Tensor::randn([4, 9], (Kind::Float, Device::Cpu))];
        let mut p = PowerSgd { min_compression_rate: 0.0, ..PowerSgd::new(1, 1, 1, 0) };
        let mut out = vec![g[0].zeros_like()];
        let sent = p.encode(0, &g);
        assert_eq!(sent.numel(), 36, "step 0 < start step 1: uncompressed");
        assert!(p.first(0, sent, &mut out).is_none());
        assert!(out[0].equal(&g[0]));
        p.end_step(true);
        let sent = p.encode(0, &g);
        assert_eq!(sent.numel(), 4, "P of 4 rows × rank 1");
        let q = p.first(0, sent, &mut out).expect("a second round");
        assert_eq!(q.numel(), 9);
        p.second(0, q, &mut out);
        let err = &p.state()[0].1;
        assert!((&out[0] + err).allclose(&g[0], 1e-5, 1e-5, false), "approximation + error = M");
        assert!(err.abs().max().double_value(&[]) > 1e-3, "rank 1 does miss something");
        p.end_step(false);
        assert!(p.state().is_empty(), "an overflowed step clears the state");
    }
}
