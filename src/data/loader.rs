//! Multi-threaded, prefetching batch loading. Worker threads decode and augment
//! samples (each with its own RNG from (seed, epoch, index)); batches come out in
//! sampler order whatever the thread count, collated into tch tensors.
use super::dataset::{Dataset, Item};
use super::rng::sample_rng;
use crossbeam_channel::{bounded, Receiver};
use std::collections::HashMap;
use std::sync::Arc;
use tch::{Kind, Tensor};

/// A collated batch: images N×3×H×W (f32), targets N×H×W (i64 train ids) or N (class).
pub struct Batch {
    pub images: Tensor,
    pub targets: Tensor,
    /// Dataset indices of the samples, in batch order.
    pub indices: Vec<usize>,
}

/// Test hook: `SEGZOO_LOADER_DELAY_MS=N` makes every sample take N ms more to load, as on
/// slow storage, without using the CPU (so an input-bound run can be shown on any machine).
fn slow_storage_delay() -> Option<std::time::Duration> {
    let ms = std::env::var("SEGZOO_LOADER_DELAY_MS").ok()?.parse::<u64>().ok()?;
    (ms > 0).then(|| std::time::Duration::from_millis(ms))
}

#[derive(Debug, Clone)]
pub struct LoaderOptions {
    pub batch_size: usize,
    pub workers: usize,
    /// Batches prepared ahead of the consumer.
    pub prefetch: usize,
    pub drop_last: bool,
    pub seed: u64,
}

type Done = (usize, usize, anyhow::Result<Item>);

/// The batches of one epoch, in order.
pub struct EpochIter {
    batches: Vec<Vec<usize>>,
    next: usize,
    results: Receiver<Done>,
    permits: crossbeam_channel::Sender<()>,
    pending: HashMap<usize, Vec<Option<Item>>>,
    /// A sample's error waits here until its batch is the next one, so batches before
    /// it are still delivered in order.
    errors: HashMap<usize, anyhow::Error>,
    failed: bool,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Start loading `indices` (this rank's share, in order) for `epoch`.
pub fn epoch(dataset: Arc<dyn Dataset>, indices: &[usize], epoch: u64, opts: &LoaderOptions) -> EpochIter {
    let bs = opts.batch_size.max(1);
    let mut batches: Vec<Vec<usize>> = indices.chunks(bs).map(<[usize]>::to_vec).collect();
    if opts.drop_last && batches.last().is_some_and(|b| b.len() < bs) {
        batches.pop();
    }
    let workers = opts.workers.max(1);
    let (job_tx, job_rx) = bounded::<(usize, usize, usize)>(workers * 2);
    let (res_tx, res_rx) = bounded::<Done>(workers * 2 + bs);
    // One permit per batch in flight bounds the prefetch depth.
    let (permit_tx, permit_rx) = bounded::<()>(opts.prefetch.max(1));
    for _ in 0..opts.prefetch.max(1) {
        let _ = permit_tx.send(());
    }
    let mut threads = Vec::new();
    let feed = batches.clone();
    threads.push(std::thread::spawn(move || {
        for (b, batch) in feed.iter().enumerate() {
            if permit_rx.recv().is_err() {
                return;
            }
            for (slot, &index) in batch.iter().enumerate() {
                if job_tx.send((b, slot, index)).is_err() {
                    return;
                }
            }
        }
    }));
    let delay = slow_storage_delay();
    for _ in 0..workers {
        let (jobs, results, ds, seed) = (job_rx.clone(), res_tx.clone(), dataset.clone(), opts.seed);
        threads.push(std::thread::spawn(move || {
            while let Ok((b, slot, index)) = jobs.recv() {
                let mut rng = sample_rng(seed, epoch, index as u64);
                if let Some(d) = delay {
                    std::thread::sleep(d);
                }
                let item = ds.get(index, &mut rng);
                if results.send((b, slot, item)).is_err() {
                    return;
                }
            }
        }));
    }
    EpochIter {
        batches,
        next: 0,
        results: res_rx,
        permits: permit_tx,
        pending: HashMap::new(),
        errors: HashMap::new(),
        failed: false,
        threads,
    }
}

impl EpochIter {
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }
}

impl Iterator for EpochIter {
    type Item = anyhow::Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.next >= self.batches.len() {
            return None;
        }
        let b = self.next;
        let want = self.batches[b].len();
        loop {
            if let Some(e) = self.errors.remove(&b) {
                self.failed = true;
                return Some(Err(e));
            }
            if self.pending.get(&b).is_some_and(|v| v.iter().all(Option::is_some)) {
                break;
            }
            let Ok((bi, slot, item)) = self.results.recv() else {
                self.failed = true;
                return Some(Err(anyhow::anyhow!("data loader workers stopped unexpectedly")));
            };
            match item {
                Ok(item) => {
                    let entry = self.pending.entry(bi).or_insert_with(|| {
                        let n = self.batches[bi].len();
                        (0..n).map(|_| None).collect()
                    });
                    entry[slot] = Some(item);
                }
                Err(e) => {
                    self.errors.entry(bi).or_insert(e);
                }
            }
        }
        let items: Vec<Item> = self.pending.remove(&b).unwrap_or_default().into_iter().flatten().collect();
        debug_assert_eq!(items.len(), want);
        self.next += 1;
        let _ = self.permits.send(());
        Some(collate(items, self.batches[b].clone()))
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        // Disconnect both channels the helpers block on (the feeder waits for permits,
        // workers for room in the results channel), then let them finish.
        self.failed = true;
        let (dead_permits, _) = bounded::<()>(0);
        self.permits = dead_permits;
        let (_, dead_results) = bounded::<Done>(0);
        self.results = dead_results;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn collate(items: Vec<Item>, indices: Vec<usize>) -> anyhow::Result<Batch> {
    let (h, w) = (items[0].prepared.height, items[0].prepared.width);
    if let Some((i, it)) = items.iter().enumerate().find(|(_, it)| (it.prepared.height, it.prepared.width) != (h, w)) {
        anyhow::bail!(
            "cannot batch samples of different sizes: sample {} is {}×{}, sample {} is {h}×{w} (use batch size 1 or a crop)",
            indices[i],
            it.prepared.height,
            it.prepared.width,
            indices[0]
        );
    }
    let n = items.len() as i64;
    let mut pixels = Vec::with_capacity(items.len() * 3 * h * w);
    for it in &items {
        pixels.extend_from_slice(&it.prepared.image);
    }
    let images = Tensor::from_slice(&pixels).view([n, 3, h as i64, w as i64]);
    let targets = if items[0].class.is_some() {
        Tensor::from_slice(&items.iter().map(|it| it.class.unwrap_or(-1)).collect::<Vec<i64>>())
    } else {
        let mut labels = Vec::with_capacity(items.len() * h * w);
        for it in &items {
            labels.extend_from_slice(&it.prepared.label);
        }
        Tensor::from_slice(&labels).view([n, h as i64, w as i64]).to_kind(Kind::Int64)
    };
    Ok(Batch { images, targets, indices })
}
