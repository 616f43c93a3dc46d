//! One template, compiled: [`Compiled::load`] reads and parses a Tera source,
//! [`Compiled::render`] renders it over one set of inputs and returns what it read.
//!
//! Errors, syntax or render, become a [`RenderError`] with the template file, line and column
//! (Tera 2 reports a span for both). Files are not written here (`render::write`), and when to
//! render is `render::group`'s.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use tera::{Context as TeraContext, ErrorKind, Tera};

use super::deps::{Deps, Inputs};
use super::functions::{self, Cell, Scope, Who};

/// A template error, located: `file:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}", self.located())]
pub struct RenderError {
    /// The template file.
    pub file: PathBuf,
    /// The 1-based line, when Tera located the error.
    pub line: Option<usize>,
    /// The 1-based column, when Tera located the error.
    pub column: Option<usize>,
    /// What is wrong, without the source excerpt.
    pub message: String,
}

impl RenderError {
    fn located(&self) -> String {
        let mut out = self.file.display().to_string();
        if let Some(l) = self.line {
            out.push_str(&format!(":{l}"));
            if let Some(c) = self.column {
                out.push_str(&format!(":{c}"));
            }
        }
        format!("{out}: {}", self.message)
    }

    /// An error of the file as a whole (it cannot be read).
    pub fn of_file(file: &Path, message: String) -> RenderError {
        RenderError {
            file: file.to_owned(),
            line: None,
            column: None,
            message,
        }
    }

    fn of_tera(file: &Path, e: &tera::Error) -> RenderError {
        match e.kind() {
            ErrorKind::SyntaxError(r) | ErrorKind::RenderingError(r) => RenderError {
                file: file.to_owned(),
                line: Some(r.span().start_line),
                column: Some(r.span().start_col + 1),
                message: r.message().to_owned(),
            },
            other => RenderError::of_file(file, other.to_string()),
        }
    }
}

/// A parsed template with its own Tera instance and functions.
pub struct Compiled {
    tera: Tera,
    name: String,
    path: PathBuf,
    cell: Cell,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("path", &self.path)
            .finish()
    }
}

impl Compiled {
    /// Reads and parses the template at `path`.
    pub fn load(path: &Path) -> Result<Compiled, RenderError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RenderError::of_file(path, format!("cannot read: {e}")))?;
        Compiled::parse(path, &text)
    }

    /// Parses template `text`, named after `path` in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Compiled, RenderError> {
        let cell: Cell = Arc::new(Mutex::new(None));
        let mut tera = Tera::default();
        // Config files are not HTML: nothing is escaped.
        tera.autoescape_on(Vec::<&str>::new());
        functions::register(&mut tera, &cell);
        let name = path
            .file_name()
            .map_or_else(|| "template".into(), |n| n.to_string_lossy().into_owned());
        tera.add_raw_template(&name, text)
            .map_err(|e| RenderError::of_tera(path, &e))?;
        Ok(Compiled {
            tera,
            name,
            path: path.to_owned(),
            cell,
        })
    }

    /// Renders over `inputs` as `who` at `now_ms` (Unix milliseconds, for policy expiry):
    /// the text, and what the render read (up to the error on a failure, so that a fix of
    /// the data schedules it again).
    pub fn render(
        &self,
        inputs: &Inputs,
        who: &Who,
        now_ms: u64,
    ) -> (Result<String, RenderError>, Deps) {
        *self.lock() = Some(Scope {
            inputs: inputs.clone(),
            who: who.clone(),
            now_ms,
            deps: Deps::default(),
        });
        let out = self.tera.render(&self.name, &TeraContext::new());
        let deps = self.lock().take().map(|s| s.deps).unwrap_or_default();
        (out.map_err(|e| RenderError::of_tera(&self.path, &e)), deps)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Scope>> {
        self.cell.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
