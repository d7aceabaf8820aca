//! The one table that decides what an attempt means.
//!
//! | attempt | verdict |
//! | --- | --- |
//! | 2xx, every `validate` rule holds | delivered |
//! | 2xx, a `validate` rule fails | retry (the reason names the rule) |
//! | 408, 425, 429, 5xx | retry (honouring `Retry-After` on 429 and 503) |
//! | timeout, connection failure, other transport error | retry |
//! | no OAuth 2 token (the token endpoint failed) | retry |
//! | 1xx, 3xx (redirects are not followed), other 4xx | dead, reason `status` |
//! | destination refused by the outbound policy | dead, reason `policy` |
//!
//! Deciding *when* to retry (the backoff schedule, the tier) is not done
//! here; a retry verdict only carries the endpoint's own wish, if any.

use std::time::{Duration, SystemTime};

use alertpost_config::Validator;
use alertpost_event::job::DeadReason;

use crate::exchange::{Answer, Response};

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Delivered,
    /// Try again later. `retry_after`: the endpoint's `Retry-After`.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Never try again.
    Dead {
        reason: DeadReason,
        detail: String,
    },
}

/// Classifies one attempt; `validators` are the integration's response
/// checks.
pub fn classify(result: &Answer, validators: &[Validator]) -> Verdict {
    match result {
        Answer::Response(r) => match r.status {
            200..=299 => match validators.iter().find_map(|v| v.check(&r.body).err()) {
                None => Verdict::Delivered,
                Some(failed) => Verdict::Retry {
                    reason: format!("HTTP {}, but validator {failed}", r.status),
                    retry_after: None,
                },
            },
            408 | 425 | 429 | 500..=599 => Verdict::Retry {
                reason: describe(r),
                retry_after: match r.status {
                    429 | 503 => r.header("retry-after").and_then(retry_after),
                    _ => None,
                },
            },
            _ => Verdict::Dead {
                reason: DeadReason::Status,
                detail: describe(r),
            },
        },
        Answer::Timeout => Verdict::Retry {
            reason: "timed out".to_owned(),
            retry_after: None,
        },
        Answer::Connect(e) => Verdict::Retry {
            reason: format!("connection failed: {e}"),
            retry_after: None,
        },
        Answer::Failed(e) | Answer::Token(e) => Verdict::Retry {
            reason: e.clone(),
            retry_after: None,
        },
        Answer::Policy(e) => Verdict::Dead {
            reason: DeadReason::Policy,
            detail: e.clone(),
        },
    }
}

/// `HTTP 503: <start of the body>`, on one line.
fn describe(r: &Response) -> String {
    let body = String::from_utf8_lossy(&r.body[..r.body.len().min(300)]);
    let body: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    let body = body.trim();
    if body.is_empty() {
        format!("HTTP {}", r.status)
    } else {
        format!("HTTP {}: {body}", r.status)
    }
}

/// The longest `Retry-After` taken as given: a receiver's header must not
/// overflow the clock; a delivery asked to wait this long expires anyway.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);

