//! `match`: which events an integration gets.
//!
//! Alertmanager-style matchers, all of which must hold:
//! `severity=~"critical|high"`, `labels.team="db"`, `status!="resolved"`,
//! `data.model_id!~"test-.*"`. The left side is a dotted path into the event:
//! a top-level field, `labels.<name>` and `annotations.<name>` (the name is
//! everything after the first dot, dots and slashes included), or
//! `data.<a>.<b>` into nested objects. A missing value is the empty string,
//! as in Alertmanager. Regular expressions are anchored and compiled once,
//! at load; evaluating a filter allocates nothing for plain fields.

use std::borrow::Cow;
use std::fmt;

use alertpost_event::Event;
use regex::Regex;

/// Every matcher of an integration; empty matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    matchers: Vec<Matcher>,
}

#[derive(Debug, Clone)]
pub struct Matcher {
    path: Path,
    op: Op,
    value: String,
    /// For `=~` and `!~`: `^(?:value)$`.
    regex: Option<Regex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Re,
    NotRe,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Path {
    Id,
    DedupKey,
    Source,
    Kind,
    Status,
    Severity,
    Title,
    Message,
    ImageUrl,
    Environment,
    Label(String),
    Annotation(String),
    Data(Vec<String>),
}

impl Filter {
    pub fn new(matchers: Vec<Matcher>) -> Filter {
        Filter { matchers }
    }

    /// Whether every matcher holds for `event`.
    pub fn matches(&self, event: &Event) -> bool {
        self.matchers.iter().all(|m| m.matches(event))
    }

    pub fn is_empty(&self) -> bool {
        self.matchers.is_empty()
    }

    pub fn matchers(&self) -> &[Matcher] {
        &self.matchers
    }
}

impl Matcher {
    /// Parses `path op "value"` (the value may be unquoted).
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let (at, op, len) = find_op(text).ok_or_else(|| {
            format!("`{text}` is not a matcher: write path=\"value\" (operators =, !=, =~, !~)")
        })?;
        let path = parse_path(text[..at].trim())?;
        let value = parse_value(text[at + len..].trim())?;
        let regex = match op {
            Op::Re | Op::NotRe => Some(Regex::new(&format!("^(?:{value})$")).map_err(|e| {
                // The regex crate's message spans lines (a caret under
                // the pattern); keep only its last line, the reason.
                let text = e.to_string();
                let reason = text
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim_start_matches("error: ");
                format!("`{value}` is not a valid regular expression: {reason}")
            })?),
            Op::Eq | Op::Ne => None,
        };
        Ok(Matcher {
            path,
            op,
            value,
            regex,
        })
    }

    pub fn matches(&self, event: &Event) -> bool {
        let actual = self.path.get(event);
        match (self.op, &self.regex) {
            (Op::Eq, _) => actual == self.value.as_str(),
            (Op::Ne, _) => actual != self.value.as_str(),
            (Op::Re, Some(re)) => re.is_match(&actual),
            (Op::NotRe, Some(re)) => !re.is_match(&actual),
            // Parsing sets a regex for both regex operators.
            (Op::Re | Op::NotRe, None) => false,
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Re => "=~",
            Op::NotRe => "!~",
        };
        write!(f, "{}{op}{:?}", self.path, self.value)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Label(k) => write!(f, "labels.{k}"),
            Path::Annotation(k) => write!(f, "annotations.{k}"),
            Path::Data(keys) => write!(f, "data.{}", keys.join(".")),
            other => f.write_str(match other {
                Path::Id => "id",
                Path::DedupKey => "dedup_key",
                Path::Source => "source",
                Path::Kind => "kind",
                Path::Status => "status",
                Path::Severity => "severity",
                Path::Title => "title",
                Path::Message => "message",
                Path::ImageUrl => "image_url",
                _ => "environment",
            }),
        }
    }
}

