//! `pyxis status`: every given endpoint's own view, side by side, and the cluster's leader.
//!
//! Each endpoint is asked once, all at the same time, without retries or a trip through
//! the leader, so the command answers even during an election or without a quorum. The
//! leader and term shown are derived from those answers.

use pyxis_client::Client;
use pyxis_client::api::{NodeId, NodeStatus};

use super::{opt, print, table};

/// Prints one row per endpoint; fails (after printing) if any endpoint did not answer.
pub(crate) async fn run(client: &Client, endpoints: &[String]) -> anyhow::Result<()> {
    let answers = futures::future::join_all(endpoints.iter().map(|e| client.status_of(e))).await;
    let answers: Vec<(String, Result<NodeStatus, String>)> = endpoints
        .iter()
        .cloned()
        .zip(answers)
        .map(|(endpoint, r)| {
            // Transport errors name the endpoint already; others get it in front.
            let r = r.map_err(|err| match err {
                pyxis_client::Error::Transport(_) => err.to_string(),
                _ => format!("{endpoint}: {err}"),
            });
            (endpoint, r)
        })
        .collect();
    print(status_report(&answers))?;
    // ACLs are replicated state: any endpoint that answers tells for the cluster.
    match client.acl_status().await {
        Ok(a) => print(format!(
            "acl: {}\n",
            if a.enabled { "enabled" } else { "disabled" }
        ))?,
        Err(e) => print(format!("acl: unknown ({e})\n"))?,
    }
    let failed: Vec<String> = answers
        .iter()
        .filter_map(|(_, r)| r.as_ref().err().cloned())
        .collect();
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} endpoints did not answer: {}",
            failed.len(),
            answers.len(),
            failed.join("; ")
        );
    }
    Ok(())
}

/// The status table and the leader/term line.
pub(super) fn status_report(answers: &[(String, Result<NodeStatus, String>)]) -> String {
    let rows: Vec<Vec<String>> = answers
        .iter()
        .map(|(endpoint, r)| match r {
            Ok(s) => vec![
                endpoint.clone(),
                s.id.to_string(),
                s.state.clone(),
                s.term.to_string(),
                opt(s.leader),
                opt(s.last_log_index),
                opt(s.committed_index),
                opt(s.applied_index),
                s.revision.to_string(),
                s.keys.to_string(),
            ],
            Err(_) => {
                let mut row = vec![endpoint.clone(), "-".into(), "unreachable".into()];
                row.resize(10, "-".into());
                row
            }
        })
        .collect();
    let mut out = table(
        &[
            "ENDPOINT",
            "ID",
            "STATE",
            "TERM",
            "LEADER",
            "LAST_LOG",
            "COMMITTED",
            "APPLIED",
            "REVISION",
            "KEYS",
        ],
        &rows,
    );
    let statuses: Vec<&NodeStatus> = answers
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .collect();
    out.push_str(&summary(&statuses));
    out.push_str(&cluster_ids(answers));
    out
}

/// `cluster id: X` when every answer agrees, a warning naming each endpoint's id when they
/// do not (an endpoint list mixing two clusters), nothing when none knows one.
fn cluster_ids(answers: &[(String, Result<NodeStatus, String>)]) -> String {
    let known: Vec<(&str, &str)> = answers
        .iter()
        .filter_map(|(e, r)| Some((e.as_str(), r.as_ref().ok()?.cluster_id.as_deref()?)))
        .collect();
    let mut ids: Vec<&str> = known.iter().map(|(_, id)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    match ids.as_slice() {
        [] => String::new(),
        [id] => format!("cluster id: {id}\n"),
        _ => {
            let each: Vec<String> = known.iter().map(|(e, id)| format!("{e}={id}")).collect();
            format!(
                "warning: the endpoints belong to different clusters: {}\n",
                each.join(", ")
            )
        }
    }
}

/// `leader ID term T` from the answers at the highest term (a node that lags behind may
/// still name an old leader), or why there is none.
fn summary(statuses: &[&NodeStatus]) -> String {
    let Some(term) = statuses.iter().map(|s| s.term).max() else {
        return "cluster: no endpoint answered\n".into();
    };
    let mut leaders: Vec<NodeId> = statuses
        .iter()
        .filter(|s| s.term == term)
        .filter_map(|s| s.leader)
        .collect();
    leaders.sort_unstable();
    leaders.dedup();
    match leaders.as_slice() {
        [] => format!("cluster: no leader known, term {term}\n"),
        [id] => format!("cluster: leader {id} term {term}\n"),
        many => format!("cluster: nodes disagree on the leader at term {term}: {many:?}\n"),
    }
}