/// `Retry-After`: delay-seconds or an HTTP date, at most [`MAX_RETRY_AFTER`].
pub fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Answer {
        let mut map = reqwest::header::HeaderMap::new();
        for (n, v) in headers {
            map.insert(
                reqwest::header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        Answer::Response(Response {
            status,
            headers: map,
            body: Bytes::from(body.to_owned()),
            truncated: false,
        })
    }

    /// What a row expects.
    #[derive(Debug)]
    enum Expect {
        Delivered,
        Retry(Option<u64>),
        Dead(DeadReason),
    }

    fn check(result: Answer, expect: Expect) {
        let verdict = classify(&result, &[]);
        let ok = match (&verdict, &expect) {
            (Verdict::Delivered, Expect::Delivered) => true,
            (Verdict::Retry { retry_after, .. }, Expect::Retry(after)) => {
                *retry_after == after.map(Duration::from_secs)
            }
            (Verdict::Dead { reason, .. }, Expect::Dead(expected)) => reason == expected,
            _ => false,
        };
        assert!(ok, "{result:?} → {verdict:?}, expected {expect:?}");
    }

    /// One row per line of the table in the module docs.
    #[test]
    fn the_table() {
        use Expect::*;
        check(response(200, &[], ""), Delivered);
        check(response(202, &[], ""), Delivered);
        check(response(204, &[], ""), Delivered);
        check(response(408, &[], ""), Retry(None));
        check(response(425, &[], ""), Retry(None));
        check(response(429, &[], ""), Retry(None));
        check(response(429, &[("Retry-After", "7")], ""), Retry(Some(7)));
        check(response(503, &[("retry-after", "2")], ""), Retry(Some(2)));
        check(response(500, &[("retry-after", "2")], ""), Retry(None));
        check(response(501, &[], ""), Retry(None));
        check(response(599, &[], ""), Retry(None));
        check(Answer::Timeout, Retry(None));
        check(Answer::Connect("refused".into()), Retry(None));
        check(Answer::Failed("reset".into()), Retry(None));
        check(response(101, &[], ""), Dead(DeadReason::Status));
        check(
            response(301, &[("location", "/x")], ""),
            Dead(DeadReason::Status),
        );
        check(response(400, &[], ""), Dead(DeadReason::Status));
        check(response(401, &[], ""), Dead(DeadReason::Status));
        check(response(404, &[], ""), Dead(DeadReason::Status));
        check(response(410, &[], ""), Dead(DeadReason::Status));
        check(response(422, &[], ""), Dead(DeadReason::Status));
        check(Answer::Policy("10.0.0.1".into()), Dead(DeadReason::Policy));
    }

    #[test]
    fn reasons_carry_the_status_and_the_start_of_the_body() {
        let v = classify_plain(&response(400, &[], "{\"error\":\n\"bad field\"}"));
        assert_eq!(
            v,
            Verdict::Dead {
                reason: DeadReason::Status,
                detail: "HTTP 400: {\"error\": \"bad field\"}".to_owned()
            }
        );
        let v = classify_plain(&response(503, &[], ""));
        assert!(matches!(v, Verdict::Retry { reason, .. } if reason == "HTTP 503"));
    }

    fn classify_plain(result: &Answer) -> Verdict {
        classify(result, &[])
    }

    #[test]
    fn validators_turn_a_2xx_into_a_retry() {
        let c = alertpost_config::parse(
            "[[integration]]\nid = \"x\"\nurl = \"https://e.example.com\"\nvalidate = [{ path = \"$.status\", expected = [\"ok\"] }]\n",
            "t.toml",
            &|_| None,
        )
        .unwrap();
        let validators = &c.integrations[0].validate;
        assert_eq!(
            classify(&response(200, &[], r#"{"status":"ok"}"#), validators),
            Verdict::Delivered
        );
        let v = classify(&response(200, &[], r#"{"status":"queued"}"#), validators);
        assert_eq!(
            v,
            Verdict::Retry {
                reason: "HTTP 200, but validator $.status: found queued, expected one of ok"
                    .to_owned(),
                retry_after: None
            }
        );
        // Validators judge only answers that are otherwise a success.
        assert!(matches!(
            classify(&response(400, &[], "{}"), validators),
            Verdict::Dead { .. }
        ));
        check(
            Answer::Token("token endpoint answered HTTP 500".into()),
            Expect::Retry(None),
        );
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        assert_eq!(retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600));
        let d = retry_after(&later).unwrap();
        assert!(
            d > Duration::from_secs(3590) && d <= Duration::from_secs(3600),
            "{d:?}"
        );
        assert_eq!(retry_after("soon"), None);
        assert_eq!(retry_after("99999999999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(
            retry_after("Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(MAX_RETRY_AFTER)
        );
    }
}
