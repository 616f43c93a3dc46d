//! [`ValidationError`]: the one error type of the naming model.
//!
//! Every rejection names the field it is about (`instances[2].port`, `groups[1].weight`), so the
//! HTTP API can answer 400 with it as is, and the agent can point at the field of a service file.
//! This module does not decide what is valid; the rules live next to the types in
//! [`crate::name`] and [`crate::schema`].

use std::fmt;

/// A value of the naming model was rejected: which field, and why.
///
/// `Display` reads `field: message`, for example `port: must be 1..=65535`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// Path of the rejected field: `port`, `groups[1].weight`, `overrides.web-1.weight`.
    /// `body` when the input as a whole is unreadable (not JSON, wrong top-level type).
    pub field: String,
    /// What is wrong, lowercase and without a trailing period.
    pub message: String,
}

impl ValidationError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl fmt::Display) -> Self {
        ValidationError {
            field: field.into(),
            message: message.to_string(),
        }
    }

    /// The same error seen from an enclosing value: `port` inside `instances[2]` becomes
    /// `instances[2].port`.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() || self.field == "body" {
            parent.to_owned()
        } else if self.field.starts_with('[') {
            format!("{parent}{}", self.field)
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }
}

/// Why a name ([`crate::ServiceName`], [`crate::DcName`], [`crate::InstanceId`]) was rejected,
/// before we know which field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub(crate) String);

impl NameError {
    /// Attach the field the name was read from.
    pub fn at(self, field: impl Into<String>) -> ValidationError {
        ValidationError::new(field, self.0)
    }
}

/// Parse JSON into `T` and then run its semantic checks; every error names its field.
///
/// Serde errors carry the path where they happened (via `serde_path_to_error`; an unknown field's
/// path already ends in its name). A missing field is reported at the enclosing object, so its
/// name is appended here: `missing field `port`` is about `port`.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    validate: impl FnOnce(&T) -> Result<(), ValidationError>,
) -> Result<T, ValidationError> {
    // Serde would also read a struct from a JSON array, by position; the API takes objects only.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b == b'[') {
        return Err(ValidationError::new("body", "must be a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        // serde_json appends " at line L column C"; the field path says more and the position
        // only helps for syntax errors, where it is kept.
        let message = if inner.is_syntax() || inner.is_eof() {
            message
        } else {
            strip_position(&message).to_owned()
        };
        // `.` is the root and `?` an unknown place (a syntax error before any key).
        let mut field = if path == "." || path == "?" {
            String::new()
        } else {
            path
        };
        if let Some(name) = missing_field(&message) {
            field = if field.is_empty() {
                name.to_owned()
            } else {
                format!("{field}.{name}")
            };
        }
        if field.is_empty() {
            field = "body".to_owned();
        }
        ValidationError { field, message }
    })?;
    validate(&value)?;
    Ok(value)
}

/// `missing field `x`` names a field below the path.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    }
}
