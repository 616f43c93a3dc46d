//! The agent's only `unsafe` code for processes: a vfork-style `clone` from a prebuilt
//! argv/envp, a memfd for a run's output, a pidfd to learn of the exit, `waitpid` and `killpg`.
//!
//! Why not `std`/`tokio::process`: at 200 checks a second the agent's CPU went to rebuilding
//! the whole environment for every spawn, a pipe with its epoll registrations per run, and
//! tokio's per-child machinery. Why not glibc's `posix_spawn` either: it maps and unmaps a
//! stack for every child and needs a `pidfd_open` after it. A [`Program`] is built once per
//! script definition; a spawn then costs one `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)`
//! (the child runs on a buffer of the suspended parent's stack, as in musl), the two signal
//! mask changes around it, and one `waitpid`.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Registers a pidfd with the runtime: readable once the child has exited.
pub(super) fn watch(pidfd: OwnedFd) -> Option<AsyncFd<OwnedFd>> {
    // SAFETY: the OwnedFd moves into the AsyncFd, so the fd stays open and the same for the
    // AsyncFd's whole lifetime and is closed only after it is deregistered.
    unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }.ok()
}

/// A script ready to be spawned: path, argv and envp as C strings, built once.
#[derive(Debug)]
pub(super) struct Program {
    path: CString,
    dir: CString,
    /// Owns the strings `argv_ptrs` and `envp_ptrs` point into.
    _strings: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
}

// SAFETY: the raw pointers point into the heap buffers of `_strings`, which the struct owns and
// never changes after construction; sharing them read-only across threads is sound.
unsafe impl Send for Program {}
// SAFETY: as above, nothing is mutated through `&Program`.
unsafe impl Sync for Program {}

impl Program {
    /// `path` executed with `args` (argv[0] is `path`) in `dir`, with the agent's environment
    /// as it is now plus `env` (which wins over the agent's variables of the same name).
    pub(super) fn new(
        path: &OsStr,
        args: &[&OsStr],
        dir: &Path,
        env: &[(&str, String)],
    ) -> Result<Self, String> {
        let c = |what: &str, s: &[u8]| {
            CString::new(s).map_err(|_| format!("{what} contains a NUL byte"))
        };
        let path_c = c("the script path", path.as_bytes())?;
        let dir_c = c("the directory", dir.as_os_str().as_bytes())?;
        let mut argv = vec![path_c.clone()];
        for a in args {
            argv.push(c("the command", a.as_bytes())?);
        }
        let mut envp = Vec::new();
        for (k, v) in std::env::vars_os() {
            if env.iter().any(|(name, _)| OsStr::new(name) == k) {
                continue;
            }
            envp.push(c("the environment", &join_var(&k, &v))?);
        }
        for (k, v) in env {
            let kv = join_var(OsStr::new(k), &OsString::from(v));
            envp.push(c("the environment", &kv)?);
        }
        let argv_ptrs = nul_terminated(&argv);
        let envp_ptrs = nul_terminated(&envp);
        let mut strings = argv;
        strings.extend(envp);
        Ok(Program {
            path: path_c,
            dir: dir_c,
            _strings: strings,
            argv_ptrs,
            envp_ptrs,
        })
    }

