//! Running one lifecycle script: `start`, `stop`, `health`, `reload`, or the alert command.
//!
//! A script runs in its own process group with a time limit; at the limit the whole group is
//! killed (`killpg`), so a hung script's children never linger. Its stdout and stderr are kept,
//! bounded to the last [`OUTPUT_LIMIT`] bytes, for the status API. The script's exit is waited
//! for, not the end of its output: a `start` script leaves its server running in the background
//! holding its pipe. Runs whose group is killed at the end (checks, alerts) write into a memfd
//! read once afterwards instead of a pipe. Spawning, reaping and signals are `spawn`'s (the
//! one module with `unsafe`). What a result means (passing, critical) is `health`'s business;
//! when to run which script is `lifecycle`'s.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, PipeReader};
use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::unix::pipe;
use tokio::time::Instant;

use crate::service_file::Script;

mod spawn;

pub use spawn::block_child_signals;
use spawn::{Pid, Program};

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

/// A script with its directory and environment turned into what a spawn takes, built
/// once per definition (a health check runs it every interval). The agent's own environment
/// is captured when this is built.
#[derive(Debug)]
pub struct Prepared {
    what: String,
    program: Result<Program, String>,
    /// The output memfd of the last run, truncated: a check reuses it instead of creating one
    /// every run (taken out while a run uses it, so runs of the same `Prepared` at the same
    /// time each get their own).
    reused: Mutex<Option<File>>,
}

/// Prepares `script`, to run in `dir` with `env` added to the agent's environment.
pub fn prepare(script: &Script, dir: &Path, env: &[(&str, String)]) -> Prepared {
    let program = match script {
        Script::Path(p) => Program::new(p.as_os_str(), &[], dir, env),
        Script::Shell(s) => Program::new(
            OsStr::new("/bin/sh"),
            &[OsStr::new("-c"), OsStr::new(s)],
            dir,
            env,
        ),
    };
    Prepared {
        what: describe(script),
        program,
        reused: Mutex::new(None),
    }
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
    run_prepared(&prepare(script, dir, env), timeout, options).await
}

/// Where a run's stdout and stderr go.
enum Sink {
    /// A memfd, read once the group is dead: no pipe, no epoll, no read loop. Only for runs
    /// whose group is killed at the end; a `start` script's server would keep filling it.
    File(File),
    /// A pipe, read while it runs and for [`OUTPUT_GRACE`] after: a background server that
    /// holds it must not make the agent wait, nor grow its memory.
    Pipe(PipeReader, io::PipeWriter),
}

