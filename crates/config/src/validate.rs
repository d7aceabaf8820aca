//! Raw file → validated [`Config`], collecting every problem.
//!
//! Each section's own values are checked where they are written, so a bad
//! value in `[defaults]` is reported once, at its line, not once per
//! integration. Then each integration's values are merged over the
//! defaults and the built-in defaults, and checked as a whole.
//!
//! Here: the file as a whole and the context every check writes its
//! problems to ([`Cx`]). By section: `settings` (the top-level tables and
//! `delay_tiers`), `partial` (one `[[integration]]` or `[defaults]` table's
//! own values), `integration` (an integration merged over the defaults and
//! checked whole), with the readers they share: `values` (durations,
//! rates, kinds, headers, URLs, proxies), `tls`, and `parts` (an
//! integration's body, auth, signing key, validators).

use std::ops::Range;

use toml::Spanned;

mod integration;
mod partial;
mod parts;
mod settings;
mod tls;
mod values;

use partial::Partial;

use crate::expand::expand;
use crate::integration::Integration;
use crate::problem::{ConfigError, Problem};
use crate::raw::{RawFile, RawIntegration};
use crate::{Config, OperationalSettings};

pub(crate) fn config(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let mut problem = Problem::file(file, e.message().trim().to_owned());
        if let Some(span) = e.span() {
            let (line, column) = line_col(text, span.start);
            problem.line = Some(line);
            problem.column = Some(column);
            problem.section = section_at(text, span.start);
        }
        ConfigError::single(problem)
    })?;

    let mut cx = Cx {
        text,
        file,
        env,
        problems: Vec::new(),
    };
    let policy = raw.policy.map(|p| cx.policy(p)).unwrap_or_default();
    let worker = raw.worker.map(|w| cx.worker(w)).unwrap_or_default();
    let store = raw.store.map(|s| cx.store(s)).unwrap_or_default();
    let admin = raw.admin.map(|a| cx.admin(a)).unwrap_or_default();
    let ingest = raw.ingest.map(|i| cx.ingest(i)).unwrap_or_default();
    let mut operational = OperationalSettings::default();
    if let Some(r) = raw
        .operational
        .as_ref()
        .and_then(|o| o.get_ref().repeat_interval.as_ref())
        && let Some(d) = cx.duration(r, "[operational]", "repeat_interval")
    {
        operational.repeat_interval = d;
    }
    let delay_tiers = match &raw.delay_tiers {
        Some(t) => cx.delay_tiers(t),
        None => alertpost_seam::topology::DEFAULT_TIERS.to_vec(),
    };
    let defaults = match &raw.defaults {
        Some(d) => cx.defaults(d.get_ref()),
        None => Partial::default(),
    };
    let integrations = cx.integrations(&raw.integration, &defaults, &policy);

    if cx.problems.is_empty() {
        Ok(Config {
            policy,
            worker,
            store,
            admin,
            ingest,
            operational,
            delay_tiers,
            integrations,
        })
    } else {
        Err(ConfigError {
            problems: cx.problems,
        })
    }
}

struct Cx<'a> {
    text: &'a str,
    file: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<Problem>,
}

impl Cx<'_> {
    /// `[defaults]`: any integration's values but its `id`.
    fn defaults(&mut self, raw: &RawIntegration) -> Partial {
        if let Some(id) = &raw.id {
            self.problem(
                id.span(),
                "[defaults]",
                Some("id"),
                "ids are per integration; remove it from [defaults]",
            );
        }
        self.partial(raw, "[defaults]")
    }

    /// Every `[[integration]]` that checks out, each id once.
    fn integrations(
        &mut self,
        raws: &[Spanned<RawIntegration>],
        defaults: &Partial,
        policy: &crate::policy::Policy,
    ) -> Vec<Integration> {
        let mut integrations: Vec<(Integration, Range<usize>)> = Vec::new();
        for (n, raw) in raws.iter().enumerate() {
            let Some(integration) = self.integration(n, raw, defaults, policy) else {
                continue;
            };
            let span = raw.get_ref().id.as_ref().map_or(raw.span(), |s| s.span());
            if let Some((_, first)) = integrations.iter().find(|(i, _)| i.id == integration.id) {
                let (first_line, _) = line_col(self.text, first.start);
                let section = format!("integration `{}`", integration.id);
                self.problem(
                    span,
                    &section,
                    Some("id"),
                    &format!("duplicate id; already used by the integration at line {first_line}"),
                );
                continue;
            }
            integrations.push((integration, span));
        }
        integrations.into_iter().map(|(i, _)| i).collect()
    }

    pub(super) fn problem(
        &mut self,
        span: Range<usize>,
        section: &str,
        field: Option<&str>,
        message: &str,
    ) {
        let (line, column) = line_col(self.text, span.start);
        self.problems.push(Problem {
            file: self.file.to_owned(),
            line: Some(line),
            column: Some(column),
            section: Some(section.to_owned()),
            field: field.map(str::to_owned),
            message: message.to_owned(),
        });
    }

    /// `${VAR}`-expands a string; on failure records the problem.
    pub(super) fn expand(
        &mut self,
        raw: &Spanned<String>,
        section: &str,
        field: &str,
    ) -> Option<(String, bool)> {
        match expand(raw.get_ref(), self.env) {
            Ok(e) => Some((e.value, e.from_env)),
            Err(message) => {
                self.problem(raw.span(), section, Some(field), &message);
                None
            }
        }
    }
}

pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether a header (lowercase name) likely carries a credential: its value
/// is masked wherever alertpost shows or keeps it (configured headers in
/// `alertpost test`, response headers in the store).
pub fn looks_secret(name: &str) -> bool {
    // Compared byte by byte: names are short, and `str::contains` prepares
    // a searcher per needle (callgrind: 5 000 instructions a delivery, for
    // the three headers of a response).
    let name = name.as_bytes();
    [
        "cookie",
        "token",
        "key",
        "secret",
        "password",
        "auth",
        "signature",
        "session",
    ]
    .iter()
    .any(|w| name.windows(w.len()).any(|part| part == w.as_bytes()))
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The section a byte offset falls in, for errors the TOML parser reports
/// before any structure is known: the last table header above it, and for
/// an integration the `id` written under that header.
fn section_at(text: &str, offset: usize) -> Option<String> {
    let offset = text.floor_char_boundary(offset.min(text.len()));
    let mut section = None;
    let mut count = 0;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        if pos > offset {
            break;
        }
        let t = line.trim();
        if t.starts_with('[') {
            let name = t
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim();
            if name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            {
                section = Some(name.to_owned());
                if t.starts_with("[[integration]]") {
                    count += 1;
                }
            }
        }
        pos += line.len();
    }
    let name = section?;
    if name != "integration" {
        return Some(format!("[{name}]"));
    }
    // Find the id of the integration that contains `offset`.
    let id = text.split("[[integration]]").nth(count).and_then(|block| {
        block.lines().find_map(|l| {
            let (key, value) = l.split_once('=')?;
            (key.trim() == "id").then(|| value.trim().trim_matches('"').to_owned())
        })
    });
    Some(match id {
        Some(id) => format!("integration `{id}`"),
        None => format!("integration #{count}"),
    })
}

#[cfg(test)]
mod tests;