    /// Spawns it as the leader of a new process group, every signal at its default and none
    /// blocked, with `stdin` (or `/dev/null`) as fd 0 and `output` as fds 1 and 2, in its
    /// directory. An error of the child before its program runs (a missing or non-executable
    /// script, a directory that is gone) is this call's error, not an exit code.
    pub(super) fn spawn(
        &self,
        stdin: Option<BorrowedFd<'_>>,
        output: BorrowedFd<'_>,
    ) -> io::Result<Spawned> {
        let stdin = match stdin {
            Some(fd) => fd.as_raw_fd(),
            None => dev_null()?,
        };
        let args = ChildArgs {
            program: self,
            stdin,
            output: output.as_raw_fd(),
            error: AtomicI32::new(0),
        };
        // The child runs on this buffer while this thread is suspended (CLONE_VFORK), as musl's
        // posix_spawn does: no stack to map and unmap per spawn, and one per spawning thread.
        let mut stack = ChildStack(MaybeUninit::uninit());
        let top = stack.0.as_mut_ptr().wrapping_add(1).cast::<libc::c_void>();
        let (pid, pidfd) = clone_vfork(&args, top)?;
        // The child has exec'd or exited (vfork): its word is final.
        let error = args.error.load(Ordering::SeqCst);
        if error != 0 {
            // It exited with 127 without running anything: reap it here, report why.
            let pid = Pid(pid);
            let _ = pid.reap(true);
            return Err(io::Error::from_raw_os_error(error));
        }
        Ok(Spawned {
            pid: Pid(pid),
            pidfd,
        })
    }
}

/// The child's stack (it only makes a few system calls), 16-byte aligned as every ABI wants.
#[repr(C, align(16))]
struct ChildStack(MaybeUninit<[u8; CHILD_STACK]>);

/// Size of [`ChildStack`]; the child's frames take well under 1 KiB.
const CHILD_STACK: usize = 32 * 1024;

/// What the child needs, read through the shared memory of `CLONE_VM`.
struct ChildArgs<'a> {
    program: &'a Program,
    stdin: RawFd,
    output: RawFd,
    /// The errno of the step that failed, written by the child before `_exit(127)`; still 0
    /// when its program runs. Shared memory, read by the parent once the vfork returns.
    error: AtomicI32,
}

/// A spawned child: its pid, and the pidfd `clone` made for it (`None` on kernels before 5.2).
#[derive(Debug)]
pub(super) struct Spawned {
    pub(super) pid: Pid,
    pub(super) pidfd: Option<OwnedFd>,
}

/// Set once `CLONE_PIDFD` was refused (a kernel before 5.2): later spawns do not ask for it.
static NO_CLONE_PIDFD: AtomicBool = AtomicBool::new(false);

/// `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)` running [`child_main`] on `stack_top` with
/// every signal blocked around it (as glibc's and musl's posix_spawn do), so that no handler of
/// the agent runs in the child, which shares its memory, before the child resets them.
fn clone_vfork(
    args: &ChildArgs<'_>,
    stack_top: *mut libc::c_void,
) -> io::Result<(i32, Option<OwnedFd>)> {
    let all: u64 = !0;
    let mut old: u64 = 0;
    // SAFETY: rt_sigprocmask with valid pointers to 8-byte sets (the kernel's sigset size).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &raw const all,
            &raw mut old,
            8,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let result = loop {
        let with_pidfd = !NO_CLONE_PIDFD.load(Ordering::Relaxed);
        let mut pidfd: libc::c_int = -1;
        let flags = libc::CLONE_VM
            | libc::CLONE_VFORK
            | libc::SIGCHLD
            | if with_pidfd { libc::CLONE_PIDFD } else { 0 };
        // SAFETY: `stack_top` is the 16-byte aligned end of a buffer that outlives the child's
        // use of it (this thread is suspended until the child execs or exits); `args` is valid
        // for as long; `child_main` only makes async-signal-safe system calls and never
        // returns; with CLONE_PIDFD the kernel writes the pidfd into `pidfd` (parent_tid).
        let pid = unsafe {
            libc::clone(
                child_main,
                stack_top,
                flags,
                ptr::from_ref(args).cast_mut().cast(),
                &raw mut pidfd,
            )
        };
        if pid < 0 {
            let e = io::Error::last_os_error();
            if with_pidfd && e.raw_os_error() == Some(libc::EINVAL) {
                NO_CLONE_PIDFD.store(true, Ordering::Relaxed);
                continue;
            }
            break Err(e);
        }
        // SAFETY: a non-negative pidfd was just made by the kernel for us and is owned by
        // nobody else (it is close-on-exec, as CLONE_PIDFD makes it).
        let pidfd = (with_pidfd && pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
        break Ok((pid, pidfd));
    };
    // SAFETY: as above; restores the mask this thread had.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &raw const old,
            ptr::null_mut::<u64>(),
            8,
        )
    };
    result
}

