//! Query strings read the way registry:2 reads them (Go's `url.ParseQuery`
//! behind `r.FormValue`): pairs split at `&`; a pair containing `;` or a bad
//! `%` escape is skipped; `+` is a space and `%XX` is decoded, in keys as
//! in values; the first value of a key is the one used. The gateway decides
//! on what the registry will act on, so it reads the query exactly so:
//! `from=a%2Fb` is repository `a/b`, and `%6Dount=` is `mount=`.
//!

use std::borrow::Cow;

/// `component` with `+` as a space and `%XX` decoded; `None` for a bad
/// escape (Go skips such pairs). Bytes that are not UTF-8 become U+FFFD,
/// which no repository name contains.
pub fn decode(component: &str) -> Option<Cow<'_, str>> {
    if !component.bytes().any(|b| b == b'%' || b == b'+') {
        return Some(Cow::Borrowed(component));
    }
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let digit = |c: u8| (c as char).to_digit(16);
                out.push((digit(hex[0])? * 16 + digit(hex[1])?) as u8);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(Cow::Owned(String::from_utf8_lossy(&out).into_owned()))
}

/// The decoded (key, value) pairs Go would keep, in order, with the raw
/// pair they came from.
pub fn pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>, &str)> {
    query.split('&').filter_map(|raw| {
        if raw.is_empty() || raw.contains(';') {
            return None;
        }
        let (key, value) = raw.split_once('=').unwrap_or((raw, ""));
        Some((decode(key)?, decode(value)?, raw))
    })
}

/// The first value of `key`, as registry:2's `r.FormValue(key)` sees it
/// in the URL (a form body is another matter: `guard` refuses those).
pub fn first<'q>(query: Option<&'q str>, key: &str) -> Option<Cow<'q, str>> {
    pairs(query?).find(|(k, _, _)| k == key).map(|(_, v, _)| v)
}

/// `path_and_query` without every pair whose decoded key is in `keys`;
/// other pairs stay byte for byte, in order.
pub fn without(path_and_query: &str, keys: &[&str]) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|raw| {
            let key = raw.split_once('=').map_or(*raw, |(k, _)| k);
            !matches!(decode(key), Some(k) if keys.contains(&k.as_ref())) || raw.contains(';')
        })
        .collect();
    if kept.iter().all(|p| p.is_empty()) {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

/// A query component as Go's `url.QueryEscape` writes it (what registry:2
/// puts in `Link`): unreserved bytes as they are, the rest `%XX`.
pub fn escape(value: &str) -> Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
    if value.bytes().all(plain) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for b in value.bytes() {
        if plain(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_as_go_reads_them() {
        let q = Some("mount=sha256%3Aab&from=team%2Fapp&from=other");
        assert_eq!(first(q, "mount").as_deref(), Some("sha256:ab"));
        assert_eq!(first(q, "from").as_deref(), Some("team/app"), "the first value wins");
        assert_eq!(
            first(Some("%6Dount=x"), "mount").as_deref(),
            Some("x"),
            "keys are decoded"
        );
        assert_eq!(first(Some("from=a+b"), "from").as_deref(), Some("a b"));
        assert_eq!(
            first(Some("from=a;x&from=b"), "from").as_deref(),
            Some("b"),
            "`;` pairs are skipped"
        );
        assert_eq!(
            first(Some("from=%zz&from=b"), "from").as_deref(),
            Some("b"),
            "bad escapes are skipped"
        );
        assert_eq!(first(Some("Mount=x"), "mount"), None, "keys are case-sensitive");
        assert_eq!(first(Some("mount"), "mount").as_deref(), Some(""));
        assert_eq!(first(None, "mount"), None);
    }

    #[test]
    fn named_pairs_are_removed_and_the_rest_kept() {
        let p = "/v2/a/blobs/uploads/?mount=sha256:ab&from=x%2Fy&digest=sha256:cd&%6Dount=z";
        assert_eq!(without(p, &["mount", "from"]), "/v2/a/blobs/uploads/?digest=sha256:cd");
        assert_eq!(
            without("/v2/a/blobs/uploads/?mount=a&from=b", &["mount", "from"]),
            "/v2/a/blobs/uploads/"
        );
        assert_eq!(without("/v2/x", &["mount"]), "/v2/x");
    }

    #[test]
    fn escaping_round_trips() {
        assert_eq!(escape("team-a/app_1.x"), "team-a%2Fapp_1.x");
        assert_eq!(decode(&escape("a/b c")).as_deref(), Some("a/b c"));
    }
}
