//! OAuth 2 client credentials: one token per integration, fetched on first
//! use, cached until shortly before it expires, refetched once when the
//! endpoint answers 401. Concurrent attempts share one fetch.
//!
//! The token endpoint is called through the same client as deliveries, so
//! the outbound policy applies to it too. A failure to get a token is an
//! attempt that could not be made: retried like a connection failure.

use std::time::{Duration, Instant};

use alertpost_config::OAuth2;
use reqwest::header::HeaderValue;
use tokio::sync::Mutex;

use crate::client::Client;

/// Lifetime assumed when the token endpoint names none.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// The longest lifetime taken as given.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A token is refreshed this long before it expires (or a tenth of its
/// lifetime, if that is shorter), so no request carries one that expires on
/// the way.
const EARLY: Duration = Duration::from_secs(30);
/// The largest token answer read.
const MAX_TOKEN_ANSWER: usize = 64 * 1024;

#[derive(Debug)]
pub struct TokenCache {
    oauth: OAuth2,
    token: Mutex<Option<Token>>,
}

#[derive(Debug, Clone)]
struct Token {
    /// `Bearer <access_token>`, marked sensitive.
    header: HeaderValue,
    refresh_at: Instant,
}

impl TokenCache {
    pub fn new(oauth: OAuth2) -> TokenCache {
        TokenCache {
            oauth,
            token: Mutex::new(None),
        }
    }

    /// The `authorization` value, fetching a token if there is no fresh one.
    pub async fn header(&self, client: &Client, timeout: Duration) -> Result<HeaderValue, String> {
        let mut token = self.token.lock().await;
        if let Some(t) = token.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(t.header.clone());
        }
        let fresh = self.fetch(client, timeout).await?;
        let header = fresh.header.clone();
        *token = Some(fresh);
        Ok(header)
    }

    /// After a 401 with `used`: drop it (unless another attempt already
    /// replaced it) and get a new one.
    pub async fn refresh(
        &self,
        client: &Client,
        timeout: Duration,
        used: &HeaderValue,
    ) -> Result<HeaderValue, String> {
        {
            let mut token = self.token.lock().await;
            if token.as_ref().is_some_and(|t| t.header == used) {
                *token = None;
            }
        }
        self.header(client, timeout).await
    }

    async fn fetch(&self, client: &Client, timeout: Duration) -> Result<Token, String> {
        let o = &self.oauth;
        match tokio::time::timeout(timeout, client.check(&o.token_url, None)).await {
            Ok(Ok(())) => {}
            Ok(Err(crate::client::Refusal::Policy(e))) => {
                return Err(format!("token endpoint refused by policy: {e}"));
            }
            Ok(Err(crate::client::Refusal::Unresolved(e))) => {
                return Err(format!("token endpoint: {e}"));
            }
            Err(_) => return Err("token endpoint: no address within the timeout".to_owned()),
        }
        // Built before any await: the serializer is not `Send`.
        let form = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials")
                .append_pair("client_id", &o.client_id)
                .append_pair("client_secret", o.client_secret.expose());
            if !o.scopes.is_empty() {
                form.append_pair("scope", &o.scopes.join(" "));
            }
            form.finish()
        };
        let response = client
            .http
            .post(o.token_url.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(form)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| format!("token endpoint: {}", e.without_url()))?;
        let status = response.status();
        let mut response = response;
        // Read up to a cap: a token answer is a few hundred bytes, and an
        // endpoint that streams without end must not fill the memory.
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("token endpoint: {}", e.without_url()))?
        {
            if body.len() + chunk.len() > MAX_TOKEN_ANSWER {
                return Err(format!(
                    "token endpoint: the answer is over {MAX_TOKEN_ANSWER} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let start: String = String::from_utf8_lossy(&body[..body.len().min(200)])
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            return Err(format!(
                "token endpoint answered HTTP {}: {}",
                status.as_u16(),
                start.trim()
            ));
        }
        let json: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| "token endpoint: the answer is not JSON".to_owned())?;
        let access = json["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or("token endpoint: no access_token in the answer")?;
        if let Some(kind) = json["token_type"].as_str()
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(format!("token endpoint: token_type `{kind}` is not bearer"));
        }
        let lifetime = json["expires_in"]
            .as_u64()
            .or_else(|| json["expires_in"].as_str().and_then(|s| s.parse().ok()))
            .map_or(DEFAULT_LIFETIME, Duration::from_secs)
            // A token endpoint's number must not overflow the clock; a day
            // between fetches costs nothing.
            .min(MAX_LIFETIME);
        let early = EARLY.min(lifetime / 10);
        let mut header = HeaderValue::from_str(&format!("Bearer {access}"))
            .map_err(|_| "token endpoint: the token is not a valid header value".to_owned())?;
        header.set_sensitive(true);
        tracing::debug!(lifetime_s = lifetime.as_secs(), "fetched an OAuth 2 token");
        Ok(Token {
            header,
            refresh_at: Instant::now() + lifetime - early,
        })
    }
}