/// Runs a prepared script, killing its process group at `timeout`.
pub async fn run_prepared(prepared: &Prepared, timeout: Duration, options: RunOptions) -> Outcome {
    let started = Instant::now();
    let cannot_start = |what: String| Outcome {
        exit: None,
        timed_out: false,
        output: format!("cannot start {}: {what}", prepared.what),
        duration: started.elapsed(),
    };
    let program = match &prepared.program {
        Ok(p) => p,
        Err(e) => return cannot_start(e.clone()),
    };
    // A check's output file is reused: its group is dead at the end of every run.
    let reusable = options.reap_group && options.stdin.is_none();
    let kept = if reusable {
        prepared.reused.lock().ok().and_then(|mut r| r.take())
    } else {
        None
    };
    let sink = match kept {
        Some(f) => Sink::File(f),
        None if options.reap_group => match spawn::memfd() {
            Ok(f) => Sink::File(f),
            Err(e) => return cannot_start(format!("output: {e}")),
        },
        None => match io::pipe() {
            Ok((r, w)) => Sink::Pipe(r, w),
            Err(e) => return cannot_start(format!("output: {e}")),
        },
    };
    let stdin_pipe = match options.stdin.as_ref().map(|_| io::pipe()).transpose() {
        Ok(p) => p,
        Err(e) => return cannot_start(format!("stdin pipe: {e}")),
    };
    let out_fd = match &sink {
        Sink::File(f) => f.as_fd(),
        Sink::Pipe(_, w) => w.as_fd(),
    };
    let spawned = match program.spawn(stdin_pipe.as_ref().map(|(r, _)| r.as_fd()), out_fd) {
        Ok(s) => s,
        Err(e) => return cannot_start(e.to_string()),
    };
    let pid = spawned.pid;
    let pidfd = pid.pidfd(spawned.pidfd);
    let child = Child {
        pid,
        reaped: false,
        kill_on_drop: options.reap_group,
    };
    // The child has its copies: the agent must not hold the pipes' other ends, or the output
    // never ends and a script reading stdin never sees its end.
    let (mut reader, file) = match sink {
        Sink::File(f) => (None, Some(f)),
        Sink::Pipe(r, w) => {
            drop(w);
            (pipe::Receiver::from_owned_fd(OwnedFd::from(r)).ok(), None)
        }
    };
    if let (Some((r, w)), Some(bytes)) = (stdin_pipe, options.stdin) {
        drop(r);
        // A script that does not read its stdin must not block the agent.
        if let Ok(mut tx) = pipe::Sender::from_owned_fd(OwnedFd::from(w)) {
            tokio::spawn(async move {
                let _ = tx.write_all(&bytes).await;
            });
        }
    }
    let (exit, timed_out, tail) =
        supervise(child, pidfd, timeout, options.reap_group, &mut reader).await;
    let duration = started.elapsed();
    let mut tail = tail;
    if let Some(f) = file {
        // The group is dead (a memfd is only used when it is killed), so the file is complete.
        tail.push(&read_tail(&f));
        if reusable
            && f.set_len(0).is_ok()
            && let Ok(mut r) = prepared.reused.lock()
        {
            *r = Some(f);
        }
    }
    // What is still in the pipe belongs to this run; a background child that keeps the pipe
    // open (a `start` script's server) is not waited for beyond the grace period.
    if reader.is_some() {
        let mut buf = [0u8; 1024];
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

/// Waits for the child's exit (reading the pipe meanwhile, if there is one), killing its
/// group at `timeout`; returns the exit code, whether it timed out, and the output read.
async fn supervise(
    mut child: Child,
    pidfd: Option<OwnedFd>,
    timeout: Duration,
    reap_group: bool,
    reader: &mut Option<pipe::Receiver>,
) -> (Option<i32>, bool, Tail) {
    let mut tail = Tail::default();
    let mut buf = [0u8; 1024];
    let pid = child.pid;
    let wait = wait_exit(pid, pidfd, reap_group);
    tokio::pin!(wait);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let waited = loop {
        tokio::select! {
            status = &mut wait => break Some(status),
            () = &mut deadline => break None,
            n = read_some(reader, &mut buf) => match n {
                Some(n) => tail.push(&buf[..n]),
                None => *reader = None,
            },
        }
    };
    let (exit, timed_out) = match waited {
        Some(Ok(code)) => (code, false),
        Some(Err(e)) => {
            tail.push(format!("\nwaiting for the script failed: {e}").as_bytes());
            (None, false)
        }
        None => {
            // Killed before the leader is reaped, so the group id cannot have been reused.
            pid.kill_group();
            if let Err(e) = (&mut wait).await {
                tail.push(format!("\nwaiting for the killed script failed: {e}").as_bytes());
            }
            (None, true)
        }
    };
    child.reaped = true;
    (exit, timed_out, tail)
}

/// A spawned child, reaped (in the background) if its run is dropped before it exits.
struct Child {
    pid: Pid,
    reaped: bool,
    /// Kill its group when dropped unreaped (a check's group is disposable; a `start`'s is
    /// the service).
    kill_on_drop: bool,
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        if self.kill_on_drop {
            self.pid.kill_group();
        }
        let pid = self.pid;
        // No zombie: wait for it off the runtime's threads.
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(move || pid.reap(true))),
            Err(_) => drop(std::thread::spawn(move || pid.reap(true))),
        }
    }
}

/// Waits for `pid`'s exit and reaps it: through a pidfd in the runtime's epoll, or, on a kernel
/// without pidfds, a blocking wait on the blocking pool. With `kill_group`, what is left of its
/// group is killed between the exit and the reaping, while the group id cannot be reused.
async fn wait_exit(pid: Pid, pidfd: Option<OwnedFd>, kill_group: bool) -> io::Result<Option<i32>> {
    let finish = move || {
        if kill_group {
            pid.kill_group();
        }
        pid.reap(false)?
            .ok_or_else(|| io::Error::other("an exited child could not be reaped"))
    };
    if let Some(afd) = pidfd.and_then(spawn::watch) {
        loop {
            let mut guard = afd.readable().await?;
            if pid.exited(false)? {
                return finish();
            }
            guard.clear_ready();
        }
    }
    tokio::task::spawn_blocking(move || {
        pid.exited(true)?;
        finish()
    })
    .await
    .map_err(io::Error::other)?
}

/// The last [`OUTPUT_LIMIT`] bytes of a run's output file; a read error leaves what was read.
fn read_tail(f: &File) -> Vec<u8> {
    // Most runs write less than the limit: one `pread` from the start then reads it all (a
    // regular file's read is short only at its end), and no `stat` is needed for its length.
    let mut buf = vec![0u8; OUTPUT_LIMIT];
    let first = f.read_at(&mut buf, 0).unwrap_or(0);
    if first < OUTPUT_LIMIT {
        buf.truncate(first);
        return buf;
    }
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(OUTPUT_LIMIT as u64);
    if from == 0 {
        return buf;
    }
    let mut got = 0;
    while got < buf.len() {
        match f.read_at(&mut buf[got..], from + got as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    buf.truncate(got);
    buf
}

/// The script as a log line shows it.
pub fn describe(script: &Script) -> String {
    match script {
        Script::Path(p) => p.display().to_string(),
        Script::Shell(s) => format!("/bin/sh -c {s:?}"),
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
