//! A running process's admin API, for `alertpost dlq --admin` and
//! `alertpost attempts --admin`: JSON over HTTP, bounded in time, with the
//! admin token when one is set (`ALERTPOST_ADMIN_TOKEN` or
//! `--admin-token-file`; never a flag of its own, which `ps` would show).

use std::time::Duration;

use anyhow::anyhow;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Failure;
use crate::cli::AdminTarget;

/// The admin token, when no `--admin-token-file` names one.
pub const TOKEN_ENV: &str = "ALERTPOST_ADMIN_TOKEN";

/// A replay of a large dead queue may take this long; nothing else comes close.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

pub struct AdminClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl AdminClient {
    /// `None` when no `--admin` was given.
    pub fn from_target(target: &AdminTarget) -> Result<Option<AdminClient>, Failure> {
        let Some(addr) = &target.admin else {
            return Ok(None);
        };
        let from_env = std::env::var(TOKEN_ENV).ok();
        let token = match (&target.admin_token_file, from_env) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Failure::Usage(anyhow!(
                        "cannot read --admin-token-file {}: {e}",
                        path.display()
                    ))
                })?;
                Some(text.trim().to_owned())
            }
            (None, Some(token)) => Some(token.trim().to_owned()),
            (None, None) => None,
        };
        let addr = addr.trim_end_matches('/');
        // Credentials belong in the token, not in an address that errors
        // and logs repeat.
        if addr.contains('@') {
            return Err(Failure::Usage(anyhow!(
                "--admin takes an address (host:port or http://host:port); the token goes in {TOKEN_ENV} or --admin-token-file"
            )));
        }
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.to_owned()
        } else {
            format!("http://{addr}")
        };
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| Failure::Runtime(anyhow!("cannot build an HTTP client: {e}")))?;
        Ok(Some(AdminClient {
            base,
            token: token.filter(|t| !t.is_empty()),
            http,
        }))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        self.get_optional(path)
            .await?
            .ok_or_else(|| self.fail(path, "404 Not Found".to_owned()))
    }

    /// `None` on 404.
    pub async fn get_optional<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, Failure> {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(path, request).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, Failure> {
        let body = serde_json::to_vec(body).map_err(|e| self.fail(path, e.to_string()))?;
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.send(path, request)
            .await?
            .ok_or_else(|| self.fail(path, "404 Not Found".to_owned()))
    }

    async fn send<T: DeserializeOwned>(
        &self,
        path: &str,
        mut request: reqwest::RequestBuilder,
    ) -> Result<Option<T>, Failure> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.fail(path, without_url(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.fail(path, without_url(&e)))?;
        match status.as_u16() {
            200..=299 => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| self.fail(path, format!("not the JSON expected: {e}"))),
            404 => Ok(None),
            401 => Err(Failure::Usage(anyhow!(
                "admin API at {}: 401: {}",
                self.base,
                if self.token.is_some() {
                    "the token was refused"
                } else {
                    "it needs its token: set ALERTPOST_ADMIN_TOKEN or --admin-token-file"
                }
            ))),
            _ => Err(self.fail(
                path,
                format!("{status}: {}", String::from_utf8_lossy(&body).trim()),
            )),
        }
    }

    fn fail(&self, path: &str, e: String) -> Failure {
        let route = path.split('?').next().unwrap_or(path);
        Failure::Runtime(anyhow!("admin API at {} ({route}): {e}", self.base))
    }
}

/// reqwest's errors name the URL; ours already does, once.
fn without_url(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut text = if e.is_timeout() {
        "no answer in time".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Percent-encodes a query value or path segment.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
