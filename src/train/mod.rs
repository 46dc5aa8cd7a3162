//! Training: losses, optimisers, schedules, checkpoints and the trainer loop.
pub mod checkpoint;
pub mod loss;
pub mod optim;
pub mod schedule;
pub mod trainer;
