//! Deserializers that give range and syntax errors the same wording as `validate`, so a
//! port of 0 and a port of 70000 read alike: `port: must be 1..=65535`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::de::{Deserialize, Deserializer, Error};

use super::{FAIL_OPEN_RANGE, PERCENT_RANGE, PORT_RANGE, WEIGHT_RANGE};

fn ranged<'de, D: Deserializer<'de>>(d: D, max: i64, msg: &str) -> Result<i64, D::Error> {
    let v = i64::deserialize(d)?;
    if (0..=max).contains(&v) {
        Ok(v)
    } else {
        Err(D::Error::custom(msg))
    }
}

pub(super) fn port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    match ranged(d, 65535, PORT_RANGE)? {
        0 => Err(D::Error::custom(PORT_RANGE)),
        v => Ok(v as u16),
    }
}

pub(super) fn weight<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    Ok(ranged(d, 1000, WEIGHT_RANGE)? as u16)
}

pub(super) fn opt_weight<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    match Option::<i64>::deserialize(d)? {
        None => Ok(None),
        Some(v) if (0..=1000).contains(&v) => Ok(Some(v as u16)),
        Some(_) => Err(D::Error::custom(WEIGHT_RANGE)),
    }
}

pub(super) fn percent<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    Ok(ranged(d, 100, PERCENT_RANGE)? as u8)
}

pub(super) fn address<'de, D: Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    let s = String::deserialize(d)?;
    let addr: IpAddr = s
        .parse()
        .map_err(|_| D::Error::custom(format!("{s:?} is not an IPv4 or IPv6 address")))?;
    super::check_address(addr).map_err(D::Error::custom)?;
    Ok(addr)
}

/// One CIDR network, as its own type so that an error names its index: `subnets[2]`.
struct Net(IpNet);

impl<'de> Deserialize<'de> for Net {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(Net).map_err(|_| {
            D::Error::custom(format!("{s:?} is not a CIDR network such as 10.1.0.0/16"))
        })
    }
}

pub(super) fn subnets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    Ok(Vec::<Net>::deserialize(d)?
        .into_iter()
        .map(|n| n.0)
        .collect())
}

pub(super) fn opt_percent<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    match Option::<i64>::deserialize(d)? {
        None => Ok(None),
        Some(v) if (1..=100).contains(&v) => Ok(Some(v as u8)),
        Some(_) => Err(D::Error::custom(FAIL_OPEN_RANGE)),
    }
}
