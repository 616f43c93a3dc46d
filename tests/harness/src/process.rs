//! [`Proc`]: one long-running child process (a server) owned by a test.
//!
//! stdout and stderr go to files, never to pipes, so a chatty server can't block on a full
//! pipe and a test can read the output at any time. The child is killed with SIGKILL when the
//! `Proc` is dropped; if the test is panicking at that moment, the whole log is written to
//! the test's stderr, each line prefixed with `SRV[name]:` (as hickory's harness does).
//! [`Proc::pause`] and [`Proc::resume`] freeze and thaw it with SIGSTOP/SIGCONT, the way a
//! long GC pause or an overloaded host looks to its peers. Starting whole clusters lives in
//! [`crate::cluster`].

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tempfile::TempDir;
use tokio::time::Instant;

use crate::binary::ensure_built;

/// How many lines of each stream a panic dump shows (the tail is what matters).
const DUMP_LINES: usize = 3000;

/// A child process with captured output, killed on drop.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    /// Lengths of the log files when this process started: earlier runs (same files,
    /// appended on restart) are not searched by [`Proc::wait_for_line`].
    stdout_start: u64,
    stderr_start: u64,
    /// Owns the log directory when the caller did not provide one.
    _logs: Option<TempDir>,
}

impl Proc {
    /// Starts `bin args..` with its output kept in a fresh temporary directory.
    pub fn spawn<I, S>(bin: &Path, args: I) -> anyhow::Result<Proc>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let dir = tempfile::Builder::new().prefix("pyxis-proc-").tempdir()?;
        let name = bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "proc".into());
        let mut proc = Proc::spawn_in(&name, bin, args, dir.path())?;
        proc._logs = Some(dir);
        Ok(proc)
    }

    /// Starts `bin args..` as `name`, appending its output to `log_dir/name.{stdout,stderr}`.
    ///
    /// Appending keeps the history of a node that is restarted under the same name, so a
    /// panic dump shows the run before a crash as well as the run after it.
    pub fn spawn_in<I, S>(name: &str, bin: &Path, args: I, log_dir: &Path) -> anyhow::Result<Proc>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        ensure_built(bin)?;
        let args: Vec<_> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let stdout = log_dir.join(format!("{name}.stdout"));
        let stderr = log_dir.join(format!("{name}.stderr"));
        let open = |p: &Path| -> anyhow::Result<File> {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("open log file {}", p.display()))
        };
        let out = open(&stdout)?;
        let mut err = open(&stderr)?;
        writeln!(err, "=== harness: {} {args:?}", bin.display())?;
        let stdout_start = out.metadata()?.len();
        let stderr_start = err.metadata()?.len();
        let child = Command::new(bin)
            .args(&args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("spawn {} {args:?}", bin.display()))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
            stdout_start,
            stderr_start,
            _logs: None,
        })
    }

    /// The name log lines are prefixed with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The operating-system process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has not exited yet.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process with SIGKILL (no chance to flush or shut down) and reaps it.
    ///
    /// Killing an already exited process is not an error.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            // std's `Child::kill` sends SIGKILL on Unix.
            self.child
                .kill()
                .with_context(|| format!("kill {}", self.name))?;
        }
        self.child
            .wait()
            .with_context(|| format!("wait for {}", self.name))?;
        Ok(())
    }

    /// Freezes the process with SIGSTOP: it keeps its sockets and memory but runs no code
    /// (no heartbeats, no replies) until [`Proc::resume`]. A paused process still counts as
    /// running; SIGKILL (and so [`Proc::kill9`] and drop) ends it as usual.
    pub fn pause(&mut self) -> anyhow::Result<()> {
        self.signal(libc::SIGSTOP, "SIGSTOP")
    }

    /// Lets a process frozen by [`Proc::pause`] run again (SIGCONT).
    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.signal(libc::SIGCONT, "SIGCONT")
    }

    fn signal(&mut self, signal: libc::c_int, name: &str) -> anyhow::Result<()> {
        if !self.is_running() {
            bail!("cannot send {name} to {}: it has exited", self.name);
        }
        let pid = libc::pid_t::try_from(self.child.id())
            .with_context(|| format!("pid of {} does not fit pid_t", self.name))?;
        // SAFETY: kill(2) takes plain integers and touches no memory of ours. The pid is our
        // own unreaped child (checked above), so it cannot have been reused by another process.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("send {name} to {} (pid {pid})", self.name));
        }
        Ok(())
    }

    /// Waits until the process exits by itself and returns its status; fails after `timeout`
    /// (the process is left running then).
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .with_context(|| format!("wait for {}", self.name))?
            {
                return Ok(status);
            }
            if Instant::now() > end {
                bail!(
                    "{} still running after {timeout:?}\n{}",
                    self.name,
                    self.log_tail(50)
                );
            }
            // Polling the child is the exit mechanism here, as for `wait_for_line`.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What this run (not earlier runs under the same name) wrote to stderr so far.
    pub fn stderr_of_this_run(&self) -> String {
        read_from(&self.stderr, self.stderr_start)
    }

    /// Waits until a line of this run's stdout or stderr contains `pattern`, and returns it.
    ///
    /// Fails early, with the log tail, if the process exits first.
    pub async fn wait_for_line(
        &mut self,
        pattern: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let end = Instant::now() + timeout;
        loop {
            for (path, start) in [
                (&self.stdout, self.stdout_start),
                (&self.stderr, self.stderr_start),
            ] {
                let text = read_from(path, start);
                if let Some(line) = text.lines().find(|l| l.contains(pattern)) {
                    return Ok(line.to_owned());
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "{} exited with {status} before printing {pattern:?}\n{}",
                    self.name,
                    self.log_tail(50)
                );
            }
            if Instant::now() > end {
                bail!(
                    "{} did not print {pattern:?} within {timeout:?}\n{}",
                    self.name,
                    self.log_tail(50)
                );
            }
            // Polling a file is the readiness mechanism here; 20 ms keeps startup snappy.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the process (and earlier runs under the same name) wrote so far.
    pub fn logs(&self) -> String {
        format!(
            "--- stdout ---\n{}--- stderr ---\n{}",
            read_from(&self.stdout, 0),
            read_from(&self.stderr, 0)
        )
    }

    /// The last `n` lines of each stream, for error messages.
    pub fn log_tail(&self, n: usize) -> String {
        let mut out = String::new();
        for path in [&self.stdout, &self.stderr] {
            for line in tail(&read_from(path, 0), n) {
                out.push_str(&format!("SRV[{}]: {line}\n", self.name));
            }
        }
        out
    }

    fn dump(&self) {
        let mut err = std::io::stderr().lock();
        for (label, path) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let text = read_from(path, 0);
            let _ = writeln!(
                err,
                "SRV[{}]: ===== {label} ({}) =====",
                self.name,
                path.display()
            );
            let lines: Vec<&str> = text.lines().collect();
            if lines.len() > DUMP_LINES {
                let _ = writeln!(
                    err,
                    "SRV[{}]: ... {} earlier lines omitted ...",
                    self.name,
                    lines.len() - DUMP_LINES
                );
            }
            for line in tail(&text, DUMP_LINES) {
                let _ = writeln!(err, "SRV[{}]: {line}", self.name);
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            self.dump();
        }
    }
}

/// The file's content from byte `start` on, lossily decoded; empty if it can't be read.
fn read_from(path: &Path, start: u64) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = usize::try_from(start)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn finds_a_line_and_kills_the_child() {
        let sh = Path::new("/bin/sh");
        let mut p = Proc::spawn(
            sh,
            [
                "-c",
                "echo starting >&2; echo 'listening http=x'; exec sleep 60",
            ],
        )
        .unwrap();
        let line = p
            .wait_for_line("listening http=", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(line, "listening http=x");
        assert!(p.logs().contains("starting"));
        assert!(p.is_running());
        p.kill9().unwrap();
        assert!(!p.is_running());
        p.kill9().unwrap();
    }

    /// The kernel's state letter of `pid` (`T` when stopped), from `/proc/PID/stat`.
    fn state_of(pid: u32) -> char {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // The command name is in parentheses and may hold spaces; the state follows it.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        after.chars().next().unwrap()
    }

    #[tokio::test]
    async fn pause_stops_and_resume_continues_the_child() {
        let mut p = Proc::spawn(Path::new("/bin/sh"), ["-c", "exec sleep 60"]).unwrap();
        p.pause().unwrap();
        crate::eventually(Duration::from_secs(10), async || {
            anyhow::ensure!(state_of(p.pid()) == 'T', "state {}", state_of(p.pid()));
            Ok(())
        })
        .await
        .unwrap();
        assert!(p.is_running(), "a stopped child is still running");
        p.resume().unwrap();
        crate::eventually(Duration::from_secs(10), async || {
            anyhow::ensure!(state_of(p.pid()) != 'T', "still stopped");
            Ok(())
        })
        .await
        .unwrap();
        // A paused child is killed as usual.
        p.pause().unwrap();
        p.kill9().unwrap();
        assert!(!p.is_running());
        assert!(p.pause().is_err(), "signalling an exited child is an error");
    }

    #[tokio::test]
    async fn reports_an_early_exit() {
        let sh = Path::new("/bin/sh");
        let mut p = Proc::spawn(sh, ["-c", "echo boom >&2; exit 3"]).unwrap();
        let err = p
            .wait_for_line("never", Duration::from_secs(10))
            .await
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("exited"), "{text}");
        assert!(text.contains("SRV[sh]: boom"), "{text}");
    }
}
