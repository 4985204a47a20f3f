//! `WWW-Authenticate` challenges of upstream registries (RFC 7235): Basic,
//! and the distribution token flow's `Bearer realm=...,service=...,scope=...`.

/// What an upstream asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `GET /v2/` answered 200: no authentication.
    Open,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        /// The scope the challenge names, when it names one.
        scope: Option<String>,
    },
}

/// The challenge of one header value; Bearer is preferred where several
/// are offered. `None`: no scheme the gateway speaks.
pub fn parse(header: &str) -> Option<Challenge> {
    let mut basic = false;
    for (scheme, params) in challenges(header) {
        if scheme.eq_ignore_ascii_case("bearer") {
            let get = |k: &str| {
                params
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.clone())
            };
            if let Some(realm) = get("realm") {
                return Some(Challenge::Bearer {
                    realm,
                    service: get("service"),
                    scope: get("scope"),
                });
            }
        } else if scheme.eq_ignore_ascii_case("basic") {
            basic = true;
        }
    }
    basic.then_some(Challenge::Basic)
}

type Params = Vec<(String, String)>;

/// Splits `Scheme a=b, c="d,e", Other f=g` into schemes with parameters.
fn challenges(header: &str) -> Vec<(String, Params)> {
    let mut out: Vec<(String, Params)> = Vec::new();
    let b = header.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b',') {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i] != b' ' && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        let word = &header[start..i];
        if word.is_empty() {
            break;
        }
        if i < b.len() && b[i] == b'=' {
            // A parameter of the current scheme.
            i += 1;
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    let ch_len = header[i..].chars().next().map_or(1, char::len_utf8);
                    v.push_str(&header[i..i + ch_len]);
                    i += ch_len;
                }
                i += 1;
                v
            } else {
                let s = i;
                while i < b.len() && b[i] != b',' {
                    i += 1;
                }
                header[s..i].trim().to_owned()
            };
            if let Some(last) = out.last_mut() {
                last.1.push((word.to_owned(), value));
            }
        } else {
            out.push((word.to_owned(), Vec::new()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_with_quoted_commas() {
        let c = parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull,push".into()),
            })
        );
    }

    #[test]
    fn basic_and_preference() {
        assert_eq!(parse(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(parse("basic"), Some(Challenge::Basic));
        let both = parse(r#"Basic realm="x", Bearer realm="http://h/t", service=s"#);
        assert!(
            matches!(both, Some(Challenge::Bearer { ref realm, ref service, .. }) if realm == "http://h/t" && service.as_deref() == Some("s"))
        );
        assert_eq!(parse(r#"Negotiate abc"#), None);
        assert_eq!(parse(r#"Bearer service="x""#), None);
        assert_eq!(
            parse(r#"Bearer realm="a\"b""#),
            Some(Challenge::Bearer {
                realm: "a\"b".into(),
                service: None,
                scope: None
            })
        );
        assert_eq!(parse(""), None);
    }
}
