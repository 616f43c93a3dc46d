//! `pyxis snapshot save FILE`: download a consistent snapshot of the store for backup.
//!
//! The file is opaque to the CLI: it is the server's snapshot format, written atomically
//! (temp file, fsync, rename, fsync of the directory) so a crash never leaves half a backup
//! under FILE. Restoring a snapshot into a data directory works offline and is the server
//! side's job; it joins [`SnapshotCmd`] and [`run`] in the marked places below.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use pyxis_client::Client;

use super::{connect, print};

/// `pyxis snapshot ...`
#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Download a consistent snapshot from the cluster into FILE (atomically replaced).
    Save {
        /// Where to write the snapshot.
        file: PathBuf,
    },
    // Offline commands that need no cluster (`Restore { file, data_dir, id, listen }`)
    // go below this line.
}

/// Runs one `snapshot` subcommand; only the online ones build a client.
pub(crate) async fn run(cmd: SnapshotCmd, endpoints: Vec<String>) -> anyhow::Result<()> {
    match cmd {
        SnapshotCmd::Save { file } => save(&connect(endpoints)?, &file).await,
        // Offline commands dispatch below this line, without a client.
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

/// Replaces `path` with `data` so that readers see the old file or the whole new one.
pub(super) fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename is durable only once the directory entry is.
        File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}
