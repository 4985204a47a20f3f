//! Registry operations: what a request means in the distribution API
//! (`manifest_get`, `upload_chunk`, ...), decided from method and path.
//! Metrics count by operation and the access log names it, with the
//! repository and reference picked out of the same path.

use http::Method;

use crate::routing::Route;

/// The fixed set of operations metrics are labelled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Operation {
    Ping,
    Base,
    Catalog,
    TagsList,
    ManifestGet,
    ManifestHead,
    ManifestPut,
    ManifestDelete,
    BlobGet,
    BlobHead,
    BlobDelete,
    UploadStart,
    UploadChunk,
    UploadComplete,
    UploadStatus,
    UploadCancel,
    Referrers,
    V1,
    Other,
}

impl Operation {
    pub const COUNT: usize = 19;
    pub const ALL: [Operation; Self::COUNT] = [
        Operation::Ping,
        Operation::Base,
        Operation::Catalog,
        Operation::TagsList,
        Operation::ManifestGet,
        Operation::ManifestHead,
        Operation::ManifestPut,
        Operation::ManifestDelete,
        Operation::BlobGet,
        Operation::BlobHead,
        Operation::BlobDelete,
        Operation::UploadStart,
        Operation::UploadChunk,
        Operation::UploadComplete,
        Operation::UploadStatus,
        Operation::UploadCancel,
        Operation::Referrers,
        Operation::V1,
        Operation::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Ping => "ping",
            Operation::Base => "base",
            Operation::Catalog => "catalog",
            Operation::TagsList => "tags_list",
            Operation::ManifestGet => "manifest_get",
            Operation::ManifestHead => "manifest_head",
            Operation::ManifestPut => "manifest_put",
            Operation::ManifestDelete => "manifest_delete",
            Operation::BlobGet => "blob_get",
            Operation::BlobHead => "blob_head",
            Operation::BlobDelete => "blob_delete",
            Operation::UploadStart => "upload_start",
            Operation::UploadChunk => "upload_chunk",
            Operation::UploadComplete => "upload_complete",
            Operation::UploadStatus => "upload_status",
            Operation::UploadCancel => "upload_cancel",
            Operation::Referrers => "referrers",
            Operation::V1 => "v1",
            Operation::Other => "other",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A request as a registry operation, with the parts of its path that name
/// what it works on. Borrowed from the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryRequest<'a> {
    pub operation: Operation,
    /// `library/alpine`; empty where the operation has none.
    pub repository: &'a str,
    /// Tag, digest or upload id; empty where the operation has none.
    pub reference: &'a str,
}

impl<'a> RegistryRequest<'a> {
    fn new(operation: Operation, repository: &'a str, reference: &'a str) -> Self {
        RegistryRequest {
            operation,
            repository,
            reference,
        }
    }

    fn other() -> Self {
        Self::new(Operation::Other, "", "")
    }
}

/// Classifies a request. `route` is `None` for paths routing rejected.
/// Repository names may contain slashes but references never do, so the
/// path is read from its end, as distribution's own router does.
pub fn classify<'a>(method: &Method, route: Option<Route>, path: &'a str) -> RegistryRequest<'a> {
    match route {
        Some(Route::Ping) => return RegistryRequest::new(Operation::Ping, "", ""),
        Some(Route::V1) => return RegistryRequest::new(Operation::V1, "", ""),
        Some(Route::V2) => {}
        None => return RegistryRequest::other(),
    }
    let Some(rest) = path.strip_prefix("/v2") else {
        return RegistryRequest::other();
    };
    if rest.is_empty() || rest == "/" {
        return RegistryRequest::new(
            if is_read(method) {
                Operation::Base
            } else {
                Operation::Other
            },
            "",
            "",
        );
    }
    // Routing only lets `/v2` and `/v2/...` through; anything else is not
    // a registry operation (and slicing past a multi-byte char would panic).
    let Some(rest) = rest.strip_prefix('/') else {
        return RegistryRequest::other();
    };
    if rest == "_catalog" {
        let op = if is_read(method) {
            Operation::Catalog
        } else {
            Operation::Other
        };
        return RegistryRequest::new(op, "", "");
    }
    if let Some(repo) = rest.strip_suffix("/tags/list") {
        let op = if is_read(method) {
            Operation::TagsList
        } else {
            Operation::Other
        };
        return RegistryRequest::new(op, repo, "");
    }
    let Some((head, last)) = rest.rsplit_once('/') else {
        return RegistryRequest::other();
    };
    if let Some(repo) = head.strip_suffix("/manifests") {
        let op = match *method {
            Method::GET => Operation::ManifestGet,
            Method::HEAD => Operation::ManifestHead,
            Method::PUT => Operation::ManifestPut,
            Method::DELETE => Operation::ManifestDelete,
            _ => Operation::Other,
        };
        return RegistryRequest::new(op, repo, last);
    }
    if let Some(repo) = head.strip_suffix("/blobs/uploads") {
        // POST starts a session at `uploads/`; the other methods need its id.
        let op = match (*method == Method::POST, last.is_empty()) {
            (true, true) => Operation::UploadStart,
            (false, false) => upload_operation(method),
            _ => Operation::Other,
        };
        return RegistryRequest::new(op, repo, last);
    }
    if let Some(repo) = head.strip_suffix("/blobs") {
        // `POST /v2/<name>/blobs/uploads` without the trailing slash.
        if last == "uploads" && *method == Method::POST {
            return RegistryRequest::new(Operation::UploadStart, repo, "");
        }
        let op = match *method {
            Method::GET => Operation::BlobGet,
            Method::HEAD => Operation::BlobHead,
            Method::DELETE => Operation::BlobDelete,
            _ => Operation::Other,
        };
        return RegistryRequest::new(op, repo, last);
    }
    if let Some(repo) = head.strip_suffix("/referrers") {
        let op = if is_read(method) {
            Operation::Referrers
        } else {
            Operation::Other
        };
        return RegistryRequest::new(op, repo, last);
    }
    RegistryRequest::other()
}

