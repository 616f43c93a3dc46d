//! A nemesis for history tests: kill -9 and SIGSTOP of leaders and followers, in turn.
//!
//! Each round waits for a burst of acknowledged writes (so the fault lands on entries in
//! flight), injects one fault, holds it, then heals the cluster and waits for an agreed
//! leader. The first rounds go through every fault kind, later ones pick at random.
//! What the workload saw is judged by `harness::history`, not here.

use std::time::Duration;

use anyhow::Context as _;
use harness::history::Recorder;
use harness::{Cluster, eventually};
use pyxis_client::api::NodeId;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// kill -9 the leader right after a burst of writes, restart it a little later.
    KillLeader,
    /// SIGSTOP the leader until the others elected a new one, then SIGCONT: a deposed
    /// leader wakes up with entries of its old term.
    PauseLeader,
    /// kill -9 a follower and restart it.
    KillFollower,
    /// SIGSTOP a follower for a while.
    PauseFollower,
    /// SIGSTOP the leader, kill -9 its successor once elected (no quorum for a while), wake
    /// the old leader, restart the successor.
    PauseLeaderKillSuccessor,
}

/// The first rounds, in order: every kind, and the leader kill (which loses the replies of
/// writes in flight, the classic way to get a retried write applied twice) three times.
const FIRST_ROUNDS: [Fault; 7] = [
    Fault::KillLeader,
    Fault::PauseLeader,
    Fault::KillFollower,
    Fault::KillLeader,
    Fault::PauseFollower,
    Fault::PauseLeaderKillSuccessor,
    Fault::KillLeader,
];

/// Later rounds pick from these at random; leader faults weigh twice.
const LATER_ROUNDS: [Fault; 8] = [
    Fault::KillLeader,
    Fault::KillLeader,
    Fault::PauseLeader,
    Fault::PauseLeader,
    Fault::KillFollower,
    Fault::PauseFollower,
    Fault::PauseLeaderKillSuccessor,
    Fault::PauseLeaderKillSuccessor,
];

/// Acknowledged writes to wait for before each fault.
const BURST: usize = 20;

/// Deadline for that burst with every member up: no write for that long is a liveness bug.
const BURST_DEADLINE: Duration = Duration::from_secs(60);

/// How long to wait for the survivors to elect a new leader when one is paused.
const ELECTION_DEADLINE: Duration = Duration::from_secs(20);

/// What the nemesis did.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// Kills and pauses injected.
    pub(crate) count: usize,
    /// One line per action, `+12.345s ...`, on the history clock.
    pub(crate) log: Vec<String>,
}

/// Injects faults until `run_for` has passed on the history clock and at least
/// `min_faults` were injected; returns with every member up and a leader agreed.
pub(crate) async fn run(
    c: &mut Cluster,
    rec: &Recorder,
    run_for: Duration,
    min_faults: usize,
    seed: u64,
) -> anyhow::Result<Faults> {
    let mut n = Nemesis {
        rng: StdRng::seed_from_u64(seed),
        rec,
        faults: Faults::default(),
    };
    let mut round = 0;
    while rec.now() < run_for || n.faults.count < min_faults {
        let base = rec.acked();
        eventually(BURST_DEADLINE, async || {
            anyhow::ensure!(
                rec.acked() >= base + BURST,
                "{} of {BURST} writes acknowledged",
                rec.acked() - base
            );
            Ok(())
        })
        .await
        .with_context(|| format!("writes stalled with all members up\n{}", c.log_tails(40)))?;
        let gap = n.rng.random_range(200..1500);
        tokio::time::sleep(Duration::from_millis(gap)).await;
        let fault = match FIRST_ROUNDS.get(round) {
            Some(f) => *f,
            None => LATER_ROUNDS[n.rng.random_range(0..LATER_ROUNDS.len())],
        };
        round += 1;
        let leader = c.leader().await?;
        n.inject(c, fault, leader).await?;
        let healed = c.heal().await?;
        n.note(format!("healed, leader n{healed}"));
    }
    Ok(n.faults)
}

struct Nemesis<'a> {
    rng: StdRng,
    rec: &'a Recorder,
    faults: Faults,
}

impl Nemesis<'_> {
    fn note(&mut self, what: String) {
        let at = self.rec.now().as_secs_f64();
        self.faults.log.push(format!("+{at:.3}s {what}"));
    }

    /// Holds a fault for a random time in `ms`.
    async fn hold(&mut self, ms: std::ops::Range<u64>) {
        let d = Duration::from_millis(self.rng.random_range(ms));
        tokio::time::sleep(d).await;
    }

    fn kill(&mut self, c: &mut Cluster, id: NodeId, role: &str) -> anyhow::Result<()> {
        c.kill9(id)?;
        self.faults.count += 1;
        self.note(format!("kill -9 n{id} ({role})"));
        Ok(())
    }

    fn pause(&mut self, c: &mut Cluster, id: NodeId, role: &str) -> anyhow::Result<()> {
        c.pause(id)?;
        self.faults.count += 1;
        self.note(format!("SIGSTOP n{id} ({role})"));
        Ok(())
    }

    async fn restart(&mut self, c: &mut Cluster, id: NodeId) -> anyhow::Result<()> {
        c.restart(id).await?;
        self.note(format!("n{id} restarted"));
        Ok(())
    }

    fn resume(&mut self, c: &mut Cluster, id: NodeId) -> anyhow::Result<()> {
        c.resume(id)?;
        self.note(format!("SIGCONT n{id}"));
        Ok(())
    }

    /// Waits for the live members to elect a leader other than `old`.
    async fn successor(&mut self, c: &Cluster, old: NodeId) -> Option<NodeId> {
        match c.leader_within(ELECTION_DEADLINE).await {
            Ok(new) if new != old => {
                self.note(format!("n{new} elected"));
                Some(new)
            }
            other => {
                self.note(format!("no successor of n{old}: {other:?}"));
                None
            }
        }
    }

    async fn inject(
        &mut self,
        c: &mut Cluster,
        fault: Fault,
        leader: NodeId,
    ) -> anyhow::Result<()> {
        let followers = c.followers(leader);
        let follower = followers[self.rng.random_range(0..followers.len())];
        match fault {
            Fault::KillLeader => {
                self.kill(c, leader, "leader")?;
                self.hold(300..2000).await;
                self.restart(c, leader).await?;
            }
            Fault::PauseLeader => {
                self.pause(c, leader, "leader")?;
                self.successor(c, leader).await;
                self.hold(0..1000).await;
                self.resume(c, leader)?;
            }
            Fault::KillFollower => {
                self.kill(c, follower, "follower")?;
                self.hold(300..2000).await;
                self.restart(c, follower).await?;
            }
            Fault::PauseFollower => {
                self.pause(c, follower, "follower")?;
                self.hold(500..3000).await;
                self.resume(c, follower)?;
            }
            Fault::PauseLeaderKillSuccessor => {
                self.pause(c, leader, "leader")?;
                let next = self.successor(c, leader).await;
                if let Some(next) = next {
                    self.kill(c, next, "successor")?;
                    self.hold(300..1500).await;
                }
                self.resume(c, leader)?;
                if let Some(next) = next {
                    self.hold(0..1000).await;
                    self.restart(c, next).await?;
                }
            }
        }
        Ok(())
    }
}
