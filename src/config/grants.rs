//! The values of `access` rules: repository patterns and principals.
//!
//! Like the scalars in [`super::values`], each parses itself while the YAML
//! is read, so a bad pattern or principal is reported with serde's key path,
//! line and column (`access.rules[1].repositories[0]: invalid repository
//! pattern ... at line 31 column 9`), and the rest of the code only sees the
//! parsed form.
//!

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use serde::de::{self, Deserializer};

/// One `/`-separated part of a repository pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GlobSegment {
    /// Exactly this path component.
    Literal(String),
    /// A component with `*` in it: the literal pieces around the stars
    /// (`lib*-dev` is `["lib", "-dev"]`, `*` is `["", ""]`). Matches one
    /// whole component; a star never crosses a `/`.
    Wild(Vec<String>),
    /// `**`: any number of whole components, none included, so `team/**`
    /// matches `team`, `team/app` and `team/a/b`.
    AnySegments,
}

/// A glob over repository names: `library/*`, `team-a/**`, `**`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoGlob {
    /// As written, for messages and `check`.
    pub text: String,
    pub segments: Vec<GlobSegment>,
}

impl RepoGlob {
    /// No wildcard at all: the pattern names one repository.
    pub fn is_literal(&self) -> bool {
        self.segments.iter().all(|s| matches!(s, GlobSegment::Literal(_)))
    }
}

impl fmt::Display for RepoGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Characters of repository names (distribution's grammar: lower-case
/// letters, digits, and the separators `.`, `_`, `-`).
fn name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
}

impl FromStr for RepoGlob {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("invalid repository pattern `{text}`: {why}");
        if text.is_empty() {
            return Err(bad("empty (`\"**\"` matches every repository)"));
        }
        let mut segments: Vec<GlobSegment> = Vec::new();
        for part in text.split('/') {
            if part.is_empty() {
                return Err(bad("empty path component (leading, trailing or double `/`)"));
            }
            if part == "**" {
                // `a/**/**/b` means `a/**/b`.
                if segments.last() != Some(&GlobSegment::AnySegments) {
                    segments.push(GlobSegment::AnySegments);
                }
                continue;
            }
            if part.contains("**") {
                return Err(bad(
                    "`**` must be a whole path component, as in `team/**` or `**/cache`",
                ));
            }
            if let Some(c) = part.chars().find(|c| matches!(c, '?' | '[' | ']' | '{' | '}' | '!')) {
                return Err(bad(&format!(
                    "`{c}` is not a wildcard here: only `*` (within a component) and `**` (across components) are"
                )));
            }
            if part.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(bad("repository names are lower case, so this would never match"));
            }
            if let Some(c) = part
                .chars()
                .find(|&c| c != '*' && !(c.is_ascii() && name_byte(c as u8)))
            {
                return Err(bad(&format!("`{c}` cannot occur in a repository name")));
            }
            if part.contains('*') {
                segments.push(GlobSegment::Wild(part.split('*').map(str::to_owned).collect()));
            } else {
                let b = part.as_bytes();
                let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
                if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
                    return Err(bad(&format!(
                        "`{part}` never matches: path components start and end with a letter or digit"
                    )));
                }
                segments.push(GlobSegment::Literal(part.to_owned()));
            }
        }
        Ok(RepoGlob {
            text: text.to_owned(),
            segments,
        })
    }
}

impl<'de> Deserialize<'de> for RepoGlob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// Who a grant is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Principal {
    /// A user of the htpasswd file: `alice`, or `user:alice` (needed only
    /// for users named like a keyword, `user:anonymous`).
    User(String),
    /// `group:NAME`, a group of the same `access` block or the gateway's.
    Group(String),
    /// Every client whose credentials the gateway verified.
    Authenticated,
    /// Every client, with or without credentials (so also every
    /// authenticated user).
    Anonymous,
}

pub const PRINCIPAL_SYNTAX: &str = "a user name, `user:NAME`, `group:NAME`, `authenticated` or `anonymous`";

