//! Repository patterns compiled for matching, and the index that finds the
//! first rule whose pattern matches a repository without trying them all.
//!
//! Patterns with no wildcard sit in a hash map by name. Patterns whose
//! first path component is literal (`team-a/**`, `library/*`, the usual
//! shape) sit in buckets keyed by that component, so a repository only
//! tries the patterns of its own first component. Only patterns that start
//! with a wildcard (`**`, `*/cache`, `lib*/x`) are tried for every
//! repository; a long list of those is why `AccessPolicy` keeps a cache.
//! Every candidate list is in rule order, so the first match is the answer.

use std::collections::HashMap;

use crate::config::grants::{GlobSegment, RepoGlob};

/// One component of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(Box<str>),
    /// Literal pieces around the stars; at least two.
    Wild(Box<[Box<str>]>),
    /// `**`: zero or more whole components.
    Any,
}

impl Seg {
    /// Whether this one-component token matches `part` (never called on `Any`).
    fn matches(&self, part: &str) -> bool {
        match self {
            Seg::Lit(l) => **l == *part,
            Seg::Wild(pieces) => wild_match(pieces, part),
            Seg::Any => true,
        }
    }
}

/// A `*` glob within one component: first piece a prefix, last a suffix,
/// the middle ones found left to right.
fn wild_match(pieces: &[Box<str>], s: &str) -> bool {
    let (first, last) = (&pieces[0], &pieces[pieces.len() - 1]);
    if s.len() < first.len() + last.len() || !s.starts_with(&**first) || !s.ends_with(&**last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for piece in &pieces[1..pieces.len() - 1] {
        match rest.find(&**piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    true
}

/// A compiled repository pattern.
#[derive(Debug, Clone)]
pub struct RepoPattern {
    text: Box<str>,
    segs: Box<[Seg]>,
}

impl RepoPattern {
    pub fn new(glob: &RepoGlob) -> RepoPattern {
        let segs = glob
            .segments
            .iter()
            .map(|s| match s {
                GlobSegment::Literal(l) => Seg::Lit(l.as_str().into()),
                GlobSegment::Wild(pieces) => Seg::Wild(pieces.iter().map(|p| p.as_str().into()).collect()),
                GlobSegment::AnySegments => Seg::Any,
            })
            .collect();
        RepoPattern {
            text: glob.text.as_str().into(),
            segs,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, repository: &str) -> bool {
        self.matches_parts(&Parts::of(repository))
    }

    /// The literal first component, when there is one and more follows or
    /// the pattern has a wildcard later (pure literals go to the exact map).
    fn first_literal(&self) -> Option<&str> {
        match self.segs.first() {
            Some(Seg::Lit(l)) => Some(l),
            _ => None,
        }
    }

    fn is_literal(&self) -> bool {
        self.segs.iter().all(|s| matches!(s, Seg::Lit(_)))
    }

    /// Greedy matching with one backtrack point at the last `**` seen:
    /// every other token matches exactly one component, so a later `**`
    /// never needs an earlier one to take more (the classic wildcard
    /// argument, with components for characters).
    fn matches_parts(&self, parts: &Parts<'_>) -> bool {
        let (pat, input) = (&self.segs[..], parts.as_slice());
        let (mut p, mut s) = (0, 0);
        let mut resume: Option<(usize, usize)> = None;
        while s < input.len() {
            if p < pat.len() {
                if pat[p] == Seg::Any {
                    resume = Some((p + 1, s));
                    p += 1;
                    continue;
                }
                if pat[p].matches(input[s]) {
                    p += 1;
                    s += 1;
                    continue;
                }
            }
            match resume {
                Some((after, from)) => {
                    resume = Some((after, from + 1));
                    p = after;
                    s = from + 1;
                }
                None => return false,
            }
        }
        pat[p..].iter().all(|t| *t == Seg::Any)
    }

    /// Whether every repository `other` matches is matched by `self` too.
    /// Exact for these globs except where a union of pieces would be
    /// needed; never claims a cover that does not hold.
    pub fn covers(&self, other: &RepoPattern) -> bool {
        let (a, b) = (&self.segs[..], &other.segs[..]);
        let width = b.len() + 1;
        let mut memo = vec![None; (a.len() + 1) * width];
        covers_from(a, b, 0, 0, width, &mut memo)
    }
}

fn covers_from(a: &[Seg], b: &[Seg], i: usize, j: usize, width: usize, memo: &mut [Option<bool>]) -> bool {
    if let Some(v) = memo[i * width + j] {
        return v;
    }
    let v = if i == a.len() {
        j == b.len()
    } else if a[i] == Seg::Any {
        // `**` takes nothing more, or absorbs b's next token (whatever it
        // produces, a `**` of b included).
        covers_from(a, b, i + 1, j, width, memo) || (j < b.len() && covers_from(a, b, i, j + 1, width, memo))
    } else {
        // One component here; b's `**` could give none or several.
        j < b.len() && b[j] != Seg::Any && seg_covers(&a[i], &b[j]) && covers_from(a, b, i + 1, j + 1, width, memo)
    };
    memo[i * width + j] = Some(v);
    v
}

/// Containment of one-component tokens.
fn seg_covers(a: &Seg, b: &Seg) -> bool {
    match (a, b) {
        (Seg::Lit(x), Seg::Lit(y)) => x == y,
        (Seg::Wild(pieces), Seg::Lit(y)) => wild_match(pieces, y),
        (Seg::Lit(_), Seg::Wild(_)) => false,
        (Seg::Wild(pa), Seg::Wild(pb)) => {
            let (ta, tb) = (char_tokens(pa), char_tokens(pb));
            let width = tb.len() + 1;
            let mut memo = vec![None; (ta.len() + 1) * width];
            char_covers(&ta, &tb, 0, 0, width, &mut memo)
        }
        (_, Seg::Any) | (Seg::Any, _) => unreachable!("handled by covers_from"),
    }
}

/// A `*` glob as characters and stars (`None`).
fn char_tokens(pieces: &[Box<str>]) -> Vec<Option<char>> {
    let mut out = Vec::new();
    for (k, piece) in pieces.iter().enumerate() {
        if k > 0 {
            out.push(None);
        }
        out.extend(piece.chars().map(Some));
    }
    out
}

fn char_covers(
    a: &[Option<char>],
    b: &[Option<char>],
    i: usize,
    j: usize,
    w: usize,
    memo: &mut [Option<bool>],
) -> bool {
    if let Some(v) = memo[i * w + j] {
        return v;
    }
    let v = match a.get(i) {
        None => j == b.len(),
        Some(None) => char_covers(a, b, i + 1, j, w, memo) || (j < b.len() && char_covers(a, b, i, j + 1, w, memo)),
        Some(Some(c)) => j < b.len() && b[j] == Some(*c) && char_covers(a, b, i + 1, j + 1, w, memo),
    };
    memo[i * w + j] = Some(v);
    v
}

/// Components kept on the stack; deeper names spill into a `Vec`.
const INLINE: usize = 12;

/// A repository name split at `/`, on the stack for the usual depth.
pub struct Parts<'a> {
    inline: [&'a str; INLINE],
    len: usize,
    spill: Vec<&'a str>,
}

impl<'a> Parts<'a> {
    pub fn of(repository: &'a str) -> Parts<'a> {
        let mut parts = Parts {
            inline: [""; INLINE],
            len: 0,
            spill: Vec::new(),
        };
        for (k, part) in repository.split('/').enumerate() {
            if k < INLINE {
                parts.inline[k] = part;
                parts.len = k + 1;
            } else {
                if parts.spill.is_empty() {
                    parts.spill.extend_from_slice(&parts.inline);
                }
                parts.spill.push(part);
            }
        }
        parts
    }

    pub fn as_slice(&self) -> &[&'a str] {
        if self.spill.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spill
        }
    }

    pub fn first(&self) -> &'a str {
        self.as_slice()[0]
    }
}

/// Every pattern of every rule, indexed; answers "which rule decides".
#[derive(Debug, Default)]
pub struct PatternIndex {
    /// (pattern, rule index), in rule order: the position is the pattern id.
    patterns: Vec<(RepoPattern, u32)>,
    /// Wildcard-free patterns: the lowest rule naming the repository.
    exact: HashMap<Box<str>, u32>,
    /// Pattern ids by literal first component, ascending.
    by_first: HashMap<Box<str>, Vec<u32>>,
    /// Pattern ids of patterns starting with a wildcard, ascending.
    floating: Vec<u32>,
}

impl PatternIndex {
    /// `rules[i]` is the patterns of rule `i`.
    pub fn new<'g>(rules: impl IntoIterator<Item = impl IntoIterator<Item = &'g RepoGlob>>) -> PatternIndex {
        let mut index = PatternIndex::default();
        for (rule, globs) in rules.into_iter().enumerate() {
            for glob in globs {
                let pattern = RepoPattern::new(glob);
                let id = index.patterns.len() as u32;
                if pattern.is_literal() {
                    index.exact.entry(pattern.as_str().into()).or_insert(rule as u32);
                } else if let Some(first) = pattern.first_literal() {
                    index.by_first.entry(first.into()).or_default().push(id);
                } else {
                    index.floating.push(id);
                }
                index.patterns.push((pattern, rule as u32));
            }
        }
        index
    }

    /// Patterns every repository is tried against; `AccessPolicy` caches
    /// answers when there are many.
    pub fn floating_len(&self) -> usize {
        self.floating.len()
    }

    /// The lowest rule with a pattern matching `repository`.
    pub fn first_rule(&self, repository: &str) -> Option<u32> {
        let mut best = self.exact.get(repository).copied();
        let parts = Parts::of(repository);
        let bucket = self.by_first.get(parts.first()).map_or(&[][..], Vec::as_slice);
        let (mut a, mut b) = (bucket.iter().peekable(), self.floating.iter().peekable());
        loop {
            // Merge the two ascending id lists: ids are in rule order.
            let id = match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) if x <= y => a.next(),
                (Some(_), Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => None,
            };
            let Some(&id) = id else { break };
            let (pattern, rule) = &self.patterns[id as usize];
            if best.is_some_and(|found| *rule >= found) {
                break;
            }
            if pattern.matches_parts(&parts) {
                best = Some(*rule);
                break;
            }
        }
        best
    }

    /// The pattern of `rule` that matches `repository`, for `route`.
    pub fn matching_pattern(&self, rule: u32, repository: &str) -> Option<&RepoPattern> {
        let parts = Parts::of(repository);
        self.patterns
            .iter()
            .find(|(p, r)| *r == rule && p.matches_parts(&parts))
            .map(|(p, _)| p)
    }

    /// The patterns of each rule, compiled, in rule order.
    pub fn patterns_of(&self, rule: u32) -> impl Iterator<Item = &RepoPattern> {
        self.patterns.iter().filter(move |(_, r)| *r == rule).map(|(p, _)| p)
    }
}

#[cfg(test)]
mod tests;
