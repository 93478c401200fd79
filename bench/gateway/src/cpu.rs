//! CPU time a request, by who spends it, over one measured wrk run: the proxy's processes
//! (an nginx master's workers, a gateway's one process), the upstream (this benchmark's own
//! process, which serves it and otherwise only waits for wrk), and wrk (this process's child,
//! counted once it is waited for). All three share the machine's cores, so what one spends
//! more a request the others lack: this tells a proxy's own cost from what its requests cost
//! the upstream and the load side.
//!
//! From `/proc/<pid>/stat` (`utime`, `stime`, and the waited-for children's `cutime`,
//! `cstime`), in clock ticks (`getconf CLK_TCK`, 100 here: 10 ms, under 0.5% of a 5 s run's
//! seconds).

use std::collections::HashMap;

use anyhow::Context as _;

/// Times in clock ticks.
#[derive(Clone, Copy, Default)]
struct Times {
    user: u64,
    system: u64,
    children: u64,
}

/// The fields of `/proc/<pid>/stat` from the third (state) on (`None` once it is gone): the
/// command's name before them, in parentheses, may hold spaces, so they follow its last `)`.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        text.rsplit_once(')')?
            .1
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    )
}

/// Whether `pid` runs: neither gone nor a zombie (state `Z`).
pub fn running(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|fields| fields.first().is_some_and(|state| state != "Z"))
}

/// `pid`'s times and its parent's pid, from `/proc/<pid>/stat` (`None` once it is gone).
fn stat(pid: u32) -> Option<(Times, u32)> {
    let fields = stat_fields(pid)?;
    // Fields 4 (ppid) and 14-17 of proc(5), counted here from field 3 (state).
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some((
        Times {
            user: field(14)?,
            system: field(15)?,
            children: field(16)? + field(17)?,
        },
        u32::try_from(field(4)?).ok()?,
    ))
}

/// The processes a proxy serves from: `roots` and their children (nginx's workers are its
/// master's).
fn processes(roots: &[u32]) -> Vec<u32> {
    let mut all = roots.to_vec();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some((_, parent)) = stat(pid)
                && roots.contains(&parent)
            {
                all.push(pid);
            }
        }
    }
    all
}

/// Clock ticks a second.
pub fn ticks_per_second() -> anyhow::Result<f64> {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("run getconf CLK_TCK")?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("read getconf CLK_TCK")
}

/// What the processes had spent when a run started.
pub struct Mark {
    proxy: HashMap<u32, Times>,
    this: Times,
}

impl Mark {
    /// Now, for the proxy whose processes are `roots` and their children (none for the
    /// upstream reached directly).
    pub fn now(roots: &[u32]) -> Self {
        Self {
            proxy: processes(roots)
                .into_iter()
                .filter_map(|pid| Some((pid, stat(pid)?.0)))
                .collect(),
            this: stat(std::process::id()).map(|s| s.0).unwrap_or_default(),
        }
    }

    /// Microseconds a request each spent since this mark, over `requests` (wrk must have
    /// been waited for: its times are this process's children's from then on).
    pub fn per_request(&self, requests: u64, ticks_per_second: f64) -> PerRequest {
        let mut proxy = Times::default();
        for (pid, before) in &self.proxy {
            if let Some((after, _)) = stat(*pid) {
                proxy.user += after.user.saturating_sub(before.user);
                proxy.system += after.system.saturating_sub(before.system);
            }
        }
        let this = stat(std::process::id()).map(|s| s.0).unwrap_or_default();
        let us = |ticks: u64| ticks as f64 / ticks_per_second * 1e6 / requests.max(1) as f64;
        PerRequest {
            proxy_user: us(proxy.user),
            proxy_system: us(proxy.system),
            upstream: us(
                (this.user + this.system).saturating_sub(self.this.user + self.this.system)
            ),
            wrk: us(this.children.saturating_sub(self.this.children)),
        }
    }
}

/// CPU microseconds a request.
#[derive(Clone, Copy)]
pub struct PerRequest {
    pub proxy_user: f64,
    pub proxy_system: f64,
    /// This process: the upstream.
    pub upstream: f64,
    pub wrk: f64,
}

impl PerRequest {
    pub fn proxy(&self) -> f64 {
        self.proxy_user + self.proxy_system
    }

    pub fn all(&self) -> f64 {
        self.proxy() + self.upstream + self.wrk
    }
}
