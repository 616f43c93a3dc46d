//! The rules a command must meet before it is proposed, whoever built it.
//!
//! The public handlers check their input field by field (`http::api_v1`, `http::lease`) and
//! `Node::write` runs [`Command::validate`] again before proposing; `/raft/write` runs it on
//! what a peer forwards. So a command that enters the log from either side meets the same
//! rules. Which peer may send which command (`MemberStarted`) is `http::raft_rpc`'s check.

use pyxis_client::api::{MAX_VALUE_BYTES, Role, validate_key};

use super::command::{Command, CompareTarget, Op};

/// Shortest lease TTL accepted: below it a keep-alive round trip could not keep up.
pub const MIN_TTL_MS: u64 = 500;

/// Longest lease TTL accepted (one day).
pub const MAX_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// Most bytes of keys and values one command may carry: a transaction of a few full-size
/// values. The public txn body limit is this too, and its JSON is never shorter than the
/// keys and values it holds.
pub const MAX_COMMAND_BYTES: usize = 4 * MAX_VALUE_BYTES;

/// Why a command may not be proposed; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCommand {
    /// A key breaks the key-space rules (`success[3].key: must start with '/'`).
    #[error("{0}")]
    Key(String),
    /// A value, or the whole command, is over its size limit.
    #[error("{0}")]
    TooLarge(String),
    /// Anything else: a bound on counts or a TTL, a command kind not allowed here.
    #[error("{0}")]
    Invalid(String),
}

impl Command {
    /// Checks this command against the rules the public API enforces: keys, value sizes,
    /// transaction shape (at most `max_txn_ops` compares and ops per branch, `--max-txn-ops`),
    /// lease TTL bounds, and a [`Command::Request`] never nested.
    pub fn validate(&self, max_txn_ops: usize) -> Result<(), InvalidCommand> {
        match self {
            Command::Request { cmd, .. } => match **cmd {
                Command::Request { .. } => Err(InvalidCommand::Invalid(
                    "command: a request must not contain another request".into(),
                )),
                ref inner => inner.validate(max_txn_ops),
            },
            Command::Put { key, value, .. } => {
                check_key("", key)?;
                check_value("value", value.len())
            }
            // The bare root with `prefix` is the whole key space, which the API allows.
            Command::Delete { key, prefix } if *prefix && key == "/" => Ok(()),
            Command::Delete { key, .. } => check_key("", key),
            Command::Txn {
                compare,
                success,
                failure,
            } => {
                for (field, n) in [
                    ("compare", compare.len()),
                    ("success", success.len()),
                    ("failure", failure.len()),
                ] {
                    if n > max_txn_ops {
                        return Err(InvalidCommand::Invalid(format!(
                            "{field}: {n} entries is over the limit of {max_txn_ops} per txn (--max-txn-ops)"
                        )));
                    }
                }
                let mut total = 0usize;
                for (i, c) in compare.iter().enumerate() {
                    check_key(&format!("compare[{i}]"), &c.key)?;
                    total += c.key.len();
                    if let CompareTarget::Value(v) = &c.target {
                        total += v.len();
                    }
                }
                for (branch, ops) in [("success", success), ("failure", failure)] {
                    for (i, op) in ops.iter().enumerate() {
                        let field = format!("{branch}[{i}]");
                        match op {
                            Op::Put { key, value, .. } => {
                                check_key(&field, key)?;
                                check_value(&format!("{field}.value"), value.len())?;
                                total += key.len() + value.len();
                            }
                            Op::Delete { key, .. } | Op::Get { key, .. } => {
                                check_key(&field, key)?;
                                total += key.len();
                            }
                        }
                    }
                }
                if total > MAX_COMMAND_BYTES {
                    return Err(InvalidCommand::TooLarge(format!(
                        "txn: {total} bytes of keys and values is over the limit of {MAX_COMMAND_BYTES}"
                    )));
                }
                Ok(())
            }
            Command::LeaseGrant { ttl_ms } => {
                if (MIN_TTL_MS..=MAX_TTL_MS).contains(ttl_ms) {
                    Ok(())
                } else {
                    Err(InvalidCommand::Invalid(format!(
                        "ttl_ms: must be {MIN_TTL_MS}..={MAX_TTL_MS}, got {ttl_ms}"
                    )))
                }
            }
            Command::LeaseRevoke { .. } | Command::MemberStarted { .. } => Ok(()),
            Command::LeaseGrantOwned { ttl_ms, owner } => {
                Command::LeaseGrant { ttl_ms: *ttl_ms }.validate(max_txn_ops)?;
                check_node("owner", owner)
            }
            Command::AclBootstrap { token } | Command::AclTokenCreate { token } => {
                check_token(token)
            }
            Command::AclTokenRevoke { accessor } => check_hex("accessor", accessor, ACCESSOR_HEX),
            Command::AuditNote { key, before, after } => {
                let long =
                    |v: &Option<String>| v.as_ref().is_some_and(|v| v.len() > MAX_AUDIT_WHAT_BYTES);
                if key.len() > MAX_AUDIT_WHAT_BYTES || long(before) || long(after) {
                    return Err(InvalidCommand::Invalid(format!(
                        "audit note: key, before and after must be at most {MAX_AUDIT_WHAT_BYTES} bytes each"
                    )));
                }
                Ok(())
            }
            Command::Audited { what, cmd, .. } => {
                if what.len() > MAX_AUDIT_WHAT_BYTES {
                    return Err(InvalidCommand::Invalid(format!(
                        "what: {} bytes is over the limit of {MAX_AUDIT_WHAT_BYTES}",
                        what.len()
                    )));
                }
                match **cmd {
                    Command::Request { .. } | Command::Audited { .. } | Command::Anonymous { .. } => {
                        Err(InvalidCommand::Invalid(
                            "command: an audited change must not contain a request or another audited change".into(),
                        ))
                    }
                    ref inner => inner.validate(max_txn_ops),
                }
            }
            Command::Anonymous { cmd } => match **cmd {
                Command::Request { .. } | Command::Audited { .. } | Command::Anonymous { .. } => {
                    Err(InvalidCommand::Invalid(
                        "command: an anonymous change must not contain a request or another wrapper".into(),
                    ))
                }
                ref inner => inner.validate(max_txn_ops),
            },
        }
    }
}

