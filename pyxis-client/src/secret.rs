//! ACL token secrets: the shape every secret has, and new ones made on the caller's side.
//!
//! A client makes the secret of a token it asks for (`acl bootstrap`, `acl token create`)
//! and sends it, so that repeating the request after a lost reply names the same token:
//! the server answers the token that secret already made instead of a second one, and the
//! caller never ends up with a secret the store does not hold.

use rand::RngCore as _;

/// Prefix of every secret, so a leaked one is recognisable in logs and scanners.
pub const SECRET_PREFIX: &str = "pyx_";

/// Hex digits after the prefix (256 bits).
const SECRET_HEX_DIGITS: usize = 64;

/// A new secret: [`SECRET_PREFIX`] and 64 lowercase hex digits (256 random bits).
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let mut s = String::with_capacity(SECRET_PREFIX.len() + SECRET_HEX_DIGITS);
    s.push_str(SECRET_PREFIX);
    push_hex(&mut s, &bytes);
    s
}

/// `bytes` as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

/// Appends `bytes` to `out` as lowercase hex, without the formatting machinery: the ACL
/// check hashes a bearer token on every request.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

/// Why `secret` is not the shape of a secret, in words naming the rule; `None` if it is.
pub fn secret_shape_error(secret: &str) -> Option<String> {
    let ok = secret.strip_prefix(SECRET_PREFIX).is_some_and(|digits| {
        digits.len() == SECRET_HEX_DIGITS
            && digits
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    });
    (!ok).then(|| {
        format!("must be \"{SECRET_PREFIX}\" and {SECRET_HEX_DIGITS} lowercase hex digits")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn new_secrets_have_the_shape_and_differ() {
        let (a, b) = (new_secret(), new_secret());
        assert_eq!(secret_shape_error(&a), None);
        assert_eq!(a.len(), SECRET_PREFIX.len() + SECRET_HEX_DIGITS);
        assert_ne!(a, b);
    }

    #[test]
    fn near_misses_are_refused() {
        let good = new_secret();
        for bad in [
            String::new(),
            SECRET_PREFIX.to_owned(),
            good[SECRET_PREFIX.len()..].to_owned(),
            good.to_uppercase(),
            format!("{good}0"),
            good[..good.len() - 1].to_owned(),
            format!("{}g", &good[..good.len() - 1]),
            format!("xyz_{}", &good[SECRET_PREFIX.len()..]),
        ] {
            assert!(secret_shape_error(&bad).is_some(), "{bad:?} passed");
        }
    }

    proptest! {
        #[test]
        fn only_prefix_and_64_lowercase_hex_pass(s in "\\PC{0,80}") {
            let want = s.len() == 68
                && s.starts_with("pyx_")
                && s[4..].chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'));
            prop_assert_eq!(secret_shape_error(&s).is_none(), want);
        }
    }
}