impl Path {
    fn get<'e>(&self, e: &'e Event) -> Cow<'e, str> {
        let opt = |v: &'e Option<String>| Cow::Borrowed(v.as_deref().unwrap_or(""));
        match self {
            Path::Id => Cow::Borrowed(&e.id),
            Path::DedupKey => opt(&e.dedup_key),
            Path::Source => Cow::Borrowed(&e.source),
            Path::Kind => Cow::Borrowed(&e.kind),
            Path::Status => Cow::Borrowed(e.status.as_str()),
            Path::Severity => Cow::Borrowed(e.severity.map_or("", |s| s.as_str())),
            Path::Title => Cow::Borrowed(&e.title),
            Path::Message => opt(&e.message),
            Path::ImageUrl => opt(&e.image_url),
            Path::Environment => opt(&e.environment),
            Path::Label(k) => Cow::Borrowed(e.labels.get(k).map_or("", String::as_str)),
            Path::Annotation(k) => Cow::Borrowed(e.annotations.get(k).map_or("", String::as_str)),
            Path::Data(keys) => {
                let mut value = None;
                let mut map = &e.data;
                for (i, key) in keys.iter().enumerate() {
                    match map.get(key) {
                        Some(serde_json::Value::Object(inner)) if i + 1 < keys.len() => map = inner,
                        Some(v) if i + 1 == keys.len() => value = Some(v),
                        _ => return Cow::Borrowed(""),
                    }
                }
                match value {
                    Some(serde_json::Value::String(s)) => Cow::Borrowed(s),
                    Some(serde_json::Value::Null) | None => Cow::Borrowed(""),
                    Some(other) => Cow::Owned(other.to_string()),
                }
            }
        }
    }
}

/// The operator's byte offset, kind and length: the first `=`, `!=`, `=~`,
/// `!~` outside the path (paths contain none of `=!~`).
fn find_op(text: &str) -> Option<(usize, Op, usize)> {
    let at = text.find(['=', '!'])?;
    let rest = &text[at..];
    Some(if rest.starts_with("=~") {
        (at, Op::Re, 2)
    } else if rest.starts_with("!~") {
        (at, Op::NotRe, 2)
    } else if rest.starts_with("!=") {
        (at, Op::Ne, 2)
    } else if rest.starts_with('=') {
        (at, Op::Eq, 1)
    } else {
        return None;
    })
}

fn parse_path(path: &str) -> Result<Path, String> {
    let (root, rest) = match path.split_once('.') {
        Some((root, rest)) => (root, Some(rest)),
        None => (path, None),
    };
    let plain = |p: Path| match rest {
        None => Ok(p),
        Some(_) => Err(format!("`{root}` has no fields (in `{path}`)")),
    };
    let named = |rest: Option<&str>| match rest {
        Some(name) if !name.is_empty() => Ok(name.to_owned()),
        _ => Err(format!("`{path}` needs a name after `{root}.`")),
    };
    match root {
        "id" => plain(Path::Id),
        "dedup_key" => plain(Path::DedupKey),
        "source" => plain(Path::Source),
        "kind" => plain(Path::Kind),
        "status" => plain(Path::Status),
        "severity" => plain(Path::Severity),
        "title" => plain(Path::Title),
        "message" => plain(Path::Message),
        "image_url" => plain(Path::ImageUrl),
        "environment" => plain(Path::Environment),
        "labels" => named(rest).map(Path::Label),
        "annotations" => named(rest).map(Path::Annotation),
        "data" => {
            let keys: Vec<String> = named(rest)?.split('.').map(str::to_owned).collect();
            if keys.iter().any(String::is_empty) {
                return Err(format!("`{path}` has an empty key"));
            }
            Ok(Path::Data(keys))
        }
        "" => Err("the matcher has no path before the operator".to_owned()),
        other => Err(format!(
            "`{other}` is not a field a matcher can use (id, dedup_key, source, kind, status, severity, title, message, image_url, environment, labels.*, annotations.*, data.*)"
        )),
    }
}

