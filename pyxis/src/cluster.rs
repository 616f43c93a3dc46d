//! Cluster membership: the member list, node status, and runtime add/remove.
//!
//! Adding a node first asks the newcomer for its status and probes its peer API, so a typo
//! in the address, the wrong id, a node of another cluster or a server that is no pyxis
//! peer is refused at once, before the membership changes. It then makes the node a
//! learner and promotes it to voter once it holds the log, so a slow newcomer never counts
//! toward quorum before it holds the log; one that stops taking entries is dropped again. Only the leader changes membership; a follower
//! proxies the HTTP request to it.

use std::collections::BTreeSet;

use pyxis_client::api::{ClusterInfo, Member, NodeStatus};

use crate::health::{DEFAULT_MAX_LAG, Position};

/// How long `add_member` waits for a new learner to catch up before giving up.
const LEARNER_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(60);
/// How long a new learner may go without taking an entry before `add_member` gives up.
const LEARNER_STALL: std::time::Duration = std::time::Duration::from_secs(10);
/// How long `add_member` waits for the newcomer to answer its status request.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
use crate::node::{Node, NodeError};
use crate::raft::Instant as _;
use crate::raft::WatchReceiver as _;
use crate::raft::{ChangeMembers, ClientWriteError, NodeAddr, RaftError, ServerState, WriteError};

/// Why a membership change was refused or failed; `http::error` maps each to its status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MembershipError {
    /// The newcomer's address or id is wrong (no pyxis node there, another node's id).
    #[error("{0}")]
    Invalid(String),
    /// The change conflicts with the membership or with another change under way.
    #[error("{0}")]
    Conflict(String),
    /// The node named is not a member.
    #[error("{0}")]
    NotMember(String),
    /// This node cannot make the change now (no leader, Raft stopped, a newcomer behind).
    #[error(transparent)]
    Node(#[from] NodeError),
    /// openraft answered what a membership change never asks for (a bug).
    #[error("{0}")]
    Internal(String),
}

impl Node {
    /// This node's position from its Raft metrics, for `/healthz` (`health::judge`).
    pub fn position(&self) -> Position {
        // Before borrowing the metrics: `removed` borrows them too.
        let removed = self.removed();
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let local = m.local_committed.map_or(0, |l| l.index);
        let limit = self.leader_contact.limit();
        let fresh = if m.state == ServerState::Leader {
            // A lone voter needs no one's acknowledgement.
            let alone = m.membership_config.voter_ids().all(|id| id == self.id);
            alone || m.last_quorum_acked.is_some_and(|t| t.elapsed() <= limit)
        } else {
            self.leader_contact.silence().is_some_and(|s| s <= limit)
        };
        Position {
            running: m.running_state.is_ok() && m.state != ServerState::Shutdown,
            removed,
            leader: m.current_leader.filter(|_| fresh),
            applied: m.last_applied.map_or(0, |l| l.index),
            // A follower hears of commits before it holds them: the leader's index counts.
            commit: local.max(m.cluster_committed.map_or(0, |l| l.index)),
        }
    }

    /// The members with their roles, as this node sees them. On the leader, every member's
    /// position is its matched index from replication, and `lag` is how far that trails the
    /// commit index; elsewhere only this node's own position is known.
    pub fn cluster_info(&self) -> ClusterInfo {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let voters: BTreeSet<u64> = m.membership_config.voter_ids().collect();
        let local = m.local_committed.map_or(0, |l| l.index);
        let commit = local.max(m.cluster_committed.map_or(0, |l| l.index));
        let members = m
            .membership_config
            .nodes()
            .map(|(id, node)| {
                let applied = match &m.replication {
                    Some(r) => r.get(id).cloned().flatten().map(|l| l.index),
                    None if *id == self.id => m.last_applied.map(|l| l.index),
                    None => None,
                };
                // The leader knows every member's position (one it never matched, blank or
                // unreachable, is at 0); a follower knows only its own.
                let lag = if m.replication.is_some() || *id == self.id {
                    Some(commit.saturating_sub(applied.unwrap_or(0)))
                } else {
                    None
                };
                Member {
                    id: *id,
                    addr: node.addr.clone(),
                    voter: voters.contains(id),
                    applied,
                    lag,
                    behind: lag.is_some_and(|l| l > DEFAULT_MAX_LAG),
                }
            })
            .collect();
        ClusterInfo {
            leader: m.current_leader,
            term: m.current_term,
            members,
        }
    }

