//! `pyxis kv get|put|del|ls|watch`: single keys and prefixes, printed for people and scripts.
//!
//! `get` prints the value's bytes and a newline (`--raw`: the bytes alone, so
//! `pyxis kv get --raw /cfg > file` round-trips exactly); `ls` prints one `key<TAB>value` line per key, or the JSON listing. The
//! HTTP calls and their retries live in `pyxis_client`.

use anyhow::Context as _;
use bytes::Bytes;
use clap::Subcommand;
use pyxis_client::api::{KeyValue, Revision, WatchMessage};
use pyxis_client::{Client, ReadConsistency};
use tokio::io::AsyncReadExt as _;

use super::print;

/// `pyxis kv ...`
#[derive(Debug, Subcommand)]
pub enum KvCmd {
    /// Print a key's value and a newline (exit 1 if the key does not exist).
    Get {
        /// The key, starting with `/`.
        key: String,
        /// Print the value's bytes exactly, without the newline (`> file` round-trips).
        #[arg(long)]
        raw: bool,
        /// Read from the answering node's local state instead of through the leader.
        #[arg(long)]
        serializable: bool,
    },
    /// Write a key and print the new revision.
    Put {
        /// The key, starting with `/`.
        key: String,
        /// The value; `-` reads it from standard input.
        #[arg(allow_hyphen_values = true)]
        value: String,
        /// Write only if the key's mod revision is REV (0: only if it does not exist).
        #[arg(long, value_name = "REV")]
        prev_rev: Option<Revision>,
        /// Bind the key to lease ID (it is deleted when the lease ends).
        #[arg(long, value_name = "ID")]
        lease: Option<u64>,
    },
    /// Delete a key (with --prefix every key under it, with --all every key in the store)
    /// and print how many went.
    #[command(visible_alias = "rm")]
    Del {
        /// The key, starting with `/`.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        key: Option<String>,
        /// Delete every key under KEY (not `/`: that is --all).
        #[arg(long)]
        prefix: bool,
        /// Delete every key in the store, `/ns/` included.
        #[arg(long, conflicts_with = "prefix")]
        all: bool,
    },
    /// Print changes to KEY (or under it with --prefix) as JSON lines until interrupted;
    /// resumes on another endpoint if one fails.
    Watch {
        /// The key, starting with `/`.
        key: String,
        /// Watch every key under KEY.
        #[arg(long)]
        prefix: bool,
        /// Start at revision REV (inclusive); without it, with the next change.
        #[arg(long, value_name = "REV")]
        from_rev: Option<Revision>,
        /// Also print the periodic progress lines.
        #[arg(long)]
        progress: bool,
    },
    /// List the keys under PREFIX, one `key<TAB>value` line each.
    Ls {
        /// The prefix, starting with `/`; `/` lists everything.
        #[arg(default_value = "/")]
        prefix: String,
        /// Print the whole listing as JSON (binary values as `value_b64`).
        #[arg(long)]
        json: bool,
        /// Read from the answering node's local state instead of through the leader.
        #[arg(long)]
        serializable: bool,
    },
}

/// Runs one `kv` subcommand.
pub(crate) async fn run(client: &Client, cmd: KvCmd) -> anyhow::Result<()> {
    match cmd {
        KvCmd::Get {
            key,
            raw,
            serializable,
        } => {
            let got = client
                .get_with(&key, consistency(serializable))
                .await
                .with_context(|| format!("get {key}"))?;
            match got {
                Some(got) => print(value_out(&got.value, raw)),
                None => anyhow::bail!("key {key} not found"),
            }
        }
        KvCmd::Put {
            key,
            value,
            prev_rev,
            lease,
        } => {
            let value = if value == "-" {
                read_stdin().await?
            } else {
                Bytes::from(value)
            };
            let put = match (prev_rev, lease) {
                (_, Some(lease)) => client.put_leased(&key, value, lease, prev_rev).await,
                (Some(rev), None) => client.put_if(&key, value, rev).await,
                (None, None) => client.put(&key, value).await,
            }
            .with_context(|| format!("put {key}"))?;
            print(format!("revision {}\n", put.revision))
        }
        KvCmd::Watch {
            key,
            prefix,
            from_rev,
            progress,
        } => {
            let mut watch = client
                .watch(&key, prefix, from_rev)
                .with_context(|| format!("watch {key}"))?;
            loop {
                let msg = watch.next().await.with_context(|| format!("watch {key}"))?;
                if !progress && matches!(msg, WatchMessage::Progress { .. }) {
                    continue;
                }
                let mut line = serde_json::to_string(&msg).context("encoding an event")?;
                line.push('\n');
                print(line)?;
            }
        }
        // clap leaves KEY out exactly when --all is given.
        KvCmd::Del { key, prefix, .. } => {
            let del = match key {
                None => client.delete_all().await.context("delete every key")?,
                Some(key) if prefix => client
                    .delete_prefix(&key)
                    .await
                    .with_context(|| format!("delete {key}"))?,
                Some(key) => client
                    .delete(&key)
                    .await
                    .with_context(|| format!("delete {key}"))?,
            };
            print(format!(
                "deleted {} revision {}\n",
                del.deleted, del.revision
            ))
        }
        KvCmd::Ls {
            prefix,
            json,
            serializable,
        } => {
            let range = client
                .range_with(&prefix, consistency(serializable))
                .await
                .with_context(|| format!("list {prefix}"))?;
            if json {
                let mut text = serde_json::to_string_pretty(&range)?;
                text.push('\n');
                print(text)
            } else {
                print(listing(&range.entries))
            }
        }
    }
}

/// What `kv get` prints: the value's bytes as stored (never re-encoded, so a binary value
/// stays intact), then a newline unless `raw`, as `etcdctl get --print-value-only` does.
pub(super) fn value_out(value: &[u8], raw: bool) -> Vec<u8> {
    let mut out = value.to_vec();
    if !raw {
        out.push(b'\n');
    }
    out
}

fn consistency(serializable: bool) -> ReadConsistency {
    if serializable {
        ReadConsistency::Serializable
    } else {
        ReadConsistency::Linearizable
    }
}

/// Reads all of standard input as the value of `kv put KEY -`.
async fn read_stdin() -> anyhow::Result<Bytes> {
    let mut buf = Vec::new();
    tokio::io::stdin()
        .read_to_end(&mut buf)
        .await
        .context("reading the value from stdin")?;
    Ok(Bytes::from(buf))
}

/// The `key<TAB>value` lines of `kv ls`.
///
/// A value must stay on its line, so backslashes and control characters (newlines in a
/// config file) are escaped; a value that is not UTF-8 is only summarised. `--json` gives
/// every value exactly.
pub(super) fn listing(entries: &[KeyValue]) -> String {
    let mut out = String::new();
    for kv in entries {
        out.push_str(&kv.key);
        out.push('\t');
        match std::str::from_utf8(&kv.value) {
            Ok(text) => escape_into(text, &mut out),
            Err(_) => out.push_str(&format!(
                "<{} bytes, not utf-8; see --json>",
                kv.value.len()
            )),
        }
        out.push('\n');
    }
    out
}

/// Appends `text` with `\\`, `\n`, `\r`, `\t` and other control characters escaped.
fn escape_into(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
}