/// Hex digits of a token's accessor (64 bits).
pub const ACCESSOR_HEX: usize = 16;

/// Hex digits of a token's secret hash (sha256).
pub const HASH_HEX: usize = 64;

/// Longest token description accepted.
pub const MAX_DESCRIPTION_BYTES: usize = 256;

/// Longest node name a `register` token or a lease owner may carry.
pub const MAX_NODE_BYTES: usize = 253;

/// Longest method-and-path an audited change may carry.
const MAX_AUDIT_WHAT_BYTES: usize = 4096;

/// A token record's fields: hex ids of the right length, a node exactly for `register`.
fn check_token(t: &super::acl::TokenRecord) -> Result<(), InvalidCommand> {
    check_hex("token.accessor", &t.accessor, ACCESSOR_HEX)?;
    check_hex("token.hash", &t.hash, HASH_HEX)?;
    if t.description.len() > MAX_DESCRIPTION_BYTES || t.description.chars().any(char::is_control) {
        return Err(InvalidCommand::Invalid(format!(
            "description: must be at most {MAX_DESCRIPTION_BYTES} bytes without control characters"
        )));
    }
    match (&t.node, t.role) {
        (Some(node), Role::Register) => check_node("node", node),
        (None, Role::Register) => Err(InvalidCommand::Invalid(
            "node: a register token must be bound to a node (--node)".into(),
        )),
        (Some(_), role) => Err(InvalidCommand::Invalid(format!(
            "node: only a register token is bound to a node, not a {role} token"
        ))),
        (None, _) => Ok(()),
    }
}

/// A node name: 1..=253 bytes of letters, digits, `-`, `_` and `.`.
pub fn check_node(field: &str, node: &str) -> Result<(), InvalidCommand> {
    let ok = !node.is_empty()
        && node.len() <= MAX_NODE_BYTES
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(InvalidCommand::Invalid(format!(
            "{field}: must be 1..={MAX_NODE_BYTES} letters, digits, '-', '_' or '.', got {node:?}"
        )))
    }
}

/// `value` is exactly `len` lowercase hex digits.
fn check_hex(field: &str, value: &str, len: usize) -> Result<(), InvalidCommand> {
    if value.len() == len
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(InvalidCommand::Invalid(format!(
            "{field}: must be {len} lowercase hex digits"
        )))
    }
}

/// `validate_key` with the field it is in; `field` is empty for a command's own key.
fn check_key(field: &str, key: &str) -> Result<(), InvalidCommand> {
    validate_key(key).map_err(|reason| match field {
        "" => InvalidCommand::Key(reason),
        f => InvalidCommand::Key(format!("{f}.{reason}")),
    })
}

