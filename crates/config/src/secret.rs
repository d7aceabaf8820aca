//! A value that must never be shown: tokens, passwords, signing secrets,
//! header values taken from the environment ([`Secret`]); and what a
//! request's `Authorization` presents ([`Credentials`]), read one way for
//! every surface that takes a token (the ingest, the admin API, the
//! console).

use std::fmt;

use base64::Engine as _;

/// Holds a secret. `Debug` and `Display` print `***`; the only way to the
/// value is [`Secret::expose`], which call sites use at the moment they put
/// it on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this secret, in time that does not depend on
    /// where they first differ (only the length shows).
    pub fn is(&self, given: &[u8]) -> bool {
        let own = self.0.as_bytes();
        own.len() == given.len()
            && own.iter().zip(given).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What an `Authorization` header presents, as RFC 9110 writes it:
/// `auth-scheme 1*SP credentials`, the scheme case-insensitive (§11.1),
/// the credentials one word of visible characters (a token68, or any
/// token alertpost's config accepts: one printable word). The whitespace
/// around the value is not part of it (§5.5). Anything else presents
/// nothing: a value without a space after the scheme, a tab, a second
/// word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Bearer(Vec<u8>),
    /// HTTP Basic: `user:password`, base64-encoded.
    Basic {
        user: Vec<u8>,
        password: Vec<u8>,
    },
}

impl Credentials {
    /// Reads an `Authorization` value; `None` when it presents neither
    /// scheme in that form.
    pub fn read(value: &[u8]) -> Option<Credentials> {
        let value = value.trim_ascii();
        let space = value.iter().position(|b| *b == b' ')?;
        let (scheme, rest) = (&value[..space], &value[space..]);
        let credentials = rest.trim_ascii_start();
        let one_word = !credentials.is_empty()
            && rest[..rest.len() - credentials.len()]
                .iter()
                .all(|b| *b == b' ')
            && credentials.iter().all(|b| b.is_ascii_graphic());
        if !one_word {
            return None;
        }
        if scheme.eq_ignore_ascii_case(b"bearer") {
            Some(Credentials::Bearer(credentials.to_vec()))
        } else if scheme.eq_ignore_ascii_case(b"basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(credentials)
                .ok()?;
            let colon = decoded.iter().position(|b| *b == b':')?;
            Some(Credentials::Basic {
                user: decoded[..colon].to_vec(),
                password: decoded[colon + 1..].to_vec(),
            })
        } else {
            None
        }
    }

    /// The token presented: a Bearer token, or, where `basic` allows it,
    /// the password of Basic authentication (any user name: some senders
    /// can only send Basic).
    pub fn token(value: &[u8], basic: bool) -> Option<Vec<u8>> {
        match Credentials::read(value)? {
            Credentials::Bearer(token) => Some(token),
            Credentials::Basic { password, .. } if basic => Some(password),
            Credentials::Basic { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_whole_values() {
        let s = Secret::new("token-1");
        assert!(s.is(b"token-1"));
        assert!(!s.is(b"token-2") && !s.is(b"token-") && !s.is(b"token-11") && !s.is(b""));
    }

    #[test]
    fn never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(
            format!("{s:?} {s} {:?}", Some(&s)),
            "Secret(***) *** Some(Secret(***))"
        );
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn authorization_is_read_one_way() {
        let basic = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        let bearer = |t: &str| Some(Credentials::Bearer(t.as_bytes().to_vec()));
        // (value, what it presents)
        let rows: Vec<(String, Option<Credentials>)> = vec![
            ("Bearer tok-1".into(), bearer("tok-1")),
            ("bearer tok-1".into(), bearer("tok-1")),
            ("BEARER tok-1".into(), bearer("tok-1")),
            ("Bearer   tok-1".into(), bearer("tok-1")),
            ("  Bearer tok-1  ".into(), bearer("tok-1")),
            ("Bearertok-1".into(), None),
            ("Bearer".into(), None),
            ("Bearer ".into(), None),
            ("Bearer\ttok-1".into(), None),
            ("Bearer tok 1".into(), None),
            ("Token tok-1".into(), None),
            (
                basic("ops:tok-1"),
                Some(Credentials::Basic {
                    user: b"ops".to_vec(),
                    password: b"tok-1".to_vec(),
                }),
            ),
            (
                basic(":tok-1"),
                Some(Credentials::Basic {
                    user: Vec::new(),
                    password: b"tok-1".to_vec(),
                }),
            ),
            (basic("no-colon"), None),
            ("Basic not-base64!".into(), None),
        ];
        for (value, expected) in rows {
            assert_eq!(Credentials::read(value.as_bytes()), expected, "{value:?}");
        }
        assert_eq!(
            Credentials::token(basic("u:tok-1").as_bytes(), true),
            Some(b"tok-1".to_vec())
        );
        assert_eq!(Credentials::token(basic("u:tok-1").as_bytes(), false), None);
        assert_eq!(
            Credentials::token(b"Bearer tok-1", false),
            Some(b"tok-1".to_vec())
        );
    }
}