fn is_read(method: &Method) -> bool {
    *method == Method::GET || *method == Method::HEAD
}

fn upload_operation(method: &Method) -> Operation {
    match *method {
        Method::PATCH => Operation::UploadChunk,
        Method::PUT => Operation::UploadComplete,
        Method::GET | Method::HEAD => Operation::UploadStatus,
        Method::DELETE => Operation::UploadCancel,
        _ => Operation::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(method: &str, path: &str) -> (Operation, String, String) {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let route = crate::routing::classify(path.as_bytes()).ok();
        let r = classify(&m, route, path);
        (r.operation, r.repository.to_owned(), r.reference.to_owned())
    }

    #[test]
    fn every_operation_is_recognised() {
        use Operation::*;
        let d = "sha256:0123456789abcdef";
        let cases = [
            ("GET", "/_ping", Ping, "", ""),
            ("GET", "/v1/_ping", Ping, "", ""),
            ("GET", "/v1/search", V1, "", ""),
            ("GET", "/v2/", Base, "", ""),
            ("HEAD", "/v2", Base, "", ""),
            ("GET", "/v2/_catalog", Catalog, "", ""),
            ("GET", "/v2/library/alpine/tags/list", TagsList, "library/alpine", ""),
            (
                "GET",
                "/v2/library/alpine/manifests/3.20",
                ManifestGet,
                "library/alpine",
                "3.20",
            ),
            ("HEAD", "/v2/a/manifests/latest", ManifestHead, "a", "latest"),
            ("PUT", "/v2/a/b/c/manifests/v1", ManifestPut, "a/b/c", "v1"),
            ("DELETE", &format!("/v2/a/manifests/{d}"), ManifestDelete, "a", d),
            ("GET", &format!("/v2/a/blobs/{d}"), BlobGet, "a", d),
            ("HEAD", &format!("/v2/a/blobs/{d}"), BlobHead, "a", d),
            ("DELETE", &format!("/v2/a/blobs/{d}"), BlobDelete, "a", d),
            ("POST", "/v2/team/app/blobs/uploads/", UploadStart, "team/app", ""),
            ("POST", "/v2/team/app/blobs/uploads", UploadStart, "team/app", ""),
            ("PATCH", "/v2/a/blobs/uploads/5f1e-22", UploadChunk, "a", "5f1e-22"),
            ("PUT", "/v2/a/blobs/uploads/5f1e-22", UploadComplete, "a", "5f1e-22"),
            ("GET", "/v2/a/blobs/uploads/5f1e-22", UploadStatus, "a", "5f1e-22"),
            ("DELETE", "/v2/a/blobs/uploads/5f1e-22", UploadCancel, "a", "5f1e-22"),
            ("GET", &format!("/v2/a/referrers/{d}"), Referrers, "a", d),
        ];
        for (m, p, want, repo, reference) in cases {
            assert_eq!(op(m, p), (want, repo.to_owned(), reference.to_owned()), "{m} {p}");
        }
    }

    #[test]
    fn repositories_named_like_api_words_are_read_from_the_end() {
        let (o, repo, r) = op("GET", "/v2/manifests/blobs/manifests/latest");
        assert_eq!(
            (o, repo.as_str(), r.as_str()),
            (Operation::ManifestGet, "manifests/blobs", "latest")
        );
        let (o, repo, _) = op("GET", "/v2/tags/list/tags/list");
        assert_eq!((o, repo.as_str()), (Operation::TagsList, "tags/list"));
    }

    #[test]
    fn unknown_shapes_and_methods_are_other() {
        for (m, p) in [
            ("POST", "/v2/a/manifests/latest"),
            ("PATCH", "/v2/a/blobs/sha256:00"),
            ("PUT", "/v2/a/blobs/uploads/"),
            ("POST", "/v2/a/blobs/uploads/abc"),
            ("GET", "/v2/a"),
            ("GET", "/v2/a/unknown/x"),
            ("DELETE", "/v2/_catalog"),
            ("GET", "/admin"),
        ] {
            assert_eq!(op(m, p).0, Operation::Other, "{m} {p}");
        }
    }

    #[test]
    fn a_path_that_only_starts_with_v2_is_other() {
        for path in ["/v2\u{e9}", "/v2x/y/manifests/z", "/v2.."] {
            assert_eq!(
                classify(&Method::GET, Some(Route::V2), path).operation,
                Operation::Other,
                "{path}"
            );
        }
    }

    #[test]
    fn names_are_unique_and_indexes_dense() {
        let mut names: Vec<&str> = Operation::ALL.iter().map(|o| o.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Operation::COUNT);
        for (i, o) in Operation::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
        }
    }
}
