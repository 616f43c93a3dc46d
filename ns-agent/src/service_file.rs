//! Service description files (`services_dir/*.toml`): their contract, loading and checks.
//!
//! Loading collects errors instead of stopping: [`load_dir`] returns every good
//! [`ServiceSpec`] and a [`ServiceFileError`] (file, line, field, message) for every bad file,
//! so one broken file never hides the others. A [`ServiceSpec`] is checked in full: the
//! instance it registers passes `ns_core::Instance::validate`, and every script given as a path
//! exists and is executable. Running the scripts is `supervisor`'s job; the lifecycle is
//! `lifecycle`'s.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ns_core::{DcName, Health, Instance, InstanceId, ServiceName};
use serde::{Deserialize, Serialize};

use crate::render::spec::{Holder, TemplateFile, TemplateSpec};
use crate::toml_span::{
    de_duration, field_of_error, line_of_array_field, line_of_field, line_of_offset,
};

/// One service, as its description file defines it, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The file it came from.
    pub path: PathBuf,
    /// The service's name (dotted DNS labels).
    pub name: ServiceName,
    /// The instance id the file sets, if any; see [`ServiceSpec::instance_id`].
    pub id: Option<InstanceId>,
    /// The port it listens on.
    pub port: u16,
    /// Its address; the agent's `advertise` address when absent.
    pub address: Option<IpAddr>,
    /// Its version (may be empty).
    pub version: String,
    /// Its routing weight.
    pub weight: u16,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its metadata.
    pub meta: BTreeMap<String, String>,
    /// Health check timing.
    pub health: HealthSpec,
    /// The four lifecycle scripts.
    pub scripts: Scripts,
    /// Its `[[templates]]`, rendered from the mirror; `scripts.reload` runs after them.
    pub templates: Vec<TemplateSpec>,
}

/// When and how strictly the health script runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSpec {
    /// Time between two checks.
    pub interval: Duration,
    /// Time limit of one check; a check killed at it is critical.
    pub timeout: Duration,
    /// Consecutive failures before the instance turns critical.
    pub fail_after: u32,
    /// Consecutive passes before it is registered, and before a critical one passes again.
    pub pass_after: u32,
}

/// The lifecycle scripts of a service; only `health` is required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scripts {
    /// Starts the service (and returns; the service keeps running in the background).
    pub start: Option<Script>,
    /// Stops it.
    pub stop: Option<Script>,
    /// Checks it: exit 0 passing, 1 warning, anything else critical.
    pub health: Script,
    /// Makes it re-read its configuration.
    pub reload: Option<Script>,
}

/// How one script is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// An executable file, executed directly (given with a `/` and no spaces, resolved against
    /// the description file's directory).
    Path(PathBuf),
    /// Anything else: a command run by `/bin/sh -c`.
    Shell(String),
}

/// Why one description file was refused: `file:line: field: message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}", crate::toml_span::located(file, *line, field, message))]
pub struct ServiceFileError {
    /// The file.
    pub file: PathBuf,
    /// The line at fault, when known.
    pub line: Option<usize>,
    /// The field at fault (`port`, `health.timeout`, `scripts.start`); empty when the file as a
    /// whole is unreadable.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// The `name` the file gives, when it can be read, so status can show the error on the
    /// service it belongs to.
    #[serde(skip)]
    pub service: Option<String>,
}

/// The file's raw contract, before checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceFile {
    name: String,
    #[serde(default)]
    id: Option<String>,
    port: u16,
    #[serde(default)]
    address: Option<IpAddr>,
    #[serde(default)]
    version: String,
    #[serde(default = "default_weight")]
    weight: u16,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    meta: BTreeMap<String, String>,
    #[serde(default)]
    health: HealthFile,
    scripts: ScriptsFile,
    #[serde(default)]
    templates: Vec<TemplateFile>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct HealthFile {
    #[serde(deserialize_with = "de_duration")]
    interval: Duration,
    #[serde(deserialize_with = "de_duration")]
    timeout: Duration,
    fail_after: u32,
    pass_after: u32,
}

