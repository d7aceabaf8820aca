//! A value that must never be shown: tokens, passwords, signing secrets,
//! header values taken from the environment.

use std::fmt;

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
}
