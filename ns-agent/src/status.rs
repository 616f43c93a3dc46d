//! What the agent knows about its services right now: the board the status API serves.
//!
//! Each lifecycle writes its own entry (state, last check, failures); the directory loader
//! writes the file errors. [`Board::report`] puts it together with the store contact into the
//! JSON of `GET /v1/agent/status`. Serving it is `http_api`'s; the table of `ns-agent status`
//! is `cli`'s.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::registrar::Contact;
use crate::service_file::ServiceFileError;
use crate::supervisor::Outcome;

/// A service's state as the status API names it; the same type the agent's status record in
/// the store carries (`ns_core::AgentServiceState`), so both show one set of names.
pub use ns_core::AgentServiceState as State;

/// The last health check of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastCheck {
    /// Exit code; `null` when killed at the timeout or not started.
    pub exit: Option<i32>,
    /// The last 4 KiB of its output.
    pub output: String,
    /// When it finished, RFC 3339 UTC.
    pub at: String,
    /// How long it ran, in milliseconds.
    pub duration_ms: u64,
}

/// A file error as the status API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileError {
    /// The description file.
    pub file: PathBuf,
    /// The line at fault, when known.
    pub line: Option<usize>,
    /// The field at fault.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// One service in `GET /v1/agent/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// The service name.
    pub name: String,
    /// Its instance id; `null` for a file that never had a good definition.
    pub instance_id: Option<String>,
    /// Its state.
    pub state: State,
    /// Its last health check.
    pub last_check: Option<LastCheck>,
    /// Consecutive failed checks.
    pub failures: u32,
    /// The error of its description file, while the file is bad (the last good definition
    /// keeps running).
    pub error: Option<FileError>,
    /// The operator's reason, while in maintenance.
    pub maintenance_reason: Option<String>,
    /// Output of the last `start`/`stop` run that failed, if any.
    pub script_error: Option<String>,
}

/// `GET /v1/agent/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// This host's node name.
    pub node: String,
    /// This host's datacenter.
    pub datacenter: String,
    /// Contact with the store.
    pub store: StoreContact,
    /// Every service, by name.
    pub services: Vec<ServiceStatus>,
    /// The naming mirror templates render from.
    #[serde(default)]
    pub mirror: Option<MirrorView>,
    /// Every template, by destination.
    #[serde(default)]
    pub templates: Vec<TemplateStatus>,
    /// The local DNS; `null` when the config asks for none.
    #[serde(default)]
    pub dns: Option<crate::dnsd::stats::DnsView>,
}

/// The mirror part of [`Report`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorView {
    /// Whether the mirror completed a listing and its last exchange with the store succeeded.
    pub synced: bool,
    /// The store revision it is current up to.
    pub revision: u64,
    /// How many listings of `/ns/` it made (0: templates have not rendered yet).
    pub listings: u64,
    /// Milliseconds since the store last answered it.
    pub staleness_ms: Option<u64>,
    /// Its last error while not synced.
    pub last_error: Option<String>,
}

/// One template in `GET /v1/agent/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateStatus {
    /// The service whose file declares it; `null` for a template of `agent.toml`.
    pub service: Option<String>,
    /// The Tera source.
    pub source: PathBuf,
    /// The rendered file.
    pub dest: PathBuf,
    /// When its output last went to (or already was on) disk, RFC 3339 UTC.
    pub last_render: Option<String>,
    /// The store revision of that output.
    pub revision: Option<u64>,
    /// How many times a new output was installed.
    pub installs: u64,
    /// The last error (render, check, write or reload), cleared by the next good render.
    pub last_error: Option<TemplateError>,
}

/// Why a template's last render did not go in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateError {
    /// `render`, `write`, `check` or `reload`.
    pub stage: String,
    /// The whole message (`file:line:column: message` for a render error).
    pub message: String,
    /// The template file, for a render error.
    pub file: Option<PathBuf>,
    /// Its 1-based line, when known.
    pub line: Option<usize>,
    /// Its 1-based column, when known.
    pub column: Option<usize>,
}

/// The store part of [`Report`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreContact {
    /// Whether the last store call succeeded.
    pub connected: bool,
    /// The store revision last seen.
    pub revision: u64,
    /// Milliseconds since the last successful store call.
    pub staleness_ms: Option<u64>,
    /// The agent's lease.
    pub lease: Option<u64>,
    /// The last store error while not connected.
    pub last_error: Option<String>,
}

impl From<Contact> for StoreContact {
    fn from(c: Contact) -> Self {
        StoreContact {
            connected: c.connected,
            revision: c.revision,
            staleness_ms: c.staleness_ms,
            lease: c.lease,
            last_error: c.last_error,
        }
    }
}