    /// This node's own view, for `GET /v1/status`.
    pub fn status(&self) -> NodeStatus {
        let (applied_rev, keys, started_members) = self.view.with_kv(|kv| {
            (
                kv.revision(),
                kv.len() as u64,
                kv.started_members().collect(),
            )
        });
        let removed = self.removed();
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        NodeStatus {
            id: self.id,
            cluster_id: self.cluster.get().map(|c| c.to_string()),
            state: if removed {
                "removed".to_owned()
            } else {
                format!("{:?}", m.state).to_lowercase()
            },
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            committed_index: m.local_committed.map(|l| l.index),
            applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            revision: applied_rev,
            keys,
            millis_since_quorum_ack: m
                .last_quorum_acked
                .as_ref()
                .map(|t| t.elapsed().as_millis() as u64),
            started_members,
        }
    }

    /// Adds `id` at `addr` as a learner, waits for it to catch up, then makes it a voter.
    pub async fn add_member(&self, id: u64, addr: &str) -> Result<ClusterInfo, MembershipError> {
        // Stored as `host:port`; a scheme, if given, must be the one peers are reached by.
        let addr = self
            .peers
            .bare_addr(addr)
            .map_err(|why| MembershipError::Invalid(format!("addr: {why}")))?;
        let known = self.cluster_info();
        if let Some(m) = known.members.iter().find(|m| m.id == id) {
            if m.addr != addr {
                return Err(MembershipError::Conflict(format!(
                    "id: node {id} is already a member at {}",
                    m.addr
                )));
            }
            if m.voter {
                return Ok(known);
            }
        }
        self.probe_newcomer(id, addr).await?;
        // Not blocking: openraft would wait for the learner without a bound.
        let added = self
            .raft
            .add_learner(id, NodeAddr::new(addr), false)
            .await
            .map_err(membership_error)?;
        // Promote only once the learner holds the log up to its own membership entry: a
        // node that is down or unreachable must not become a voter and weaken the quorum.
        if let Err(e) = self.wait_caught_up(id, added.log_id.index).await {
            // A learner that cannot keep up would only be replicated to in vain.
            let dropped = self
                .raft
                .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                .await;
            if let Err(r) = dropped {
                tracing::warn!(id, error = %r, "could not remove a learner that did not catch up");
            }
            return Err(e);
        }
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(membership_error)?;
        tracing::info!(id, addr, "member added");
        Ok(self.cluster_info())
    }

