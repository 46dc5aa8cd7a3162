//! Hosts of their own for multi-server tests and benchmarks: N network namespaces joined
//! by a bridge in a namespace of its own, each with a private address (10.231.0.1, …) that
//! exists only inside them; all created by the test and deleted when it drops them (their
//! processes killed first). A host's link can be cut, restored and shaped (tc tbf, each
//! direction). Where namespaces cannot be made (not root, no iproute2) `new` says why and
//! the test skips.
#![allow(dead_code)]
use std::ffi::OsStr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub struct Hosts {
    id: String,
    pub addrs: Vec<String>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Hosts {
    /// `n` hosts; `Err` says why they cannot be made here.
    pub fn new(n: usize) -> Result<Hosts, String> {
        // Short names: interface names have 15 characters at most.
        let id = format!("{}{}", std::process::id() % 10_000, NEXT.fetch_add(1, Ordering::Relaxed));
        let hosts = Hosts { id, addrs: (1..=n).map(|i| format!("10.231.0.{i}")).collect() };
        hosts.build(n).map(|()| hosts)
    }

    fn bridge(&self) -> String {
        format!("szb{}", self.id)
    }

    /// The namespace of host `i`.
    pub fn ns(&self, i: usize) -> String {
        format!("szh{}x{i}", self.id)
    }

    fn build(&self, n: usize) -> Result<(), String> {
        let br = self.bridge();
        ip(&["netns", "add", &br])?;
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let ns = self.ns(i);
            let (host_end, bridge_end) = (format!("sze{}x{i}", self.id), format!("szp{}x{i}", self.id));
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["link", "add", &host_end, "netns", &ns, "type", "veth", "peer", "name", &bridge_end, "netns", &br])?;
            ip(&["-n", &ns, "link", "set", &host_end, "name", "eth0"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", self.addrs[i]), "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &br, "link", "set", &bridge_end, "master", "br0"])?;
            ip(&["-n", &br, "link", "set", &bridge_end, "up"])?;
        }
        Ok(())
    }

    /// `program` run inside host `i`'s namespace.
    pub fn command(&self, i: usize, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(i)]).arg(program);
        cmd
    }

    /// Host `i`'s link down: its packets go nowhere, its connections see silence.
    pub fn cut(&self, i: usize) {
        ip(&["-n", &self.ns(i), "link", "set", "eth0", "down"]).expect("cut the link");
    }

    pub fn restore(&self, i: usize) {
        ip(&["-n", &self.ns(i), "link", "set", "eth0", "up"]).expect("restore the link");
    }

    /// Every host's outgoing traffic at `mbit` Mbit/s (so each direction of every pair).
    pub fn shape(&self, mbit: f64) {
        for i in 0..self.addrs.len() {
            let rate = format!("{mbit}mbit");
            let out = Command::new("ip")
                .args(["netns", "exec", &self.ns(i), "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf"])
                .args(["rate", &rate, "burst", "64kb", "latency", "400ms"])
                .output()
                .expect("tc");
            assert!(out.status.success(), "tc: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let names: Vec<String> = (0..self.addrs.len()).map(|i| self.ns(i)).chain([self.bridge()]).collect();
        for ns in &names {
            // Whatever still runs inside goes first: a namespace with processes lingers.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = ip(&["netns", "del", ns]);
        }
    }
}
