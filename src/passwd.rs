//! `registry-gateway passwd`: add, update or delete a bcrypt user in an
//! htpasswd file, with output `htpasswd -B` and registry:2 both accept.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum PasswdError {
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("user name `{0}` is invalid: it must be non-empty and contain no `:` or line break")]
    BadUser(String),
    #[error("user `{user}` is not in {file}")]
    NoSuchUser { user: String, file: String },
    #[error("bcrypt cost {0} is out of range (4 to 31)")]
    Cost(u32),
    #[error("the passwords do not match")]
    Mismatch,
    #[error("empty password")]
    EmptyPassword,
}

/// The `user:$2y$...` line for a password.
pub fn bcrypt_line(user: &str, password: &str, cost: u32) -> Result<String, PasswdError> {
    if !(4..=31).contains(&cost) {
        return Err(PasswdError::Cost(cost));
    }
    let parts = bcrypt::hash_with_result(password, cost).map_err(|_| PasswdError::Cost(cost))?;
    Ok(format!("{user}:{}", parts.format_for_version(bcrypt::Version::TwoY)))
}

fn user_of(line: &str) -> Option<&str> {
    let t = line.trim_start();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    line.split_once(':').map(|(u, _)| u)
}

/// The file text with `user`'s line replaced by `new_line` (appended when
/// absent), or removed when `new_line` is `None`. Other lines, comments
/// included, are kept as they are. Returns whether the user was present.
pub fn edit_text(text: &str, user: &str, new_line: Option<&str>) -> (String, bool) {
    let mut out = String::with_capacity(text.len() + 80);
    let mut found = false;
    for line in text.lines() {
        if user_of(line) == Some(user) {
            // Every line of the user goes: the first one was the one in force.
            if !found {
                if let Some(n) = new_line {
                    out.push_str(n);
                    out.push('\n');
                }
            }
            found = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !found {
        if let Some(n) = new_line {
            out.push_str(n);
            out.push('\n');
        }
    }
    (out, found)
}

pub fn validate_user(user: &str) -> Result<(), PasswdError> {
    if user.is_empty() || user.contains([':', '\n', '\r']) {
        return Err(PasswdError::BadUser(user.to_owned()));
    }
    Ok(())
}

/// Applies the edit atomically (write a sibling file, rename over), so the
/// gateway's watcher never reads a half-written file.
pub fn update_file(path: &Path, user: &str, new_line: Option<&str>) -> Result<bool, PasswdError> {
    let name = path.display().to_string();
    let io = |e| PasswdError::Io(name.clone(), e);
    let (text, mode) = match std::fs::read_to_string(path) {
        Ok(t) => (t, std::fs::metadata(path).map_err(io)?.permissions().mode()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && new_line.is_some() => (String::new(), 0o640),
        Err(e) => return Err(io(e)),
    };
    let (new_text, found) = edit_text(&text, user, new_line);
    if new_line.is_none() && !found {
        return Err(PasswdError::NoSuchUser {
            user: user.to_owned(),
            file: name,
        });
    }
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(new_text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::hash::PasswordHash;

    #[test]
    fn lines_verify_and_look_like_htpasswd_b() {
        let line = bcrypt_line("alice", "s3cret", 4).unwrap();
        let (user, hash) = line.split_once(':').unwrap();
        assert_eq!(user, "alice");
        assert!(hash.starts_with("$2y$04$"), "{hash}");
        assert!(PasswordHash::parse(hash).unwrap().verify(b"s3cret"));
        assert!(bcrypt_line("a", "b", 3).is_err());
    }

    #[test]
    fn edits_keep_other_lines() {
        let text = "# users\nalice:old\nbob:x\nalice:dup\n";
        let (t, found) = edit_text(text, "alice", Some("alice:new"));
        assert!(found);
        assert_eq!(t, "# users\nalice:new\nbob:x\n");
        let (t, found) = edit_text(text, "carol", Some("carol:c"));
        assert!(!found);
        assert!(t.ends_with("alice:dup\ncarol:c\n"));
        let (t, _) = edit_text(text, "bob", None);
        assert_eq!(t, "# users\nalice:old\nalice:dup\n");
    }

    #[test]
    fn update_file_creates_replaces_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        assert!(!update_file(&path, "u", Some("u:{PLAIN}1")).unwrap());
        assert!(update_file(&path, "u", Some("u:{PLAIN}2")).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "u:{PLAIN}2\n");
        assert!(update_file(&path, "u", None).unwrap());
        assert!(matches!(
            update_file(&path, "u", None),
            Err(PasswdError::NoSuchUser { .. })
        ));
        assert!(validate_user("a:b").is_err());
    }
}
