//! Training: building a run (`run.rs`), the loop (`fit.rs`) and its one step (`step.rs`,
//! shared with `bench.rs`); losses, optimisers, schedules, mixed precision (`amp.rs`);
//! what data parallelism adds (`data_parallel.rs`); the training state, checkpoints and
//! the `metrics.jsonl` records with the curves drawn from them.
pub mod amp;
pub mod bench;
pub mod checkpoint;
pub mod curves;
pub mod data_parallel;
mod fit;
pub mod loss;
pub mod optim;
pub mod preempt;
pub mod records;
pub mod run;
pub mod schedule;
pub mod state;
pub mod step;

pub use run::{train, Resume, TrainOptions, TrainSummary};
