//! Which rank holds a data-parallel job back. Every log interval each rank's own time per
//! step — compute (forward, backward and the optimiser, without the time spent waiting for
//! the others; CUDA events on a GPU) and its wait for data — is gathered in one small
//! all-gather. Rank 0 compares the slowest rank with the median of the others: above
//! `dist.straggler_ratio` it names the rank, its server and device, the ratio, and whether
//! compute or data made it slow.
use super::data_parallel::DataParallel;
use crate::distributed::watchdog::{self, within};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// One rank's own time per step over an interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankTimes {
    pub rank: usize,
    pub compute_ms: f64,
    pub data_ms: f64,
}

/// The rank named slow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Straggler {
    pub rank: usize,
    /// "server device".
    pub place: String,
    /// Its time over the median of the other ranks'.
    pub ratio: f64,
    /// "compute" or "data".
    pub cause: String,
}

/// What an interval's gathering found (on rank 0; empty elsewhere).
#[derive(Debug, Default)]
pub struct Verdict {
    pub ranks: Vec<RankTimes>,
    /// The slowest rank's ratio, named or not.
    pub ratio: Option<f64>,
    pub straggler: Option<Straggler>,
}

pub struct Stragglers {
    /// Every rank's "server device" (rank 0 only).
    places: Vec<String>,
    threshold: f64,
    /// Intervals each rank was named in, and intervals judged.
    pub named: Vec<u64>,
    pub intervals: u64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The slowest of `ranks` against the median of the others: (its index, the ratio, and
/// whether compute (else data) is what it spends more on than the others).
pub fn judge(ranks: &[RankTimes]) -> Option<(usize, f64, &'static str)> {
    if ranks.len() < 2 {
        return None;
    }
    let total = |r: &RankTimes| r.compute_ms + r.data_ms;
    let slow = (0..ranks.len()).max_by(|&a, &b| total(&ranks[a]).total_cmp(&total(&ranks[b])))?;
    let others: Vec<&RankTimes> = ranks.iter().enumerate().filter(|(i, _)| *i != slow).map(|(_, r)| r).collect();
    let typical = median(others.iter().map(|r| total(r)).collect());
    let ratio = total(&ranks[slow]) / typical.max(1e-9);
    let extra_compute = ranks[slow].compute_ms - median(others.iter().map(|r| r.compute_ms).collect());
    let extra_data = ranks[slow].data_ms - median(others.iter().map(|r| r.data_ms).collect());
    Some((slow, ratio, if extra_data > extra_compute { "data" } else { "compute" }))
}

impl Stragglers {
    /// Every rank calls it once: each says where it runs (the rank table's server under
    /// segzoo-launch, which sets `SERVER_ID`, else the host name).
    pub fn new(dp: &DataParallel, threshold: f64) -> anyhow::Result<Self> {
        let server = std::env::var("SERVER_ID")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(crate::distributed::rendezvous::hostname);
        let place = format!("{server} {}", crate::envinfo::device_name(dp.device));
        let gathered = within("where the ranks run", || {
            crate::distributed::gather::gather_bytes(dp.comm.as_ref(), place.as_bytes(), dp.device)
        })?;
        let places = gathered.unwrap_or_default().iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect();
        Ok(Stragglers { places, threshold, named: vec![0; dp.size()], intervals: 0 })
    }

    /// This interval's times of every rank (every rank calls it) and, on rank 0, the verdict.
    pub fn interval(&mut self, dp: &DataParallel, compute_ms: f64, data_ms: f64) -> anyhow::Result<Verdict> {
        let mine = Tensor::from_slice(&[compute_ms as f32, data_ms as f32]).to_device(dp.device);
        let all = within("step times of the ranks", || dp.comm.all_gather(&mine))?;
        if !dp.is_root() {
            return Ok(Verdict::default());
        }
        let values = Vec::<f32>::try_from(all.to_kind(Kind::Float).to_device(tch::Device::Cpu).reshape([-1]))?;
        let ranks: Vec<RankTimes> = values
            .chunks(2)
            .enumerate()
            .map(|(rank, v)| RankTimes { rank, compute_ms: v[0] as f64, data_ms: v[1] as f64 })
            .collect();
        let Some((slow, ratio, cause)) = judge(&ranks) else { return Ok(Verdict { ranks, ..Default::default() }) };
        self.intervals += 1;
        let straggler = (ratio > self.threshold).then(|| {
            self.named[slow] += 1;
            let place = self.places.get(slow).cloned().unwrap_or_default();
            Straggler { rank: slow, place, ratio, cause: cause.into() }
        });
        if let Some(st) = &straggler {
            tracing::warn!(
                "straggler: rank {} ({}) took {:.2}× the median step of the other ranks, {}-bound \
                 (this interval's per-rank times are in metrics.jsonl)",
                st.rank,
                st.place,
                st.ratio,
                st.cause
            );
        }
        // The launcher's summary repeats it (from this rank's heartbeat).
        watchdog::set_note(self.most_often().map(|m| format!("slowest rank most often: {m}")));
        Ok(Verdict { ranks, ratio: Some(ratio), straggler })
    }

    /// The rank named most often, for the end of the run: "rank 1 (host cpu) in 5 of 7 intervals".
    pub fn most_often(&self) -> Option<String> {
        let (rank, &n) = self.named.iter().enumerate().max_by_key(|(_, &n)| n)?;
        (n > 0).then(|| {
            let place = self.places.get(rank).map_or(String::new(), |p| format!(" ({p})"));
            format!("rank {rank}{place} in {n} of {} intervals", self.intervals)
        })
    }
}

/// At the end of a run, on rank 0 (the only one that judges): the rank named slow most
/// often, if any was.
pub fn report(stragglers: Option<&Stragglers>) {
    if let Some(m) = stragglers.and_then(Stragglers::most_often) {
        tracing::info!("slowest rank most often: {m}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(rank: usize, compute_ms: f64, data_ms: f64) -> RankTimes {
        RankTimes { rank, compute_ms, data_ms }
    }

    #[test]
    fn the_slowest_rank_is_compared_with_the_others_and_its_cause_told() {
        assert_eq!(judge(&[t(0, 100.0, 5.0), t(1, 200.0, 10.0)]), Some((1, 2.0, "compute")));
        let (slow, ratio, cause) = judge(&[t(0, 100.0, 5.0), t(1, 101.0, 4.0), t(2, 100.0, 120.0)]).expect("three");
        assert_eq!((slow, cause), (2, "data"));
        assert!((ratio - 220.0 / 105.0).abs() < 1e-9);
        assert_eq!(judge(&[t(0, 1.0, 1.0)]), None, "alone, nobody is slow");
    }
}
