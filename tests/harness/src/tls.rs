//! [`Certs`]: a test CA and node certificate made by the real `pyxis tls gen`, in a
//! temporary directory that lives as long as the value.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use tempfile::TempDir;

use crate::{bin, run_cmd};

/// The files `pyxis tls gen DIR` writes: `ca.pem`, `node.pem`, `node-key.pem`.
#[derive(Debug)]
pub struct Certs {
    ca: PathBuf,
    // Declared last: the files go when the value does.
    dir: TempDir,
}

impl Certs {
    /// Runs `pyxis tls gen` into a new temporary directory.
    pub async fn generate() -> anyhow::Result<Certs> {
        let dir = tempfile::Builder::new().prefix("pyxis-tls-").tempdir()?;
        let gen_dir = dir.path().display().to_string();
        run_cmd(
            &bin("pyxis"),
            ["tls", "gen", gen_dir.as_str()],
            Duration::from_secs(30),
        )
        .await?
        .success()
        .context("pyxis tls gen")?;
        Ok(Certs {
            ca: dir.path().join("ca.pem"),
            dir,
        })
    }

    /// The CA certificate (`--tls-ca`, `--ca`, the agent's `ca`).
    pub fn ca(&self) -> &Path {
        &self.ca
    }

    /// The node certificate (`--tls-cert`).
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("node.pem")
    }

    /// The node key (`--tls-key`).
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("node-key.pem")
    }

    /// `--tls-cert X --tls-key Y --tls-ca Z` for `pyxis server`.
    pub fn server_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert().display().to_string(),
            "--tls-key".into(),
            self.key().display().to_string(),
            "--tls-ca".into(),
            self.ca().display().to_string(),
        ]
    }
}
