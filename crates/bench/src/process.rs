//! The real binaries as child processes: started on port 0, found by the `listening on http://ADDR` line they
//! print, measured through `/proc/<pid>/status`, and stopped with SIGTERM.
//!
//! Running the router as its own process is what makes its memory measurable on its own: the load generator and
//! the simulator live elsewhere, so the router's `VmHWM` is the router's peak resident set and nothing else.

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// How long a binary may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopped binary may take to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of stderr kept for error messages.
const TAIL_LINES: usize = 30;

/// Resident memory of a process, in bytes.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Memory {
    /// Peak resident set (`VmHWM`).
    pub peak_rss: u64,
    /// Resident set now (`VmRSS`).
    pub rss: u64,
}

/// Reads `VmHWM` and `VmRSS` of process `pid`.
pub fn memory_of(pid: u32) -> Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        let line =
            status.lines().find(|l| l.starts_with(name)).ok_or_else(|| anyhow!("no {name} in /proc/{pid}/status"))?;
        let kib: u64 = line
            .trim_start_matches(name)
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("parsing {line:?}"))?;
        Ok(kib * 1024)
    };
    Ok(Memory { peak_rss: field("VmHWM:")?, rss: field("VmRSS:")? })
}

/// CPU time process `pid` has used so far, summed over its threads whose name starts with `thread_prefix` (all
/// threads when `None`), from `/proc/<pid>/task/*/schedstat` (nanoseconds on the CPU). Threads that have exited
/// are not counted.
pub fn cpu_time(pid: u32, thread_prefix: Option<&str>) -> Result<Duration> {
    let tasks = format!("/proc/{pid}/task");
    let mut total = 0u64;
    for entry in std::fs::read_dir(&tasks).with_context(|| format!("reading {tasks}"))? {
        let dir = entry.with_context(|| format!("reading {tasks}"))?.path();
        if let Some(prefix) = thread_prefix {
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if !comm.trim_end().starts_with(prefix) {
                continue;
            }
        }
        // A thread may exit between the listing and the read.
        let Ok(schedstat) = std::fs::read_to_string(dir.join("schedstat")) else { continue };
        total += schedstat.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    Ok(Duration::from_nanos(total))
}

/// A binary next to the running one (`target/release/switchyard` beside `target/release/switchyard-load`).
pub fn sibling_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running binary")?;
    let dir = exe.parent().ok_or_else(|| anyhow!("{} has no directory", exe.display()))?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} not found; build it first (cargo build --release -p switchyard -p switchyard-sim) or pass its path",
            path.display()
        );
    }
    Ok(path)
}

/// A child process serving HTTP.
#[derive(Debug)]
pub struct Server {
    /// What it is, for messages.
    name: String,
    /// `http://ADDR` it printed.
    url: String,
    /// The process; killed if this handle is dropped without `stop`.
    child: Child,
    /// The tasks reading its stdout and stderr (so that full pipes never block it), joined at `stop`.
    readers: Vec<JoinHandle<()>>,
    /// The last lines of its stderr.
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl Server {
    /// Starts `program args...` with `env` set (and every other `SWITCHYARD_*` variable removed), and waits for
    /// the line `... listening on http://ADDR` on its stdout.
    pub async fn start(name: &str, program: &Path, args: &[String], env: &[(&str, &str)]) -> Result<Server> {
        let mut command = Command::new(program);
        command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("SWITCHYARD_")) {
            command.env_remove(key);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().with_context(|| format!("starting {}", program.display()))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("{name}: no stdout"))?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("{name}: no stderr"))?;
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let mut readers = vec![tokio::spawn(keep_tail(stderr, Arc::clone(&tail)))];
        let mut lines = BufReader::new(stdout).lines();
        let found = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(at) = line.find("listening on http://") {
                    return Ok::<_, std::io::Error>(Some(line[at + "listening on ".len()..].trim().to_string()));
                }
            }
            Ok(None)
        })
        .await;
        let url = match found {
            Ok(Ok(Some(url))) => url,
            outcome => {
                let _ = child.kill().await;
                for r in readers {
                    let _ = r.await;
                }
                let why = match outcome {
                    Err(_) => format!("no address within {} s", START_TIMEOUT.as_secs()),
                    Ok(Err(e)) => format!("reading its stdout: {e}"),
                    _ => "it exited before printing its address".to_string(),
                };
                let stderr = tail.lock().map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap_or_default();
                bail!("{name} did not start: {why}\n{stderr}");
            }
        };
        readers.push(tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} }));
        Ok(Server { name: name.to_string(), url, child, readers, tail })
    }

    /// `http://ADDR`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The process id.
    pub fn pid(&self) -> Result<u32> {
        self.child.id().ok_or_else(|| anyhow!("{} has exited", self.name))
    }

    /// Its memory now.
    pub fn memory(&self) -> Result<Memory> {
        memory_of(self.pid()?)
    }

    /// The last lines it wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        self.tail.lock().map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap_or_default()
    }

    /// Sends SIGTERM, waits for the exit (killing it after a while), and joins the readers.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
        }
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await.is_err() {
            self.child.kill().await.with_context(|| format!("killing {}", self.name))?;
        }
        for reader in self.readers.drain(..) {
            let _ = reader.await;
        }
        Ok(())
    }
}

async fn keep_tail(stream: impl AsyncRead + Unpin, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_memory() {
        let m = memory_of(std::process::id()).unwrap();
        assert!(m.peak_rss >= m.rss && m.rss > 0);
    }

    #[test]
    fn reads_this_process_cpu_time() {
        let spent = cpu_time(std::process::id(), None).unwrap();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(cpu_time(std::process::id(), None).unwrap() > spent);
        assert_eq!(cpu_time(std::process::id(), Some("no-such-thread")).unwrap(), Duration::ZERO);
    }
}
