//! Training: losses, optimisers, schedules, checkpoints and the trainer loop.
pub mod amp;
pub mod checkpoint;
pub mod curves;
pub mod data_parallel;
pub mod loss;
pub mod optim;
pub mod schedule;
pub mod trainer;
