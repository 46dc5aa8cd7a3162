//! What a collective is for: callers label the collectives they run ("gradient all-reduce",
//! "SyncBatchNorm", …) so that a timeout names the purpose, not only the operation. The
//! label is the calling thread's own: autograd's threads and the MPI gradient thread each
//! carry theirs.
use std::cell::Cell;

thread_local! {
    static CONTEXT: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// Run `f` with its collectives labelled as being for `what`.
pub fn within<T>(what: &'static str, f: impl FnOnce() -> T) -> T {
    let before = CONTEXT.with(|c| c.replace(Some(what)));
    let out = f();
    CONTEXT.with(|c| c.set(before));
    out
}

/// `op` with the calling thread's label: "gradient all-reduce (gloo all-reduce of 10 values)".
pub fn label(op: &str) -> String {
    match CONTEXT.with(Cell::get) {
        Some(what) => format!("{what} ({op})"),
        None => op.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_carry_the_callers_context_on_this_thread_only() {
        assert_eq!(label("MPI barrier"), "MPI barrier");
        let inside =
            within("loss mean", || (label("MPI all-reduce of 3 values"), std::thread::spawn(|| label("x")).join()));
        assert_eq!(inside.0, "loss mean (MPI all-reduce of 3 values)");
        assert_eq!(inside.1.expect("thread"), "x");
        assert_eq!(label("MPI barrier"), "MPI barrier", "restored");
    }
}