    /// Checks that a pyxis node answers at `addr`, that it is node `id`, and that it does
    /// not belong to another cluster (it should be empty, started with `--join`).
    async fn probe_newcomer(&self, id: u64, addr: &str) -> Result<(), MembershipError> {
        let start_it =
            format!("start it with `pyxis server --id {id} --join` and an empty --data-dir");
        let reply = self
            .http
            .get(self.peers.url(addr, "/v1/status"))
            .timeout(PROBE_TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                let why = if e.is_timeout() {
                    format!("no answer within {}s", PROBE_TIMEOUT.as_secs())
                } else {
                    "cannot connect".to_owned()
                };
                MembershipError::Invalid(format!(
                    "addr: no pyxis node at {addr} ({why}); {start_it}"
                ))
            })?;
        let body = reply.bytes().await.unwrap_or_default();
        let status: NodeStatus = serde_json::from_slice(&body).map_err(|_| {
            MembershipError::Invalid(format!(
                "addr: {addr} answered, but not as a pyxis node; {start_it}"
            ))
        })?;
        if status.id != id {
            return Err(MembershipError::Invalid(format!(
                "id: the node at {addr} is node {}, not {id}",
                status.id
            )));
        }
        if let (Some(theirs), Some(ours)) = (&status.cluster_id, self.cluster.get())
            && *theirs != ours.to_string()
        {
            return Err(MembershipError::Conflict(format!(
                "addr: the node at {addr} belongs to cluster {theirs}, not to this one \
                 ({ours}); {start_it}"
            )));
        }
        self.probe_peer_api(addr, &start_it).await
    }

    /// Checks that `addr` serves the peer API: an empty `/raft/vote` must be refused as a
    /// bad body (or, by a node of another cluster, as a foreign call), which decodes nothing
    /// and changes nothing there. A server that only mimics `/v1/status` fails here, before
    /// it becomes a learner that never catches up.
    async fn probe_peer_api(&self, addr: &str, start_it: &str) -> Result<(), MembershipError> {
        let not_a_peer = |why: String| {
            MembershipError::Invalid(format!(
                "addr: {addr} answers /v1/status but not the peer API (/raft/vote: {why}); \
                 {start_it}"
            ))
        };
        let reply = self
            .http
            .post(self.peers.url(addr, "/raft/vote"))
            .timeout(PROBE_TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                not_a_peer(if e.is_timeout() {
                    format!("no answer within {}s", PROBE_TIMEOUT.as_secs())
                } else {
                    "the call failed".to_owned()
                })
            })?;
        let status = reply.status().as_u16();
        let body = reply.text().await.unwrap_or_default();
        match status {
            400 if body.starts_with("raft rpc body") => Ok(()),
            401 | 403 | 409 => Ok(()),
            _ => Err(not_a_peer(format!("HTTP {status}"))),
        }
    }

    /// Waits until learner `id` holds the log up to `index`: at most [`LEARNER_CATCH_UP`],
    /// and no longer than [`LEARNER_STALL`] without it gaining an entry.
    async fn wait_caught_up(&self, id: u64, index: u64) -> Result<(), MembershipError> {
        let mut rx = self.raft.metrics();
        let start = tokio::time::Instant::now();
        let mut best = None;
        let mut progress_at = start;
        loop {
            let matched = rx
                .borrow_watched()
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map(|l| l.index);
            if matched.is_some_and(|m| m >= index) {
                return Ok(());
            }
            if matched > best {
                best = matched;
                progress_at = tokio::time::Instant::now();
            }
            let deadline = (progress_at + LEARNER_STALL).min(start + LEARNER_CATCH_UP);
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(
                        NodeError::Unavailable("raft stopped; see the server log".into()).into(),
                    );
                }
                Err(_) => {
                    let why = match best {
                        None => format!(
                            "it took no entry in {}s (is it running and reachable?)",
                            LEARNER_STALL.as_secs()
                        ),
                        Some(m) if progress_at + LEARNER_STALL <= deadline => format!(
                            "it stopped at entry {m} of {index} for {}s",
                            LEARNER_STALL.as_secs()
                        ),
                        Some(m) => format!(
                            "it reached entry {m} of {index} in {}s",
                            LEARNER_CATCH_UP.as_secs()
                        ),
                    };
                    return Err(NodeError::Unavailable(format!(
                        "id: node {id} did not catch up: {why}; it was not added"
                    ))
                    .into());
                }
            }
        }
    }

    /// Removes `id` from the voters and the node list; 404 if it is not a member.
    pub async fn remove_member(&self, id: u64) -> Result<ClusterInfo, MembershipError> {
        let known = self.cluster_info();
        let Some(member) = known.members.iter().find(|m| m.id == id) else {
            return Err(MembershipError::NotMember(format!(
                "id: node {id} is not a member"
            )));
        };
        if member.voter {
            if known.members.iter().filter(|m| m.voter).count() == 1 {
                return Err(MembershipError::Conflict(format!(
                    "id: node {id} is the last voter and cannot be removed"
                )));
            }
            self.raft
                .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                .await
                .map_err(membership_error)?;
        } else {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                .await
                .map_err(membership_error)?;
        }
        tracing::info!(id, "member removed");
        Ok(self.cluster_info())
    }
}

/// A membership change refused or failed, in words (openraft's text carries debug dumps
/// of log ids): a change racing another is a 409 to retry.
fn membership_error(e: WriteError) -> MembershipError {
    use crate::raft::ChangeMembershipError as C;
    let refused = match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
            return NodeError::NoLeader.into();
        }
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => {
            return NodeError::UnknownOutcome(
                "membership: leadership changed while the change was pending; it may or may \
                 not have been applied: check GET /v1/cluster and retry"
                    .into(),
            )
            .into();
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => c,
        // Membership changes attach no precondition.
        RaftError::APIError(ClientWriteError::PreconditionFailed(e)) => {
            return MembershipError::Internal(e.to_string());
        }
        RaftError::Fatal(e) => {
            return NodeError::Unavailable(format!("raft stopped: {e}")).into();
        }
    };
    MembershipError::Conflict(match refused {
        C::InProgress(_) | C::UncommittedLeaderLog(_) => {
            "membership: another membership change is in progress; retry once it is done".to_owned()
        }
        C::EmptyMembership(_) => "membership: the change would leave no voter".to_owned(),
        C::LearnerNotFound(l) => format!(
            "id: node {} is not a learner of this cluster; add it again",
            l.node_id
        ),
        C::NodeMetadataChanged(n) => format!(
            "addr: node {} is already a member at another address; remove it first",
            n.node_id
        ),
        C::UnsupportedMembershipTransition(_) => {
            "membership: this change cannot be made in one step; make it one member at a time"
                .to_owned()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{ChangeMembershipError, InProgress};

    #[test]
    fn a_racing_membership_change_is_a_plain_409() {
        let e = membership_error(RaftError::APIError(
            ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(
                InProgress {
                    committed: None,
                    membership_log_id: None,
                },
            )),
        ));
        assert!(matches!(e, MembershipError::Conflict(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "membership: another membership change is in progress; retry once it is done"
        );
    }
}
