//! Only members join: every launcher of a job holds a job key (`SEGZOO_JOB_KEY`,
//! `--job-key-file`, else one derived from the rank table's bytes), and a joining launcher
//! and the leader each prove they hold it by an HMAC-SHA256 over the other's fresh
//! challenge, bound to their role and the server id claimed. Nothing of the key crosses the
//! wire. The derived key keeps out stray connections and other jobs' launchers, not anyone
//! who can read the rank table.
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The secret every launcher of one job holds.
#[derive(Clone, PartialEq, Eq)]
pub struct JobKey(Vec<u8>);

impl std::fmt::Debug for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobKey(…)")
    }
}

/// Where the key came from, for the launcher's one line at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Env,
    File,
    RankTable,
}

impl JobKey {
    pub fn new(bytes: &[u8]) -> JobKey {
        JobKey(bytes.to_vec())
    }

    /// The key of a job without one: the rank table's SHA-256.
    pub fn from_table(table_bytes: &[u8]) -> JobKey {
        JobKey(Sha256::digest(table_bytes).to_vec())
    }

    /// `role` ("leader", "follower") answering `challenge` (hex), for server `server_id`.
    pub fn proof(&self, role: &str, challenge: &str, server_id: &str) -> String {
        hex(&self.mac(role, challenge, server_id).finalize().into_bytes())
    }

    /// Whether `proof` is that answer (compared in constant time).
    pub fn verify(&self, role: &str, challenge: &str, server_id: &str, proof: &str) -> bool {
        match unhex(proof) {
            Some(bytes) => self.mac(role, challenge, server_id).verify_slice(&bytes).is_ok(),
            None => false,
        }
    }

    fn mac(&self, role: &str, challenge: &str, server_id: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        for part in ["segzoo-launch group v1", role, challenge, server_id] {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }
}

/// A fresh challenge: 32 random bytes from the kernel, in hex.
pub fn challenge() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_holds_only_for_its_key_role_challenge_and_server() {
        let key = JobKey::new(b"secret");
        let c = challenge().expect("urandom");
        assert_eq!(c.len(), 64);
        assert_ne!(c, challenge().expect("urandom"), "fresh each time");
        let p = key.proof("follower", &c, "10.0.0.2");
        assert!(key.verify("follower", &c, "10.0.0.2", &p));
        assert!(!key.verify("leader", &c, "10.0.0.2", &p), "another role");
        assert!(!key.verify("follower", &c, "10.0.0.3", &p), "another server");
        assert!(!key.verify("follower", &challenge().expect("urandom"), "10.0.0.2", &p), "another challenge");
        assert!(!JobKey::new(b"other").verify("follower", &c, "10.0.0.2", &p), "another key");
        assert!(!key.verify("follower", &c, "10.0.0.2", "zz"), "not hex");
        assert_ne!(JobKey::from_table(b"{table a}"), JobKey::from_table(b"{table b}"));
    }
}