/// Group names: what `check` accepts as a key of `groups`.
pub fn valid_group_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// User names as htpasswd files have them: no `:`, no blanks.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(':') && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl FromStr for Principal {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: String| format!("invalid principal `{text}`: {why}");
        match text {
            "" => return Err(bad(format!("empty: expected {PRINCIPAL_SYNTAX}"))),
            "anonymous" => return Ok(Principal::Anonymous),
            "authenticated" => return Ok(Principal::Authenticated),
            "*" | "all" | "everyone" | "any" => {
                return Err(bad(
                    "use `authenticated` (every user who logged in) or `anonymous` (every client)".to_owned(),
                ));
            }
            _ => {}
        }
        if let Some(name) = text.strip_prefix("group:") {
            return if valid_group_name(name) {
                Ok(Principal::Group(name.to_owned()))
            } else {
                Err(bad("group names are letters, digits, `.`, `_` and `-`".to_owned()))
            };
        }
        let name = text.strip_prefix("user:").unwrap_or(text);
        if name.contains(':') {
            return Err(bad(format!(
                "unknown kind `{}:`: expected {PRINCIPAL_SYNTAX}",
                text.split(':').next().unwrap_or("")
            )));
        }
        if !valid_user_name(name) {
            return Err(bad("user names have no blanks or control characters".to_owned()));
        }
        Ok(Principal::User(name.to_owned()))
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Anonymous => f.write_str("anonymous"),
            Principal::Authenticated => f.write_str("authenticated"),
            Principal::Group(g) => write!(f, "group:{g}"),
            Principal::User(u) if matches!(u.as_str(), "anonymous" | "authenticated") || u.starts_with("group:") => {
                write!(f, "user:{u}")
            }
            Principal::User(u) => f.write_str(u),
        }
    }
}

impl<'de> Deserialize<'de> for Principal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(s: &str) -> Vec<GlobSegment> {
        s.parse::<RepoGlob>().unwrap().segments
    }

    #[test]
    fn patterns_parse_into_segments() {
        use GlobSegment::*;
        assert_eq!(
            glob("library/alpine"),
            vec![Literal("library".into()), Literal("alpine".into())]
        );
        assert_eq!(glob("team-a/**"), vec![Literal("team-a".into()), AnySegments]);
        assert_eq!(glob("**"), vec![AnySegments]);
        assert_eq!(
            glob("a/**/**/b"),
            vec![Literal("a".into()), AnySegments, Literal("b".into())]
        );
        assert_eq!(glob("lib*-dev"), vec![Wild(vec!["lib".into(), "-dev".into()])]);
        assert_eq!(glob("*"), vec![Wild(vec!["".into(), "".into()])]);
        assert!("library/alpine".parse::<RepoGlob>().unwrap().is_literal());
        assert!(!"library/*".parse::<RepoGlob>().unwrap().is_literal());
    }

    #[test]
    fn bad_patterns_say_why() {
        for (bad, needle) in [
            ("", "empty"),
            ("/a", "empty path component"),
            ("a/", "empty path component"),
            ("a//b", "empty path component"),
            ("a**", "whole path component"),
            ("a/b**c", "whole path component"),
            ("a/?", "`?` is not a wildcard"),
            ("a/[ab]", "`[` is not a wildcard"),
            ("Team/*", "lower case"),
            ("a b", "cannot occur in a repository name"),
            ("a%2fb", "`%` cannot occur"),
            ("-a", "start and end"),
        ] {
            let e = bad.parse::<RepoGlob>().unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
    }

    #[test]
    fn principals_parse() {
        assert_eq!("alice".parse(), Ok(Principal::User("alice".into())));
        assert_eq!("user:anonymous".parse(), Ok(Principal::User("anonymous".into())));
        assert_eq!("group:ci".parse(), Ok(Principal::Group("ci".into())));
        assert_eq!("authenticated".parse(), Ok(Principal::Authenticated));
        assert_eq!("anonymous".parse(), Ok(Principal::Anonymous));
        assert_eq!(
            "alice@corp.example".parse(),
            Ok(Principal::User("alice@corp.example".into()))
        );
        for bad in ["", "*", "role:admin", "group:", "group:a b", "al ice", "user:"] {
            assert!(bad.parse::<Principal>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(Principal::User("anonymous".into()).to_string(), "user:anonymous");
        assert_eq!(Principal::Group("ci".into()).to_string(), "group:ci");
    }
}
