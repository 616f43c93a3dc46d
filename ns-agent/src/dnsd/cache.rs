//! [`Cache`]: the forwarder's answers, kept within their TTLs.
//!
//! Keyed by the lowercased question name and type. A positive answer lives as long as its
//! shortest record TTL, a negative one (NXDOMAIN or NODATA) as long as the upstream's SOA
//! allows (RFC 2308: the SOA's TTL, at most its minimum); an answer without a TTL to go by
//! (SERVFAIL, a negative answer without SOA) is not kept. A hit hands the records back with
//! their TTLs lowered by the time spent in the cache, as a caching resolver must. The map is
//! bounded: when full, expired entries go first, then the entry closest to expiry.
//!
//! Only the forwarding path takes this lock; zone answers never touch it. The clock is passed
//! in, so the tests drive time.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// A forwarded answer, as sent back to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// NoError (with records, or NODATA), NXDomain, ServFail or Refused.
    pub rcode: ResponseCode,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The authority section (the upstream's SOA on NXDOMAIN and NODATA).
    pub authority: Vec<Record>,
    /// The additional section.
    pub additionals: Vec<Record>,
    /// Whether it came from the cache.
    pub cached: bool,
}

impl Forwarded {
    /// An answer with no records and `rcode`.
    pub fn empty(rcode: ResponseCode) -> Forwarded {
        Forwarded {
            rcode,
            answers: Vec::new(),
            authority: Vec::new(),
            additionals: Vec::new(),
            cached: false,
        }
    }

    /// How long this answer may be kept: the shortest TTL of a positive answer, the SOA's
    /// negative TTL of a negative one, nothing for anything else.
    pub fn lifetime(&self) -> Option<Duration> {
        let secs = match self.rcode {
            ResponseCode::NoError if !self.answers.is_empty() => self
                .answers
                .iter()
                .chain(&self.additionals)
                .map(|r| r.ttl)
                .min()?,
            ResponseCode::NoError | ResponseCode::NXDomain => {
                self.authority.iter().find_map(|r| match &r.data {
                    RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                    _ => None,
                })?
            }
            _ => return None,
        };
        (secs > 0).then(|| Duration::from_secs(u64::from(secs)))
    }
}

/// The bounded answer cache.
#[derive(Debug)]
pub struct Cache {
    entries: Mutex<HashMap<(Name, RecordType), Entry>>,
    capacity: usize,
}

#[derive(Debug)]
struct Entry {
    answer: Forwarded,
    stored: Instant,
    expires: Instant,
}