/// The child, between `clone` and `execve`. It shares the agent's memory and runs on the
/// parent's suspended stack, so it only makes system calls: no allocation, no lock, no panic.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `&ChildArgs` `clone_vfork` passed, alive until this child execs or
    // exits (the parent is suspended until then).
    let args = unsafe { &*arg.cast_const().cast::<ChildArgs<'_>>() };
    // SAFETY: the calls below are async-signal-safe and their pointers are valid (see there).
    let error = unsafe { child_exec(args) };
    args.error
        .store(if error == 0 { libc::EIO } else { error }, Ordering::SeqCst);
    // SAFETY: ends the child (only its own thread group) without running any of the agent's
    // exit handlers or flushing its buffers.
    unsafe { libc::_exit(127) }
}

/// Sets the child up and execs its program; returns the errno of what failed.
///
/// # Safety
/// Only in the child of [`clone_vfork`], with every signal blocked.
unsafe fn child_exec(args: &ChildArgs<'_>) -> libc::c_int {
    let p = args.program;
    // The kernel's `struct sigaction`, zeroed: SIG_DFL, no flags, empty mask. Every signal at
    // its default before any is unblocked: an agent handler must not run here (it would act on
    // the agent's memory), and a script must not inherit an ignored SIGPIPE. The raw call also
    // reaches the two real-time signals glibc keeps for itself.
    let default = [0u64; 4];
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: a valid pointer to a zeroed kernel sigaction, no old action asked for.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    default.as_ptr(),
                    ptr::null_mut::<u64>(),
                    8,
                )
            };
        }
    }
    // SAFETY (whole block): each call takes integers or NUL-terminated strings and arrays owned
    // by `p`, valid and unchanged while the parent is suspended.
    unsafe {
        if libc::setpgid(0, 0) != 0
            || !dup_onto(args.stdin, 0)
            || !dup_onto(args.output, 1)
            || !dup_onto(args.output, 2)
            || libc::chdir(p.dir.as_ptr()) != 0
        {
            return errno();
        }
        let none: u64 = 0;
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &raw const none,
            ptr::null_mut::<u64>(),
            8,
        );
        libc::execve(p.path.as_ptr(), p.argv_ptrs.as_ptr(), p.envp_ptrs.as_ptr());
        errno()
    }
}

/// `from` as fd `to` without close-on-exec (dup2 of an fd onto itself would keep the flag).
/// The agent's own fds are never 0-2 (Rust's runtime opens /dev/null on any that are closed),
/// so a source is never clobbered by an earlier target.
///
/// # Safety
/// Only in the child of [`clone_vfork`].
unsafe fn dup_onto(from: RawFd, to: RawFd) -> bool {
    // SAFETY: plain integer arguments.
    unsafe {
        if from == to {
            libc::fcntl(to, libc::F_SETFD, 0) == 0
        } else {
            libc::dup2(from, to) == to
        }
    }
}

/// The calling thread's errno (in the child: the parent thread's, which it shares).
fn errno() -> libc::c_int {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The agent's `/dev/null` (read-only, close-on-exec), opened once, dup'ed onto a script's
/// fd 0 when it gets no stdin.
fn dev_null() -> io::Result<RawFd> {
    static NULL: OnceLock<File> = OnceLock::new();
    if let Some(f) = NULL.get() {
        return Ok(f.as_raw_fd());
    }
    let f = File::open("/dev/null")?;
    Ok(NULL.get_or_init(|| f).as_raw_fd())
}

/// `KEY=VALUE` as bytes.
fn join_var(k: &OsStr, v: &OsStr) -> Vec<u8> {
    let mut kv = Vec::with_capacity(k.len() + v.len() + 1);
    kv.extend_from_slice(k.as_bytes());
    kv.push(b'=');
    kv.extend_from_slice(v.as_bytes());
    kv
}

fn nul_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(ptr::null()))
        .collect()
}

