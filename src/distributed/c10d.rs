//! libtorch's c10d through the shim (csrc/c10d_*.cpp): the TCPStore every rank meets at,
//! process groups over it (gloo; NCCL in the CUDA build), and the work handles their
//! collectives return. Safe owners of the C++ objects; the policies (who hosts the store,
//! which ranks joined, timeouts) live in `rendezvous.rs` and `process_group.rs`.
use anyhow::bail;
use std::ffi::{c_char, c_void, CStr, CString};
use std::time::Duration;
use tch::Tensor;

extern "C" {
    fn segzoo_c10d_last_error() -> *const c_char;
    fn segzoo_store_host(port: u16, timeout_ms: i64, bound: *mut u16) -> *mut c_void;
    fn segzoo_store_connect(host: *const c_char, port: u16, timeout_ms: i64) -> *mut c_void;
    fn segzoo_store_prefix(store: *mut c_void, prefix: *const c_char) -> *mut c_void;
    fn segzoo_store_free(store: *mut c_void);
    fn segzoo_store_set(store: *mut c_void, key: *const c_char, value: *const u8, len: usize) -> bool;
    fn segzoo_store_get(store: *mut c_void, key: *const c_char, value: *mut *mut u8, len: *mut usize) -> bool;
    fn segzoo_store_free_value(value: *mut u8);
    fn segzoo_store_add(store: *mut c_void, key: *const c_char, delta: i64, result: *mut i64) -> bool;
    fn segzoo_store_check(store: *mut c_void, key: *const c_char) -> i32;
    fn segzoo_store_set_timeout(store: *mut c_void, timeout_ms: i64) -> bool;
    fn segzoo_store_timeout_ms(store: *mut c_void) -> i64;
    fn segzoo_pg_gloo(
        store: *mut c_void,
        rank: i32,
        size: i32,
        ifnames: *const c_char,
        host: *const c_char,
        timeout_ms: i64,
        threads: i32,
    ) -> *mut c_void;
    fn segzoo_pg_allreduce(pg: *mut c_void, t: *mut c_void) -> *mut c_void;
    fn segzoo_pg_broadcast(pg: *mut c_void, t: *mut c_void, root: i32) -> *mut c_void;
    fn segzoo_pg_allgather(pg: *mut c_void, out: *mut c_void, input: *mut c_void) -> *mut c_void;
    fn segzoo_pg_barrier(pg: *mut c_void) -> *mut c_void;
    fn segzoo_pg_set_timeout(pg: *mut c_void, timeout_ms: i64) -> bool;
    fn segzoo_pg_abort(pg: *mut c_void);
    fn segzoo_pg_free(pg: *mut c_void);
    fn segzoo_work_wait(work: *mut c_void) -> bool;
    fn segzoo_work_poll(work: *mut c_void) -> i32;
    fn segzoo_work_free(work: *mut c_void);
}

#[cfg(segzoo_cuda)]
extern "C" {
    fn segzoo_pg_nccl(store: *mut c_void, rank: i32, size: i32, device: i32, timeout_ms: i64) -> *mut c_void;
}

/// The calling thread's last c10d failure, as libtorch words it (without its C++ frames).
fn last_error() -> String {
    // SAFETY: a NUL-terminated thread-local string owned by the shim.
    let text = unsafe { CStr::from_ptr(segzoo_c10d_last_error()) }.to_string_lossy().trim().to_string();
    if text.is_empty() {
        "unknown c10d failure".into()
    } else {
        text
    }
}

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

fn c_string(s: &str) -> anyhow::Result<CString> {
    CString::new(s).map_err(|_| anyhow::anyhow!("{s:?} contains a NUL byte"))
}

/// A key-value store shared by the ranks (c10d's TCPStore, or a prefixed view of one).
pub struct Store(*mut c_void);

// SAFETY: c10d stores are thread-safe (TCPStore serialises its client socket).
unsafe impl Send for Store {}
unsafe impl Sync for Store {}

impl Store {
    /// Host a store on `port` (0: a free port) on every address of this machine; returns it
    /// and the port it listens on.
    pub fn host(port: u16, timeout: Duration) -> anyhow::Result<(Store, u16)> {
        let mut bound = 0u16;
        // SAFETY: `bound` is a valid out-pointer.
        let raw = unsafe { segzoo_store_host(port, millis(timeout), &mut bound) };
        if raw.is_null() {
            bail!("{}", last_error());
        }
        Ok((Store(raw), bound))
    }

    /// Connect to the store at `host:port`, retrying for up to `timeout`.
    pub fn connect(host: &str, port: u16, timeout: Duration) -> anyhow::Result<Store> {
        let host = c_string(host)?;
        // SAFETY: a valid C string.
        let raw = unsafe { segzoo_store_connect(host.as_ptr(), port, millis(timeout)) };
        if raw.is_null() {
            bail!("{}", last_error());
        }
        Ok(Store(raw))
    }

