//! HCCL rank tables, both the version-1.0 form (`server_list`) and the older
//! form (`group_list`), with numbers given as strings or integers; `gen-table`'s device
//! lists and generated tables.
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    pub device_id: u32,
    pub device_ip: Option<String>,
    pub rank_id: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Server {
    pub server_id: String,
    pub devices: Vec<Device>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RankTable {
    pub servers: Vec<Server>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TableError {
    #[error("{file}: cannot read: {message}")]
    Io { file: String, message: String },
    #[error("{file}:{line}:{column}: malformed JSON: {message}")]
    Json { file: String, line: usize, column: usize, message: String },
    #[error("{file}: missing field `{field}`")]
    Missing { file: String, field: String },
    #[error("{file}: field `{field}`: {message}")]
    Invalid { file: String, field: String, message: String },
}

impl RankTable {
    pub fn world_size(&self) -> usize {
        self.servers.iter().map(|s| s.devices.len()).sum()
    }

    pub fn load(path: &Path) -> Result<Self, TableError> {
        let file = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| TableError::Io { file: file.clone(), message: e.to_string() })?;
        Self::parse(&text, &file)
    }

    /// Parse and validate; `file` names the table in messages.
    pub fn parse(text: &str, file: &str) -> Result<Self, TableError> {
        let root: Value = serde_json::from_str(text).map_err(|e| TableError::Json {
            file: file.to_string(),
            line: e.line(),
            column: e.column(),
            message: e.to_string().split(" at line").next().unwrap_or_default().to_string(),
        })?;
        let r = Reader { file };
        let table = if root.get("version").is_some() { r.v1(&root)? } else { r.legacy(&root)? };
        r.validate(&table)?;
        Ok(table)
    }
}

struct Reader<'a> {
    file: &'a str,
}

impl Reader<'_> {
    fn missing(&self, field: &str) -> TableError {
        TableError::Missing { file: self.file.to_string(), field: field.to_string() }
    }

    fn invalid(&self, field: &str, message: impl Into<String>) -> TableError {
        TableError::Invalid { file: self.file.to_string(), field: field.to_string(), message: message.into() }
    }

    fn get<'v>(&self, obj: &'v Value, key: &str, path: &str) -> Result<&'v Value, TableError> {
        if !obj.is_object() {
            return Err(self.invalid(path.rsplit_once('.').map_or("(top level)", |p| p.0), "expected an object"));
        }
        obj.get(key).ok_or_else(|| self.missing(path))
    }

    fn array<'v>(&self, obj: &'v Value, key: &str, path: &str) -> Result<&'v Vec<Value>, TableError> {
        self.get(obj, key, path)?.as_array().ok_or_else(|| self.invalid(path, "expected an array"))
    }

    fn string(&self, obj: &Value, key: &str, path: &str) -> Result<String, TableError> {
        match self.get(obj, key, path)? {
            Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(self.invalid(path, format!("expected a non-empty string, found {other}"))),
        }
    }

    /// A number written as `3` or `"3"`.
    fn number(&self, obj: &Value, key: &str, path: &str) -> Result<u64, TableError> {
        match self.get(obj, key, path)? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        }
        .ok_or_else(|| self.invalid(path, format!("expected a non-negative integer, found {}", obj[key])))
    }

    fn status(&self, root: &Value) -> Result<(), TableError> {
        let status = self.string(root, "status", "status")?;
        if status != "completed" {
            return Err(self.invalid("status", format!("is {status:?}; the table is usable only when \"completed\"")));
        }
        Ok(())
    }

    fn v1(&self, root: &Value) -> Result<RankTable, TableError> {
        let version = self.string(root, "version", "version")?;
        if version != "1.0" {
            return Err(self.invalid("version", format!("unsupported version {version:?} (supported: \"1.0\")")));
        }
        self.status(root)?;
        let list = self.array(root, "server_list", "server_list")?;
        let count = self.number(root, "server_count", "server_count")?;
        if count as usize != list.len() {
            return Err(
                self.invalid("server_count", format!("says {count} but server_list has {} entries", list.len()))
            );
        }
        let mut servers = Vec::new();
        for (i, s) in list.iter().enumerate() {
            let at = format!("server_list[{i}]");
            let server_id = self.string(s, "server_id", &format!("{at}.server_id"))?;
            let mut devices = Vec::new();
            for (j, d) in self.array(s, "device", &format!("{at}.device"))?.iter().enumerate() {
                let at = format!("{at}.device[{j}]");
                devices.push(Device {
                    device_id: self.device_id(d, &at)?,
                    device_ip: d.get("device_ip").and_then(|v| v.as_str()).map(str::to_string),
                    rank_id: self.number(d, "rank_id", &format!("{at}.rank_id"))? as usize,
                });
            }
            servers.push(Server { server_id, devices });
        }
        Ok(RankTable { servers })
    }

    fn device_id(&self, d: &Value, at: &str) -> Result<u32, TableError> {
        let path = format!("{at}.device_id");
        let id = self.number(d, "device_id", &path)?;
        u32::try_from(id).map_err(|_| self.invalid(&path, format!("{id} is not a device index")))
    }

    fn legacy(&self, root: &Value) -> Result<RankTable, TableError> {
        self.status(root)?;
        // Servers keep their order of first appearance; ranks may interleave across groups.
        let mut servers: Vec<Server> = Vec::new();
        for (g, group) in self.array(root, "group_list", "group_list")?.iter().enumerate() {
            let at = format!("group_list[{g}]");
            for (i, inst) in self.array(group, "instance_list", &format!("{at}.instance_list"))?.iter().enumerate() {
                let at = format!("{at}.instance_list[{i}]");
                let rank_id = self.number(inst, "rank_id", &format!("{at}.rank_id"))? as usize;
                let server_id = self.string(inst, "server_id", &format!("{at}.server_id"))?;
                let devs = self.array(inst, "devices", &format!("{at}.devices"))?;
                if devs.len() != 1 {
                    return Err(self.invalid(
                        &format!("{at}.devices"),
                        format!("expected exactly one device per rank, found {}", devs.len()),
                    ));
                }
                let at = format!("{at}.devices[0]");
                let device = Device {
                    device_id: self.device_id(&devs[0], &at)?,
                    device_ip: devs[0].get("device_ip").and_then(|v| v.as_str()).map(str::to_string),
                    rank_id,
                };
                match servers.iter_mut().find(|s| s.server_id == server_id) {
                    Some(s) => s.devices.push(device),
                    None => servers.push(Server { server_id, devices: vec![device] }),
                }
            }
        }
        if servers.is_empty() {
            return Err(self.invalid("group_list", "lists no ranks"));
        }
        Ok(RankTable { servers })
    }

    fn validate(&self, table: &RankTable) -> Result<(), TableError> {
        let mut ranks = BTreeMap::new();
        for s in &table.servers {
            if s.devices.is_empty() {
                return Err(self.invalid("server_list", format!("server {} has no devices", s.server_id)));
            }
            let mut seen = BTreeSet::new();
            for d in &s.devices {
                if !seen.insert(d.device_id) {
                    return Err(self.invalid(
                        "device_id",
                        format!("device {} appears twice on server {}", d.device_id, s.server_id),
                    ));
                }
                if let Some(other) = ranks.insert(d.rank_id, &s.server_id) {
                    return Err(self.invalid(
                        "rank_id",
                        format!("rank {} is given twice (server {} and server {})", d.rank_id, other, s.server_id),
                    ));
                }
            }
        }
        let mut ids = BTreeSet::new();
        for s in &table.servers {
            if !ids.insert(&s.server_id) {
                return Err(self.invalid("server_id", format!("server {} is listed twice", s.server_id)));
            }
        }
        let n = ranks.len();
        if let Some((&bad, server)) = ranks.iter().find(|(&r, _)| r >= n) {
            let missing: Vec<String> = (0..n).filter(|r| !ranks.contains_key(r)).map(|r| r.to_string()).collect();
            return Err(self.invalid(
                "rank_id",
                format!(
                    "rank ids must be exactly 0..{}; found {bad} on server {server}, missing {}",
                    n - 1,
                    missing.join(", ")
                ),
            ));
        }
        Ok(())
    }
}

