//! Endpoint rotation and the retry loop with exponential backoff.
//!
//! The client keeps the index of the last endpoint that answered. A retryable failure
//! (connect error, timeout on a read, 503 `no_leader`/`unavailable`) moves on to the next
//! endpoint at once; after a full round of failures it sleeps with exponential backoff,
//! until the retry budget runs out. Writes with a request id are retried like reads (the
//! store applies them once); writes without one only when they cannot have been applied:
//! a connect error or a 503 from a node. Building requests lives in `client.rs`.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand::Rng as _;
use tokio::time::Instant;

use crate::error::{Error, Result};

/// Whether a request may be repeated after it possibly reached a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A read: repeating it changes nothing, so any retryable failure is retried.
    Read,
    /// A write without a request id: retried only when it is known not to have been applied.
    Write,
    /// A write carrying a request id: the store applies it once however often it arrives,
    /// so it is retried like a read.
    Once,
}

/// A failed attempt, with whether the request may have reached a node and been applied.
#[derive(Debug)]
pub(crate) struct Failure {
    /// What went wrong.
    pub(crate) error: Error,
    /// False for connect errors and 503 replies (nothing applied); true once the request
    /// may have been received (timeouts, resets, unreadable replies).
    pub(crate) maybe_applied: bool,
}

impl Failure {
    /// Whether this failure of a request of `kind` may be retried.
    fn retryable(&self, kind: Kind) -> bool {
        self.error.is_retryable() && (kind != Kind::Write || !self.maybe_applied)
    }
}

/// Backoff and budget settings of the retry loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Sleep after the first full round of failures.
    pub(crate) initial_backoff: Duration,
    /// The sleep doubles each round up to this cap.
    pub(crate) max_backoff: Duration,
    /// Total time after which the last error is returned; zero means a single attempt.
    pub(crate) budget: Duration,
    /// Upper bound on retries, on top of the time budget.
    pub(crate) max_retries: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            budget: Duration::from_secs(10),
            max_retries: None,
        }
    }
}

impl RetryPolicy {
    /// The backoff before round `round + 1` (0-based), before jitter: `initial * 2^round`, capped.
    pub(crate) fn backoff(&self, round: u32) -> Duration {
        let factor = 2u32.saturating_pow(round.min(31));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// [`backoff`](Self::backoff) with jitter: uniform in `[d/2, d]`, so that many clients
    /// that lost the same leader do not come back in lockstep.
    fn jittered_backoff(&self, round: u32) -> Duration {
        let d = self.backoff(round);
        let half = d / 2;
        let extra = rand::rng().random_range(0..=d.saturating_sub(half).as_micros());
        half + Duration::from_micros(u64::try_from(extra).unwrap_or(u64::MAX))
    }
}

/// The configured endpoints and the index of the one to try first.
#[derive(Debug)]
pub(crate) struct Endpoints {
    list: Vec<String>,
    current: AtomicUsize,
}

impl Endpoints {
    /// Wraps a non-empty list of normalised base URLs.
    pub(crate) fn new(list: Vec<String>) -> Endpoints {
        Endpoints {
            list,
            current: AtomicUsize::new(0),
        }
    }

    /// The base URLs, in the order given.
    pub(crate) fn list(&self) -> &[String] {
        &self.list
    }

    /// Index of the endpoint a new request starts with.
    pub(crate) fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.list.len().max(1)
    }

