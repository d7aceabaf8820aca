//! Requests a browser makes on another site's behalf, refused.
//!
//! - A write action (any `POST` of the admin API) that a browser marks as
//!   sent from another site (`Sec-Fetch-Site: cross-site` or `same-site`),
//!   or whose `Origin` is not this server's: a page elsewhere cannot make
//!   an operator's browser purge or test, token or not. Command-line
//!   clients send neither header.
//! - Without `[admin] token`, on a loopback address: a `Host` that is not
//!   `localhost` or an IP address. Another site's name made to resolve to
//!   127.0.0.1 (DNS rebinding) would otherwise let its pages read the
//!   console and act through it.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::extract::Problem;

fn refused(why: &str) -> Response {
    (StatusCode::FORBIDDEN, axum::Json(Problem::new(why))).into_response()
}

/// Whether a write comes from this server's own pages or from no browser.
/// Pure, for the table test.
pub(crate) fn same_site(
    method: &Method,
    fetch_site: Option<&str>,
    origin: Option<&str>,
    host: Option<&str>,
) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    if fetch_site.is_some_and(|s| {
        s.eq_ignore_ascii_case("cross-site") || s.eq_ignore_ascii_case("same-site")
    }) {
        return false;
    }
    match (origin, host) {
        (None, _) => true,
        // `Origin: null` (a sandboxed or file page) is another site's too.
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
        (Some(_), None) => false,
    }
}

/// Whether `host` (a `Host` header) names this machine without a name
/// another site could point here: `localhost` or an IP address.
pub(crate) fn local_host(host: Option<&str>) -> bool {
    let Some(host) = host else {
        // HTTP/1.0 without Host: no browser sends that.
        return true;
    };
    let name = match host.strip_prefix('[') {
        // `[::1]:9464`
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
}

fn header(request: &Request, name: header::HeaderName) -> Option<&str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The write-action check (every route).
pub(crate) async fn writes_from_here(request: Request, next: Next) -> Response {
    let allowed = same_site(
        request.method(),
        header(&request, header::HeaderName::from_static("sec-fetch-site")),
        header(&request, header::ORIGIN),
        header(&request, header::HOST),
    );
    if !allowed {
        return refused(
            "a request from another site's page; this API takes actions only from its own console or a client that is no browser",
        );
    }
    next.run(request).await
}

/// The `Host` check, where `check` (no token, a loopback address).
pub(crate) async fn local_host_only(
    State(check): State<bool>,
    request: Request,
    next: Next,
) -> Response {
    if check && !local_host(header(&request, header::HOST)) {
        return refused(
            "this admin address answers to localhost or an IP address only (without [admin] token)",
        );
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_from_another_site_are_refused() {
        let post = Method::POST;
        let host = Some("127.0.0.1:9464");
        // (fetch site, origin, allowed)
        let table: [(Option<&str>, Option<&str>, bool); 8] = [
            (None, None, true),                                         // curl, alertpost dlq
            (Some("same-origin"), Some("http://127.0.0.1:9464"), true), // the console
            (Some("none"), None, true),
            (Some("cross-site"), None, false),
            (Some("same-site"), Some("http://127.0.0.1:3000"), false),
            (None, Some("http://evil.example"), false),
            (None, Some("null"), false),
            (None, Some("http://127.0.0.1:9465"), false),
        ];
        for (site, origin, allowed) in table {
            assert_eq!(
                same_site(&post, site, origin, host),
                allowed,
                "{site:?} {origin:?}"
            );
        }
        assert!(
            same_site(
                &Method::GET,
                Some("cross-site"),
                Some("http://evil.example"),
                host
            ),
            "links to pages work"
        );
    }

    #[test]
    fn only_local_names_without_a_token() {
        for ok in [
            "127.0.0.1:9464",
            "localhost:9464",
            "LOCALHOST",
            "[::1]:9464",
            "10.0.0.5:9464",
            "127.0.0.1",
        ] {
            assert!(local_host(Some(ok)), "{ok}");
        }
        for refused in ["evil.example:9464", "evil.example", "127.0.0.1.nip.io:9464"] {
            assert!(!local_host(Some(refused)), "{refused}");
        }
    }
}
