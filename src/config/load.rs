//! Reading a config file, applying `--set key.path=value` overrides, and turning
//! serde's errors into messages that name the file, line, key path and a likely fix.
use super::schema::Config;
use super::suggest::{closest, expected_names, unknown_name};
use std::fmt;
use std::path::{Path, PathBuf};
use toml_edit::{DocumentMut, Item, Table, Value};

/// Where a config value came from, for error messages.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    File { path: PathBuf, line: Option<usize> },
    Set(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line: Some(l) } => write!(f, "{}:{}", path.display(), l),
            Origin::File { path, line: None } => write!(f, "{}", path.display()),
            Origin::Set(arg) => write!(f, "--set {arg}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}:{column}: TOML syntax error: {message}", path.display())]
    Syntax { path: PathBuf, line: usize, column: usize, message: String },
    #[error("{arg:?}: {message}")]
    BadSet { arg: String, message: String },
    #[error("{origin}: {}", key_message(key, message, suggestion))]
    Key { origin: Origin, key: String, message: String, suggestion: Option<String> },
}

fn key_message(key: &str, message: &str, suggestion: &Option<String>) -> String {
    let key = if key.is_empty() { "(top level)" } else { key };
    match suggestion {
        Some(s) => format!("key `{key}`: {message}; did you mean `{s}`?"),
        None => format!("key `{key}`: {message}"),
    }
}

/// One `--set section.key=value` override, parsed.
#[derive(Debug, Clone)]
pub struct Override {
    pub arg: String,
    pub path: Vec<String>,
    pub value: Value,
}

impl std::str::FromStr for Override {
    type Err = ConfigError;

    fn from_str(arg: &str) -> Result<Self, Self::Err> {
        let bad = |message: &str| ConfigError::BadSet { arg: arg.to_string(), message: message.to_string() };
        let (key, raw) = arg.split_once('=').ok_or_else(|| bad("expected section.key=value"))?;
        let path: Vec<String> = key.trim().split('.').map(|s| s.trim().to_string()).collect();
        if path.len() < 2 || path.iter().any(|s| s.is_empty()) {
            return Err(bad("the key must be a dotted path like train.lr"));
        }
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(bad("missing value after '='"));
        }
        // A TOML literal where it parses (numbers, booleans, arrays, quoted strings),
        // otherwise the bare text as a string, so `--set model.name=hrnetv2_w48` works.
        let value = raw.parse::<Value>().unwrap_or_else(|_| Value::from(raw));
        Ok(Override { arg: arg.to_string(), path, value })
    }
}

/// Load `path`, apply `overrides` in order, deserialise and validate.
pub fn load_config(path: &Path, overrides: &[Override]) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
    parse_config(&text, path, overrides)
}

/// As [`load_config`] with the text given; `path` is used in messages only.
pub fn parse_config(text: &str, path: &Path, overrides: &[Override]) -> Result<Config, ConfigError> {
    let spans = toml_edit::Document::parse(text.to_string()).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        ConfigError::Syntax { path: path.to_path_buf(), line, column, message: e.message().trim().to_string() }
    })?;
    let mut doc: DocumentMut = spans.clone().into_mut();
    for o in overrides {
        apply_override(doc.as_table_mut(), o)?;
    }
    let de = toml_edit::de::Deserializer::from(doc);
    let config: Config = serde_path_to_error::deserialize(de).map_err(|err| {
        let key: Vec<String> = err.path().iter().map(|s| s.to_string()).filter(|s| s != "?").collect();
        let message = err.inner().message().trim().to_string();
        describe(text, path, &spans, overrides, key, message)
    })?;
    if let Some((key, message)) = config.check().into_iter().next() {
        let segs: Vec<String> = key.split('.').map(str::to_string).collect();
        return Err(ConfigError::Key {
            origin: origin_of(text, path, &spans, overrides, &segs),
            key,
            message,
            suggestion: None,
        });
    }
    Ok(config)
}