/// Refuses a value over [`MAX_VALUE_BYTES`], naming `field`.
fn check_value(field: &str, len: usize) -> Result<(), InvalidCommand> {
    if len > MAX_VALUE_BYTES {
        return Err(InvalidCommand::TooLarge(format!(
            "{field}: {len} bytes is over the limit of {MAX_VALUE_BYTES}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use pyxis_client::RequestId;
    use pyxis_client::api::CompareOp;

    use super::*;
    use crate::store::command::Compare;

    fn request(cmd: Command) -> Command {
        Command::Request {
            id: RequestId { session: 1, seq: 1 },
            cmd: Box::new(cmd),
        }
    }

    fn put(key: &str, len: usize) -> Command {
        Command::Put {
            key: key.into(),
            value: Bytes::from(vec![b'x'; len]),
            prev_rev: None,
            lease: None,
        }
    }

    fn txn_puts(n: usize, len: usize) -> Command {
        Command::Txn {
            compare: Vec::new(),
            success: (0..n)
                .map(|i| Op::Put {
                    key: format!("/t/{i}"),
                    value: Bytes::from(vec![b'x'; len]),
                    lease: None,
                })
                .collect(),
            failure: Vec::new(),
        }
    }

    #[test]
    fn what_the_api_accepts_passes() {
        for cmd in [
            put("/a", MAX_VALUE_BYTES),
            Command::Delete {
                key: "/".into(),
                prefix: true,
            },
            Command::Delete {
                key: "/a".into(),
                prefix: false,
            },
            txn_puts(128, 10),
            txn_puts(4, MAX_VALUE_BYTES - 8),
            Command::LeaseGrant { ttl_ms: MIN_TTL_MS },
            Command::LeaseGrant { ttl_ms: MAX_TTL_MS },
            Command::LeaseRevoke { id: 7 },
            Command::MemberStarted { id: 2 },
        ] {
            assert_eq!(request(cmd.clone()).validate(128), Ok(()), "{cmd}");
        }
    }

    #[test]
    fn what_the_api_refuses_is_refused_naming_the_field() {
        let refused = |cmd: Command| request(cmd).validate(128).unwrap_err().to_string();
        assert_eq!(refused(put("a", 1)), "key: must start with '/'");
        assert!(refused(put("/", 1)).starts_with("key: / names no key"));
        assert!(refused(put("/a\u{1}", 1)).contains("control character"));
        assert!(refused(put(&format!("/{}", "k".repeat(5000)), 1)).contains("longer than"));
        assert_eq!(
            refused(put("/a", MAX_VALUE_BYTES + 1)),
            format!(
                "value: {} bytes is over the limit of {MAX_VALUE_BYTES}",
                MAX_VALUE_BYTES + 1
            )
        );
        assert!(
            refused(Command::Delete {
                key: "/".into(),
                prefix: false
            })
            .contains("names no key")
        );
        assert_eq!(
            refused(txn_puts(129, 1)),
            "success: 129 entries is over the limit of 128 per txn (--max-txn-ops)"
        );
        assert!(refused(txn_puts(5, MAX_VALUE_BYTES - 8)).starts_with("txn: "));
        let bad_compare = Command::Txn {
            compare: vec![Compare {
                key: "nope".into(),
                op: CompareOp::Eq,
                target: CompareTarget::Version(1),
            }],
            success: Vec::new(),
            failure: vec![Op::Get {
                key: "/".into(),
                prefix: true,
            }],
        };
        assert_eq!(refused(bad_compare), "compare[0].key: must start with '/'");
        let bad_op = Command::Txn {
            compare: Vec::new(),
            success: Vec::new(),
            failure: vec![Op::Put {
                key: "/a".into(),
                value: Bytes::from(vec![0; MAX_VALUE_BYTES + 1]),
                lease: None,
            }],
        };
        assert!(refused(bad_op).starts_with("failure[0].value: "));
        assert!(refused(Command::LeaseGrant { ttl_ms: 1 }).starts_with("ttl_ms: "));
        assert!(refused(request(put("/a", 1))).contains("another request"));
    }

    #[test]
    fn the_op_bound_is_the_one_given() {
        assert!(txn_puts(3, 1).validate(3).is_ok());
        assert!(txn_puts(4, 1).validate(3).is_err());
    }
}