    /// The same store with every key under `prefix` (one namespace per use).
    pub fn prefixed(&self, prefix: &str) -> anyhow::Result<Store> {
        let prefix = c_string(prefix)?;
        // SAFETY: a live store and a valid C string.
        let raw = unsafe { segzoo_store_prefix(self.0, prefix.as_ptr()) };
        if raw.is_null() {
            bail!("{}", last_error());
        }
        Ok(Store(raw))
    }

    pub fn set(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let key = c_string(key)?;
        // SAFETY: a live store; `value` is readable for its length.
        if !unsafe { segzoo_store_set(self.0, key.as_ptr(), value.as_ptr(), value.len()) } {
            bail!("store set: {}", last_error());
        }
        Ok(())
    }

    /// The value at `key`, waiting for it up to the store's timeout.
    pub fn get(&self, key: &str) -> anyhow::Result<Vec<u8>> {
        let c_key = c_string(key)?;
        let (mut ptr, mut len) = (std::ptr::null_mut(), 0usize);
        // SAFETY: valid out-pointers; the buffer is freed below.
        if !unsafe { segzoo_store_get(self.0, c_key.as_ptr(), &mut ptr, &mut len) } {
            bail!("store get {key}: {}", last_error());
        }
        // SAFETY: the shim allocated `len` bytes at `ptr`.
        let value = unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec();
        // SAFETY: allocated by the shim, freed once.
        unsafe { segzoo_store_free_value(ptr) };
        Ok(value)
    }

    /// Atomically adds `delta` to the counter at `key`; returns the new value.
    pub fn add(&self, key: &str, delta: i64) -> anyhow::Result<i64> {
        let c_key = c_string(key)?;
        let mut value = 0i64;
        // SAFETY: a live store; a valid out-pointer.
        if !unsafe { segzoo_store_add(self.0, c_key.as_ptr(), delta, &mut value) } {
            bail!("store add {key}: {}", last_error());
        }
        Ok(value)
    }

    /// Whether `key` is set (does not wait).
    pub fn contains(&self, key: &str) -> anyhow::Result<bool> {
        let c_key = c_string(key)?;
        // SAFETY: a live store.
        match unsafe { segzoo_store_check(self.0, c_key.as_ptr()) } {
            1 => Ok(true),
            0 => Ok(false),
            _ => bail!("store check {key}: {}", last_error()),
        }
    }

    /// The limit of later waits on the store (a view shares its store's limit).
    pub fn set_timeout(&self, timeout: Duration) -> anyhow::Result<()> {
        // SAFETY: a live store.
        if !unsafe { segzoo_store_set_timeout(self.0, millis(timeout)) } {
            bail!("setting the store's timeout: {}", last_error());
        }
        Ok(())
    }

    /// The limit of waits on the store.
    pub fn timeout(&self) -> anyhow::Result<Duration> {
        // SAFETY: a live store.
        match unsafe { segzoo_store_timeout_ms(self.0) } {
            ms if ms >= 0 => Ok(Duration::from_millis(ms as u64)),
            _ => bail!("reading the store's timeout: {}", last_error()),
        }
    }

    fn raw(&self) -> *mut c_void {
        self.0
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: created by the shim, freed once.
        unsafe { segzoo_store_free(self.0) }
    }
}

/// Where a gloo group's transport listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlooBind {
    /// Network interfaces by name (`GLOO_SOCKET_IFNAME`, comma separated).
    Interfaces(String),
    /// The address a host name or IP resolves to.
    Host(String),
    /// This machine's host name (loopback when it does not resolve), as PyTorch's default.
    Default,
}

/// A c10d process group (gloo or NCCL) over every rank of the job.
pub struct Group(*mut c_void);

// SAFETY: c10d backends are thread-safe; abort in particular is meant for other threads.
unsafe impl Send for Group {}
unsafe impl Sync for Group {}

impl Group {
    /// A gloo group over `store`: blocks until every rank has connected, or `timeout`,
    /// which also bounds each collective until [`Group::set_timeout`].
    pub fn gloo(
        store: &Store,
        rank: usize,
        size: usize,
        bind: &GlooBind,
        timeout: Duration,
        threads: usize,
    ) -> anyhow::Result<Group> {
        let (ifnames, host) = match bind {
            GlooBind::Interfaces(i) => (Some(c_string(i)?), None),
            GlooBind::Host(h) => (None, Some(c_string(h)?)),
            GlooBind::Default => (None, None),
        };
        let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
        // SAFETY: a live store; null or valid C strings.
        let raw = unsafe {
            segzoo_pg_gloo(
                store.raw(),
                rank as i32,
                size as i32,
                ptr(&ifnames),
                ptr(&host),
                millis(timeout),
                threads as i32,
            )
        };
        if raw.is_null() {
            bail!("{}", last_error());
        }
        Ok(Group(raw))
    }