fn describe(
    text: &str,
    path: &Path,
    spans: &toml_edit::Document<String>,
    overrides: &[Override],
    mut key: Vec<String>,
    mut message: String,
) -> ConfigError {
    let mut suggestion = None;
    if let Some((what, name)) = unknown_name(&message) {
        if what == "key" && key.last() != Some(&name) {
            key.push(name.clone());
        }
        let names = expected_names(&message);
        let parent = &key[..key.len().saturating_sub(if what == "key" { 1 } else { 0 })];
        let fix = closest(&name, names.iter().map(String::as_str)).map(str::to_string);
        let listing = if names.is_empty() { String::new() } else { format!(" (valid: {})", names.join(", ")) };
        message = if what == "key" {
            let place = if parent.is_empty() {
                "unknown section".to_string()
            } else {
                format!("unknown key in [{}]", parent.join("."))
            };
            format!("{place}{listing}")
        } else {
            format!("unknown value `{name}`{listing}")
        };
        if let Some(fix) = fix {
            suggestion = Some(if what == "key" {
                // Keep whatever the user wrote below the mistyped segment: trian.lr -> train.lr.
                let typed = overrides.iter().find(|o| o.path.starts_with(&key)).map(|o| o.path.clone());
                let mut s = parent.to_vec();
                s.push(fix);
                if let Some(typed) = typed {
                    s.extend(typed[key.len()..].iter().cloned());
                }
                s.join(".")
            } else {
                fix
            });
        }
    } else if let Some(hint) = message
        .contains("invalid type: integer")
        .then_some(())
        .and_then(|_| (message.contains("f64") || message.contains("f32")).then_some("write it as a float, e.g. 1.0"))
    {
        message = format!("{message} ({hint})");
    }
    let origin = origin_of(text, path, spans, overrides, &key);
    ConfigError::Key { origin, key: key.join("."), message, suggestion }
}

/// The last `--set` that wrote at or above `key`, else the file line of `key`.
fn origin_of(
    text: &str,
    path: &Path,
    spans: &toml_edit::Document<String>,
    overrides: &[Override],
    key: &[String],
) -> Origin {
    if let Some(o) = overrides.iter().rev().find(|o| key.starts_with(&o.path) || o.path.starts_with(key)) {
        if !key.is_empty() {
            return Origin::Set(o.arg.clone());
        }
    }
    let line = locate(spans.as_table(), key).map(|offset| line_col(text, offset).0);
    Origin::File { path: path.to_path_buf(), line }
}

/// Byte offset of the deepest part of `key` present in the parsed file.
fn locate(table: &Table, key: &[String]) -> Option<usize> {
    let (first, rest) = key.split_first()?;
    let here = table.key(first).and_then(|k| k.span()).or_else(|| table.get(first).and_then(Item::span));
    let deeper = match table.get(first)? {
        Item::Table(t) => locate(t, rest),
        Item::Value(Value::InlineTable(t)) => {
            let (second, _) = rest.split_first()?;
            t.key(second).and_then(|k| k.span()).map(|s| s.start)
        }
        Item::Value(v) if !rest.is_empty() => v.span().map(|s| s.start),
        _ => None,
    };
    deeper.or(here.map(|s| s.start))
}

fn apply_override(root: &mut Table, o: &Override) -> Result<(), ConfigError> {
    let (last, parents) = o.path.split_last().expect("override paths have at least two segments");
    let mut table = root;
    for (i, seg) in parents.iter().enumerate() {
        let entry = table.entry(seg).or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        });
        if let Item::Value(Value::InlineTable(inline)) = entry {
            *entry = Item::Table(std::mem::take(inline).into_table());
        }
        table = entry.as_table_mut().ok_or_else(|| ConfigError::BadSet {
            arg: o.arg.clone(),
            message: format!("`{}` is a value, not a section", o.path[..=i].join(".")),
        })?;
    }
    table.insert(last, Item::Value(o.value.clone()));
    Ok(())
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
