//! The agent's one-shot commands: `validate`, `status` and `maint`.
//!
//! `validate` checks description files without starting anything; `status` and `maint` talk to
//! a running agent over its local HTTP API (`http_api`), so they need no store access. Running
//! the agent itself is [`crate::run`].

use std::io::Write as _;
use std::path::Path;

use crate::service_file;

/// `ns-agent validate DIR|FILE`: writes every problem (file, line, field) to `out`; returns
/// whether every file is good.
pub fn validate(path: &Path, out: &mut impl std::io::Write) -> std::io::Result<bool> {
    let (good, errors) = service_file::validate_path(path);
    for e in &errors {
        writeln!(out, "{e}")?;
    }
    for s in &good {
        writeln!(out, "{}: ok ({})", s.path.display(), s.name)?;
    }
    if good.is_empty() && errors.is_empty() {
        writeln!(out, "{}: no description files (*.toml)", path.display())?;
    }
    Ok(errors.is_empty())
}

/// Flushes stdout, ignoring a closed pipe (`ns-agent status | head`).
pub fn flush_stdout() {
    let _ = std::io::stdout().flush();
}
