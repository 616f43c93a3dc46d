//! Running one lifecycle script: `start`, `stop`, `health`, `reload`, or the alert command.
//!
//! A script runs in its own process group with a time limit; at the limit the whole group is
//! killed (`killpg`), so a hung script's children never linger. Its stdout and stderr are kept,
//! bounded to the last [`OUTPUT_LIMIT`] bytes, for the status API. The script's exit is waited
//! for, not the end of its output: a `start` script leaves its server running in the background
//! holding the pipes. What a result means (passing, critical) is `health`'s business; when to
//! run which script is `lifecycle`'s.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::unix::pipe;
use tokio::process::Command;
use tokio::time::Instant;

use crate::service_file::Script;

/// How much output of one run is kept (its tail).
pub const OUTPUT_LIMIT: usize = 4096;

/// How long output is still read after the script exited (children may hold the pipes).
const OUTPUT_GRACE: Duration = Duration::from_millis(100);

/// How one run of a script ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The exit code; `None` if it was killed (at the timeout or by a signal) or never started.
    pub exit: Option<i32>,
    /// Whether it was killed at the time limit.
    pub timed_out: bool,
    /// The last [`OUTPUT_LIMIT`] bytes of stdout and stderr, interleaved as written, or why it
    /// could not be started.
    pub output: String,
    /// How long it ran.
    pub duration: Duration,
}

impl Outcome {
    /// Whether it exited with 0.
    pub fn success(&self) -> bool {
        self.exit == Some(0)
    }
}

/// What a script is given besides its environment.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Bytes written to its stdin (then closed); stdin is `/dev/null` when `None`.
    pub stdin: Option<Vec<u8>>,
    /// Kill whatever is left of its process group once it exits (health checks and alerts);
    /// `start` leaves its group alone, since that is the service.
    pub reap_group: bool,
}

/// Runs `script` in `dir` with `env` added to the agent's environment, killing its process
/// group at `timeout`.
pub async fn run(
    script: &Script,
    dir: &Path,
    env: &[(&str, String)],
    timeout: Duration,
    options: RunOptions,
) -> Outcome {
    let started = Instant::now();
    let mut cmd = match script {
        Script::Path(p) => Command::new(p),
        Script::Shell(s) => {
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(s);
            c
        }
    };
    let cannot_start = |what: String| Outcome {
        exit: None,
        timed_out: false,
        output: format!("cannot start {}: {what}", describe(script)),
        duration: started.elapsed(),
    };
    // One pipe for stdout and stderr: their output interleaves as written, and a check costs
    // one pipe and one reader instead of two.
    let (pipe_rx, pipe_tx) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return cannot_start(format!("pipe: {e}")),
    };
    let pipe_tx_err = match pipe_tx.try_clone() {
        Ok(p) => p,
        Err(e) => return cannot_start(format!("pipe: {e}")),
    };
    cmd.current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(if options.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(pipe_tx)
        .stderr(pipe_tx_err)
        .process_group(0);
    let spawned = cmd.spawn();
    // The command holds the pipe's write ends: drop them, or the output never ends.
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return cannot_start(e.to_string()),
    };
    // The child leads its own group (process_group(0)), so its pid is the group id.
    let pgid = child.id().and_then(|p| i32::try_from(p).ok());
    let mut reader = pipe::Receiver::from_owned_fd(OwnedFd::from(pipe_rx)).ok();
    let mut tail = Tail::default();
    let mut buf = [0u8; 1024];
    if let (Some(mut stdin), Some(bytes)) = (child.stdin.take(), options.stdin) {
        // A script that does not read its stdin must not block the agent.
        tokio::spawn(async move {
            let _ = stdin.write_all(&bytes).await;
        });
    }
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let waited = loop {
        tokio::select! {
            status = child.wait() => break Some(status),
            () = &mut deadline => break None,
            n = read_some(&mut reader, &mut buf) => match n {
                Some(n) => tail.push(&buf[..n]),
                None => reader = None,
            },
        }
    };
    let (exit, timed_out) = match waited {
        Some(Ok(status)) => (status.code(), false),
        Some(Err(e)) => {
            tail.push(format!("\nwaiting for the script failed: {e}").as_bytes());
            (None, false)
        }
        None => {
            // Killed before the child is reaped, so the group id cannot have been reused.
            kill_group(pgid);
            let _ = child.wait().await;
            (None, true)
        }
    };
    if options.reap_group && !timed_out {
        kill_group(pgid);
    }
    let duration = started.elapsed();
    // What is still in the pipe belongs to this run; a background child that keeps the pipe
    // open (a `start` script's server) is not waited for beyond the grace period.
    let grace = tokio::time::sleep(OUTPUT_GRACE);
    tokio::pin!(grace);
    while reader.is_some() {
        tokio::select! {
            () = &mut grace => break,
            n = read_some(&mut reader, &mut buf) => match n {
                Some(n) => tail.push(&buf[..n]),
                None => reader = None,
            },
        }
    }
    let mut output = tail.text();
    if timed_out {
        output.push_str(&format!(
            "\nkilled after {}ms (timeout)",
            timeout.as_millis()
        ));
    }
    Outcome {
        exit,
        timed_out,
        output,
        duration,
    }
}

/// The script as a log line shows it.
pub fn describe(script: &Script) -> String {
    match script {
        Script::Path(p) => p.display().to_string(),
        Script::Shell(s) => format!("/bin/sh -c {s:?}"),
    }
}

/// SIGKILL to every process of group `pgid`; a group that is already gone is not an error.
fn kill_group(pgid: Option<i32>) {
    let Some(pgid) = pgid.filter(|p| *p > 1) else {
        return;
    };
    // SAFETY: killpg takes plain integers and touches no memory of ours.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

/// The last [`OUTPUT_LIMIT`] bytes written.
#[derive(Debug, Default)]
struct Tail {
    bytes: VecDeque<u8>,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.bytes.extend(data);
        let extra = self.bytes.len().saturating_sub(OUTPUT_LIMIT);
        self.bytes.drain(..extra);
    }

    fn text(&self) -> String {
        let (a, b) = self.bytes.as_slices();
        let mut v = Vec::with_capacity(a.len() + b.len());
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        String::from_utf8_lossy(&v).trim_end().to_owned()
    }
}

/// Reads once from the pipe; `None` at its end (or on an error, or with no pipe), so that the
/// caller stops reading. Pending forever without a pipe, so a `select!` arm can stay in place.
async fn read_some(reader: &mut Option<pipe::Receiver>, buf: &mut [u8]) -> Option<usize> {
    let Some(r) = reader else {
        return std::future::pending().await;
    };
    match r.read(buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

#[cfg(test)]
mod tests;