impl Default for HealthFile {
    fn default() -> Self {
        HealthFile {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            fail_after: 3,
            pass_after: 2,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptsFile {
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    stop: Option<String>,
    health: String,
    #[serde(default)]
    reload: Option<String>,
}

fn default_weight() -> u16 {
    100
}

impl ServiceSpec {
    /// The instance id: the file's `id`, else `NODE-NAME`; stable across restarts. An error
    /// (a node and name too long together) names the `id` field, which the file can then set.
    pub fn instance_id(&self, node: &str) -> Result<InstanceId, ServiceFileError> {
        if let Some(id) = &self.id {
            return Ok(id.clone());
        }
        InstanceId::parse(&format!("{node}-{}", self.name)).map_err(|e| ServiceFileError {
            file: self.path.clone(),
            line: None,
            field: "id".into(),
            message: format!("the default id {node}-{}: {e}; set `id`", self.name),
            service: Some(self.name.to_string()),
        })
    }

    /// The instance to register for this service on `node` in `dc`.
    pub fn instance(
        &self,
        node: &str,
        dc: &DcName,
        advertise: IpAddr,
        status: Health,
        extra_meta: &[(&str, &str)],
    ) -> Instance {
        let mut meta = self.meta.clone();
        for (k, v) in extra_meta {
            meta.insert((*k).to_owned(), (*v).to_owned());
        }
        Instance {
            address: self.address.unwrap_or(advertise),
            port: self.port,
            datacenter: dc.clone(),
            version: self.version.clone(),
            weight: self.weight,
            tags: self.tags.clone(),
            meta,
            status,
            node: node.to_owned(),
        }
    }

    /// Whether going from `self` to `new` needs the service restarted (port, address, id or the
    /// start/stop scripts changed) rather than a re-registration in place.
    pub fn needs_restart(&self, new: &ServiceSpec) -> bool {
        // Templates are not the lifecycle's: `render::manager` follows them.
        self.port != new.port
            || self.address != new.address
            || self.id != new.id
            || self.scripts.start != new.scripts.start
            || self.scripts.stop != new.scripts.stop
    }

    /// Whether `new` differs from `self` in anything but its templates, which the lifecycle
    /// does not act on.
    pub fn differs_for_lifecycle(&self, new: &ServiceSpec) -> bool {
        let strip = |s: &ServiceSpec| ServiceSpec {
            templates: Vec::new(),
            ..s.clone()
        };
        strip(self) != strip(new)
    }

    /// The directory scripts run in: the description file's.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }
}

/// Reads and checks one description file.
pub fn load_file(path: &Path) -> Result<ServiceSpec, ServiceFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| ServiceFileError {
        file: path.to_owned(),
        line: None,
        field: String::new(),
        message: format!("cannot read: {e}"),
        service: None,
    })?;
    parse(&text, path)
}

/// Parses and checks description file `text`, read from `path` (scripts resolve against its
/// directory).
pub fn parse(text: &str, path: &Path) -> Result<ServiceSpec, ServiceFileError> {
    let service = toml::from_str::<toml::Table>(text)
        .ok()
        .and_then(|t| t.get("name").and_then(|n| n.as_str()).map(str::to_owned));
    let err_at = |field: &str, message: String| ServiceFileError {
        file: path.to_owned(),
        line: line_of_field(text, field),
        field: field.to_owned(),
        message,
        service: service.clone(),
    };
    let raw: ServiceFile = toml::from_str(text).map_err(|e| {
        let offset = e.span().map(|s| s.start);
        ServiceFileError {
            file: path.to_owned(),
            line: offset.map(|o| line_of_offset(text, o)),
            field: field_of_error(text, offset, e.message()),
            message: e.message().trim().to_owned(),
            service: service.clone(),
        }
    })?;
    let name = ServiceName::parse(&raw.name).map_err(|e| err_at("name", e.to_string()))?;
    let id = raw
        .id
        .as_deref()
        .map(InstanceId::parse)
        .transpose()
        .map_err(|e| err_at("id", e.to_string()))?;
    if raw.port == 0 {
        return Err(err_at("port", ns_core::schema::PORT_RANGE.into()));
    }
    let h = &raw.health;
    if h.interval < Duration::from_millis(10) {
        return Err(err_at("health.interval", "must be at least 10ms".into()));
    }
    if h.timeout.is_zero() {
        return Err(err_at("health.timeout", "must be more than 0".into()));
    }
    if h.timeout > h.interval {
        return Err(err_at(
            "health.timeout",
            "must not be longer than health.interval".into(),
        ));
    }
    if h.fail_after == 0 {
        return Err(err_at("health.fail_after", "must be at least 1".into()));
    }
    if h.pass_after == 0 {
        return Err(err_at("health.pass_after", "must be at least 1".into()));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let script = |field: &str, s: &str| -> Result<Script, ServiceFileError> {
        script_of(dir, s).map_err(|m| err_at(field, m))
    };
    let opt = |field: &str, s: &Option<String>| s.as_deref().map(|s| script(field, s)).transpose();
    let scripts = Scripts {
        start: opt("scripts.start", &raw.scripts.start)?,
        stop: opt("scripts.stop", &raw.scripts.stop)?,
        health: script("scripts.health", &raw.scripts.health)?,
        reload: opt("scripts.reload", &raw.scripts.reload)?,
    };
    let mut templates = Vec::with_capacity(raw.templates.len());
    for (i, t) in raw.templates.iter().enumerate() {
        let spec = t
            .check(dir, Holder::Service)
            .map_err(|(key, message)| ServiceFileError {
                file: path.to_owned(),
                line: line_of_array_field(text, "templates", i, key),
                field: format!("templates[{i}].{key}"),
                message,
                service: service.clone(),
            })?;
        templates.push(spec);
    }
    let spec = ServiceSpec {
        path: path.to_owned(),
        name,
        id,
        port: raw.port,
        address: raw.address,
        version: raw.version,
        weight: raw.weight,
        tags: raw.tags,
        meta: raw.meta,
        health: HealthSpec {
            interval: h.interval,
            timeout: h.timeout,
            fail_after: h.fail_after,
            pass_after: h.pass_after,
        },
        scripts,
        templates,
    };
    // The store validates what it is sent; checking the same rules here names the file's line.
    let dc = DcName::parse("dc").map_err(|e| err_at("", e.to_string()))?;
    let probe = spec.instance(
        "node",
        &dc,
        IpAddr::from([127, 0, 0, 1]),
        Health::Passing,
        &[],
    );
    probe.validate().map_err(|e| err_at(&e.field, e.message))?;
    Ok(spec)
}

/// A script string: an executable path (a `/`, no whitespace) or a shell command.
fn script_of(dir: &Path, s: &str) -> Result<Script, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if !s.contains('/') || s.contains(char::is_whitespace) {
        return Ok(Script::Shell(s.to_owned()));
    }
    // Scripts run with their file's directory as the working directory: a relative path
    // would then resolve twice.
    let path = std::path::absolute(dir.join(s)).unwrap_or_else(|_| dir.join(s));
    let meta = std::fs::metadata(&path)
        .map_err(|e| format!("{} does not exist or cannot be read: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{} is not executable", path.display()));
    }
    Ok(Script::Path(path))
}

