//! Where things sit in a TOML document: byte offsets to lines, keys to lines, and the
//! `file:line: field: message` form every config and service-file error takes.
//!
//! The `toml` crate reports spans for syntax and type errors but not for the checks this crate
//! runs after parsing (a port of 0, a bad DNS label); those find their line by key here. It does
//! not parse TOML itself beyond recognising `[table]` headers and `key =` lines.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The 1-based line of byte offset `offset` in `text`.
pub(crate) fn line_of_offset(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The 1-based line where `field` (`port`, `health.interval`, `alert.webhook`) is set, if it is.
///
/// A dotted field is looked up as key `b` under a `[a]` header, or as an inline `a = { b = .. }`
/// / `a.b = ..` line at the top level.
pub(crate) fn line_of_field(text: &str, field: &str) -> Option<usize> {
    let field = field.split('[').next().unwrap_or(field);
    let (table, key) = match field.rsplit_once('.') {
        Some((t, k)) => (t, k),
        None => ("", field),
    };
    let mut current = String::new();
    let mut fallback = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(header) = line.strip_prefix('[') {
            current = header.trim_end_matches(']').trim().to_owned();
            continue;
        }
        let Some((lhs, _)) = line.split_once('=') else {
            continue;
        };
        let lhs = lhs.trim().trim_matches('"');
        if current == table && lhs == key {
            return Some(i + 1);
        }
        // `meta = { .. }`, `health.interval = ..`, or the table's own key for a field inside it.
        if current.is_empty() && !table.is_empty() && (lhs == table || lhs == field) {
            fallback = Some(i + 1);
        }
    }
    fallback
}

/// The field a `toml` error is about: the key on the line of its span, prefixed with the table
/// the line sits in, or the name in a "missing field `x`" message.
pub(crate) fn field_of_error(text: &str, offset: Option<usize>, message: &str) -> String {
    if let Some(name) = message
        .split("missing field `")
        .nth(1)
        .and_then(|r| r.split('`').next())
    {
        let table = offset.map(|o| table_of_line(text, o)).unwrap_or_default();
        return join(&table, name);
    }
    if let Some(name) = message
        .split("unknown field `")
        .nth(1)
        .and_then(|r| r.split('`').next())
    {
        let table = offset.map(|o| table_at(text, o)).unwrap_or_default();
        return join(&table, name);
    }
    let Some(offset) = offset else {
        return String::new();
    };
    let line_no = line_of_offset(text, offset);
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    let table = table_at(text, offset);
    match line.split_once('=') {
        Some((lhs, _)) if !line.starts_with('[') => join(&table, lhs.trim().trim_matches('"')),
        _ => table,
    }
}

/// `file:line: field: message`, leaving out the line and field when they are unknown.
pub(crate) fn located(
    file: &std::path::Path,
    line: Option<usize>,
    field: &str,
    message: &str,
) -> String {
    let mut out = file.display().to_string();
    if let Some(l) = line {
        out.push_str(&format!(":{l}"));
    }
    if !field.is_empty() {
        out.push_str(&format!(": {field}"));
    }
    format!("{out}: {message}")
}

/// Reads `"10s"`, `"250ms"`, `"2m"`, `"1h"` (a whole number and a unit) as a [`Duration`].
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as \"10s\" or \"250ms\""))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        // Saturating: a huge number is a huge duration, never an overflow panic.
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => {
            return Err(format!(
                "{s:?} has no unit; use ms, s, m or h (\"10s\", \"250ms\")"
            ));
        }
    };
    Ok(d)
}

/// Serde adapter for [`parse_duration`] fields.
pub(crate) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// The table of the line at `offset`: its own `[header]` if it is one, else the one in force.
fn table_of_line(text: &str, offset: usize) -> String {
    let line_no = line_of_offset(text, offset);
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    if line.starts_with('[') {
        let upto = text.lines().take(line_no).collect::<Vec<_>>().join("\n");
        header_name(&upto, line)
    } else {
        table_at(text, offset)
    }
}

