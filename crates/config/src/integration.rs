//! A validated integration: one webhook destination and how to deliver to it.

use std::fmt;
use std::time::Duration;

use url::Url;

use crate::secret::Secret;

/// One webhook integration, with `[defaults]` applied.
#[derive(Debug, Clone)]
pub struct Integration {
    /// Stable id: letters, digits, `-`, `_`. The metrics label and store key.
    pub id: String,
    pub name: String,
    pub enabled: bool,
    /// The destination, without any `user:pass@` (moved to [`Auth::Basic`]).
    pub url: Url,
    pub method: Method,
    /// Configured headers, in file order, names lowercased.
    pub headers: Vec<Header>,
    pub auth: Auth,
    /// Bound on one attempt, connect to last byte.
    pub timeout: Duration,
    /// Attempts in flight at once to this integration, per worker.
    pub concurrency: usize,
}

impl Integration {
    /// The URL to show in logs and errors: scheme, host and port only, as
    /// paths and queries often carry tokens (Slack, OnCall).
    pub fn url_for_logs(&self) -> String {
        match self.url.port() {
            Some(port) => format!(
                "{}://{}:{}/…",
                self.url.scheme(),
                self.url.host_str().unwrap_or(""),
                port
            ),
            None => format!(
                "{}://{}/…",
                self.url.scheme(),
                self.url.host_str().unwrap_or("")
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
    Patch,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configured request header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Lowercase.
    pub name: String,
    pub value: Secret,
    /// Whether the value may be shown (in `alertpost test` output): false when
    /// it came from the environment or the name suggests a credential.
    pub sensitive: bool,
}

/// How requests to an integration authenticate.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    None,
    /// HTTP Basic; from `user:pass@` in the URL (percent-decoded).
    Basic {
        username: String,
        password: Secret,
    },
}
