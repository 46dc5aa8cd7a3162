//! What Slurm's variables say beyond a rank and a size: the job's first host (the default
//! rendezvous address), the tasks on this node, and a port the job can call its own.
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The first host of a Slurm host list: `gpu[03-05,09],cpu1` → `gpu03`; a bracket expands
/// to its first value, zero padding kept (`rack[1-2]-n[07-08]` → `rack1-n07`).
pub fn first_host(nodelist: &str) -> Option<String> {
    let mut depth = 0;
    let end = nodelist
        .char_indices()
        .find(|&(_, c)| {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ => {}
            }
            c == ',' && depth == 0
        })
        .map_or(nodelist.len(), |(i, _)| i);
    let mut host = String::new();
    let mut rest = nodelist[..end].trim();
    while let Some(open) = rest.find('[') {
        let close = rest[open..].find(']')? + open;
        let first = rest[open + 1..close].split([',', '-']).next()?.trim();
        host.push_str(&rest[..open]);
        host.push_str(first);
        rest = &rest[close + 1..];
    }
    host.push_str(rest);
    (!host.is_empty()).then_some(host)
}

/// Tasks per node as Slurm writes them, `2(x3),1`, expanded: [2, 2, 2, 1].
fn expand_counts(spec: &str) -> Option<Vec<usize>> {
    let mut counts = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once("(x") {
            Some((n, times)) => {
                let (n, times): (usize, usize) = (n.parse().ok()?, times.strip_suffix(')')?.parse().ok()?);
                counts.extend(std::iter::repeat_n(n, times));
            }
            None => counts.push(part.parse().ok()?),
        }
    }
    Some(counts)
}

/// The tasks of this job step on this node (`SLURM_STEP_TASKS_PER_NODE`, else
/// `SLURM_TASKS_PER_NODE`, at `SLURM_NODEID`).
pub fn tasks_on_this_node(env: Env) -> Option<usize> {
    let spec = env("SLURM_STEP_TASKS_PER_NODE").or_else(|| env("SLURM_TASKS_PER_NODE"))?;
    let node: usize = env("SLURM_NODEID")?.trim().parse().ok()?;
    expand_counts(&spec)?.get(node).copied()
}

/// A rendezvous port for the job when `MASTER_PORT` is not given: 15000 + the job id's
/// last four digits, so that two jobs sharing a node do not collide.
pub fn job_port(env: Env) -> Option<u16> {
    let id: u64 = env("SLURM_JOB_ID")?.trim().parse().ok()?;
    Some(15000 + (id % 10000) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_host_of_a_host_list() {
        assert_eq!(first_host("gpu[03-05,09],cpu1").as_deref(), Some("gpu03"));
        assert_eq!(first_host("node7").as_deref(), Some("node7"));
        assert_eq!(first_host("a1,b[1-2]").as_deref(), Some("a1"));
        assert_eq!(first_host("rack[1-2]-n[07-08]").as_deref(), Some("rack1-n07"));
        assert_eq!(first_host("10.0.0.[5-6]").as_deref(), Some("10.0.0.5"));
        assert_eq!(first_host("broken[1-2"), None);
        assert_eq!(first_host(""), None);
    }

    #[test]
    fn tasks_on_this_node_and_the_job_port() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let e = env(&[("SLURM_STEP_TASKS_PER_NODE", "2(x3),1"), ("SLURM_NODEID", "3")]);
        assert_eq!(tasks_on_this_node(&e), Some(1));
        let e = env(&[("SLURM_TASKS_PER_NODE", "4(x2)"), ("SLURM_NODEID", "1")]);
        assert_eq!(tasks_on_this_node(&e), Some(4));
        let e = env(&[("SLURM_TASKS_PER_NODE", "4(x2)"), ("SLURM_NODEID", "2")]);
        assert_eq!(tasks_on_this_node(&e), None, "beyond the list");
        assert_eq!(job_port(&env(&[("SLURM_JOB_ID", "123456")])), Some(18456));
        assert_eq!(job_port(&env(&[])), None);
    }
}
