//! The agent's only `unsafe` code for processes: `posix_spawn` from a prebuilt argv/envp, a
//! memfd for a run's output, a pidfd to learn of the exit, `waitpid` and `killpg`.
//!
//! Why not `std`/`tokio::process`: at 200 checks a second the agent's CPU went to rebuilding
//! the whole environment for every spawn, a pipe with its epoll registrations per run, and
//! tokio's per-child machinery. A [`Program`] is built once per script definition; a spawn
//! then costs `posix_spawn` (vfork + exec), `pidfd_open` and one `waitpid`.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::ptr;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A script ready to be spawned: path, argv and envp as C strings, built once.
#[derive(Debug)]
pub(super) struct Program {
    path: CString,
    dir: CString,
    /// Owns the strings `argv_ptrs` and `envp_ptrs` point into.
    _strings: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    attr: SpawnAttr,
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
            attr: SpawnAttr::new().map_err(|e| format!("spawn attributes: {e}"))?,
        })
    }

    /// The file actions for a spawn: `stdin` (or `/dev/null`) as fd 0, `output` as fds 1 and
    /// 2, and the script's directory. They name fd numbers, so they can be kept as long as
    /// those fds are (a reused output file).
    pub(super) fn actions(
        &self,
        stdin: Option<BorrowedFd<'_>>,
        output: BorrowedFd<'_>,
    ) -> io::Result<FileActions> {
        let actions = FileActions::new()?;
        match stdin {
            Some(fd) => actions.dup2(fd.as_raw_fd(), 0)?,
            None => actions.open_null(0)?,
        }
        actions.dup2(output.as_raw_fd(), 1)?;
        actions.dup2(output.as_raw_fd(), 2)?;
        actions.chdir(&self.dir)?;
        Ok(actions)
    }

    /// Spawns it with `actions` as the leader of a new process group, every signal at its
    /// default and none blocked.
    pub(super) fn spawn(&self, actions: &FileActions) -> io::Result<Pid> {
        let mut pid: libc::pid_t = 0;
        // SAFETY: every pointer is valid for the call: `path` and the NUL-terminated argv/envp
        // arrays point into strings owned by `self`; `actions` and `attr` are initialised.
        let rc = unsafe {
            libc::posix_spawn(
                &mut pid,
                self.path.as_ptr(),
                &actions.0,
                &self.attr.0,
                self.argv_ptrs.as_ptr().cast(),
                self.envp_ptrs.as_ptr().cast(),
            )
        };
        check(rc)?;
        Ok(Pid(pid))
    }
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

/// posix_spawn's functions return the error number instead of setting errno.
fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// What the child does with its fds before exec.
pub(super) struct FileActions(libc::posix_spawn_file_actions_t);

// SAFETY: the object owns its heap array of actions and has no thread affinity; after it is
// built it is only read (by posix_spawn), so it may move to and be read from any thread.
unsafe impl Send for FileActions {}
// SAFETY: as above: `&FileActions` is only read.
unsafe impl Sync for FileActions {}

impl std::fmt::Debug for FileActions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileActions")
    }
}

impl FileActions {
    fn new() -> io::Result<Self> {
        // SAFETY: a zeroed struct is the storage posix_spawn_file_actions_init initialises.
        let mut a = FileActions(unsafe { std::mem::zeroed() });
        // SAFETY: `a.0` is valid, writable storage for the object.
        check(unsafe { libc::posix_spawn_file_actions_init(&mut a.0) })?;
        Ok(a)
    }

    fn dup2(&self, from: RawFd, to: RawFd) -> io::Result<()> {
        // SAFETY: the object is initialised; glibc copies the integers. It takes `*mut` but the
        // struct is only appended to, never shared while a spawn reads it.
        check(unsafe { libc::posix_spawn_file_actions_adddup2(self.ptr(), from, to) })
    }

    fn open_null(&self, to: RawFd) -> io::Result<()> {
        // SAFETY: the object is initialised; the path is a static NUL-terminated string that
        // glibc copies.
        check(unsafe {
            libc::posix_spawn_file_actions_addopen(
                self.ptr(),
                to,
                c"/dev/null".as_ptr(),
                libc::O_RDONLY,
                0,
            )
        })
    }

    fn chdir(&self, dir: &CString) -> io::Result<()> {
        // SAFETY: the object is initialised; glibc copies the NUL-terminated path.
        check(unsafe { libc::posix_spawn_file_actions_addchdir_np(self.ptr(), dir.as_ptr()) })
    }

    fn ptr(&self) -> *mut libc::posix_spawn_file_actions_t {
        ptr::from_ref(&self.0).cast_mut()
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

/// Process group, signal mask and signal defaults of every spawn (the same for all).
struct SpawnAttr(libc::posix_spawnattr_t);

impl std::fmt::Debug for SpawnAttr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpawnAttr")
    }
}

impl SpawnAttr {
    /// Own process group (pgid = the child's pid), empty signal mask, every signal default:
    /// the agent ignores SIGPIPE (Rust's runtime does) and a script must not inherit that.
    fn new() -> io::Result<Self> {
        // SAFETY: a zeroed struct is the storage posix_spawnattr_init initialises.
        let mut a = SpawnAttr(unsafe { std::mem::zeroed() });
        // SAFETY: `a.0` is valid storage; the sigset_t values are initialised by
        // sigemptyset/sigfillset before use; flags are plain integers.
        unsafe {
            check(libc::posix_spawnattr_init(&mut a.0))?;
            let mut none: libc::sigset_t = std::mem::zeroed();
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigfillset(&mut all);
            check(libc::posix_spawnattr_setsigmask(&mut a.0, &none))?;
            check(libc::posix_spawnattr_setsigdefault(&mut a.0, &all))?;
            check(libc::posix_spawnattr_setpgroup(&mut a.0, 0))?;
            let flags = libc::POSIX_SPAWN_SETPGROUP
                | libc::POSIX_SPAWN_SETSIGMASK
                | libc::POSIX_SPAWN_SETSIGDEF;
            check(libc::posix_spawnattr_setflags(
                &mut a.0,
                flags as libc::c_short,
            ))?;
        }
        Ok(a)
    }
}

impl Drop for SpawnAttr {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}

/// A spawned child not yet reaped; it leads its own process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pid(libc::pid_t);

impl Pid {
    /// A pidfd, registered with the runtime, that becomes readable when the child exits;
    /// `None` where the kernel has no pidfds (or the registration failed).
    pub(super) fn pidfd(self) -> Option<AsyncFd<OwnedFd>> {
        // SAFETY: pidfd_open takes two integers; a non-negative result is a new fd we own.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.0, 0) };
        let fd = RawFd::try_from(fd).ok().filter(|fd| *fd >= 0)?;
        // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the OwnedFd moves into the AsyncFd, so the fd stays open and the same for
        // the AsyncFd's whole lifetime and is closed only after it is deregistered.
        unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.ok()
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
