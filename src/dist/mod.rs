//! Distribution: collective backends and the probes `segzoo env` reports.
pub mod mpi;
pub mod nccl;
pub mod world;
