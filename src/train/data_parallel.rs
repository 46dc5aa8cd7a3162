//! What data-parallel training adds to one process's loop: the same starting weights
//! everywhere, gradients averaged over the ranks after every backward pass, BN running
//! statistics averaged before they are evaluated or saved, and agreement checks.
use super::optim::Param;
use crate::config::{Compression, DistConfig};
use crate::distributed::compression::{Cast, Codec, Mean};
use crate::distributed::overlap::Reducer;
use crate::distributed::powersgd::PowerSgd;
use crate::distributed::watchdog::within;
use crate::distributed::{buckets, BackendKind, Comm};
use crate::models::Model;
use anyhow::bail;
use std::cell::RefCell;
use std::rc::Rc;
use tch::{Kind, Tensor};

pub struct DataParallel {
    pub comm: Comm,
    pub bucket_bytes: usize,
    /// The model's device, where small bookkeeping tensors are made (NCCL needs them there).
    pub device: tch::Device,
    /// Gradient all-reduce overlapped with backward (`dist.overlap`), where available.
    overlap: Option<Reducer>,
    /// How gradient buckets cross the wire (`dist.compression`), shared with the reducer.
    codec: Rc<RefCell<Box<dyn Codec>>>,
    compression: Compression,
}

impl DataParallel {
    pub fn new(comm: Comm, bucket_mb: f64, device: tch::Device) -> Self {
        let codec: Box<dyn Codec> = Box::new(Mean { scale: 1.0 / comm.size() as f64 });
        DataParallel {
            comm,
            bucket_bytes: (bucket_mb * 1024.0 * 1024.0) as usize,
            device,
            overlap: None,
            codec: Rc::new(RefCell::new(codec)),
            compression: Compression::None,
        }
    }

    /// Compress gradients as `dist` says (before [`enable_overlap`](Self::enable_overlap)).
    /// PowerSGD starts after `dist.powersgd_start_step` optimiser steps, else after 10 % of
    /// `total_steps`; its first Q matrices come from `seed`. Alone, nothing is sent.
    pub fn set_compression(&mut self, dist: &DistConfig, total_steps: u64, seed: u64) {
        if self.alone() {
            return;
        }
        let world = self.size();
        let codec: Box<dyn Codec> = match dist.compression {
            Compression::None => return,
            Compression::Fp16 => Box::new(Cast { kind: Kind::Half, world: world as f64 }),
            Compression::Bf16 => Box::new(Cast { kind: Kind::BFloat16, world: world as f64 }),
            Compression::Powersgd => {
                let start = dist.powersgd_start_step.unwrap_or(total_steps / 10);
                Box::new(PowerSgd::new(dist.powersgd_rank, start, world, seed))
            }
        };
        self.codec = Rc::new(RefCell::new(codec));
        self.compression = dist.compression;
    }

    /// The compression in use (`none` alone).
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// After the optimiser step (applied, or skipped on fp16 overflow).
    pub fn end_step(&self, applied: bool) {
        self.codec.borrow_mut().end_step(applied);
    }

    /// This rank's compression state (PowerSGD's error buffers and factors), if any.
    pub fn compression_state(&self) -> Vec<(String, Tensor)> {
        self.codec.borrow().state()
    }

    /// Restore [`compression_state`](Self::compression_state) saved at `step`; `None`: start
    /// afresh at `step`.
    pub fn restore_compression(&self, saved: Option<&[(String, Tensor)]>, step: u64) -> anyhow::Result<()> {
        let mut codec = self.codec.borrow_mut();
        match saved {
            Some(tensors) => codec.load_state(tensors, step),
            None => {
                codec.set_step(step);
                Ok(())
            }
        }
    }

    /// Whether this process trains alone (no group: every collective is the identity). A
    /// group of one rank (an explicit `dist.backend` under a launcher) is not alone: its
    /// collectives, overlap and SyncBN run as in a larger job.
    pub fn alone(&self) -> bool {
        self.comm.kind() == BackendKind::Single
    }

    /// Overlap the gradient all-reduce of `params` with backward, where the backend has a
    /// background summer (gloo and MPI on CPU, NCCL on GPUs, gloo on GPUs through host
    /// memory); returns whether it does. Every rank calls it at the same point (a gloo
    /// background group connects here).
    pub fn enable_overlap(&mut self, params: &[Param]) -> anyhow::Result<bool> {
        if self.alone() || (self.device.is_cuda() && self.comm.kind() == BackendKind::Mpi) {
            return Ok(false);
        }
        let Some(summer) = within("the gradient buckets' group", || self.comm.background())? else {
            return Ok(false);
        };
        let tensors: Vec<Tensor> = params.iter().map(|p| p.tensor.shallow_clone()).collect();
        self.overlap = Some(Reducer::new(&tensors, self.bucket_bytes, self.codec.clone(), summer)?);
        Ok(true)
    }

