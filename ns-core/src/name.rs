//! Validated names: [`ServiceName`], [`DcName`], [`InstanceId`] and [`NodeName`].
//!
//! A value of these types has passed its rules, so code holding one never re-checks it (linkerd's
//! `Name`). Names are cheap to clone (`Arc<str>`) and compare as their text. This module does not
//! know about the DNS zone (`web.ns.corp.` -> `web` is `zone`'s job, lowercasing included) nor
//! about store keys ([`crate::keys`]).
//!
//! Rules, decided here and nowhere else:
//! - [`ServiceName`]: dot-separated DNS labels, each 1..=63 characters of `[a-z0-9-]`, neither
//!   starting nor ending with `-`; at most [`ServiceName::MAX_LEN`] (200) characters in all, which
//!   leaves room for a datacenter label and a zone within DNS's 253. Lowercase only: the
//!   name is also a store key, and one spelling per service keeps keys unique.
//! - [`DcName`]: a single label under the same rules (it appears in `NAME.DC.ns.corp`).
//! - [`InstanceId`]: one store key segment, 1..=128 characters of `[A-Za-z0-9._:-]`, not starting
//!   with `.` (so never `.` or `..`). Case is kept: agents build ids from host names.
//! - [`NodeName`]: a host's name as its agent reports it, one store key segment
//!   (`/ns/agents/NODE`): 1..=253 characters of `[A-Za-z0-9._-]` (the rule of `Instance::node`),
//!   not starting with `.`.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::NameError;

/// A service's name: dotted DNS labels such as `hotel` or `search.hotel`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceName(Arc<str>);

/// A datacenter's name: one DNS label such as `dc1` or `eu-west-1`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DcName(Arc<str>);

/// An instance's id within its service: one store key segment such as `host7-web-8080`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceId(Arc<str>);

/// A host's node name, as its agent reports it: `host7` or `host7.dc1.corp`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(Arc<str>);

impl ServiceName {
    /// Longest accepted service name, in characters.
    pub const MAX_LEN: usize = 200;

    /// Check `s` against the service name rules.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        check_length(s, Self::MAX_LEN)?;
        for label in s.split('.') {
            check_label(label).map_err(|m| NameError(format!("label {label:?} {m}")))?;
        }
        Ok(ServiceName(s.into()))
    }

    /// The labels, left to right: `search.hotel` gives `search`, `hotel`.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }
}

impl DcName {
    /// Check `s` against the datacenter name rules (one DNS label).
    pub fn parse(s: &str) -> Result<Self, NameError> {
        check_label(s).map_err(NameError)?;
        Ok(DcName(s.into()))
    }
}

impl InstanceId {
    /// Longest accepted instance id, in characters.
    pub const MAX_LEN: usize = 128;

    /// Check `s` against the instance id rules (one safe key segment).
    pub fn parse(s: &str) -> Result<Self, NameError> {
        check_segment(s, Self::MAX_LEN, &['.', '_', ':', '-'])?;
        Ok(InstanceId(s.into()))
    }
}

impl NodeName {
    /// Longest accepted node name, in characters (a DNS host name's limit).
    pub const MAX_LEN: usize = 253;

    /// Check `s` against the node name rules (one safe key segment).
    pub fn parse(s: &str) -> Result<Self, NameError> {
        check_segment(s, Self::MAX_LEN, &['.', '_', '-'])?;
        Ok(NodeName(s.into()))
    }
}

/// The reserved-label rule that keeps `NAME.DC.ZONE` apart from a dotted service name: the
/// last label of a multi-label service name may not be a datacenter's name (`is_dc` says which
/// names are datacenters). The store's typed API checks it for every service it writes, and
/// [`check_dc_name`] the other way round for every datacenter.
pub fn check_dc_label(
    service: &ServiceName,
    is_dc: impl Fn(&str) -> bool,
) -> Result<(), NameError> {
    match service.as_str().rsplit_once('.') {
        Some((_, last)) if is_dc(last) => Err(NameError(format!(
            "ends in {last:?}, the name of a datacenter: {service}.ZONE would read as \
             {prefix} in {last}",
            prefix = &service.as_str()[..service.as_str().len() - last.len() - 1]
        ))),
        _ => Ok(()),
    }
}

/// The other half of [`check_dc_label`]: a datacenter may not be named like the last label of
/// one of `services`.
pub fn check_dc_name<'s>(
    dc: &DcName,
    mut services: impl Iterator<Item = &'s str>,
) -> Result<(), NameError> {
    match services.find(|s| {
        s.rsplit_once('.')
            .is_some_and(|(_, last)| last == dc.as_str())
    }) {
        Some(s) => Err(NameError(format!(
            "is the last label of the service {s:?}: {s}.ZONE would also read as a name in {dc}"
        ))),
        None => Ok(()),
    }
}

/// Non-empty and at most `max` bytes (names are ASCII, so bytes are characters).
/// One safe key segment: at most `max` characters, letters, digits and `extra` only, and
/// no leading '.' (so never `.` or `..`).
fn check_segment(s: &str, max: usize, extra: &[char]) -> Result<(), NameError> {
    check_length(s, max)?;
    if s.starts_with('.') {
        return Err(NameError("must not start with '.'".into()));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || extra.contains(c)))
    {
        let allowed: Vec<String> = extra.iter().map(|e| format!("'{e}'")).collect();
        let (last, rest) = allowed
            .split_last()
            .map_or(("", &[][..]), |(l, r)| (l.as_str(), r));
        return Err(NameError(format!(
            "has {c:?}; only letters, digits, {} and {last} are allowed",
            rest.join(", ")
        )));
    }
    Ok(())
}

