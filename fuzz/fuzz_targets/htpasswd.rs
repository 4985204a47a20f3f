//! htpasswd files: `UserTable::parse` on arbitrary UTF-8, then `verify`
//! with users and passwords taken from the input.
//!
//! bcrypt (`$2?$NN$`) costs 2^NN rounds and `$5$`/`$6$` take `rounds=` up to
//! 999,999,999, so verification is only run when every hash in the table is
//! cheap (bcrypt cost 4, the minimum; sha-crypt without `rounds=`): an unknown user is
//! verified against a decoy hash, which can be any line's. Parsing itself is
//! always run.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_gateway::auth::htpasswd::UserTable;

/// MD5-crypt runs 1000 rounds over the password: keep inputs short.
const MAX_LEN: usize = 4096;
const MAX_VERIFY: usize = 4;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_LEN {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = lines(text);
    let mut warnings: Vec<(usize, String)> = Vec::new();
    let table = UserTable::parse(text, |line, msg| warnings.push((line, msg)));

    let line_count = text.lines().count();
    let mut last = 0;
    for (line, msg) in &warnings {
        assert!(*line >= 1 && *line <= line_count, "warning for line {line} of {line_count}");
        assert!(*line > last, "warnings out of order or repeated: {warnings:?}");
        last = *line;
        // A warning names the user but never shows the hash. Checked for
        // fields that cannot occur in the fixed text of a message (none has
        // `$` or `=`) and that cannot straddle the quoted user name.
        if let Some(l) = lines.iter().find(|l| l.number == *line) {
            let field = l.field;
            if field.len() >= 6 && field.contains(['$', '=']) && !field.contains('`') {
                let scrubbed = msg.replace(&format!("`{}`", l.user), "``");
                assert!(!scrubbed.contains(field), "line {line}: warning shows the hash: {msg:?}");
            }
        }
    }
    assert!(table.len() <= lines.len());
    assert_eq!(table.is_empty(), table.len() == 0);

    if !lines.iter().all(|l| cheap_to_verify(l.field)) {
        return;
    }
    let mut first_seen = std::collections::HashSet::new();
    for l in lines.iter().take(MAX_VERIFY) {
        let first = first_seen.insert(l.user);
        if let Some(plain) = l.field.strip_prefix("{PLAIN}") {
            let ok = table.verify(l.user, plain.as_bytes());
            // The first line of a user wins; a {PLAIN} field is the password.
            if first && !l.user.is_empty() {
                assert!(ok, "line {}: {{PLAIN}} password of `{}` rejected", l.number, l.user);
            }
        } else {
            // The hash text itself is never the password of a hashed line
            // (except by a collision nobody will find by fuzzing).
            let _ = table.verify(l.user, l.field.as_bytes());
        }
        let _ = table.verify(l.user, b"");
    }
    // An unknown user: verified against the decoy, always refused.
    let unknown = "\u{0}no such user\u{0}";
    if lines.iter().all(|l| l.user != unknown) {
        assert!(!table.verify(unknown, b"password"));
    }
});

/// One non-comment line with a separator, split as `UserTable::parse` does.
struct Line<'a> {
    number: usize,
    user: &'a str,
    field: &'a str,
}

fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((user, rest)) = line.split_once(':') else {
            continue;
        };
        let field = rest.split(':').next().unwrap_or_default().trim();
        out.push(Line {
            number: index + 1,
            user,
            field,
        });
    }
    out
}

/// Whether verifying against `field` (if it parses at all) is fast.
fn cheap_to_verify(field: &str) -> bool {
    if field.starts_with("$2") {
        // `$2y$NN$...`: bcrypt runs 2^NN rounds.
        return field
            .split('$')
            .nth(2)
            .and_then(|cost| cost.parse::<u32>().ok())
            .is_some_and(|cost| cost <= 4);
    }
    if field.starts_with("$5$") || field.starts_with("$6$") {
        return !field.contains("rounds");
    }
    true
}
