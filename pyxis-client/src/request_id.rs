//! Request ids: what makes a retried write safe to repeat.
//!
//! Every write a [`Client`](crate::Client) sends carries a [`RequestId`] in the
//! `x-pyxis-request-id` header, and every retry of that write (to the same or another
//! node) carries the same id. The store remembers the ids it applied with their results
//! (the Raft dissertation's client sessions, §6.3), so a repeat gets the first result
//! instead of a second apply. The id is two numbers: the client session (random per
//! [`IdSource`]) and a sequence number that grows with each request of that session.
//! How the store remembers them lives in the server (`pyxis::store::session`).

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// HTTP header carrying a write's [`RequestId`], as `SESSION-SEQ` (session in hex).
pub const HEADER_REQUEST_ID: &str = "x-pyxis-request-id";

/// One write request, the same across every retry and forwarding hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId {
    /// The client session the request belongs to (random, never 0).
    pub session: u64,
    /// The request's number within its session (from 1, growing).
    pub seq: u64,
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{}", self.session, self.seq)
    }
}

impl FromStr for RequestId {
    type Err = String;

    /// Parses `SESSION-SEQ` (session: 1 to 16 hex digits, not 0; seq: decimal, not 0).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{HEADER_REQUEST_ID}: expected SESSION-SEQ (SESSION 1-16 hex digits, SEQ a decimal number, neither 0), got {s:?}"
            )
        };
        let (session, seq) = s.split_once('-').ok_or_else(bad)?;
        let hex_ok = !session.is_empty()
            && session.len() <= 16
            && session.bytes().all(|b| b.is_ascii_hexdigit());
        let dec_ok = !seq.is_empty() && seq.len() <= 20 && seq.bytes().all(|b| b.is_ascii_digit());
        if !hex_ok || !dec_ok {
            return Err(bad());
        }
        let session = u64::from_str_radix(session, 16).map_err(|_| bad())?;
        let seq = seq.parse::<u64>().map_err(|_| bad())?;
        if session == 0 || seq == 0 {
            return Err(bad());
        }
        Ok(RequestId { session, seq })
    }
}

/// Hands out request ids of one session: a random session number and a counter.
#[derive(Debug)]
pub struct IdSource {
    session: u64,
    next: AtomicU64,
}

impl Default for IdSource {
    fn default() -> Self {
        IdSource::new()
    }
}

impl IdSource {
    /// A new session with a random number (never 0), counting from 1.
    pub fn new() -> IdSource {
        let mut session = 0;
        while session == 0 {
            session = rand::random::<u64>();
        }
        IdSource {
            session,
            next: AtomicU64::new(1),
        }
    }

    /// The next id of this session.
    pub fn next_id(&self) -> RequestId {
        RequestId {
            session: self.session,
            seq: self.next.fetch_add(1, Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_of_one_source_share_the_session_and_grow() {
        let s = IdSource::new();
        let (a, b) = (s.next_id(), s.next_id());
        assert_eq!(a.session, b.session);
        assert_ne!(a.session, 0);
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_ne!(IdSource::new().next_id().session, a.session);
    }

    #[test]
    fn malformed_ids_are_refused_naming_the_header() {
        for bad in [
            "",
            "-",
            "1",
            "1-",
            "-1",
            "0-1",
            "1-0",
            "x-1",
            "1-x",
            "1-1-1",
            " 1-1",
            "11111111111111111-1",
            "1--1",
            "1-+1",
        ] {
            let e = bad.parse::<RequestId>().unwrap_err();
            assert!(e.starts_with(HEADER_REQUEST_ID), "{bad:?}: {e}");
        }
    }

    proptest! {
        #[test]
        fn display_and_parse_round_trip(session in 1u64.., seq in 1u64..) {
            let id = RequestId { session, seq };
            prop_assert_eq!(id.to_string().parse::<RequestId>(), Ok(id));
        }
    }
}
