//! `--callgrind`: each proxy runs under valgrind's callgrind, which counts the instructions
//! it executes; the bench zeroes a proxy's counters before each measured run and reads them
//! after, and reports instructions per request. Instruction counts do not move with the load
//! of this shared machine, as CPU time does, so two builds can be told apart by less than the
//! ±0.5 µs a request that one timed run moves by. They are not time: a cache miss or a
//! syscall's kernel work costs no user-space instruction.

use std::ffi::OsStr;
use std::path::PathBuf;

use anyhow::{Context as _, bail};

/// Runs proxies under callgrind, its profiles (`callgrind.out.<pid>`) in `dir`.
pub struct Callgrind {
    pub dir: PathBuf,
}

impl Callgrind {
    /// `program` under callgrind: the command to add its arguments to.
    pub fn command(&self, program: impl AsRef<OsStr>) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("valgrind");
        command
            .arg("--tool=callgrind")
            .arg("--quiet")
            .arg(format!(
                "--callgrind-out-file={}",
                self.dir.join("callgrind.out.%p").display()
            ))
            .arg(program);
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

    /// Instructions `pids` executed since they were zeroed, all threads.
    pub async fn instructions(&self, pids: &[u32]) -> anyhow::Result<u64> {
        let out = control(&["-e", "Ir"], pids).await?;
        Ok(parse_totals(&out))
    }
}

/// Sums the per-thread lines (`Th 1  300,484`) of `callgrind_control -e Ir`.
fn parse_totals(out: &str) -> u64 {
    out.lines()
        .filter_map(|line| line.trim().strip_prefix("Th "))
        .filter_map(|rest| rest.split_whitespace().nth(1))
        .filter_map(|n| n.replace(',', "").parse::<u64>().ok())
        .sum()
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
        assert_eq!(parse_totals(out), 301_484);
        assert_eq!(parse_totals("PID 1: x\n  Totals:Ir \n   Th 1   0 \n"), 0);
    }
}
