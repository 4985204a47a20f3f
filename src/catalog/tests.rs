use super::*;

fn names(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i:03}")).collect()
}

/// An upstream of `all` names (in catalog order) paged `page` at a time.
fn upstream_page(all: &[String], page: usize, last: Option<&str>) -> (Vec<String>, bool) {
    let start = last.map_or(0, |l| {
        all.iter()
            .position(|n| catalog_order(n, l) == Ordering::Greater)
            .unwrap_or(all.len())
    });
    let end = (start + page).min(all.len());
    (all[start..end].to_vec(), end < all.len())
}

/// Pages through the whole catalog as a client following `Link` does.
fn client_walk(all: &[String], upstream_n: usize, n: usize, readable: impl Fn(&str) -> bool) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let mut pager = Pager::new(CatalogQuery { n, last: last.clone() });
        while pager.wants_more() {
            let (page, more) = upstream_page(all, upstream_n, pager.cursor());
            pager.feed(page, more, &readable);
        }
        let page = pager.finish();
        pages.push(page.repositories);
        match page.next {
            Some(next) => last = Some(next),
            None => return pages,
        }
    }
}

#[test]
fn every_third_of_300_in_pages_of_50() {
    let all = names("r", 0..300);
    let readable = |r: &str| r[1..].parse::<usize>().unwrap() % 3 == 0;
    for upstream_n in [1000, 40, 7] {
        let pages = client_walk(&all, upstream_n, 50, readable);
        assert_eq!(
            pages.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![50, 50],
            "upstream pages of {upstream_n}"
        );
        let got: Vec<String> = pages.concat();
        let want: Vec<String> = all.iter().filter(|r| readable(r)).cloned().collect();
        assert_eq!(got, want);
    }
}

#[test]
fn odd_page_sizes_end_with_a_short_last_page_and_no_empty_one() {
    let all = names("r", 0..300);
    let pages = client_walk(&all, 40, 7, |r| r.ends_with('0'));
    assert!(pages.iter().all(|p| !p.is_empty()), "{pages:?}");
    assert_eq!(pages.concat().len(), 30);
    assert_eq!(pages.last().unwrap().len(), 30 % 7);
}

#[test]
fn nothing_readable_is_one_empty_page_without_link() {
    let all = names("r", 0..300);
    assert_eq!(client_walk(&all, 100, 50, |_| false), vec![Vec::<String>::new()]);
}

#[test]
fn slash_sorts_before_other_bytes() {
    assert_eq!(catalog_order("a/b", "a-b"), Ordering::Less);
    assert_eq!(catalog_order("a", "a/b"), Ordering::Less);
    assert_eq!(catalog_order("b", "a/z"), Ordering::Greater);
}

#[test]
fn queries_links_and_bodies() {
    assert_eq!(
        CatalogQuery::parse(None),
        Some(CatalogQuery {
            n: DEFAULT_N,
            last: None
        })
    );
    assert_eq!(
        CatalogQuery::parse(Some("n=50&last=team%2Fapp")),
        Some(CatalogQuery {
            n: 50,
            last: Some("team/app".into())
        })
    );
    assert_eq!(CatalogQuery::parse(Some("n=5000")).unwrap().n, MAX_N);
    assert_eq!(CatalogQuery::parse(Some("n=")).unwrap().n, DEFAULT_N);
    assert!(CatalogQuery::parse(Some("n=-1")).is_none());
    assert!(CatalogQuery::parse(Some("n=x")).is_none());
    assert_eq!(
        link("team/app", 50),
        "</v2/_catalog?last=team%2Fapp&n=50>; rel=\"next\""
    );
    assert!(has_next(b"</v2/_catalog?last=x&n=100>; rel=\"next\""));
    assert_eq!(body(&["a/b".into()]), b"{\"repositories\":[\"a/b\"]}\n".to_vec());
    assert_eq!(parse_page(b"{\"repositories\":[\"x\"]}"), Some(vec!["x".to_owned()]));
    assert_eq!(parse_page(b"{\"repositories\":null}"), Some(vec![]));
    assert_eq!(parse_page(b"<html>"), None);
}
