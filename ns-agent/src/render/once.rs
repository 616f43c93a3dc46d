//! `ns-agent render --once FILE.tera [--dc DC]`: one render against the live store, to stdout.
//!
//! For operators trying a template (consul-template's `-dry`): the same mirror, functions and
//! errors as the running agent, but nothing is written, checked or reloaded. It waits for the
//! mirror's first listing like the agent does, and gives up after a timeout rather than render
//! from nothing.

use std::path::Path;
use std::time::Duration;

use ns_core::{DcName, Mirror, MirrorOptions};
use pyxis_client::{Client, ClientOptions};

use super::deps::Inputs;
use super::engine::{Compiled, RenderError};
use super::functions::Who;
use crate::kv::ConfigKv;

/// Why a one-shot render failed.
#[derive(Debug, thiserror::Error)]
pub enum OnceError {
    /// The template does not compile or render. Transparent: the CLI prints the error chain
    /// (`{:#}`), so a wrapping message would repeat the location.
    #[error(transparent)]
    Template(#[from] RenderError),
    /// The store could not be listed in time.
    #[error("store: {0}")]
    Store(String),
    /// A bad `--dc` or store endpoint list.
    #[error("{0}")]
    Input(String),
}

/// Renders `file` for `who` against the store at `store`, connecting with `options`
/// (the agent config's `store_options`); waits at most `timeout` for it.
pub async fn render_once(
    file: &Path,
    store: Vec<String>,
    options: ClientOptions,
    who: Who,
    timeout: Duration,
) -> Result<String, OnceError> {
    // Compile first: a syntax error needs no store.
    let compiled = Compiled::load(file)?;
    let client = Client::with_options(store, options)
        .map_err(|e| OnceError::Input(format!("store endpoints: {e}")))?;
    let mirror = Mirror::start(client.clone(), MirrorOptions::default());
    let kv = ConfigKv::start(client, who.kv_prefix.clone());
    let deadline = tokio::time::Instant::now() + timeout;
    while mirror.status().listings == 0 || !kv.data().listed {
        if tokio::time::Instant::now() >= deadline {
            let why = mirror
                .status()
                .last_error
                .unwrap_or_else(|| "no answer".into());
            return Err(OnceError::Store(format!(
                "no full listing within {timeout:?} ({why}); nothing rendered"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let inputs = Inputs {
        snap: mirror.snapshot(),
        kv: kv.data(),
    };
    let (text, _) = compiled.render(&inputs, &who, super::group::unix_ms());
    Ok(text?)
}

/// The renderer's identity from the agent's config (when it loads) and `--dc`.
pub fn who(
    node: Option<&str>,
    config_dc: Option<&str>,
    dc: Option<&str>,
    kv_prefix: &str,
) -> Result<Who, OnceError> {
    let dc = dc.or(config_dc).ok_or_else(|| {
        OnceError::Input("--dc is needed when the agent's config cannot be read".into())
    })?;
    let datacenter = DcName::parse(dc).map_err(|e| OnceError::Input(format!("--dc: {e}")))?;
    Ok(Who {
        node: node.unwrap_or("render-once").to_owned(),
        datacenter,
        kv_prefix: kv_prefix.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_error_is_printed_once_through_anyhow() {
        let e = OnceError::from(RenderError::of_file(
            Path::new("bad.tera"),
            "unexpected end".into(),
        ));
        let printed = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(printed, "bad.tera: unexpected end");
    }
}
