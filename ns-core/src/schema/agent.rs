//! [`AgentRecord`]: the status record an agent keeps at `/ns/agents/NODE` on its own lease.
//!
//! The record says which node and datacenter the agent runs in, how current its mirror is, and
//! the state and last check of each of its services, so the console and `pyxis agents` can show
//! every agent at a glance. It is not naming data: routing and the mirror's catalog never read
//! it (the mirror skips `/ns/agents/` keys, see [`crate::keys::agent_node`]). When and how often
//! an agent writes it is the agent's business (`ns-agent`'s `publish`); the store's
//! `PUT /v1/agents/NODE` checks it with [`AgentRecord::from_json`].

use serde::{Deserialize, Serialize};

use crate::error::{ValidationError, from_json};
use crate::name::{DcName, InstanceId, NodeName};

/// Most bytes of a check's output a record carries (its tail).
pub const OUTPUT_LIMIT: usize = 512;
/// Most services one record lists.
pub const MAX_SERVICES: usize = 1024;

/// An agent's status record, stored at `/ns/agents/NODE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentRecord {
    /// The agent's node name; the last segment of the key.
    pub node: NodeName,
    /// The datacenter the agent runs in.
    pub datacenter: DcName,
    /// The agent's version (its crate version): 1..=64 characters of `[A-Za-z0-9._+-]`.
    pub version: String,
    /// When the agent process started, RFC 3339.
    pub started_at: String,
    /// When this record was written, RFC 3339.
    pub published_at: String,
    /// The store revision the agent's mirror was current up to when it wrote the record.
    pub mirror_revision: u64,
    /// Milliseconds since the agent's mirror last heard from the store, when it wrote the
    /// record; `null` if it never had.
    pub staleness_ms: Option<u64>,
    /// Whether the agent's mirror was synced and its last store call succeeded.
    pub store_connected: bool,
    /// The agent's services, by name; at most [`MAX_SERVICES`].
    pub services: Vec<AgentService>,
}

/// One service of an [`AgentRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentService {
    /// The service's name as its description file gives it (or the file's name when the file
    /// never parsed): 1..=253 characters without control characters.
    pub name: String,
    /// Its instance id; `null` for a file that never had a good definition.
    pub instance_id: Option<InstanceId>,
    /// Its lifecycle state.
    pub state: AgentServiceState,
    /// Its last health check, if one ran.
    pub last_check: Option<AgentCheck>,
}

/// A service's lifecycle state on its agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentServiceState {
    /// Started, waiting for enough passing checks before its first registration.
    Starting,
    /// Registered and passing.
    Passing,
    /// Registered with a warning (still routed).
    Warning,
    /// Registered as critical (not routed).
    Critical,
    /// Taken out of traffic by an operator.
    Maintenance,
    /// Being deregistered, drained and stopped.
    Stopping,
    /// Its description file is bad and there is no good definition to run.
    Error,
}

impl AgentServiceState {
    /// The state's name as it appears in JSON (`passing`, `critical`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AgentServiceState::Starting => "starting",
            AgentServiceState::Passing => "passing",
            AgentServiceState::Warning => "warning",
            AgentServiceState::Critical => "critical",
            AgentServiceState::Maintenance => "maintenance",
            AgentServiceState::Stopping => "stopping",
            AgentServiceState::Error => "error",
        }
    }
}

/// The last health check of an [`AgentService`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentCheck {
    /// Exit code; `null` when killed at the timeout or not started.
    pub exit: Option<i32>,
    /// The tail of its output, at most [`OUTPUT_LIMIT`] bytes (see [`output_tail`]).
    pub output: String,
    /// When it finished, RFC 3339.
    pub at: String,
    /// How long it ran, in milliseconds.
    pub duration_ms: u64,
}

impl AgentRecord {
    /// Read and validate a record from JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ValidationError> {
        from_json(bytes, Self::validate)
    }

    /// Check every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        super::check_version("version", &self.version, false)?;
        check_timestamp("started_at", &self.started_at)?;
        check_timestamp("published_at", &self.published_at)?;
        if self.services.len() > MAX_SERVICES {
            return Err(ValidationError::new(
                "services",
                format!("at most {MAX_SERVICES} services allowed"),
            ));
        }
        for (i, s) in self.services.iter().enumerate() {
            s.validate()
                .map_err(|e| e.within(&format!("services[{i}]")))?;
        }
        Ok(())
    }
}

impl AgentService {
    fn validate(&self) -> Result<(), ValidationError> {
        let len = self.name.chars().count();
        if !(1..=253).contains(&len) || self.name.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "name",
                "must be 1..=253 characters without control characters",
            ));
        }
        if let Some(c) = &self.last_check {
            c.validate().map_err(|e| e.within("last_check"))?;
        }
        Ok(())
    }
}

impl AgentCheck {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.output.len() > OUTPUT_LIMIT {
            return Err(ValidationError::new(
                "output",
                format!("must be at most {OUTPUT_LIMIT} bytes long"),
            ));
        }
        check_timestamp("at", &self.at)
    }
}

/// The last [`OUTPUT_LIMIT`] bytes of `output`, cut at a character boundary: the end of a
/// check's output is where the reason of a failure usually is.
pub fn output_tail(output: &str) -> &str {
    if output.len() <= OUTPUT_LIMIT {
        return output;
    }
    let mut start = output.len() - OUTPUT_LIMIT;
    while !output.is_char_boundary(start) {
        start += 1;
    }
    &output[start..]
}

/// An RFC 3339 date and time: `YYYY-MM-DDTHH:MM:SS`, optional fraction, `Z` or `+HH:MM`.
fn check_timestamp(field: &str, s: &str) -> Result<(), ValidationError> {
    if is_rfc3339(s.as_bytes()) {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            format!("{s:?} is not an RFC 3339 time such as 2026-12-03T12:00:00.000Z"),
        ))
    }
}

fn is_rfc3339(b: &[u8]) -> bool {
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let num = |r: std::ops::Range<usize>| {
        b.get(r)
            .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u32>().ok())
            .unwrap_or(u32::MAX)
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let date_time = digits(0..4)
        && at(4, b'-')
        && digits(5..7)
        && at(7, b'-')
        && digits(8..10)
        && matches!(b.get(10), Some(b'T' | b't'))
        && digits(11..13)
        && at(13, b':')
        && digits(14..16)
        && at(16, b':')
        && digits(17..19);
    if !date_time
        || !(1..=12).contains(&num(5..7))
        || !(1..=31).contains(&num(8..10))
        || num(11..13) > 23
        || num(14..16) > 59
        || num(17..19) > 60
    {
        return false;
    }
    let mut i = 19;
    if at(i, b'.') {
        let fraction = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&fraction) {
            return false;
        }
        i += 1 + fraction;
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            b.len() == i + 6
                && digits(i + 1..i + 3)
                && at(i + 3, b':')
                && digits(i + 4..i + 6)
                && num(i + 1..i + 3) <= 23
                && num(i + 4..i + 6) <= 59
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