/// Loads every `*.toml` file in `dir` (hidden files and editor leftovers skipped), in name
/// order. A name defined by two files is an error on one of them: the file in `keep` for that
/// name (the one already running) wins, else the first by file name.
pub fn load_dir(
    dir: &Path,
    keep: &BTreeMap<ServiceName, PathBuf>,
) -> (Vec<ServiceSpec>, Vec<ServiceFileError>) {
    let mut errors = Vec::new();
    let files = match list_files(dir) {
        Ok(f) => f,
        Err(e) => {
            errors.push(ServiceFileError {
                file: dir.to_owned(),
                line: None,
                field: String::new(),
                message: format!("cannot list the directory: {e}"),
                service: None,
            });
            return (Vec::new(), errors);
        }
    };
    let mut specs: Vec<ServiceSpec> = Vec::new();
    for path in files {
        match load_file(&path) {
            Ok(spec) => specs.push(spec),
            Err(e) => errors.push(e),
        }
    }
    // Decide each duplicated name's winner, then refuse the others.
    let mut winner: BTreeMap<ServiceName, PathBuf> = BTreeMap::new();
    for s in &specs {
        let w = winner
            .entry(s.name.clone())
            .or_insert_with(|| s.path.clone());
        if keep.get(&s.name) == Some(&s.path) {
            *w = s.path.clone();
        }
    }
    let (good, dups): (Vec<_>, Vec<_>) = specs
        .into_iter()
        .partition(|s| winner.get(&s.name) == Some(&s.path));
    for d in dups {
        let text = std::fs::read_to_string(&d.path).unwrap_or_default();
        let other = winner.get(&d.name).cloned().unwrap_or_default();
        errors.push(ServiceFileError {
            line: line_of_field(&text, "name"),
            file: d.path,
            field: "name".into(),
            message: format!(
                "service {} is already defined in {}",
                d.name,
                other.display()
            ),
            service: Some(d.name.to_string()),
        });
    }
    (good, errors)
}

/// Loads one file, or every file of a directory, for `ns-agent validate`.
pub fn validate_path(path: &Path) -> (Vec<ServiceSpec>, Vec<ServiceFileError>) {
    if path.is_dir() {
        load_dir(path, &BTreeMap::new())
    } else {
        match load_file(path) {
            Ok(s) => (vec![s], Vec::new()),
            Err(e) => (Vec::new(), vec![e]),
        }
    }
}

/// The description files in `dir`: `*.toml`, not hidden, sorted.
fn list_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with('.') || !name.ends_with(".toml") || !path.is_file() {
            continue;
        }
        out.push(path);
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests;
