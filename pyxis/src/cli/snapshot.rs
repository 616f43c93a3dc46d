//! `pyxis snapshot save FILE` downloads a consistent snapshot of the store for backup;
//! `pyxis snapshot restore FILE --data-dir DIR` turns one into a new node's data dir.
//!
//! The file is opaque to the CLI: it is the server's snapshot format, written atomically
//! (temp file, fsync, rename, fsync of the directory) so a crash never leaves half a backup
//! under FILE. Restore works offline; what it writes is decided by `crate::restore`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use pyxis_client::Client;

use super::{connect, print};
use crate::raft::snapshot::write_atomically;

/// `pyxis snapshot ...`
#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Download a consistent snapshot from the cluster into FILE (atomically replaced).
    Save {
        /// Where to write the snapshot.
        file: PathBuf,
    },
    /// Offline: build DATA_DIR for a new one-node cluster holding FILE's keys; then run
    /// `pyxis server --id ID --listen ADDR --data-dir DATA_DIR` on it.
    Restore {
        /// The backup written by `snapshot save`.
        file: PathBuf,
        /// A new, empty data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Id of the node that will serve the restored data.
        #[arg(long, default_value_t = 1)]
        id: u64,
        /// Address that node will listen on (recorded in the membership).
        #[arg(long, default_value = "127.0.0.1:7070")]
        listen: String,
    },
}

/// Runs one `snapshot` subcommand; only the online ones build a client.
pub(crate) async fn run(cmd: SnapshotCmd, endpoints: Vec<String>) -> anyhow::Result<()> {
    match cmd {
        SnapshotCmd::Save { file } => save(&connect(endpoints)?, &file).await,
        SnapshotCmd::Restore {
            file,
            data_dir,
            id,
            listen,
        } => {
            let done = crate::restore::restore(&file, &data_dir, id, &listen)?;
            print(format!(
                "restored {} keys at revision {} into {}; start it with: pyxis server --id {id} --listen {listen} --data-dir {}\n",
                done.keys,
                done.revision,
                data_dir.display(),
                data_dir.display()
            ))
        }
    }
}

/// Fetches `/v1/snapshot` and writes it to `file`.
async fn save(client: &Client, file: &Path) -> anyhow::Result<()> {
    let (bytes, revision) = client.snapshot().await.context("snapshot")?;
    let len = bytes.len();
    let path = file.to_owned();
    tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
        .await
        .context("snapshot writer task")?
        .with_context(|| format!("write {}", file.display()))?;
    print(format!(
        "saved {len} bytes at revision {revision} to {}\n",
        file.display()
    ))
}