    /// (buckets started during the last backward, buckets), with overlap on.
    pub fn overlapped(&self) -> Option<(usize, usize)> {
        self.overlap.as_ref().map(Reducer::overlapped)
    }

    /// Before the backward whose gradients are the step's (the last micro-batch's).
    pub fn before_last_backward(&self) {
        if let Some(r) = &self.overlap {
            r.arm();
        }
    }

    /// After the last backward: every gradient ← its mean over the ranks, by finishing the
    /// overlapped all-reduce or running the whole of it now.
    pub fn finish_gradients(&self, params: &[Param]) -> anyhow::Result<()> {
        within("gradient all-reduce", || match &self.overlap {
            Some(r) => r.finish(),
            None => self.average_gradients(params),
        })
    }

    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    pub fn size(&self) -> usize {
        self.comm.size()
    }

    pub fn is_root(&self) -> bool {
        self.comm.rank() == 0
    }

    /// Rank 0's parameters and buffers, everywhere.
    pub fn broadcast_state(&self, model: &Model) -> anyhow::Result<()> {
        if self.alone() {
            return Ok(());
        }
        within("broadcast of rank 0's weights", || {
            for (_, mut t) in model.state_dict() {
                self.comm.broadcast(&mut t, 0)?;
            }
            Ok(())
        })
    }

    /// Every gradient ← its mean over the ranks. Buckets follow reverse registration
    /// order, the order backward produces gradients in. A parameter without a gradient
    /// takes part as zeros (every rank must send the same buckets) and stays without.
    pub fn average_gradients(&self, params: &[Param]) -> anyhow::Result<()> {
        if self.alone() {
            return Ok(());
        }
        let mut grads: Vec<Tensor> = params.iter().rev().map(|p| buckets::grad_or_zeros(&p.tensor)).collect();
        let mut codec = self.codec.borrow_mut();
        buckets::all_reduce(self.comm.as_ref(), &mut grads, self.bucket_bytes, &mut **codec)
    }

    /// BN running means and variances ← their mean over the ranks (each rank saw
    /// different batches), so that evaluation and checkpoints see one model.
    pub fn average_bn_stats(&self, model: &Model) -> anyhow::Result<()> {
        if self.alone() {
            return Ok(());
        }
        let mut stats: Vec<Tensor> = model
            .state_dict()
            .into_iter()
            .filter(|(n, _)| n.ends_with(".running_mean") || n.ends_with(".running_var"))
            .map(|(_, t)| t)
            .collect();
        within("BN running statistics average", || {
            let mut exact = Mean { scale: 1.0 / self.size() as f64 };
            buckets::all_reduce(self.comm.as_ref(), &mut stats, self.bucket_bytes, &mut exact)
        })
    }

    /// Each value's mean over the ranks (the steps' losses, as logged and checked), the
    /// tensors' elements in order: one all-reduce and one copy to the host for all.
    pub fn mean_each(&self, values: &[Tensor]) -> anyhow::Result<Vec<f64>> {
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let flat: Vec<Tensor> = values.iter().map(|v| v.detach().to_kind(Kind::Float).reshape([-1])).collect();
        let mut t = Tensor::cat(&flat, 0);
        if !self.alone() {
            within("loss mean", || self.comm.all_reduce_sum(&mut t))?;
        }
        let host = Vec::<f32>::try_from(t.to_device(tch::Device::Cpu))?;
        // Alone, a division by 1, which is exact.
        let n = self.size() as f64;
        Ok(host.into_iter().map(|v| v as f64 / n).collect())
    }

    /// Fails on a rank whose `value` differs from rank 0's, naming both.
    pub fn agree(&self, what: &str, value: i64, hint: &str) -> anyhow::Result<()> {
        if self.alone() {
            return Ok(());
        }
        let mut t = Tensor::from_slice(&[value]).to_device(self.device);
        within("agreement check", || self.comm.broadcast(&mut t, 0))?;
        let root = t.int64_value(&[0]);
        if root != value {
            bail!("rank {} has {what} {value} but rank 0 has {root}; {hint}", self.rank());
        }
        Ok(())
    }

    pub fn barrier(&self) -> anyhow::Result<()> {
        within("barrier", || self.comm.barrier())
    }

    /// For each flag, whether any rank raised it (stop and save requests): one small
    /// all-reduce, so that every rank acts on the same step.
    pub fn any(&self, flags: &[bool]) -> anyhow::Result<Vec<bool>> {
        if self.alone() {
            return Ok(flags.to_vec());
        }
        let mut t = Tensor::from_slice(&flags.iter().map(|&f| f as i64).collect::<Vec<_>>()).to_device(self.device);
        within("signal agreement", || self.comm.all_reduce_sum(&mut t))?;
        Ok(Vec::<i64>::try_from(t.to_device(tch::Device::Cpu))?.into_iter().map(|n| n > 0).collect())
    }
}
