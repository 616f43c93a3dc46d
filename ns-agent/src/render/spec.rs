//! The `[[templates]]` block, in service description files and at the top level of
//! `agent.toml`: its raw contract ([`TemplateFile`]) and the checked form ([`TemplateSpec`]).
//!
//! Checks here are about the block itself: the source file exists, the destination has a
//! directory, the wait bounds are ordered, the mode is octal. Whether the template compiles is
//! found when it is rendered (a render error, shown per template), so a bad template never
//! makes its service file refused. Locating a failed check in the file is the caller's, with
//! `toml_span::line_of_array_field`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::toml_span::de_duration;

/// One `[[templates]]` block as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateFile {
    /// The Tera source, relative to the file that holds the block.
    pub source: PathBuf,
    /// Where the rendered output goes.
    pub dest: PathBuf,
    /// Command run with the new file in place; a failure puts the previous file back.
    #[serde(default)]
    pub check: Option<String>,
    /// Debounce bounds.
    #[serde(default)]
    pub wait: WaitFile,
    /// File mode of `dest`, octal (`"0644"`).
    #[serde(default)]
    pub mode: Option<String>,
    /// Reload command; only at the top level of `agent.toml` (a service's templates use its
    /// `scripts.reload`).
    #[serde(default)]
    pub command: Option<String>,
}

/// `wait = { min = "100ms", max = "2s" }` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WaitFile {
    /// Quiet period.
    #[serde(deserialize_with = "de_duration")]
    pub min: Duration,
    /// Longest delay after the first change.
    #[serde(deserialize_with = "de_duration")]
    pub max: Duration,
}

impl Default for WaitFile {
    fn default() -> Self {
        WaitFile {
            min: DEFAULT_WAIT_MIN,
            max: DEFAULT_WAIT_MAX,
        }
    }
}

/// Default quiet period before a render (`wait.min`).
pub const DEFAULT_WAIT_MIN: Duration = Duration::from_millis(100);
/// Default cap on the delay of a render after the first change (`wait.max`).
pub const DEFAULT_WAIT_MAX: Duration = Duration::from_secs(1);
/// Mode of a new `dest` when the block sets none and no previous file exists.
pub const DEFAULT_MODE: u32 = 0o644;

/// One template, checked, with absolute paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSpec {
    /// The Tera source file.
    pub source: PathBuf,
    /// The rendered file.
    pub dest: PathBuf,
    /// The check command, run by `/bin/sh -c` in the block's directory.
    pub check: Option<String>,
    /// Quiet period after a change before rendering.
    pub wait_min: Duration,
    /// Longest delay of a render after the first change.
    pub wait_max: Duration,
    /// File mode of `dest`; `None` keeps the previous file's (0644 for a new one).
    pub mode: Option<u32>,
    /// Top-level reload command (service templates: `None`).
    pub command: Option<String>,
    /// A hash of the source's content when checked, so that an edited template counts as a
    /// changed definition and is compiled again.
    pub digest: u64,
}

/// Which kind of file holds the block; decides whether `command` is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// A service description file: the service's `scripts.reload` reloads.
    Service,
    /// `agent.toml`: the block's own `command` reloads.
    Agent,
}

