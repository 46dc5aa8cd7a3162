//! Training: building a run (`run.rs`, from the parts `build.rs` makes), the loop
//! (`fit.rs`) with its position in the data (`position.rs`: the global batch, samples of
//! the epoch done) and its one step (`step.rs`, shared with `bench.rs`); losses, optimisers, schedules, mixed precision (`amp.rs`);
//! what data parallelism adds (`data_parallel.rs`); the training state, checkpoints and
//! the `metrics.jsonl` records (also TensorBoard's) with the curves drawn from them; the
//! step's time breakdown and ETA (`breakdown.rs`, on the device's timeline: `clock.rs`), memory figures, and the multi-rank
//! trace of `train.trace_steps` (`trace.rs`).
pub mod amp;
pub mod bench;
pub mod breakdown;
pub mod build;
pub mod checkpoint;
pub mod clock;
pub mod curves;
pub mod data_parallel;
mod fit;
pub mod loss;
pub mod memory;
pub mod optim;
pub mod position;
pub mod preempt;
pub mod records;
pub mod run;
pub mod run_summary;
pub mod schedule;
pub mod state;
pub mod status;
pub mod step;
pub mod straggler;
pub mod trace;

pub use run::{train, Resume, TrainOptions, TrainSummary};
