//! Compiling and rendering a body template.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::Value as Json;

use crate::context::{Context, EVENT_FIELDS, Extra, OPEN_FIELDS};
use crate::filters::{self, UNDEFINED};

/// A problem in a template, placed within the template's own text (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Rendering failed for this event (a filter refused a value, say).
#[derive(Debug, Clone, thiserror::Error)]
#[error("template: {0}")]
pub struct RenderError(pub String);

/// A compiled body template. Cheap to clone.
#[derive(Clone)]
pub struct Body {
    inner: Arc<Inner>,
}

struct Inner {
    env: Environment<'static>,
    shape: Shape,
}

enum Shape {
    /// The event itself, as published: no rendering at all.
    Event,
    /// A JSON tree whose strings are templates.
    Json(Node),
    /// Plain text: the whole template, rendered as is.
    Text,
}

enum Node {
    Literal(Json),
    /// A string with placeholders: renders to a JSON string.
    Text(String),
    /// A string that is exactly one placeholder: the value, typed.
    Typed(String),
    Array(Vec<Node>),
    Object(Vec<(Key, Node)>),
}

enum Key {
    Literal(String),
    Text(String),
}

/// The whole-text template, checked for syntax and names.
const WHOLE: &str = "whole";

/// minijinja's own names a template may use.
const BUILTINS: &[&str] = &[
    "range",
    "dict",
    "namespace",
    "debug",
    "loop",
    "merge",
    "none",
    "true",
    "false",
];

/// Operations one rendering may spend: bounds a runaway loop.
const FUEL: u64 = 200_000;

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shape = match self.inner.shape {
            Shape::Event => "event",
            Shape::Json(_) => "json",
            Shape::Text => "text",
        };
        f.debug_struct("Body").field("shape", &shape).finish()
    }
}

impl Body {
    /// Compiles `source`; `json` when the content type is JSON. Every problem
    /// found is returned, placed in `source`.
    pub fn compile(source: &str, json: bool) -> Result<Body, Vec<CompileError>> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        // A text body keeps its final newline, as written.
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        env.set_fuel(Some(FUEL));
        filters::install(&mut env);

        if let Err(e) = env.add_template_owned(WHOLE, source.to_owned()) {
            return Err(vec![template_error(source, &e, None)]);
        }
        let mut errors = check_names(&env, source);

        let shape = if json {
            let tree: Json = match serde_json::from_str(source) {
                Ok(tree) => tree,
                Err(e) => {
                    errors.push(CompileError {
                        line: e.line(),
                        column: e.column(),
                        message: format!("not valid JSON: {e}"),
                    });
                    return Err(errors);
                }
            };
            let mut leaves = Leaves {
                env: &mut env,
                source,
                errors: &mut errors,
                next: 0,
            };
            let node = leaves.node(tree);
            match &node {
                Node::Typed(_)
                    if single_placeholder(source.trim().trim_matches('"')) == Some("event") =>
                {
                    Shape::Event
                }
                _ => Shape::Json(node),
            }
        } else {
            Shape::Text
        };
        errors.sort_by_key(|e| (e.line, e.column));
        if errors.is_empty() {
            Ok(Body {
                inner: Arc::new(Inner { env, shape }),
            })
        } else {
            Err(errors)
        }
    }

    /// Whether the body is the event itself (no context needed to render).
    pub fn is_event(&self) -> bool {
        matches!(self.inner.shape, Shape::Event)
    }

    /// Renders the body for one integration. `event_json` is the event's
    /// own encoding, the whole body when the template is the event.
    pub fn render(
        &self,
        ctx: &Context,
        event_json: &Bytes,
        extra: &Extra<'_>,
    ) -> Result<Bytes, RenderError> {
        let env = &self.inner.env;
        match &self.inner.shape {
            Shape::Event => Ok(event_json.clone()),
            Shape::Text => {
                let text = render(env, WHOLE, &ctx.with(extra))?;
                Ok(Bytes::from(text))
            }
            Shape::Json(node) => {
                let context = ctx.with(extra);
                let value = eval(env, node, &context)?.unwrap_or(Json::Null);
                serde_json::to_vec(&value)
                    .map(Bytes::from)
                    .map_err(|e| RenderError(e.to_string()))
            }
        }
    }
}

fn render(
    env: &Environment<'static>,
    name: &str,
    ctx: &minijinja::Value,
) -> Result<String, RenderError> {
    env.get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|e| RenderError(e.to_string()))
}

/// Evaluates a node; `None` for a single placeholder whose value is missing.
fn eval(
    env: &Environment<'static>,
    node: &Node,
    ctx: &minijinja::Value,
) -> Result<Option<Json>, RenderError> {
    Ok(Some(match node {
        Node::Literal(v) => v.clone(),
        Node::Text(name) => Json::String(render(env, name, ctx)?),
        Node::Typed(name) => {
            let text = render(env, name, ctx)?;
            if text == UNDEFINED {
                return Ok(None);
            }
            serde_json::from_str(&text).map_err(|e| RenderError(e.to_string()))?
        }
        Node::Array(items) => Json::Array(
            items
                .iter()
                .map(|item| Ok(eval(env, item, ctx)?.unwrap_or(Json::Null)))
                .collect::<Result<_, RenderError>>()?,
        ),
        Node::Object(members) => {
            let mut map = serde_json::Map::with_capacity(members.len());
            for (key, value) in members {
                let key = match key {
                    Key::Literal(k) => k.clone(),
                    Key::Text(name) => render(env, name, ctx)?,
                };
                // A member whose single placeholder is missing is left out.
                if let Some(v) = eval(env, value, ctx)? {
                    map.insert(key, v);
                }
            }
            Json::Object(map)
        }
    }))
}