impl TemplateFile {
    /// Checks the block, resolving paths against `dir`; an error is `(key, message)` with the
    /// key inside the block (`wait.max`, `source`).
    pub fn check(
        &self,
        dir: &Path,
        holder: Holder,
    ) -> Result<TemplateSpec, (&'static str, String)> {
        let source =
            std::path::absolute(dir.join(&self.source)).unwrap_or_else(|_| dir.join(&self.source));
        if source.is_dir() {
            return Err(("source", format!("{} is not a file", source.display())));
        }
        let content = std::fs::read(&source).map_err(|e| {
            (
                "source",
                format!("{} cannot be read: {e}", source.display()),
            )
        })?;
        let digest = {
            use std::hash::{Hash as _, Hasher as _};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            content.hash(&mut h);
            h.finish()
        };
        let dest =
            std::path::absolute(dir.join(&self.dest)).unwrap_or_else(|_| dir.join(&self.dest));
        if dest.file_name().is_none() || dest.parent().is_none() {
            return Err(("dest", format!("{} names no file", dest.display())));
        }
        if dest == source {
            return Err(("dest", "must not be the source file".into()));
        }
        if self.check.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return Err(("check", "must not be empty".into()));
        }
        if self.wait.max < self.wait.min {
            return Err(("wait.max", "must not be shorter than wait.min".into()));
        }
        let mode = self
            .mode
            .as_deref()
            .map(parse_mode)
            .transpose()
            .map_err(|m| ("mode", m))?;
        let command = match (holder, &self.command) {
            (Holder::Service, Some(_)) => {
                return Err((
                    "command",
                    "not allowed in a service file: the service's scripts.reload runs after its templates".into(),
                ));
            }
            (Holder::Agent, Some(c)) if c.trim().is_empty() => {
                return Err(("command", "must not be empty".into()));
            }
            (_, c) => c.clone(),
        };
        Ok(TemplateSpec {
            source,
            dest,
            check: self.check.clone(),
            wait_min: self.wait.min,
            wait_max: self.wait.max,
            mode,
            command,
            digest,
        })
    }
}

/// An octal file mode such as `"0644"` or `"640"`, at most `0o7777`.
fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.trim();
    let ok = !digits.is_empty()
        && digits.len() <= 5
        && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
    let value = ok.then(|| u32::from_str_radix(digits, 8).ok()).flatten();
    match value {
        Some(v) if v <= 0o7777 => Ok(v),
        _ => Err(format!("{s:?} is not an octal file mode such as \"0644\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(text: &str) -> TemplateFile {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn the_issue_block_checks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("upstream.conf.tera"), "x").unwrap();
        let b = block(
            r#"
source = "upstream.conf.tera"
dest = "/etc/nginx/conf.d/hotel-upstream.conf"
check = "nginx -t -q"
wait = { min = "100ms", max = "2s" }
mode = "0644"
"#,
        );
        let s = b.check(dir.path(), Holder::Service).unwrap();
        assert_eq!(s.source, dir.path().join("upstream.conf.tera"));
        assert_eq!(s.wait_max, Duration::from_secs(2));
        assert_eq!(s.mode, Some(0o644));
        assert_eq!(s.command, None);
    }

    #[test]
    fn bad_blocks_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.tera"), "x").unwrap();
        let cases = [
            (
                "source = \"nope.tera\"\ndest = \"/tmp/x\"\n",
                Holder::Service,
                "source",
            ),
            (
                "source = \"t.tera\"\ndest = \"/tmp/x\"\nmode = \"0999\"\n",
                Holder::Service,
                "mode",
            ),
            (
                "source = \"t.tera\"\ndest = \"/tmp/x\"\nwait = { min = \"2s\", max = \"1s\" }\n",
                Holder::Service,
                "wait.max",
            ),
            (
                "source = \"t.tera\"\ndest = \"/tmp/x\"\ncommand = \"x\"\n",
                Holder::Service,
                "command",
            ),
            (
                "source = \"t.tera\"\ndest = \"/tmp/x\"\ncheck = \" \"\n",
                Holder::Agent,
                "check",
            ),
        ];
        for (text, holder, key) in cases {
            let e = block(text).check(dir.path(), holder).unwrap_err();
            assert_eq!(e.0, key, "{text}: {}", e.1);
        }
        let top = block("source = \"t.tera\"\ndest = \"out\"\ncommand = \"true\"\n");
        let s = top.check(dir.path(), Holder::Agent).unwrap();
        assert_eq!(s.dest, dir.path().join("out"));
        assert_eq!(s.command.as_deref(), Some("true"));
    }
}
