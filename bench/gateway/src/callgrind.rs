//! `--callgrind`: each proxy runs under valgrind's callgrind, which counts the instructions
//! it executes; the bench zeroes a proxy's counters before each measured run and reads them
//! after, and reports instructions per request. Instruction counts do not move with the load
//! of this shared machine, as CPU time does, so two builds can be told apart by less than the
//! ±0.5 µs a request that one timed run moves by. They are not time: a cache miss or a
//! syscall's kernel work costs no user-space instruction.
//!
//! With `--cache-sim`, callgrind also simulates the first-level caches (this CPU's sizes, no
//! prefetching) and the bench reports each proxy's instruction and data cache misses a
//! request: what can make the same number of instructions take longer, which this VM's lack of
//! hardware counters hides otherwise.

use std::ffi::OsStr;
use std::path::PathBuf;

use anyhow::{Context as _, bail};

/// Runs proxies under callgrind, its profiles (`callgrind.out.<pid>`) in `dir`.
pub struct Callgrind {
    pub dir: PathBuf,
    /// Simulate the caches too (`--cache-sim=yes`).
    pub cache_sim: bool,
}

/// What a proxy's processes executed since they were zeroed, all threads.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counters {
    pub instructions: u64,
    /// First-level instruction cache misses (with `cache_sim`).
    pub l1i_misses: Option<u64>,
    /// First-level data cache misses, reads and writes (with `cache_sim`).
    pub l1d_misses: Option<u64>,
}

impl Callgrind {
    /// `program` under callgrind: the command to add its arguments to.
    pub fn command(&self, program: impl AsRef<OsStr>) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("valgrind");
        command.arg("--tool=callgrind").arg("--quiet").arg(format!(
            "--callgrind-out-file={}",
            self.dir.join("callgrind.out.%p").display()
        ));
        if self.cache_sim {
            command.arg("--cache-sim=yes");
        }
        command.arg(program);
        command
    }

    /// Zeroes the counters of `pids`.
    pub async fn zero(&self, pids: &[u32]) -> anyhow::Result<()> {
        control(&["-z"], pids).await.map(drop)
    }

    /// Writes the profile of `pids` since they were zeroed (`callgrind.out.<pid>.<n>`).
    pub async fn dump(&self, pids: &[u32]) -> anyhow::Result<()> {
        control(&["--dump"], pids).await.map(drop)
    }

    /// What `pids` executed since they were zeroed.
    pub async fn counters(&self, pids: &[u32]) -> anyhow::Result<Counters> {
        if !self.cache_sim {
            let out = control(&["-e", "Ir"], pids).await?;
            let [instructions] = parse_totals(&out);
            return Ok(Counters {
                instructions,
                ..Counters::default()
            });
        }
        let out = control(&["-e", "Ir,I1mr,D1mr,D1mw"], pids).await?;
        let [instructions, l1i, l1d_read, l1d_write] = parse_totals(&out);
        Ok(Counters {
            instructions,
            l1i_misses: Some(l1i),
            l1d_misses: Some(l1d_read + l1d_write),
        })
    }
}

/// Sums, column by column, the per-thread lines (`Th 1  300,484  1,728`) of
/// `callgrind_control -e` with `N` events.
fn parse_totals<const N: usize>(out: &str) -> [u64; N] {
    let mut sums = [0; N];
    for rest in out
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Th "))
    {
        for (sum, n) in sums.iter_mut().zip(rest.split_whitespace().skip(1)) {
            *sum += n.replace(',', "").parse::<u64>().unwrap_or(0);
        }
    }
    sums
}

async fn control(args: &[&str], pids: &[u32]) -> anyhow::Result<String> {
    if pids.is_empty() {
        bail!("no process to ask callgrind about");
    }
    let mut command = tokio::process::Command::new("callgrind_control");
    command.args(args);
    for pid in pids {
        command.arg(pid.to_string());
    }
    let out = command
        .output()
        .await
        .context("run callgrind_control (apt-get install -y valgrind)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || text.contains("Error:") {
        bail!(
            "callgrind_control {args:?} {pids:?} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_every_thread() {
        let out =
            "PID 32065: /bin/sleep 4\n\n  Totals:     Ir \n   Th 1  300,484 \n   Th 2  1,000 \n\n";
        assert_eq!(parse_totals(out), [301_484]);
        assert_eq!(parse_totals("PID 1: x\n  Totals:Ir \n   Th 1   0 \n"), [0]);
    }

    #[test]
    fn totals_add_up_each_event() {
        let out = "PID 17641: sleep 3\n\n  Totals:     Ir  I1mr  D1mr D1mw \n   Th 1  300,519 1,728 1,377  805 \n   Th 2  1,000 2 3 4 \n\n";
        assert_eq!(parse_totals(out), [301_519, 1_730, 1_380, 809]);
    }
}
