//! nginx as a plain reverse proxy in front of the simulator: the floor a router is compared with.
//!
//! It is configured the way an LLM server is usually put behind nginx: HTTP/1.1 with a keep-alive pool to the
//! upstream, response buffering off (so streamed tokens pass at once), `tcp_nodelay` on, no access log. Its CPU
//! time is the master's plus every worker's.

use crate::process::cpu_time;
use anyhow::{Context, Result, anyhow, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tempfile::TempDir;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How long nginx may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long it may take to exit after SIGQUIT before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where nginx is usually installed, tried in order when no path is given.
const CANDIDATES: [&str; 3] = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"];

/// Finds nginx: `explicit` when given, else the usual places, else `nginx` on `PATH`.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return if path.exists() { Ok(path.to_path_buf()) } else { bail!("{} does not exist", path.display()) };
    }
    if let Some(found) = CANDIDATES.iter().map(PathBuf::from).find(|p| p.exists()) {
        return Ok(found);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("nginx"))
        .find(|p| p.exists())
        .ok_or_else(|| {
            anyhow!("nginx not found: install it (Debian: apt-get install nginx-light) or pass --nginx-bin PATH")
        })
}

/// The configuration: one server on `listen` proxying everything to `upstream` (`host:port`).
pub fn config(dir: &Path, listen: u16, upstream: &str, workers: usize) -> String {
    let d = dir.display();
    format!(
        "daemon off;
master_process on;
worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    tcp_nodelay on;
    upstream backend {{
        server {upstream};
        keepalive 512;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 600s;
        }}
    }}
}}
"
    )
}

/// A running nginx.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    url: String,
    /// Holds its configuration, pid file and logs.
    dir: TempDir,
}

impl Nginx {
    /// Starts `bin` in front of `upstream_url` (`http://host:port`) with `workers` worker processes and waits
    /// until it accepts connections.
    pub async fn start(bin: &Path, upstream_url: &str, workers: usize) -> Result<Nginx> {
        let upstream = upstream_url.trim_start_matches("http://").trim_end_matches('/');
        let dir = tempfile::tempdir().context("creating nginx's directory")?;
        // nginx cannot report a port it chose, so one is taken from the kernel and released just before.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port for nginx")?
            .port();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config(dir.path(), port, upstream, workers.max(1)))
            .with_context(|| format!("writing {}", conf.display()))?;
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            // The log nginx opens before it reads the configuration (its compiled-in path may not be writable).
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut nginx = Nginx { child, url: format!("http://127.0.0.1:{port}"), dir };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(nginx);
            }
            if let Ok(Some(status)) = nginx.child.try_wait() {
                bail!("nginx exited ({status}) before it listened:\n{}", nginx.error_log());
            }
            if Instant::now() >= deadline {
                bail!("nginx did not listen within {} s:\n{}", START_TIMEOUT.as_secs(), nginx.error_log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// CPU time of the master and its workers so far.
    pub fn cpu_time(&self) -> Result<Duration> {
        let master = self.child.id().ok_or_else(|| anyhow!("nginx has exited"))?;
        let mut total = cpu_time(master, None)?;
        for pid in children(master) {
            // A worker may exit between the listing and the read.
            total += cpu_time(pid, None).unwrap_or_default();
        }
        Ok(total)
    }

    /// Asks for a graceful stop (SIGQUIT), killing it after a while.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill").arg("-QUIT").arg(pid.to_string()).status().await;
        }
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await.is_err() {
            self.child.kill().await.context("killing nginx")?;
        }
        Ok(())
    }
}

/// The processes whose parent is `pid`, from `/proc/*/stat`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            // The fourth field of `stat`, after the parenthesised name (which may hold spaces), is the parent.
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.to_string()))
                .and_then(|rest| rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()))
                == Some(pid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_proxies_to_the_upstream_without_buffering() {
        let text = config(Path::new("/tmp/x"), 8080, "127.0.0.1:11434", 2);
        assert!(text.contains("listen 127.0.0.1:8080;"));
        assert!(text.contains("server 127.0.0.1:11434;"));
        assert!(text.contains("proxy_buffering off;"));
        assert!(text.contains("worker_processes 2;"));
        assert!(text.contains("pid /tmp/x/nginx.pid;"));
    }

    #[test]
    fn finds_the_children_of_a_process() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let found = children(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&child.id()), "{found:?} lacks {}", child.id());
    }

    #[test]
    fn a_missing_explicit_path_is_an_error() {
        assert!(locate(Some(Path::new("/no/such/nginx"))).is_err());
    }
}