/// Turns the strings of a parsed JSON template into templates.
struct Leaves<'a> {
    env: &'a mut Environment<'static>,
    source: &'a str,
    errors: &'a mut Vec<CompileError>,
    next: usize,
}

impl Leaves<'_> {
    fn node(&mut self, value: Json) -> Node {
        match value {
            Json::String(s) => self.string(s, true),
            Json::Array(items) => Node::Array(items.into_iter().map(|v| self.node(v)).collect()),
            Json::Object(members) => Node::Object(
                members
                    .into_iter()
                    .map(|(k, v)| {
                        // Keys are always text: a placeholder's value, as a string.
                        let key = match self.string(k, false) {
                            Node::Text(name) | Node::Typed(name) => Key::Text(name),
                            Node::Literal(Json::String(k)) => Key::Literal(k),
                            _ => Key::Literal(String::new()),
                        };
                        (key, self.node(v))
                    })
                    .collect(),
            ),
            other => Node::Literal(other),
        }
    }

    /// A template string; `typed` lets a single placeholder keep its type.
    fn string(&mut self, s: String, typed: bool) -> Node {
        if !(s.contains("{{") || s.contains("{%") || s.contains("{#")) {
            return Node::Literal(Json::String(s));
        }
        let name = format!("leaf{}", self.next);
        self.next += 1;
        let (source, typed) = match single_placeholder(&s).filter(|_| typed) {
            Some(expr) => (format!("{{{{ ({expr}) | _typed }}}}"), true),
            None => (s.clone(), false),
        };
        if let Err(e) = self.env.add_template_owned(name.clone(), source) {
            // The whole text parsed, so this is a block split across strings.
            let at = self.source.find(&s);
            self.errors.push(template_error(self.source, &e, at));
        }
        if typed {
            Node::Typed(name)
        } else {
            Node::Text(name)
        }
    }
}

/// `Some(expr)` when `s` is exactly one `{{ expr }}`.
fn single_placeholder(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    let inner = inner.trim_matches('-').trim();
    (!inner.is_empty()).then_some(inner)
}

/// Names a template uses that the event does not have.
fn check_names(env: &Environment<'static>, source: &str) -> Vec<CompileError> {
    let Ok(template) = env.get_template(WHOLE) else {
        return Vec::new();
    };
    let used: BTreeSet<String> = template.undeclared_variables(true).into_iter().collect();
    let mut errors = Vec::new();
    for name in used {
        if let Some(message) = unknown(&name) {
            let root = name.split('.').next().unwrap_or(&name);
            let (line, column) = find_name(source, root);
            errors.push(CompileError {
                line,
                column,
                message,
            });
        }
    }
    errors
}

/// Why a dotted name is not one the event has, if it is not.
fn unknown(name: &str) -> Option<String> {
    let mut parts = name.split('.');
    let root = parts.next().unwrap_or(name);
    let attr = parts.next();
    match root {
        "event" => match attr {
            None => None,
            Some(_) => unknown(&name["event.".len()..]),
        },
        "integration" => match attr {
            None | Some("id" | "name" | "routing_key") => None,
            Some(other) => Some(format!(
                "`integration.{other}` is not a field (integration has id, name, routing_key)"
            )),
        },
        "delivery_id" if attr.is_none() => None,
        r if OPEN_FIELDS.contains(&r) => None,
        // Lists: `links[0].href` is reported as `links`.
        "links" => None,
        r if EVENT_FIELDS.contains(&r) => attr.map(|a| format!("`{r}` has no field `{a}`")),
        r if BUILTINS.contains(&r) => None,
        r => Some(format!(
            "`{r}` is not a field of the event (fields: {}; open maps: labels.*, annotations.*, data.*; also event, integration, delivery_id)",
            EVENT_FIELDS.join(", ")
        )),
    }
}

/// Where a name first appears as a whole word, 1-based; (1, 1) if not found.
fn find_name(source: &str, name: &str) -> (usize, usize) {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(i) = source[from..].find(name) {
        let at = from + i;
        let before = source[..at].chars().next_back();
        let after = source[at + name.len()..].chars().next();
        if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
            return line_col(source, at);
        }
        from = at + name.len();
    }
    (1, 1)
}

fn template_error(source: &str, e: &minijinja::Error, leaf_at: Option<usize>) -> CompileError {
    let (line, column) = match (e.range(), leaf_at) {
        (Some(r), None) => line_col(source, r.start),
        (_, Some(at)) => line_col(source, at),
        (None, None) => (e.line().unwrap_or(1), 1),
    };
    let message = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    CompileError {
        line,
        column,
        message,
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = text.floor_char_boundary(offset.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

#[cfg(test)]
mod tests;
