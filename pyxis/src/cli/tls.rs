//! `pyxis tls gen DIR`: a test CA and a node certificate, for trying TLS out.
//!
//! Writes into DIR (created if missing; existing files are not overwritten):
//! - `ca.pem`: the CA certificate (`--tls-ca` for servers, `--ca` for clients);
//! - `ca-key.pem`: its key, kept only so more certificates could be signed by hand;
//! - `node.pem`, `node-key.pem`: one certificate and key for every node of a test cluster
//!   (`--tls-cert`, `--tls-key`), valid for server and client authentication, with the
//!   names 127.0.0.1, ::1, localhost and any `--san` given.
//!
//! Keys are ECDSA P-256 and the certificates do not expire (rcgen's default validity): this
//! is for tests and trials;
//! production certificates come from the operator's own CA.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// `pyxis tls ...`
#[derive(Debug, Subcommand)]
pub enum TlsCmd {
    /// Write a test CA (ca.pem) and a node certificate (node.pem, node-key.pem) into DIR.
    Gen(GenArgs),
}

/// Arguments of `pyxis tls gen`.
#[derive(Debug, Args)]
pub struct GenArgs {
    /// Directory to write into (created if missing).
    pub dir: PathBuf,
    /// More names (DNS names or IP addresses) for the node certificate, beside
    /// 127.0.0.1, ::1 and localhost; repeatable.
    #[arg(long = "san", value_name = "NAME")]
    pub sans: Vec<String>,
}

/// The names every generated node certificate carries.
const LOOPBACK_SANS: [&str; 3] = ["127.0.0.1", "::1", "localhost"];

/// Runs `pyxis tls ...`.
pub fn run(cmd: TlsCmd) -> anyhow::Result<()> {
    match cmd {
        TlsCmd::Gen(args) => {
            let written = generate(&args.dir, &args.sans)?;
            let mut err = std::io::stderr().lock();
            for path in written {
                let _ = writeln!(err, "wrote {}", path.display());
            }
            Ok(())
        }
    }
}

/// Writes the CA and node files into `dir` and returns their paths.
pub fn generate(dir: &Path, extra_sans: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let names = ["ca.pem", "ca-key.pem", "node.pem", "node-key.pem"].map(|n| dir.join(n));
    if let Some(existing) = names.iter().find(|p| p.exists()) {
        anyhow::bail!(
            "{}: already exists; remove it or pick another directory",
            existing.display()
        );
    }

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "pyxis test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .context("signing the CA certificate")?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let sans: Vec<String> = LOOPBACK_SANS
        .iter()
        .map(|s| (*s).to_owned())
        .chain(extra_sans.iter().cloned())
        .collect();
    let mut node_params = CertificateParams::new(sans).context("--san")?;
    node_params
        .distinguished_name
        .push(DnType::CommonName, "pyxis node");
    node_params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    node_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let node_key = KeyPair::generate().context("generating the node key")?;
    let node_cert = node_params
        .signed_by(&node_key, &issuer)
        .context("signing the node certificate")?;

    let [ca, ca_key_path, node, node_key_path] = &names;
    write(ca, &ca_cert.pem(), false)?;
    write(ca_key_path, &ca_key.serialize_pem(), true)?;
    write(node, &node_cert.pem(), false)?;
    write(node_key_path, &node_key.serialize_pem(), true)?;
    Ok(names.to_vec())
}

/// Writes a new file (never over an existing one); keys are readable by the owner only.
fn write(path: &Path, text: &str, secret: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    if secret {
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
