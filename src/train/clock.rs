//! Marks in a step's time that cost no wait for the device: host clocks on the CPU, CUDA
//! timing events on a GPU (csrc/device_events.cpp), recorded on the device's stream in
//! order with the work. A GPU mark is read when the loop brings the losses to the host
//! anyway (a log line), by which time the work before it has run.
use std::ffi::c_void;
use std::time::{Duration, Instant};
use tch::Device;

extern "C" {
    fn segzoo_cuda_event_record(index: i32) -> *mut c_void;
    fn segzoo_cuda_event_elapsed_ms(start: *mut c_void, end: *mut c_void) -> f64;
    fn segzoo_cuda_event_free(event: *mut c_void);
}

/// A point in a step, on the device's own timeline.
pub enum Mark {
    Host(Instant),
    Cuda(CudaEvent),
}

/// A recorded CUDA event.
pub struct CudaEvent(*mut c_void);

impl Drop for CudaEvent {
    fn drop(&mut self) {
        // SAFETY: created by the shim, freed once.
        unsafe { segzoo_cuda_event_free(self.0) }
    }
}

impl Mark {
    /// Now, on `device`'s timeline (the host's where no event can be recorded).
    pub fn now(device: Device) -> Mark {
        if let Device::Cuda(index) = device {
            // SAFETY: plain FFI call; null when CUDA is absent.
            let event = unsafe { segzoo_cuda_event_record(index as i32) };
            if !event.is_null() {
                return Mark::Cuda(CudaEvent(event));
            }
        }
        Mark::Host(Instant::now())
    }

    /// The time from `self` to the later mark `end` (on a GPU, waits for `end` to pass).
    pub fn until(&self, end: &Mark) -> Duration {
        match (self, end) {
            (Mark::Host(a), Mark::Host(b)) => b.saturating_duration_since(*a),
            (Mark::Cuda(a), Mark::Cuda(b)) => {
                // SAFETY: two live events of the shim.
                let ms = unsafe { segzoo_cuda_event_elapsed_ms(a.0, b.0) };
                Duration::from_secs_f64(ms.max(0.0) / 1000.0)
            }
            // One step's marks are all of one kind; nothing to measure otherwise.
            _ => Duration::ZERO,
        }
    }
}

/// A step's marks: its start, the end of backward, the end of the gradient communication
/// left after backward, and the end of the optimiser update.
pub struct StepMarks {
    pub start: Mark,
    pub backward_end: Mark,
    pub comm_end: Mark,
    pub end: Mark,
}

/// A step's parts: forward and backward, the exposed communication, the optimiser.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepParts {
    pub compute: Duration,
    pub exposed_comm: Duration,
    pub optimizer: Duration,
}

impl StepMarks {
    /// The parts' durations (on a GPU, waits for the step's end).
    pub fn parts(&self) -> StepParts {
        StepParts {
            compute: self.start.until(&self.backward_end),
            exposed_comm: self.backward_end.until(&self.comm_end),
            optimizer: self.comm_end.until(&self.end),
        }
    }

    /// Marks from host instants (for tests and host-timed callers).
    pub fn at(start: Instant, backward_end: Instant, comm_end: Instant, end: Instant) -> StepMarks {
        StepMarks {
            start: Mark::Host(start),
            backward_end: Mark::Host(backward_end),
            comm_end: Mark::Host(comm_end),
            end: Mark::Host(end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_marks_time_the_parts_between_them() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let marks = StepMarks::at(t0, t0 + ms(80), t0 + ms(84), t0 + ms(90));
        assert_eq!(marks.parts(), StepParts { compute: ms(80), exposed_comm: ms(4), optimizer: ms(6) });
        // On the CPU a mark is the host's clock.
        assert!(matches!(Mark::now(Device::Cpu), Mark::Host(_)));
    }
}