/// The `[table]` header in force at `offset`, empty at the top level.
fn table_at(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let header = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .unwrap_or_default();
    header_name(before, header)
}

/// The table a header line opens: `a` for `[a]`, `a[N]` for the N-th (0-based) `[[a]]` of the
/// text up to and including it.
fn header_name(upto: &str, header: &str) -> String {
    if let Some(inner) = header.strip_prefix("[[") {
        let name = inner.split("]]").next().unwrap_or("").trim();
        let index = upto
            .lines()
            .filter(|l| array_header(l) == Some(name))
            .count()
            .saturating_sub(1);
        return format!("{name}[{index}]");
    }
    header
        .strip_prefix('[')
        .map(|h| h.split(']').next().unwrap_or("").trim().to_owned())
        .unwrap_or_default()
}

/// The name of an array-of-tables header line (`[[templates]]`), if it is one.
fn array_header(line: &str) -> Option<&str> {
    let inner = line.trim().strip_prefix("[[")?;
    Some(inner.split("]]").next()?.trim())
}

/// The 1-based line where `key` (`source`, `wait.max`) is set in the `index`-th (0-based)
/// `[[array]]` block, or the block's header line when the key is not written there.
pub(crate) fn line_of_array_field(
    text: &str,
    array: &str,
    index: usize,
    key: &str,
) -> Option<usize> {
    let mut seen = 0;
    let mut header = None;
    let top = key.split('.').next().unwrap_or(key);
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            if header.is_some() {
                break;
            }
            if array_header(line) == Some(array) {
                if seen == index {
                    header = Some(i + 1);
                }
                seen += 1;
            }
            continue;
        }
        if header.is_none() {
            continue;
        }
        if let Some((lhs, _)) = line.split_once('=') {
            let lhs = lhs.trim().trim_matches('"');
            if lhs == key || lhs == top {
                return Some(i + 1);
            }
        }
    }
    header
}

fn join(table: &str, key: &str) -> String {
    if table.is_empty() {
        key.to_owned()
    } else {
        format!("{table}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str =
        "name = \"web\"\nport = 80\nmeta = { a = \"b\" }\n[health]\ninterval = \"2s\"\n";

    #[test]
    fn finds_fields_by_table() {
        assert_eq!(line_of_field(DOC, "port"), Some(2));
        assert_eq!(line_of_field(DOC, "health.interval"), Some(5));
        assert_eq!(line_of_field(DOC, "meta.a"), Some(3));
        assert_eq!(line_of_field(DOC, "tags[0]"), None);
        assert_eq!(line_of_field(DOC, "interval"), None);
    }

    #[test]
    fn names_the_field_of_an_error() {
        let at = DOC.find("\"2s\"").unwrap();
        assert_eq!(
            field_of_error(DOC, Some(at), "invalid type"),
            "health.interval"
        );
        assert_eq!(field_of_error(DOC, None, "missing field `port`"), "port");
        assert_eq!(
            field_of_error(DOC, Some(at), "unknown field `intervl`, expected"),
            "health.intervl"
        );
    }

    #[test]
    fn array_tables() {
        let doc = "name = \"w\"\n[[templates]]\nsource = \"a\"\n[[templates]]\nsource = \"b\"\nwait = { min = \"1s\" }\n[scripts]\nhealth = \"x\"\n";
        assert_eq!(line_of_array_field(doc, "templates", 1, "source"), Some(5));
        assert_eq!(
            line_of_array_field(doc, "templates", 1, "wait.max"),
            Some(6)
        );
        assert_eq!(line_of_array_field(doc, "templates", 0, "dest"), Some(2));
        assert_eq!(line_of_array_field(doc, "templates", 2, "dest"), None);
        let at = doc.find("\"b\"").unwrap();
        assert_eq!(
            field_of_error(doc, Some(at), "invalid type"),
            "templates[1].source"
        );
        let at = doc.find("[[templates]]\nsource = \"b").unwrap();
        assert_eq!(
            field_of_error(doc, Some(at), "missing field `dest`"),
            "templates[1].dest"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5 days").is_err());
    }
}