impl Cache {
    /// A cache of at most `capacity` answers (0 keeps nothing).
    pub fn new(capacity: usize) -> Cache {
        Cache {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The answer to `name` `qtype` if one is kept and still valid at `now`, its TTLs lowered
    /// by its age.
    pub fn get(&self, name: &Name, qtype: RecordType, now: Instant) -> Option<Forwarded> {
        let key = (name.to_lowercase(), qtype);
        let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.get(&key)?;
        if now >= entry.expires {
            map.remove(&key);
            return None;
        }
        let age = u32::try_from(now.duration_since(entry.stored).as_secs()).unwrap_or(u32::MAX);
        let mut answer = entry.answer.clone();
        for r in answer
            .answers
            .iter_mut()
            .chain(&mut answer.authority)
            .chain(&mut answer.additionals)
        {
            r.ttl = r.ttl.saturating_sub(age);
        }
        answer.cached = true;
        Some(answer)
    }

    /// Keeps `answer` to `name` `qtype`, if it has a lifetime (see [`Forwarded::lifetime`]).
    pub fn put(&self, name: &Name, qtype: RecordType, answer: &Forwarded, now: Instant) {
        let Some(life) = answer.lifetime() else {
            return;
        };
        if self.capacity == 0 {
            return;
        }
        let key = (name.to_lowercase(), qtype);
        let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.retain(|_, e| e.expires > now);
            if map.len() >= self.capacity
                && let Some(k) = map
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&k);
            }
        }
        let mut answer = answer.clone();
        answer.cached = false;
        map.insert(
            key,
            Entry {
                answer,
                stored: now,
                expires: now + life,
            },
        );
    }

    /// How many answers are kept (expired ones included until they are looked at).
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::str::FromStr as _;

    use hickory_proto::rr::rdata::{A, SOA};

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_str(s).unwrap()
    }

    fn a(ttl: u32) -> Forwarded {
        let r = Record::from_rdata(
            name("x.other.corp."),
            ttl,
            RData::A(A(Ipv4Addr::new(10, 9, 0, 1))),
        );
        Forwarded {
            answers: vec![r],
            ..Forwarded::empty(ResponseCode::NoError)
        }
    }

    fn nx(soa_ttl: u32, minimum: u32) -> Forwarded {
        let soa = SOA::new(
            name("other.corp."),
            name("hostmaster.other.corp."),
            1,
            3600,
            600,
            86400,
            minimum,
        );
        let r = Record::from_rdata(name("other.corp."), soa_ttl, RData::SOA(soa));
        Forwarded {
            authority: vec![r],
            ..Forwarded::empty(ResponseCode::NXDomain)
        }
    }

    #[test]
    fn positive_answers_live_for_their_ttl_and_age() {
        let c = Cache::new(8);
        let t0 = Instant::now();
        let q = name("X.Other.Corp.");
        c.put(&q, RecordType::A, &a(10), t0);
        let hit = c
            .get(
                &name("x.other.corp."),
                RecordType::A,
                t0 + Duration::from_secs(3),
            )
            .expect("kept, case-insensitively");
        assert!(hit.cached);
        assert_eq!(hit.answers[0].ttl, 7, "TTL lowered by the age");
        assert!(c.get(&q, RecordType::AAAA, t0).is_none(), "keyed by type");
        assert!(
            c.get(&q, RecordType::A, t0 + Duration::from_secs(10))
                .is_none()
        );
        assert!(c.is_empty(), "an expired entry is dropped when looked at");
    }

    #[test]
    fn negative_answers_follow_the_soa_and_failures_are_not_kept() {
        let c = Cache::new(8);
        let t0 = Instant::now();
        let q = name("nope.other.corp.");
        assert_eq!(nx(30, 5).lifetime(), Some(Duration::from_secs(5)));
        assert_eq!(nx(3, 60).lifetime(), Some(Duration::from_secs(3)));
        c.put(&q, RecordType::A, &nx(30, 5), t0);
        let hit = c
            .get(&q, RecordType::A, t0 + Duration::from_secs(4))
            .unwrap();
        assert_eq!(hit.rcode, ResponseCode::NXDomain);
        assert_eq!(hit.authority.len(), 1, "the SOA comes back");
        assert!(
            c.get(&q, RecordType::A, t0 + Duration::from_secs(5))
                .is_none()
        );
        for f in [
            Forwarded::empty(ResponseCode::ServFail),
            Forwarded::empty(ResponseCode::NXDomain),
            a(0),
        ] {
            assert_eq!(f.lifetime(), None, "{f:?}");
            c.put(&q, RecordType::TXT, &f, t0);
            assert!(c.get(&q, RecordType::TXT, t0).is_none());
        }
    }

    #[test]
    fn the_cache_is_bounded() {
        let c = Cache::new(2);
        let t0 = Instant::now();
        c.put(&name("a.x."), RecordType::A, &a(5), t0);
        c.put(&name("b.x."), RecordType::A, &a(50), t0);
        c.put(&name("c.x."), RecordType::A, &a(50), t0);
        assert_eq!(c.len(), 2);
        assert!(
            c.get(&name("a.x."), RecordType::A, t0).is_none(),
            "the entry closest to expiry made room"
        );
        assert!(c.get(&name("c.x."), RecordType::A, t0).is_some());
        assert!(
            Cache::new(0)
                .get(&name("c.x."), RecordType::A, t0)
                .is_none()
        );
    }
}