/// A spawned child not yet reaped; it leads its own process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pid(libc::pid_t);

impl Pid {
    /// A pidfd for it: `clone`'s, or else `pidfd_open`'s; `None` where the kernel has neither.
    pub(super) fn pidfd(self, from_clone: Option<OwnedFd>) -> Option<OwnedFd> {
        if from_clone.is_some() {
            return from_clone;
        }
        // SAFETY: pidfd_open takes two integers; a non-negative result is a new fd we own.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.0, 0) };
        let fd = RawFd::try_from(fd).ok().filter(|fd| *fd >= 0)?;
        // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
        Some(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Whether it has exited, without reaping it (so its pid, and its group id, stay taken);
    /// `block` waits for the exit.
    pub(super) fn exited(self, block: bool) -> io::Result<bool> {
        let flags = libc::WEXITED | libc::WNOWAIT | if block { 0 } else { libc::WNOHANG };
        loop {
            // SAFETY: a zeroed siginfo_t is a valid out-buffer; `si_pid` stays 0 when no child
            // changed state (WNOHANG), as waitid(2) specifies.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: `info` is a valid out-pointer; the pid is our own unreaped child.
            let rc = unsafe { libc::waitid(libc::P_PID, self.0 as libc::id_t, &mut info, flags) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            // SAFETY: waitid filled `info` (or left it zeroed); si_pid is valid for SIGCHLD.
            return Ok(unsafe { info.si_pid() } != 0);
        }
    }

    /// Reaps it if it has exited: `Some(exit code)` (inner `None` if killed by a signal).
    /// `block` waits for the exit instead.
    pub(super) fn reap(self, block: bool) -> io::Result<Option<Option<i32>>> {
        let mut status: libc::c_int = 0;
        let flags = if block { 0 } else { libc::WNOHANG };
        loop {
            // SAFETY: `status` is a valid out-pointer; the pid is our own unreaped child.
            let rc = unsafe { libc::waitpid(self.0, &mut status, flags) };
            if rc == 0 {
                return Ok(None);
            }
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
            return Ok(Some(code));
        }
    }

    /// SIGKILL to its whole process group. Only called before the leader is reaped, so the
    /// group id cannot have been reused; a group already gone is not an error.
    pub(super) fn kill_group(self) {
        if self.0 > 1 {
            // SAFETY: killpg takes plain integers and touches no memory of ours.
            unsafe { libc::killpg(self.0, libc::SIGKILL) };
        }
    }
}

/// Blocks SIGCHLD in the calling thread and so in every thread it creates afterwards; call
/// before the agent starts its threads. Children are reaped through their pidfds, so the
/// signal is never needed, and delivering it is not free: a SIGCHLD that finds the spawning
/// thread with every signal blocked (around a `clone`) is handed to another thread, the file
/// watcher's or an idle blocking-pool thread, which wakes for nothing (measured: about 130
/// such wake-ups a second at 200 checks a second). Blocked everywhere, it stays pending and
/// wakes nobody; scripts start with an empty mask all the same.
pub fn block_child_signals() {
    // SAFETY: a sigset_t initialised by sigemptyset/sigaddset and a null old-mask pointer.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, ptr::null_mut());
    }
}

/// An anonymous in-memory file (close-on-exec) for runs' output, opened `O_APPEND`: the
/// file description (and its offset) is shared with the children, so after a truncation the
/// next run's writes must start at the new end, not at an old offset.
pub(super) fn memfd() -> io::Result<File> {
    // SAFETY: the name is a static NUL-terminated string; a non-negative result is a new fd.
    let fd = unsafe { libc::memfd_create(c"ns-agent-output".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    // SAFETY: fcntl on an fd we own, with integer arguments.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, libc::O_APPEND) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}
