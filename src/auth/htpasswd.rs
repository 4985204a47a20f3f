//! htpasswd files: parsed into a user table once, re-read when they change.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use super::hash::PasswordHash;
use crate::metrics::{self, ReloadKind};
use crate::reload::{FileStamp, Reloadable};

/// The users of one htpasswd file at one point in time.
#[derive(Debug, Default)]
pub struct UserTable {
    users: HashMap<String, PasswordHash>,
    /// Verified against when the user is unknown, so a missing user costs
    /// the same time as a wrong password.
    decoy: Option<PasswordHash>,
}

impl UserTable {
    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Parses file text; `warn` receives `line: reason` for each skipped
    /// line (never the hash itself).
    pub fn parse(text: &str, mut warn: impl FnMut(usize, String)) -> UserTable {
        let mut users: HashMap<String, PasswordHash> = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = raw.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((user, rest)) = line.split_once(':') else {
                warn(line_no, "no `user:hash` separator, line skipped".into());
                continue;
            };
            if user.is_empty() {
                warn(line_no, "empty user name, line skipped".into());
                continue;
            }
            // nginx allows a trailing `:comment` field.
            let field = rest.split(':').next().unwrap_or_default().trim();
            let hash = match PasswordHash::parse(field) {
                Ok(h) => h,
                Err(why) => {
                    warn(line_no, format!("user `{user}`: {why}, line skipped"));
                    continue;
                }
            };
            if users.contains_key(user) {
                warn(line_no, format!("user `{user}` appears again; the first entry wins"));
                continue;
            }
            if matches!(hash, PasswordHash::Plain(_)) {
                warn(
                    line_no,
                    format!("user `{user}` has a {{PLAIN}} password stored in clear text"),
                );
            }
            users.insert(user.to_owned(), hash);
        }
        // The most common kind in the file makes the most convincing decoy.
        let decoy = most_common_kind(&users).cloned();
        UserTable { users, decoy }
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Slow (bcrypt): run off the async worker threads.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(hash) => hash.verify(password),
            None => {
                if let Some(decoy) = &self.decoy {
                    let _ = decoy.verify(password);
                }
                false
            }
        }
    }
}

fn most_common_kind(users: &HashMap<String, PasswordHash>) -> Option<&PasswordHash> {
    let mut counts: HashMap<&'static str, (usize, &PasswordHash)> = HashMap::new();
    for h in users.values() {
        counts.entry(h.kind()).or_insert((0, h)).0 += 1;
    }
    counts.into_values().max_by_key(|(n, _)| *n).map(|(_, h)| h)
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot read htpasswd file: {source}")]
pub struct HtpasswdError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// An htpasswd file: the current table, swapped atomically on reload so
/// readers never lock.
#[derive(Debug)]
pub struct HtpasswdFile {
    path: PathBuf,
    table: ArcSwap<UserTable>,
    stamp: std::sync::Mutex<Option<FileStamp>>,
    /// Bumped on every successful reload; cached logins of older
    /// generations are void.
    generation: AtomicU64,
}

impl HtpasswdFile {
    pub fn load(path: &Path) -> Result<Self, HtpasswdError> {
        let err = |source| HtpasswdError {
            path: path.to_owned(),
            source,
        };
        let before = FileStamp::of(path).map_err(err)?;
        let text = std::fs::read_to_string(path).map_err(err)?;
        let table = Self::parse_logged(path, &text);
        Ok(HtpasswdFile {
            path: path.to_owned(),
            table: ArcSwap::from_pointee(table),
            stamp: std::sync::Mutex::new(Some(before)),
            generation: AtomicU64::new(1),
        })
    }

    fn parse_logged(path: &Path, text: &str) -> UserTable {
        let table = UserTable::parse(text, |line, why| log::warn!("{}:{line}: {why}", path.display()));
        if table.is_empty() {
            log::warn!("{}: no usable users: every login will fail", path.display());
        }
        table
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn table(&self) -> Arc<UserTable> {
        self.table.load_full()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Re-reads the file if it changed (or always, with `force`). A file
    /// that cannot be read keeps the previous table. Returns whether the
    /// table was replaced.
    pub fn reload(&self, force: bool) -> Result<bool, HtpasswdError> {
        let err = |source| HtpasswdError {
            path: self.path.clone(),
            source,
        };
        let mut last = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
        let now = FileStamp::of(&self.path).map_err(err)?;
        if !force && *last == Some(now) {
            return Ok(false);
        }
        let text = std::fs::read_to_string(&self.path).map_err(err)?;
        let table = Self::parse_logged(&self.path, &text);
        let users = table.len();
        self.table.store(Arc::new(table));
        *last = Some(now);
        self.generation.fetch_add(1, Ordering::AcqRel);
        log::info!("{}: reloaded, {users} user(s)", self.path.display());
        Ok(true)
    }
}

impl Reloadable for HtpasswdFile {
    fn reload(&self, force: bool) {
        match HtpasswdFile::reload(self, force) {
            Ok(true) => metrics::reload(ReloadKind::Htpasswd, true),
            Ok(false) => {}
            Err(e) => {
                metrics::reload(ReloadKind::Htpasswd, false);
                log::error!("{e}; keeping the previous users");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_parsed_with_warnings_for_bad_ones() {
        let text = "# comment\n\nalice:{PLAIN}a\r\nbob:$apr1$RandSalt$PgCXHRrkpSt4cbyC2C6bm/:comment\n\
                    nocolon\n:{PLAIN}x\ncarol:cleartext\nalice:{PLAIN}second\ndave:rl4xQY3aFoqWc\n";
        let mut warnings = Vec::new();
        let t = UserTable::parse(text, |line, why| warnings.push((line, why)));
        assert_eq!(t.len(), 2);
        assert!(t.verify("alice", b"a"));
        assert!(!t.verify("alice", b"second"), "the first line wins");
        assert!(t.verify("bob", b"password"));
        assert!(!t.verify("carol", b"cleartext"));
        assert!(!t.verify("nobody", b"a"));
        let lines: Vec<usize> = warnings.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![3, 5, 6, 7, 8, 9]);
        assert!(
            warnings
                .iter()
                .all(|(_, w)| !w.contains("rl4xQY3aFoqWc") && !w.contains("cleartext"))
        );
    }

    #[test]
    fn reload_swaps_the_table_and_keeps_it_when_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        std::fs::write(&path, "u:{PLAIN}one\n").unwrap();
        let f = HtpasswdFile::load(&path).unwrap();
        assert!(f.table().verify("u", b"one"));
        assert!(!f.reload(false).unwrap(), "unchanged file is not re-read");
        std::fs::write(&path, "u:{PLAIN}two\nv:{PLAIN}x\n").unwrap();
        assert!(f.reload(true).unwrap());
        assert!(f.table().verify("u", b"two"));
        assert_eq!(f.generation(), 2);
        std::fs::remove_file(&path).unwrap();
        assert!(f.reload(true).is_err());
        assert!(f.table().verify("u", b"two"), "previous table kept");
    }
}
