//! Where a key path (`registries[1].routes.v2.upstream`) is written in the
//! YAML text, for messages about values that parsed but do not make sense.
//! Block style is followed exactly; inside flow style (`{...}`, `[...]`)
//! the line of the nearest enclosing key is given.

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(key: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in key.split('.') {
        let (name, mut rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            out.push(Segment::Key(name));
        }
        while let Some((index, after)) = rest.split_once(']') {
            if let Ok(i) = index.parse() {
                out.push(Segment::Index(i));
            }
            rest = after.strip_prefix('[').unwrap_or("");
        }
    }
    out
}

/// A line of the block structure: 1-based number, column, text.
struct Line<'a> {
    number: usize,
    indent: usize,
    text: &'a str,
}

fn is_key(text: &str, name: &str) -> bool {
    let text = text.trim_start_matches(['"', '\'']);
    text.strip_prefix(name)
        .map(|r| r.trim_start_matches(['"', '\'']))
        .is_some_and(|r| r.starts_with(':'))
}

/// Lines without blanks and comments; `- key: value` is split into a `-`
/// line and `key: value` at the column it starts at, so sequence items
/// read like any other block.
fn block_lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let mut body = raw.trim_start();
        let mut indent = raw.len() - body.len();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        while let Some(rest) = body.strip_prefix('-').filter(|r| r.is_empty() || r.starts_with(' ')) {
            out.push(Line {
                number: i + 1,
                indent,
                text: "-",
            });
            let item = rest.trim_start();
            indent += body.len() - item.len();
            body = item;
        }
        if !body.is_empty() {
            out.push(Line {
                number: i + 1,
                indent,
                text: body,
            });
        }
    }
    out
}

/// The 1-based line of `key`, or of its nearest ancestor found; `None`
/// when not even the first key is found.
pub fn line_of(text: &str, key: &str) -> Option<usize> {
    let lines = block_lines(text);
    // The block searched: lines[start..end], its entries at `indent`.
    let (mut start, mut end, mut indent) = (0, lines.len(), 0);
    let mut found = None;
    for segment in segments(key) {
        let at = match segment {
            Segment::Key(name) => (start..end).find(|&j| lines[j].indent == indent && is_key(lines[j].text, name)),
            Segment::Index(n) => (start..end)
                .filter(|&j| lines[j].indent == indent && lines[j].text == "-")
                .nth(n),
        };
        let Some(j) = at else { return found };
        found = Some(lines[j].number);
        start = j + 1;
        end = (start..end).find(|&k| lines[k].indent <= indent).unwrap_or(end);
        if start >= end {
            return found;
        }
        indent = lines[start].indent;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::line_of;

    const YAML: &str = "\
server:
  threads: 2
listeners:
  - name: plain
    address: \"127.0.0.1:5000\"
  - address: \"127.0.0.1:5443\"
    tls:
      certificates:
        - cert: a.crt
          key: a.key
upstreams:
  registry:
    url: \"http://127.0.0.1:15000\"
  flow: { url: \"http://x\" }
registries:
  # a comment
  - name: main
    default: true
    upstream: registry
    routes:
      v2:
        upstream: flow
";

    #[test]
    fn block_keys_items_and_flow_fall_back_to_their_parent() {
        let at = |k| line_of(YAML, k);
        assert_eq!(at("server.threads"), Some(2));
        assert_eq!(at("listeners[0].address"), Some(5));
        assert_eq!(at("listeners[1].address"), Some(6));
        assert_eq!(at("listeners[1].tls.certificates[0]"), Some(9));
        assert_eq!(at("listeners[1].tls.certificates[0].key"), Some(10));
        assert_eq!(at("upstreams.registry.url"), Some(13));
        assert_eq!(at("upstreams.flow.url"), Some(14));
        assert_eq!(at("registries[0]"), Some(17));
        assert_eq!(at("registries[0].name"), Some(17));
        assert_eq!(at("registries[0].upstream"), Some(19));
        assert_eq!(at("registries[0].routes.v2.upstream"), Some(22));
        assert_eq!(at("registries[3].upstream"), Some(15));
        assert_eq!(at("metrics.address"), None);
    }
}
