//! `pyxis snapshot save FILE` downloads a consistent snapshot of the store for backup;
//! `pyxis snapshot restore FILE --data-dir DIR` turns one into a new node's data dir.
//!
//! The file is opaque to the CLI: it is the server's snapshot format, written atomically
//! (temp file, fsync, rename, fsync of the directory) so a crash never leaves half a backup
//! under FILE. Restore works offline; what it writes is decided by `crate::restore`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Subcommand;
use pyxis_client::Client;

use super::{connect, print};
use crate::raft::snapshot::{StreamCheck, write_atomically_with};

/// How often `snapshot save` reports how much it has received.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

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
pub(crate) async fn run(cmd: SnapshotCmd, conn: super::EndpointsArg) -> anyhow::Result<()> {
    match cmd {
        SnapshotCmd::Save { file } => save(&connect(&conn)?, &file).await,
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

/// Streams `/v1/snapshot` into `file`, reporting progress on stderr. The file appears only
/// once the whole backup has arrived and its checksum holds.
async fn save(client: &Client, file: &Path) -> anyhow::Result<()> {
    let mut stream = client.snapshot_stream().await.context("snapshot")?;
    let revision = stream.revision;
    // `None` marks the end of a complete download; a channel closed without it is not one.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<Bytes>>(8);
    let path = file.to_owned();
    let writer = tokio::task::spawn_blocking(move || {
        write_atomically_with(&path, |w| {
            let mut check = StreamCheck::default();
            loop {
                match rx.blocking_recv() {
                    Some(Some(chunk)) => {
                        check.update(&chunk);
                        w.write_all(&chunk)?;
                    }
                    Some(None) => break,
                    None => return Err(std::io::Error::other("download stopped")),
                }
            }
            check.finish().map(drop)
        })
    });
    let mut received = 0u64;
    let mut reported = Instant::now();
    let download = async {
        while let Some(chunk) = stream.next_chunk().await? {
            received += chunk.len() as u64;
            if reported.elapsed() >= PROGRESS_EVERY {
                reported = Instant::now();
                progress(received);
            }
            if tx.send(Some(chunk)).await.is_err() {
                // The writer stopped; its error says why.
                return Ok(());
            }
        }
        let _ = tx.send(None).await;
        Ok::<(), pyxis_client::Error>(())
    }
    .await;
    drop(tx);
    let written = writer.await.context("snapshot writer task")?;
    download.context("downloading the backup")?;
    let len = written.with_context(|| format!("write {}", file.display()))?;
    print(format!(
        "saved {len} bytes at revision {revision} to {}\n",
        file.display()
    ))
}

/// One progress line on stderr, so stdout keeps only the result.
#[allow(
    clippy::print_stderr,
    reason = "operator-facing progress of a long download"
)]
fn progress(received: u64) {
    eprintln!(
        "snapshot: {:.1} MiB received",
        received as f64 / (1024.0 * 1024.0)
    );
}