/// The live entries, one per service, plus the bad files without a service.
#[derive(Debug, Default)]
pub struct Board {
    services: Mutex<BTreeMap<String, ServiceStatus>>,
    orphans: Mutex<Vec<ServiceStatus>>,
    templates: Mutex<BTreeMap<PathBuf, TemplateStatus>>,
}

impl Board {
    /// Creates or changes the entry of `name`.
    pub fn update(&self, name: &str, f: impl FnOnce(&mut ServiceStatus)) {
        let mut map = lock(&self.services);
        let entry = map.entry(name.to_owned()).or_insert_with(|| ServiceStatus {
            name: name.to_owned(),
            instance_id: None,
            state: State::Starting,
            last_check: None,
            failures: 0,
            error: None,
            maintenance_reason: None,
            script_error: None,
        });
        f(entry);
    }

    /// Drops the entry of a service that was removed.
    pub fn remove(&self, name: &str) {
        lock(&self.services).remove(name);
    }

    /// Records the file errors of the last scan: each goes on its running service if there is
    /// one, else into an `error` entry of its own.
    pub fn set_file_errors(&self, errors: &[(Option<String>, ServiceFileError)]) {
        let mut map = lock(&self.services);
        for s in map.values_mut() {
            s.error = None;
        }
        let mut orphans = Vec::new();
        for (running, e) in errors {
            let view = FileError {
                file: e.file.clone(),
                line: e.line,
                field: e.field.clone(),
                message: e.message.clone(),
            };
            if let Some(s) = running.as_ref().and_then(|n| map.get_mut(n)) {
                s.error = Some(view);
                continue;
            }
            let name = e.service.clone().unwrap_or_else(|| {
                e.file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
            orphans.push(ServiceStatus {
                name,
                instance_id: None,
                state: State::Error,
                last_check: None,
                failures: 0,
                error: Some(view),
                maintenance_reason: None,
                script_error: None,
            });
        }
        *lock(&self.orphans) = orphans;
    }

    /// Creates or changes the entry of the template rendering to `dest`.
    pub fn update_template(
        &self,
        dest: &std::path::Path,
        fresh: impl FnOnce() -> TemplateStatus,
        f: impl FnOnce(&mut TemplateStatus),
    ) {
        let mut map = lock(&self.templates);
        f(map.entry(dest.to_owned()).or_insert_with(fresh));
    }

    /// Drops the entries of templates no longer declared.
    pub fn retain_templates(&self, keep: impl Fn(&std::path::Path) -> bool) {
        lock(&self.templates).retain(|d, _| keep(d));
    }

    /// Every template's entry, by destination.
    pub fn templates(&self) -> Vec<TemplateStatus> {
        lock(&self.templates).values().cloned().collect()
    }

    /// Every service's entry, running ones first by name, then the bad files.
    pub fn services(&self) -> Vec<ServiceStatus> {
        let mut out: Vec<ServiceStatus> = lock(&self.services).values().cloned().collect();
        out.extend(lock(&self.orphans).iter().cloned());
        out
    }
}

impl LastCheck {
    /// The check record of one run that finished now.
    pub fn of(o: &Outcome) -> LastCheck {
        LastCheck {
            exit: o.exit,
            output: o.output.clone(),
            at: rfc3339(SystemTime::now()),
            duration_ms: u64::try_from(o.duration.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `2026-12-02T15:04:05.123Z` for a point in time (UTC, millisecond precision).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Year, month, day of a count of days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_error(file: &str, service: Option<&str>) -> ServiceFileError {
        ServiceFileError {
            file: PathBuf::from(file),
            line: Some(3),
            field: "port".into(),
            message: "invalid type".into(),
            service: service.map(str::to_owned),
        }
    }

    #[test]
    fn file_errors_go_on_their_running_service_or_stand_alone() {
        let board = Board::default();
        board.update("web", |s| s.state = State::Passing);
        board.set_file_errors(&[
            (Some("web".into()), file_error("/s/web.toml", Some("web"))),
            (None, file_error("/s/db.toml", Some("db"))),
            (None, file_error("/s/junk.toml", None)),
        ]);
        let all = board.services();
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["web", "db", "junk"]);
        assert_eq!(
            all[0].state,
            State::Passing,
            "the last good definition keeps running"
        );
        assert_eq!(all[0].error.as_ref().map(|e| e.line), Some(Some(3)));
        assert_eq!(
            (all[1].state, all[1].instance_id.clone()),
            (State::Error, None)
        );
        // A fixed file clears the error.
        board.set_file_errors(&[]);
        let all = board.services();
        assert_eq!(all.len(), 1);
        assert!(all[0].error.is_none());
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_796_225_045_123);
        assert_eq!(rfc3339(t), "2026-12-02T15:24:05.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }
}