/// A double-quoted value with `\"`, `\\`, `\n`, `\t` escapes, or the
/// unquoted text as is.
fn parse_value(text: &str) -> Result<String, String> {
    let Some(inner) = text.strip_prefix('"') else {
        if text.contains('"') {
            return Err(format!("unbalanced quotes in `{text}`"));
        }
        return Ok(text.to_owned());
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                return if chars.as_str().trim().is_empty() {
                    Ok(out)
                } else {
                    Err(format!(
                        "unexpected text after the closing quote: `{}`",
                        chars.as_str()
                    ))
                };
            }
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => break,
            },
            other => out.push(other),
        }
    }
    Err(format!("missing closing quote in `{text}`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alertpost_event::{Severity, Status};
    use serde_json::json;

    fn event() -> Event {
        let mut e = Event::new("grafana", Status::Firing, "Disk full");
        e.severity = Some(Severity::High);
        e.labels.insert("team".into(), "db".into());
        e.labels
            .insert("app.kubernetes.io/name".into(), "api".into());
        e.annotations.insert("runbook".into(), "r".into());
        e.data = json!({"model_id": "churn-v3", "score": 0.91, "nested": {"region": "eu"}, "flag": true})
            .as_object()
            .cloned()
            .unwrap();
        e
    }

    /// One row per case: (matcher, matches the sample event).
    #[test]
    fn the_table() {
        let e = event();
        for (text, expected) in [
            (r#"severity="high""#, true),
            (r#"severity!="high""#, false),
            (r#"severity=~"critical|high""#, true),
            (r#"severity=~"crit""#, false),
            (r#"severity!~"critical|high""#, false),
            (r#"status = "firing""#, true),
            ("source=grafana", true),
            (r#"labels.team="db""#, true),
            (r#"labels.team=~"d.""#, true),
            (r#"labels.team=~"d""#, false),
            (r#"labels.app.kubernetes.io/name="api""#, true),
            (r#"labels.missing="""#, true),
            (r#"labels.missing!="""#, false),
            (r#"labels.missing=~".*""#, true),
            (r#"annotations.runbook="r""#, true),
            (r#"data.model_id=~"churn-.*""#, true),
            (r#"data.model_id!~"test-.*""#, true),
            (r#"data.score="0.91""#, true),
            (r#"data.flag="true""#, true),
            (r#"data.nested.region="eu""#, true),
            (r#"data.nested="eu""#, false),
            (r#"data.nope.deeper="""#, true),
            (r#"title="Disk \"full\"""#, false),
            (r#"message="""#, true),
        ] {
            let m = Matcher::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(m.matches(&e), expected, "{text}");
        }
    }

    #[test]
    fn all_must_hold_and_empty_matches_everything() {
        let e = event();
        let f = Filter::new(vec![
            Matcher::parse(r#"labels.team="db""#).unwrap(),
            Matcher::parse(r#"severity=~"critical""#).unwrap(),
        ]);
        assert!(!f.matches(&e));
        assert!(Filter::default().matches(&e));
    }

    #[test]
    fn bad_matchers_say_why() {
        for (text, expected) in [
            ("severity", "is not a matcher"),
            (r#"sevrity="x""#, "`sevrity` is not a field"),
            (r#"title.x="y""#, "`title` has no fields"),
            (r#"labels.="x""#, "needs a name after `labels.`"),
            (r#"labels.team=~"(""#, "not a valid regular expression"),
            (r#"labels.team="db"#, "missing closing quote"),
            (
                r#"labels.team="db" x"#,
                "unexpected text after the closing quote",
            ),
            (r#"="x""#, "no path"),
        ] {
            let err = Matcher::parse(text).expect_err(text);
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn quoted_values_unescape() {
        let m = Matcher::parse(r#"title="a \"b\" \\ c""#).unwrap();
        let mut e = event();
        e.title = r#"a "b" \ c"#.into();
        assert!(m.matches(&e));
        assert_eq!(m.to_string(), r#"title="a \"b\" \\ c""#);
    }
}
