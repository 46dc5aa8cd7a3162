//! Preemption while training. SIGTERM (a scheduler, segzoo-launch stopping the job) and
//! SIGINT ask the loop to write a checkpoint at the current step and end the process
//! with 128 + the signal, so `--resume auto` loses no work; a second one ends it at once.
//! SIGUSR1 and SIGUSR2 (SLURM's `--signal`, forwarded by segzoo-launch) ask for a
//! checkpoint at the current step and training goes on. The handlers only set flags; the
//! loop reads them between steps, and in a job of several ranks the ranks agree on them
//! (`DataParallel::any`) so that every rank saves and stops at the same step.
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// The flags the handlers set, installed for the training loop's lifetime.
pub struct Signals {
    /// The first stopping signal received (0: none).
    stop: Arc<AtomicUsize>,
    save: Arc<AtomicBool>,
    /// Set by a stopping signal; once set, the next one exits at once.
    stopping: Arc<AtomicBool>,
}

/// What the signals received so far ask of this rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Request {
    pub stop: Option<i32>,
    pub save: bool,
}

/// How training ended early on a stopping signal: not a failure, but not a finished run.
#[derive(Debug, thiserror::Error)]
#[error("stopped by {} at step {step}; {}", signal_name(*.signal), .checkpoint.as_ref().map_or("no checkpoint".into(), |p| format!("checkpoint {}", p.display())))]
pub struct Interrupted {
    pub signal: i32,
    pub step: u64,
    pub checkpoint: Option<PathBuf>,
}

impl Interrupted {
    /// As a shell reports a process ended by the signal.
    pub fn exit_code(&self) -> u8 {
        (128 + self.signal).clamp(1, 255) as u8
    }
}

pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        SIGUSR1 => "SIGUSR1",
        SIGUSR2 => "SIGUSR2",
        _ => "a signal",
    }
}

impl Signals {
    pub fn install() -> anyhow::Result<Signals> {
        let (stop, save) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let stopping = Arc::new(AtomicBool::new(false));
        for sig in [SIGTERM, SIGINT] {
            // Registered first, so it runs first: on a second stopping signal, exit now.
            signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, stopping.clone())?;
            signal_hook::flag::register(sig, stopping.clone())?;
            signal_hook::flag::register_usize(sig, stop.clone(), sig as usize)?;
        }
        for sig in [SIGUSR1, SIGUSR2] {
            signal_hook::flag::register(sig, save.clone())?;
        }
        Ok(Signals { stop, save, stopping })
    }

    /// What has been asked since the last call (a save request is consumed; a stop stays).
    pub fn take(&self) -> Request {
        let stop = match self.stop.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s as i32),
        };
        Request { stop, save: self.save.swap(false, Ordering::SeqCst) }
    }
}

impl Drop for Signals {
    /// After the loop a stopping signal ends the process at once, as by default
    /// (signal-hook cannot reinstate the default action itself).
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigusr1_asks_for_one_save_and_the_request_is_consumed() {
        let s = Signals::install().expect("handlers");
        assert_eq!(s.take(), Request::default());
        signal_hook::low_level::raise(SIGUSR1).expect("raise");
        assert_eq!(s.take(), Request { stop: None, save: true });
        assert_eq!(s.take(), Request::default(), "consumed");
    }

    #[test]
    fn an_interruption_exits_as_a_shell_reports_the_signal_and_names_the_checkpoint() {
        let i = Interrupted { signal: SIGTERM, step: 7, checkpoint: Some("c/ckpt_step_00000007.safetensors".into()) };
        assert_eq!(i.exit_code(), 143);
        assert_eq!(i.to_string(), "stopped by SIGTERM at step 7; checkpoint c/ckpt_step_00000007.safetensors");
    }
}
