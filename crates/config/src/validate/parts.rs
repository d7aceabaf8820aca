//! Checks of the richer integration fields: `match`, `format`/`template`,
//! `content_type`, `auth`, `secret`, `validate`, `routing_key`.

use std::ops::Range;

use alertpost_render::{Body, CompileError, Context, Extra, presets, sample};
use base64::Engine;
use bytes::Bytes;
use toml::Spanned;
use url::Url;

use super::{Cx, line_col};
use crate::filter::{Filter, Matcher};
use crate::integration::{Auth, OAuth2, SigningKey, Validator};
use crate::raw::{RawAuth, RawValidator};
use crate::secret::Secret;

/// Where a body template comes from.
#[derive(Clone)]
pub(super) enum BodySpec {
    Format(String),
    /// The template text and the span of its TOML string.
    Template(String, Range<usize>),
}

impl Cx<'_> {
    pub(super) fn matchers(
        &mut self,
        raw: &Spanned<Vec<Spanned<String>>>,
        section: &str,
    ) -> Option<Filter> {
        let mut matchers = Vec::new();
        let before = self.problems.len();
        for (i, text) in raw.get_ref().iter().enumerate() {
            match Matcher::parse(text.get_ref()) {
                Ok(m) => matchers.push(m),
                Err(e) => self.problem(text.span(), section, Some(&format!("match[{i}]")), &e),
            }
        }
        (self.problems.len() == before).then(|| Filter::new(matchers))
    }

    pub(super) fn body_spec(
        &mut self,
        format: Option<&Spanned<String>>,
        template: Option<&Spanned<String>>,
        section: &str,
    ) -> Option<BodySpec> {
        match (format, template) {
            (Some(f), Some(_)) => {
                self.problem(
                    f.span(),
                    section,
                    Some("format"),
                    "set `format` or `template`, not both",
                );
                None
            }
            (Some(f), None) => {
                if presets::preset(f.get_ref()).is_none() {
                    self.problem(
                        f.span(),
                        section,
                        Some("format"),
                        &format!(
                            "`{}` is not a preset; presets: {}",
                            f.get_ref(),
                            presets::names().join(", ")
                        ),
                    );
                    return None;
                }
                Some(BodySpec::Format(f.get_ref().clone()))
            }
            (None, Some(t)) => Some(BodySpec::Template(t.get_ref().clone(), t.span())),
            (None, None) => None,
        }
    }

    pub(super) fn content_type(&mut self, raw: &Spanned<String>, section: &str) -> Option<String> {
        let ct = raw.get_ref().trim();
        let valid = ct.contains('/') && !ct.bytes().any(|b| b.is_ascii_control());
        if !valid {
            self.problem(
                raw.span(),
                section,
                Some("content_type"),
                &format!("`{ct}` is not a media type (e.g. application/json, text/plain)"),
            );
            return None;
        }
        Some(ct.to_owned())
    }

    /// Compiles the body and renders it for the sample events, so a template
    /// that cannot render fails here and not on the first real alert.
    pub(super) fn body(
        &mut self,
        spec: &BodySpec,
        content_type: &str,
        section: &str,
        routing_key: Option<&Secret>,
    ) -> Option<Body> {
        let json = is_json(content_type);
        let (source, span) = match spec {
            BodySpec::Format(name) => (presets::preset(name).unwrap_or_default().to_owned(), None),
            BodySpec::Template(text, span) => (text.clone(), Some(span.clone())),
        };
        let field = if span.is_some() { "template" } else { "format" };
        let body = match Body::compile(&source, json) {
            Ok(body) => body,
            Err(errors) => {
                for e in errors {
                    self.template_problem(span.as_ref(), section, field, &e);
                }
                return None;
            }
        };
        let extra = Extra {
            integration_id: "sample",
            integration_name: "sample",
            routing_key: routing_key.map(Secret::expose),
            delivery_id: "dlv_sample",
        };
        for event in [sample::full(), sample::minimal()] {
            let bytes = Bytes::from(event.to_json());
            if let Err(e) = body.render(&Context::new(&event), &bytes, &extra) {
                let at = span.clone().unwrap_or(0..0);
                self.problem(
                    at,
                    section,
                    Some(field),
                    &format!("cannot render a sample event: {e}"),
                );
                return None;
            }
        }
        Some(body)
    }

    /// Reports a template problem at its place in the file: the string's
    /// first character plus the place within the template.
    fn template_problem(
        &mut self,
        span: Option<&Range<usize>>,
        section: &str,
        field: &str,
        e: &CompileError,
    ) {
        let Some(span) = span else {
            // A preset that does not compile is alertpost's bug; its golden
            // tests keep this from happening.
            self.problem(
                0..0,
                section,
                Some(field),
                &format!("preset: {}", e.message),
            );
            return;
        };
        let content = template_start(self.text, span.start);
        let (line, column) = line_col(self.text, content);
        let (line, column) = if e.line <= 1 {
            (line, column + e.column.saturating_sub(1))
        } else {
            (line + e.line - 1, e.column)
        };
        self.problems.push(crate::problem::Problem {
            file: self.file.to_owned(),
            line: Some(line),
            column: Some(column),
            section: Some(section.to_owned()),
            field: Some(field.to_owned()),
            message: e.message.clone(),
        });
    }

    pub(super) fn auth(&mut self, raw: &Spanned<RawAuth>, section: &str) -> Option<Auth> {
        let a = raw.get_ref();
        let kind = a.kind.get_ref().as_str();
        let before = self.problems.len();
        let present: [(&str, bool); 8] = [
            ("username", a.username.is_some()),
            ("password", a.password.is_some()),
            ("token", a.token.is_some()),
            ("client_id", a.client_id.is_some()),
            ("client_secret", a.client_secret.is_some()),
            ("token_url", a.token_url.is_some()),
            ("scopes", a.scopes.is_some()),
            ("headers", a.headers.is_some()),
        ];
        let (required, optional): (&[&str], &[&str]) = match kind {
            "none" => (&[], &[]),
            "basic" => (&["username", "password"], &[]),
            "bearer" => (&["token"], &[]),
            "oauth2" => (&["client_id", "client_secret", "token_url"], &["scopes"]),
            "header" => (&["headers"], &[]),
            other => {
                self.problem(
                    a.kind.span(),
                    section,
                    Some("auth.type"),
                    &format!("`{other}` is not an auth type (none, basic, bearer, oauth2, header)"),
                );
                return None;
            }
        };
        for (name, is_set) in present {
            if is_set && !required.contains(&name) && !optional.contains(&name) {
                self.problem(
                    raw.span(),
                    section,
                    Some(&format!("auth.{name}")),
                    &format!("not used by auth type {kind}"),
                );
            }
            if !is_set && required.contains(&name) {
                self.problem(
                    raw.span(),
                    section,
                    Some(&format!("auth.{name}")),
                    &format!("required by auth type {kind}"),
                );
            }
        }
        if self.problems.len() > before {
            return None;
        }
        let mut text = |v: &Option<Spanned<String>>, field: &str| -> Option<String> {
            let v = v.as_ref()?;
            self.expand(v, section, &format!("auth.{field}"))
                .map(|(s, _)| s)
        };
        let auth = match kind {
            "basic" => Auth::Basic {
                username: text(&a.username, "username")?,
                password: Secret::new(text(&a.password, "password")?),
            },
            "bearer" => Auth::Bearer {
                token: Secret::new(text(&a.token, "token")?),
            },
            "oauth2" => {
                let client_id = text(&a.client_id, "client_id")?;
                let client_secret = Secret::new(text(&a.client_secret, "client_secret")?);
                let token_url_text = text(&a.token_url, "token_url")?;
                let token_url = match Url::parse(token_url_text.trim()) {
                    Ok(u) if u.scheme() == "http" || u.scheme() == "https" => u,
                    _ => {
                        let span = a.token_url.as_ref().map_or(raw.span(), Spanned::span);
                        self.problem(span, section, Some("auth.token_url"), "not an http(s) URL");
                        return None;
                    }
                };
                let scopes = a
                    .scopes
                    .as_ref()
                    .map(|s| s.iter().map(|x| x.get_ref().clone()).collect())
                    .unwrap_or_default();
                Auth::OAuth2(OAuth2 {
                    client_id,
                    client_secret,
                    token_url,
                    scopes,
                })
            }
            "header" => {
                let mut headers = Vec::new();
                for (name, value) in a.headers.as_ref()?.get_ref() {
                    if let Some(h) = self.header(name, value, section, "auth.headers", true) {
                        headers.push(h);
                    }
                }
                Auth::Header(headers)
            }
            _ => Auth::None,
        };
        Some(auth)
    }

    pub(super) fn signing_key(
        &mut self,
        raw: &Spanned<String>,
        section: &str,
    ) -> Option<SigningKey> {
        let (text, _) = self.expand(raw, section, "secret")?;
        let decoded = text
            .strip_prefix("whsec_")
            .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
            .filter(|key| key.len() >= 16);
        match decoded {
            Some(key) => Some(SigningKey(key)),
            None => {
                self.problem(
                    raw.span(),
                    section,
                    Some("secret"),
                    "expected `whsec_` followed by the base64 of at least 16 bytes",
                );
                None
            }
        }
    }

    pub(super) fn validators(
        &mut self,
        raw: &Spanned<Vec<Spanned<RawValidator>>>,
        section: &str,
    ) -> Option<Vec<Validator>> {
        let before = self.problems.len();
        let mut out = Vec::new();
        for (i, v) in raw.get_ref().iter().enumerate() {
            let v = v.get_ref();
            let field = format!("validate[{i}]");
            let query = match serde_json_path::JsonPath::parse(v.path.get_ref()) {
                Ok(q) => Some(q),
                Err(e) => {
                    self.problem(
                        v.path.span(),
                        section,
                        Some(&format!("{field}.path")),
                        &format!("not an RFC 9535 JSONPath: {e}"),
                    );
                    None
                }
            };
            let mut expected = Vec::new();
            for value in v.expected.get_ref() {
                match value.get_ref() {
                    toml::Value::String(s) => expected.push(s.clone()),
                    toml::Value::Integer(n) => expected.push(n.to_string()),
                    toml::Value::Float(n) => expected.push(n.to_string()),
                    toml::Value::Boolean(b) => expected.push(b.to_string()),
                    _ => self.problem(
                        value.span(),
                        section,
                        Some(&format!("{field}.expected")),
                        "values are strings, numbers or booleans",
                    ),
                }
            }
            if v.expected.get_ref().is_empty() {
                self.problem(
                    v.expected.span(),
                    section,
                    Some(&format!("{field}.expected")),
                    "list at least one value",
                );
            }
            if let Some(query) = query {
                out.push(Validator {
                    path: v.path.get_ref().clone(),
                    query,
                    expected,
                });
            }
        }
        (self.problems.len() == before).then_some(out)
    }

    pub(super) fn routing_key(&mut self, raw: &Spanned<String>, section: &str) -> Option<Secret> {
        self.expand(raw, section, "routing_key")
            .map(|(s, _)| Secret::new(s))
    }
}

/// JSON content types: `application/json`, `application/<x>+json`.
pub(super) fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

/// The byte offset of a TOML string's first character of content, given the
/// offset of its opening quote. A multi-line string's first newline is not
/// content.
fn template_start(text: &str, quote: usize) -> usize {
    let rest = &text[quote.min(text.len())..];
    let skip = if rest.starts_with("'''") || rest.starts_with("\"\"\"") {
        let after = &rest[3..];
        3 + if after.starts_with("\r\n") {
            2
        } else if after.starts_with('\n') {
            1
        } else {
            0
        }
    } else if rest.starts_with('\'') || rest.starts_with('"') {
        1
    } else {
        0
    };
    quote + skip
}