    /// Moves past endpoint `i` unless a concurrent request already moved elsewhere.
    fn failed(&self, i: usize) {
        let next = (i + 1) % self.list.len().max(1);
        let _ = self
            .current
            .compare_exchange(i, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Remembers that endpoint `i` answered.
    fn worked(&self, i: usize) {
        self.current.store(i, Ordering::Relaxed);
    }
}

/// Runs `attempt` against the endpoints, rotating and backing off as the module doc says.
///
/// Returns the first success, the first non-retryable error, or the last error once the
/// budget is spent; a transport error that exhausted the budget says how many attempts it took.
pub(crate) async fn run<T, F, Fut>(
    endpoints: &Endpoints,
    policy: &RetryPolicy,
    kind: Kind,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let n = endpoints.list.len();
    if n == 0 {
        return Err(Error::InvalidArgument("no endpoints configured".into()));
    }
    let started = Instant::now();
    let deadline = started + policy.budget;
    let mut index = endpoints.current();
    let (mut attempts, mut tried_this_round, mut round) = (0u32, 0usize, 0u32);
    loop {
        attempts += 1;
        let failure = match attempt(endpoints.list[index].clone()).await {
            Ok(v) => {
                endpoints.worked(index);
                return Ok(v);
            }
            Err(f) => f,
        };
        if !failure.retryable(kind) {
            return Err(failure.error);
        }
        tracing::debug!(
            endpoint = %endpoints.list[index],
            error = %failure.error,
            attempts,
            "request failed, trying the next endpoint"
        );
        endpoints.failed(index);
        index = (index + 1) % n;
        tried_this_round += 1;
        let out_of_retries = policy.max_retries.is_some_and(|m| attempts > m);
        // Every endpoint has failed once since the last sleep: back off before the next round.
        let sleep = if tried_this_round >= n {
            tried_this_round = 0;
            round += 1;
            policy.jittered_backoff(round - 1)
        } else {
            Duration::ZERO
        };
        if out_of_retries || Instant::now() + sleep >= deadline {
            return Err(give_up(failure.error, attempts, started.elapsed()));
        }
        if !sleep.is_zero() {
            tokio::time::sleep(sleep).await;
        }
    }
}

/// The error returned when the budget is spent: transport errors say how hard we tried.
fn give_up(error: Error, attempts: u32, elapsed: Duration) -> Error {
    match error {
        Error::Transport(m) if attempts > 1 => Error::Transport(format!(
            "{m} (gave up after {attempts} attempts in {:.1}s)",
            elapsed.as_secs_f64()
        )),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ErrorCode;
    use std::sync::Mutex;

    fn endpoints(n: usize) -> Endpoints {
        Endpoints::new((0..n).map(|i| format!("e{i}")).collect())
    }

    fn refused() -> Failure {
        Failure {
            error: Error::Transport("connection refused".into()),
            maybe_applied: false,
        }
    }

    fn timed_out() -> Failure {
        Failure {
            error: Error::Transport("timed out".into()),
            maybe_applied: true,
        }
    }

    fn no_leader() -> Failure {
        Failure {
            error: Error::Api {
                status: 503,
                code: ErrorCode::NoLeader,
                message: "no leader".into(),
            },
            maybe_applied: false,
        }
    }

    #[test]
    fn backoff_doubles_from_50ms_and_caps_at_1s() {
        let p = RetryPolicy::default();
        let schedule: Vec<u128> = (0..8).map(|r| p.backoff(r).as_millis()).collect();
        assert_eq!(schedule, [50, 100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(1));
        for r in 0..8 {
            let j = p.jittered_backoff(r);
            assert!(j >= p.backoff(r) / 2 && j <= p.backoff(r), "{r}: {j:?}");
        }
    }

    /// Runs the loop with scripted outcomes, recording which endpoint each attempt went to.
    async fn scripted(
        eps: &Endpoints,
        policy: RetryPolicy,
        kind: Kind,
        outcomes: Vec<Result<u32, Failure>>,
    ) -> (Result<u32>, Vec<String>) {
        let seen = Mutex::new(Vec::new());
        let outcomes = Mutex::new(outcomes.into_iter());
        let r = run(eps, &policy, kind, |e| {
            seen.lock().unwrap().push(e);
            let next = outcomes.lock().unwrap().next();
            async move { next.unwrap_or_else(|| Err(refused())) }
        })
        .await;
        (r, seen.into_inner().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn rotates_past_a_dead_endpoint_and_remembers_the_live_one() {
        let eps = endpoints(3);
        let (r, seen) = scripted(
            &eps,
            RetryPolicy::default(),
            Kind::Read,
            vec![Err(refused()), Ok(7)],
        )
        .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(seen, ["e0", "e1"]);
        assert_eq!(eps.current(), 1);
        // The next call starts where the last one succeeded.
        let (_, seen) = scripted(&eps, RetryPolicy::default(), Kind::Read, vec![Ok(1)]).await;
        assert_eq!(seen, ["e1"]);
    }

    #[tokio::test(start_paused = true)]
    async fn backs_off_after_each_full_round_until_the_budget_is_spent() {
        let eps = endpoints(2);
        let policy = RetryPolicy {
            budget: Duration::from_millis(500),
            ..RetryPolicy::default()
        };
        let started = Instant::now();
        let (r, seen) = scripted(&eps, policy, Kind::Read, vec![]).await;
        let err = r.unwrap_err();
        assert!(err.to_string().contains("gave up after"), "{err}");
        // The jittered rounds sleep 25-50, 50-100, 100-200 ms (at most 350 ms in all), so at
        // least four full rounds fit; the loop never sleeps past the budget.
        assert!(started.elapsed() <= Duration::from_millis(500));
        assert!(seen.len() >= 8 && seen.len() % 2 == 0, "{seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn writes_retry_on_503_but_not_after_a_timeout() {
        let eps = endpoints(3);
        let (r, seen) = scripted(
            &eps,
            RetryPolicy::default(),
            Kind::Write,
            vec![Err(no_leader()), Err(refused()), Ok(3)],
        )
        .await;
        assert_eq!(r.unwrap(), 3);
        assert_eq!(seen.len(), 3);

        let (r, seen) = scripted(
            &eps,
            RetryPolicy::default(),
            Kind::Write,
            vec![Err(timed_out()), Ok(3)],
        )
        .await;
        assert!(matches!(r, Err(Error::Transport(_))));
        assert_eq!(seen.len(), 1);

        // The same timeout on a read is retried elsewhere.
        let (r, _) = scripted(
            &eps,
            RetryPolicy::default(),
            Kind::Read,
            vec![Err(timed_out()), Ok(3)],
        )
        .await;
        assert_eq!(r.unwrap(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn non_retryable_errors_return_at_once() {
        let eps = endpoints(2);
        let conflict = Failure {
            error: Error::from_response(409, br#"{"error":"compare_failed","message":"x"}"#),
            maybe_applied: true,
        };
        let (r, seen) = scripted(
            &eps,
            RetryPolicy::default(),
            Kind::Read,
            vec![Err(conflict)],
        )
        .await;
        assert_eq!(r.unwrap_err().code(), Some(ErrorCode::CompareFailed));
        assert_eq!(seen.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_budget_means_one_attempt_and_max_retries_caps_attempts() {
        let eps = endpoints(3);
        let none = RetryPolicy {
            budget: Duration::ZERO,
            ..RetryPolicy::default()
        };
        let (r, seen) = scripted(&eps, none, Kind::Read, vec![]).await;
        assert!(r.is_err());
        assert_eq!(seen.len(), 1);

        let two = RetryPolicy {
            max_retries: Some(2),
            ..RetryPolicy::default()
        };
        let (_, seen) = scripted(&eps, two, Kind::Read, vec![]).await;
        assert_eq!(seen.len(), 3);
    }
}