    /// A NCCL group over `store` on `cuda:device` (communicators are made at the first
    /// collective, as PyTorch's).
    #[cfg(segzoo_cuda)]
    pub fn nccl(store: &Store, rank: usize, size: usize, device: usize, timeout: Duration) -> anyhow::Result<Group> {
        // SAFETY: a live store.
        let raw = unsafe { segzoo_pg_nccl(store.raw(), rank as i32, size as i32, device as i32, millis(timeout)) };
        if raw.is_null() {
            bail!("{}", last_error());
        }
        Ok(Group(raw))
    }

    fn work(raw: *mut c_void, what: &str) -> anyhow::Result<Work> {
        if raw.is_null() {
            bail!("{what}: {}", last_error());
        }
        Ok(Work(raw))
    }

    /// `t` (contiguous) ← its sum over the ranks, once the work is waited for.
    pub fn all_reduce(&self, t: &Tensor) -> anyhow::Result<Work> {
        // SAFETY: a live group and tensor; c10d keeps its own reference to the tensor.
        Self::work(unsafe { segzoo_pg_allreduce(self.0, t.as_ptr() as *mut c_void) }, "all-reduce")
    }

    /// `t` (contiguous) ← rank `root`'s `t`.
    pub fn broadcast(&self, t: &Tensor, root: usize) -> anyhow::Result<Work> {
        // SAFETY: as above.
        Self::work(unsafe { segzoo_pg_broadcast(self.0, t.as_ptr() as *mut c_void, root as i32) }, "broadcast")
    }

    /// `out` (ranks × `input`'s elements, contiguous) ← every rank's `input` in rank order.
    pub fn all_gather(&self, out: &Tensor, input: &Tensor) -> anyhow::Result<Work> {
        // SAFETY: as above.
        let raw = unsafe { segzoo_pg_allgather(self.0, out.as_ptr() as *mut c_void, input.as_ptr() as *mut c_void) };
        Self::work(raw, "all-gather")
    }

    pub fn barrier(&self) -> anyhow::Result<Work> {
        // SAFETY: a live group.
        Self::work(unsafe { segzoo_pg_barrier(self.0) }, "barrier")
    }

    pub fn set_timeout(&self, timeout: Duration) -> anyhow::Result<()> {
        // SAFETY: a live group.
        if !unsafe { segzoo_pg_set_timeout(self.0, millis(timeout)) } {
            bail!("setting the collective timeout: {}", last_error());
        }
        Ok(())
    }

    /// Abandon pending collectives (NCCL: ncclCommAbort). Any thread.
    pub fn abort(&self) {
        // SAFETY: a live group; abort is thread-safe.
        unsafe { segzoo_pg_abort(self.0) }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: created by the shim, freed once.
        unsafe { segzoo_pg_free(self.0) }
    }
}

/// A collective in flight. Polling and waiting are thread-safe in c10d; a NCCL work is
/// polled and waited for on its group's device whatever the calling thread's device is.
pub struct Work(*mut c_void);

// SAFETY: see above.
unsafe impl Send for Work {}
unsafe impl Sync for Work {}

/// Where a collective is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Running,
    Done,
    Failed(String),
}

impl Work {
    /// Block until it has run (gloo), or order the current CUDA stream of its device after it
    /// (NCCL).
    pub fn wait(&self) -> anyhow::Result<()> {
        // SAFETY: a live work handle.
        if !unsafe { segzoo_work_wait(self.0) } {
            bail!("{}", last_error());
        }
        Ok(())
    }

    pub fn poll(&self) -> Progress {
        // SAFETY: a live work handle.
        match unsafe { segzoo_work_poll(self.0) } {
            0 => Progress::Running,
            1 => Progress::Done,
            _ => Progress::Failed(last_error()),
        }
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        // SAFETY: created by the shim, freed once.
        unsafe { segzoo_work_free(self.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A store hosted with the short limit of the job's start waits as long as the limit
    /// set afterwards, through a prefixed view too (the group's store is one).
    #[test]
    fn a_store_waits_for_a_missing_key_as_long_as_the_limit_set_after_its_start() {
        let (store, _) = Store::host(0, Duration::from_millis(100)).expect("host a store");
        let view = store.prefixed("segzoo/gen0/").expect("view");
        view.set_timeout(Duration::from_millis(1500)).expect("set the limit");
        assert_eq!(view.timeout().expect("view's limit"), Duration::from_millis(1500));
        assert_eq!(store.timeout().expect("store's limit"), Duration::from_millis(1500));
        let start = Instant::now();
        let e = view.get("absent").expect_err("no such key");
        // A lower bound only: a busy machine can make it later, never earlier.
        assert!(start.elapsed() >= Duration::from_millis(1400), "gave up after {:?}: {e}", start.elapsed());
        assert!(e.to_string().contains("absent"), "{e}");
    }
}