fn check_length(s: &str, max: usize) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError("must not be empty".into()));
    }
    if s.len() > max {
        return Err(NameError(format!(
            "is {} characters long, at most {max} allowed",
            s.len()
        )));
    }
    Ok(())
}

/// One DNS label: 1..=63 of `[a-z0-9-]`, no `-` at either end. Returns the reason on failure.
fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("must not be empty".into());
    }
    if label.len() > 63 {
        return Err(format!(
            "is {} characters long, at most 63 allowed",
            label.len()
        ));
    }
    if label.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("must be lowercase".into());
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!("has {c:?}; only a-z, 0-9 and '-' are allowed"));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err("must not start or end with '-'".into());
    }
    Ok(())
}

/// The trait impls the three names share: text access, `Display`, `FromStr` and the
/// `String` conversions serde goes through.
macro_rules! name_impls {
    ($($ty:ident),*) => {$(
        impl $ty {
            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                Self::parse(&s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = NameError;
            fn try_from(s: &str) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }

        impl From<$ty> for String {
            fn from(n: $ty) -> String {
                n.0.to_string()
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        // Sound because the derived `Eq`, `Ord` and `Hash` all look at the text only.
        impl Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    )*};
}

name_impls!(ServiceName, DcName, InstanceId, NodeName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        for ok in [
            "web",
            "search.hotel",
            "a",
            "a-b.c-d.e1",
            "0",
            &"a".repeat(63),
        ] {
            assert!(ServiceName::parse(ok).is_ok(), "{ok}");
        }
        let cases: &[(&str, &str)] = &[
            ("", "must not be empty"),
            ("Web", "label \"Web\" must be lowercase"),
            ("web..x", "label \"\" must not be empty"),
            (".web", "label \"\" must not be empty"),
            ("web.", "label \"\" must not be empty"),
            ("-web", "label \"-web\" must not start or end with '-'"),
            ("web-", "label \"web-\" must not start or end with '-'"),
            (
                "we_b",
                "label \"we_b\" has '_'; only a-z, 0-9 and '-' are allowed",
            ),
            (
                "a/b",
                "label \"a/b\" has '/'; only a-z, 0-9 and '-' are allowed",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(ServiceName::parse(input).unwrap_err().0, *want, "{input:?}");
        }
        let long = ["a"; 64].concat();
        assert_eq!(
            ServiceName::parse(&long).unwrap_err().0,
            format!("label {long:?} is 64 characters long, at most 63 allowed")
        );
        let too_long = vec!["abcdefghij"; 19].join("."); // 19 * 11 - 1 = 208
        assert_eq!(
            ServiceName::parse(&too_long).unwrap_err().0,
            "is 208 characters long, at most 200 allowed"
        );
    }

    #[test]
    fn dc_names_are_one_label() {
        assert!(DcName::parse("eu-west-1").is_ok());
        assert_eq!(
            DcName::parse("dc1.a").unwrap_err().0,
            "has '.'; only a-z, 0-9 and '-' are allowed"
        );
        assert_eq!(DcName::parse("").unwrap_err().0, "must not be empty");
    }

    #[test]
    fn dc_labels_are_reserved() {
        let dcs = ["dc1", "eu"];
        let is_dc = |s: &str| dcs.contains(&s);
        let svc = |s: &str| ServiceName::parse(s).unwrap();
        assert!(check_dc_label(&svc("dc1"), is_dc).is_ok());
        assert!(check_dc_label(&svc("search.hotel"), is_dc).is_ok());
        assert!(check_dc_label(&svc("dc1.hotel"), is_dc).is_ok());
        assert_eq!(
            check_dc_label(&svc("search.eu"), is_dc).unwrap_err().0,
            "ends in \"eu\", the name of a datacenter: search.eu.ZONE would read as search in eu"
        );
        let services = ["web", "search.hotel"];
        let dc = |s: &str| DcName::parse(s).unwrap();
        assert!(check_dc_name(&dc("web"), services.into_iter()).is_ok());
        assert!(check_dc_name(&dc("search"), services.into_iter()).is_ok());
        assert!(
            check_dc_name(&dc("hotel"), services.into_iter())
                .unwrap_err()
                .0
                .starts_with("is the last label of the service \"search.hotel\"")
        );
    }

    #[test]
    fn instance_ids_are_one_key_segment() {
        for ok in ["host7-web-8080", "Host_7.web:8080", "a..b"] {
            assert!(InstanceId::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            InstanceId::parse("..").unwrap_err().0,
            "must not start with '.'"
        );
        assert_eq!(
            InstanceId::parse("a/b").unwrap_err().0,
            "has '/'; only letters, digits, '.', '_', ':' and '-' are allowed"
        );
        assert!(InstanceId::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn serde_goes_through_the_rules() {
        let n: ServiceName = serde_json::from_str("\"search.hotel\"").unwrap();
        assert_eq!(n.labels().collect::<Vec<_>>(), ["search", "hotel"]);
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"search.hotel\"");
        assert!(serde_json::from_str::<ServiceName>("\"Bad\"").is_err());
    }
}
