//! `gateway.yaml` → checked plain [`Settings`]. Depends on nothing else in
//! the crate: `runtime` builds the tables the proxy uses from these.

mod check;
pub mod file;
pub mod grants;
mod locate;
mod mirror_file;
mod mirror_settings;
mod settings;
mod upstream_file;
pub mod values;

use std::fmt;
use std::path::{Path, PathBuf};

pub use file::{AccessLogFormat, HostHeaderMode};
pub use settings::*;

/// One problem found in the configuration, pointing at where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path such as `listeners[0].address`; empty for the whole file.
    pub key: String,
    pub message: String,
    /// Where the key is written, when known.
    pub line: Option<usize>,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)?;
        } else {
            write!(f, "{}: {}", self.key, self.message)?;
        }
        match self.line {
            Some(line) if !self.message.contains(" line ") => write!(f, " (line {line})"),
            _ => Ok(()),
        }
    }
}

pub fn issue(key: impl Into<String>, message: impl Into<String>) -> ConfigIssue {
    ConfigIssue {
        key: key.into(),
        message: message.into(),
        line: None,
    }
}

/// Fills in the line of each issue's key in `text` (the file's YAML).
/// The 1-based line of a key path in `text`, for messages built outside
/// `config` (runtime's warnings about access rules).
pub fn line_of(text: &str, key: &str) -> Option<usize> {
    locate::line_of(text, key)
}

pub fn locate(text: &str, issues: &mut [ConfigIssue]) {
    for i in issues.iter_mut().filter(|i| !i.key.is_empty()) {
        i.line = locate::line_of(text, &i.key);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// serde_yaml's message already carries the key path and line/column.
    #[error("{file}: {message}")]
    Syntax { file: PathBuf, message: String },
    #[error("{}", render_invalid(file, issues))]
    Invalid { file: PathBuf, issues: Vec<ConfigIssue> },
}

fn render_invalid(file: &Path, issues: &[ConfigIssue]) -> String {
    let lines: Vec<String> = issues.iter().map(|i| format!("{}: {i}", file.display())).collect();
    lines.join("\n")
}

impl ConfigError {
    /// One line per problem, for printing as `error: ...`.
    pub fn lines(&self) -> Vec<String> {
        self.to_string().lines().map(str::to_owned).collect()
    }
}

/// Reads and checks `path`. `Err` for a file that cannot be read or parsed;
/// otherwise the settings with every problem found so far (the caller adds
/// its own before deciding).
pub fn read(path: &Path) -> Result<(Settings, Vec<ConfigIssue>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// As [`read`], from text; `path` names the source in messages and anchors
/// relative paths.
pub fn parse(text: &str, path: &Path) -> Result<(Settings, Vec<ConfigIssue>), ConfigError> {
    let file: file::GatewayFile =
        serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text)).map_err(|e| {
            ConfigError::Syntax {
                file: path.to_owned(),
                message: syntax_message(&e),
            }
        })?;
    let mut issues = Vec::new();
    let settings = Settings::new(file, path, text, &mut issues);
    Ok((settings, issues))
}

/// `key.path: message at line L column C`. serde_yaml prefixes its message
/// with the path of the enclosing map only, so the exact path tracked by
/// serde_path_to_error replaces that prefix.
fn syntax_message(e: &serde_path_to_error::Error<serde_yaml::Error>) -> String {
    let path = e.path().to_string();
    let inner = e.inner().to_string();
    let message = match inner.split_once(": ") {
        Some((prefix, rest)) if prefix != "." && path.starts_with(prefix) && !prefix.contains(' ') => rest,
        _ => inner.as_str(),
    };
    if path.is_empty() || path == "." {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}
