//! CPU time a phase costs: the whole machine's (busy time in `/proc/stat`) and that of the
//! processes taking part (`/proc/<pid>/stat`): this process (the services and the load
//! generator), and the stack's MariaDB, Kafka and Redis, found by their pid files.
//!
//! On a machine where everything shares the same cores, the CPU an order costs, summed over
//! every process, bounds the orders per second more than any one latency does.

use std::path::Path;

/// `/proc` counts in USER_HZ, which Linux fixes at 100 per second for user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// The processes measured, by name.
pub const NAMES: [&str; 4] = ["this process", "MariaDB", "Kafka", "Redis"];

pub struct CpuMeter {
    pids: [Option<u32>; 4],
}

/// Cumulative busy ticks at one moment: the machine, then each of [`NAMES`].
#[derive(Clone, Copy, Default)]
pub struct Snapshot {
    machine: u64,
    procs: [u64; 4],
}

/// Ticks spent between snapshots, summed over the passes of one phase.
#[derive(Clone, Copy, Default)]
pub struct CpuUse {
    machine: u64,
    procs: [u64; 4],
}

impl CpuMeter {
    /// Finds the stack's servers through the pid files under `stack_dir/run` (those not
    /// found are reported as unknown).
    pub fn new(stack_dir: Option<&Path>) -> Self {
        let pid = |file: &str| -> Option<u32> {
            let text = std::fs::read_to_string(stack_dir?.join("run").join(file)).ok()?;
            text.trim().parse().ok()
        };
        Self {
            pids: [
                Some(std::process::id()),
                pid("mariadb.pid"),
                pid("kafka.pid"),
                pid("redis.pid"),
            ],
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut procs = [0; 4];
        for (ticks, pid) in procs.iter_mut().zip(self.pids) {
            *ticks = pid.and_then(process_ticks).unwrap_or(0);
        }
        Snapshot {
            machine: machine_busy_ticks().unwrap_or(0),
            procs,
        }
    }

    /// Whether `NAMES[i]` was found.
    pub fn found(&self, i: usize) -> bool {
        self.pids[i].is_some()
    }
}

impl CpuUse {
    pub fn add(&mut self, before: &Snapshot, after: &Snapshot) {
        self.machine += after.machine.saturating_sub(before.machine);
        for (sum, (b, a)) in self
            .procs
            .iter_mut()
            .zip(before.procs.iter().zip(after.procs))
        {
            *sum += a.saturating_sub(*b);
        }
    }

    /// Milliseconds of CPU per order: the machine's, then each process's.
    pub fn per_order_ms(&self, orders: u64) -> (f64, [f64; 4]) {
        let ms = |ticks: u64| ticks as f64 / TICKS_PER_SECOND * 1e3 / orders.max(1) as f64;
        (ms(self.machine), self.procs.map(ms))
    }
}

/// user + nice + system + irq + softirq + steal of the `cpu` line of `/proc/stat`.
fn machine_busy_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    Some(v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7).unwrap_or(&0))
}

/// utime + stime of a process (all its threads).
fn process_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its ')' are plain.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}