/// `0-7`, `0,2,4` or `0-3,6`: a device list for `gen-table --devices`.
pub fn parse_device_list(spec: &str) -> Result<Vec<u32>, String> {
    let bad = |message: String| format!("--devices: {message}");
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num =
            |s: &str| s.trim().parse::<u32>().map_err(|_| bad(format!("{s:?} in {spec:?} is not a device number")));
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(bad(format!("range {part:?} runs backwards")));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    let mut dedup = out.clone();
    dedup.sort_unstable();
    dedup.dedup();
    if dedup.len() != out.len() {
        return Err(bad(format!("{spec:?} names a device twice")));
    }
    if out.is_empty() {
        return Err(bad("no devices given".into()));
    }
    Ok(out)
}

/// A version-1.0 table for one server; device IPs count up from `ip_base` when given.
pub fn generate(server_id: &str, devices: &[u32], ip_base: Option<std::net::Ipv4Addr>) -> Value {
    let device: Vec<Value> = devices
        .iter()
        .enumerate()
        .map(|(rank, &id)| {
            let mut d = serde_json::json!({ "device_id": id.to_string(), "rank_id": rank.to_string() });
            if let Some(base) = ip_base {
                let ip = std::net::Ipv4Addr::from(u32::from(base).wrapping_add(id));
                d["device_ip"] = Value::String(ip.to_string());
            }
            d
        })
        .collect();
    serde_json::json!({
        "version": "1.0",
        "server_count": "1",
        "server_list": [{ "server_id": server_id, "device": device, "host_nic_ip": "reserve" }],
        "status": "completed",
    })
}

impl RankTable {
    /// The table in the version-1.0 form (numbers as strings, as hccl_tools writes them):
    /// what a generation with fewer servers hands its workers as `RANK_TABLE_FILE`.
    pub fn to_json(&self) -> Value {
        let servers: Vec<Value> = self
            .servers
            .iter()
            .map(|s| {
                let devices: Vec<Value> = s
                    .devices
                    .iter()
                    .map(|d| {
                        let mut v = serde_json::json!({ "device_id": d.device_id.to_string(), "rank_id": d.rank_id.to_string() });
                        if let Some(ip) = &d.device_ip {
                            v["device_ip"] = Value::String(ip.clone());
                        }
                        v
                    })
                    .collect();
                serde_json::json!({ "server_id": s.server_id, "device": devices })
            })
            .collect();
        serde_json::json!({
            "version": "1.0",
            "server_count": self.servers.len().to_string(),
            "server_list": servers,
            "status": "completed",
        })
    }
}
