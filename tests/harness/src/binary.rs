//! Locating the workspace binaries and running one-shot CLI commands.
//!
//! `CARGO_BIN_EXE_*` only exists inside a binary's own package, so the e2e tests find
//! binaries next to the test executable (`target/<profile>/deps/..`), unless an environment
//! variable such as `$PYXIS_BIN` points elsewhere. Long-running servers use [`crate::Proc`].

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

/// Path of the workspace binary `name` (for example `pyxis` or `ns-agent`).
///
/// `$NAME_BIN` (upper case, `-` turned into `_`, so `$PYXIS_BIN`) wins; otherwise the binary
/// is looked up in the target directory the running test executable was built into. The path
/// is returned even if the file is missing; spawning it then fails with a hint to build it.
pub fn bin(name: &str) -> PathBuf {
    let var = format!("{}_BIN", name.to_ascii_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(&var) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current_exe of the test binary");
    let mut dir = exe
        .parent()
        .expect("test executable has a parent directory")
        .to_path_buf();
    // Test executables live in target/<profile>/deps; binaries one level up.
    if dir.file_name() == Some(OsStr::new("deps")) {
        dir.pop();
    }
    dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Fails with a hint when `path` does not exist, so a missing build is not mistaken for a bug.
pub(crate) fn ensure_built(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        bail!(
            "binary {} not found: run `cargo build --workspace --bins` first or set $PYXIS_BIN",
            path.display()
        );
    }
    Ok(())
}

/// What a finished command printed and how it exited.
#[derive(Debug)]
pub struct CmdOutput {
    /// Exit status of the process.
    pub status: ExitStatus,
    /// Everything it wrote to stdout, lossily decoded.
    pub stdout: String,
    /// Everything it wrote to stderr, lossily decoded.
    pub stderr: String,
}

impl CmdOutput {
    /// Returns `self` if the command exited with 0, else an error carrying both streams.
    pub fn success(self) -> anyhow::Result<Self> {
        if !self.status.success() {
            bail!(
                "command failed with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.status,
                self.stdout,
                self.stderr
            );
        }
        Ok(self)
    }
}

/// Runs `bin args..` to completion (a CLI command, not a server) and captures its output.
///
/// The child gets no `PYXIS_ENDPOINTS` from the test's environment, so only the arguments
/// choose the endpoints. It is killed if it outlives `timeout`.
pub async fn run_cmd<I, S>(bin: &Path, args: I, timeout: Duration) -> anyhow::Result<CmdOutput>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    ensure_built(bin)?;
    let args: Vec<_> = args
        .into_iter()
        .map(|a| a.as_ref().to_os_string())
        .collect();
    let child = tokio::process::Command::new(bin)
        .args(&args)
        .env_remove("PYXIS_ENDPOINTS")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawn {} {args:?}", bin.display()))?;
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .with_context(|| {
            format!(
                "{} {args:?} did not finish within {timeout:?}",
                bin.display()
            )
        })?
        .with_context(|| format!("wait for {} {args:?}", bin.display()))?;
    Ok(CmdOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
