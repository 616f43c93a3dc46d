//! What a health check's result means, and flap damping.
//!
//! [`classify`] maps one run to passing (exit 0), warning (exit 1) or critical (anything else,
//! or killed at the timeout), as Consul does. [`Tracker`] turns the stream of results into the
//! registered status: `fail_after` consecutive critical results make an instance critical,
//! `pass_after` consecutive good ones make it routable again, and a single blip changes
//! nothing. Running the checks is `lifecycle`'s; running one script is `supervisor`'s.

use ns_core::Health;

use crate::supervisor::Outcome;

/// The status one check run reports.
pub fn classify(o: &Outcome) -> Health {
    match o.exit {
        Some(0) => Health::Passing,
        Some(1) => Health::Warning,
        _ => Health::Critical,
    }
}

/// A status change decided by [`Tracker::observe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The status before.
    pub from: Health,
    /// The status after.
    pub to: Health,
}

impl Transition {
    /// Whether the instance went into or out of traffic (an alert is due).
    pub fn crosses_critical(&self) -> bool {
        (self.from == Health::Critical) != (self.to == Health::Critical)
    }
}

/// The damped status of one instance.
#[derive(Debug, Clone)]
pub struct Tracker {
    fail_after: u32,
    pass_after: u32,
    status: Health,
    failures: u32,
    passes: u32,
}

impl Tracker {
    /// A tracker for a service not yet admitted: it reports critical until `pass_after`
    /// consecutive good results.
    pub fn new(fail_after: u32, pass_after: u32) -> Tracker {
        Tracker {
            fail_after: fail_after.max(1),
            pass_after: pass_after.max(1),
            status: Health::Critical,
            failures: 0,
            passes: 0,
        }
    }

    /// Changes the thresholds (a changed file) without forgetting the counts.
    pub fn set_thresholds(&mut self, fail_after: u32, pass_after: u32) {
        self.fail_after = fail_after.max(1);
        self.pass_after = pass_after.max(1);
    }

    /// The current damped status.
    pub fn status(&self) -> Health {
        self.status
    }

    /// Consecutive critical results so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Feeds one result; returns the change of status it causes, if any.
    pub fn observe(&mut self, result: Health) -> Option<Transition> {
        let from = self.status;
        if result == Health::Critical {
            self.failures += 1;
            self.passes = 0;
            if from != Health::Critical && self.failures >= self.fail_after {
                self.status = Health::Critical;
            }
        } else {
            self.failures = 0;
            self.passes += 1;
            // Passing and warning are both routable: moving between them needs no damping.
            if from != Health::Critical || self.passes >= self.pass_after {
                self.status = result;
            }
        }
        (self.status != from).then_some(Transition {
            from,
            to: self.status,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use Health::{Critical as C, Passing as P, Warning as W};

    fn outcome(exit: Option<i32>) -> Outcome {
        Outcome {
            exit,
            timed_out: exit.is_none(),
            output: String::new(),
            duration: Duration::ZERO,
        }
    }

    #[test]
    fn exit_codes_classify_as_consul_does() {
        assert_eq!(classify(&outcome(Some(0))), P);
        assert_eq!(classify(&outcome(Some(1))), W);
        assert_eq!(classify(&outcome(Some(2))), C);
        assert_eq!(classify(&outcome(Some(127))), C);
        assert_eq!(classify(&outcome(None)), C);
    }

    /// Feeds `results`, returning the status after each.
    fn run(t: &mut Tracker, results: &[Health]) -> Vec<Health> {
        results
            .iter()
            .map(|r| {
                t.observe(*r);
                t.status()
            })
            .collect()
    }

    #[test]
    fn admitted_after_pass_after_passes() {
        let mut t = Tracker::new(3, 2);
        assert_eq!(run(&mut t, &[P, C, P, P]), [C, C, C, P]);
    }

    #[test]
    fn critical_after_fail_after_and_blips_change_nothing() {
        let mut t = Tracker::new(3, 2);
        run(&mut t, &[P, P]);
        assert_eq!(run(&mut t, &[C, P, C, C, P, P]), [P, P, P, P, P, P]);
        assert_eq!(run(&mut t, &[C, C, C]), [P, P, C]);
        assert_eq!(t.failures(), 3);
        // One pass between failures is not a recovery.
        assert_eq!(run(&mut t, &[P, C, P, P]), [C, C, C, P]);
    }

    #[test]
    fn warning_is_routable_and_not_damped() {
        let mut t = Tracker::new(2, 2);
        run(&mut t, &[P, P]);
        let tr = t.observe(W).unwrap();
        assert!(!tr.crosses_critical());
        assert_eq!(t.status(), W);
        run(&mut t, &[C, C]);
        let tr = Transition { from: W, to: C };
        assert!(tr.crosses_critical());
        assert_eq!(t.status(), C);
    }
}
