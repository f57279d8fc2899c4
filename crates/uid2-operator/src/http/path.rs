//! Request paths of the SDK-facing endpoints as the official operator routes them: Vert.x
//! normalises a path before it matches routes (percent-escapes of unreserved characters
//! decoded, `.` and `..` segments resolved, repeated slashes collapsed) and ignores a trailing
//! slash. SDKs rely on it without knowing: the official Python SDK joins `base_url + "/v2/…"`,
//! so a base URL given with a trailing slash asks for `//v2/token/generate`.
//!
//! Only paths that normalise to an API path (`/v1/…`, `/v2/…`, `/v3/…`, `/static/…`) are
//! rewritten: the operator's own routes (`/metrics`, `/ops/…`) answer their exact path alone,
//! so a proxy rule that keeps `/metrics` private by its path cannot be sidestepped with
//! `//metrics`. Malformed escapes (`%zz`) are left as sent (upstream refuses the request; here
//! it matches no route: a 404 either way for what an SDK never sends).

use axum::extract::Request;
use axum::http::Uri;
use axum::http::uri::PathAndQuery;

/// `path` in the form routes are matched against, or `None` if it already is in that form
/// (the common case, which allocates nothing) or is not an API path.
pub(crate) fn normalized(path: &str) -> Option<String> {
    if is_normal(path) {
        return None;
    }
    let decoded = decode_unreserved(path);
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() {
        out.push('/');
    }
    (out != path && API_PREFIXES.iter().any(|p| out.starts_with(p))).then_some(out)
}

/// The paths SDKs call, which are routed however they are spelled.
const API_PREFIXES: [&str; 4] = ["/v1/", "/v2/", "/v3/", "/static/"];

/// Whether `path` needs no normalising: it starts with a slash, has no empty, `.` or `..`
/// segment, no trailing slash (but for `/` itself) and no percent-escape.
fn is_normal(path: &str) -> bool {
    if path == "/" {
        return true;
    }
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    !path.contains('%') && rest.split('/').all(|s| !matches!(s, "" | "." | ".."))
}

/// Decodes the percent-escapes of unreserved characters (RFC 3986 §2.3: letters, digits,
/// `-`, `.`, `_`, `~`), which mean the same decoded; every other escape stays as sent, so an
/// escaped `/` never becomes a segment boundary.
fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(c) = path
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .filter(|c| c.is_ascii_alphanumeric() || b"-._~".contains(c))
        {
            out.push(c as char);
            i += 3;
            continue;
        }
        // Byte by byte is safe: only ASCII is ever replaced, so multi-byte characters pass
        // through whole.
        let len = utf8_len(bytes[i]);
        out.push_str(&path[i..i + len]);
        i += len;
    }
    out
}

/// The length of the UTF-8 character starting with `first`.
fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// Rewrites the request's path to its [`normalized`] form, keeping the query.
pub(crate) fn normalize_request(mut req: Request) -> Request {
    let Some(path) = normalized(req.uri().path()) else {
        return req;
    };
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = req.uri().clone().into_parts();
    // A normalised path of a valid URI is a valid path: it only loses characters, and gains
    // unreserved ones.
    if let Ok(pq) = PathAndQuery::try_from(path_and_query) {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_as_upstream_routes_them() {
        for (sent, routed) in [
            ("//v2/token/generate", "/v2/token/generate"),
            ("/v2//token/generate", "/v2/token/generate"),
            ("/v2/token/generate/", "/v2/token/generate"),
            ("/v2/token/%67enerate", "/v2/token/generate"),
            ("/v2/token/%2Dx%7e", "/v2/token/-x~"),
            ("/v2/./token/../token/generate", "/v2/token/generate"),
            ("/../../v2/key/latest", "/v2/key/latest"),
            ("/v2/é//x", "/v2/é/x"),
        ] {
            assert_eq!(normalized(sent).as_deref(), Some(routed), "{sent}");
        }
        for already in [
            "/",
            "/v2/token/generate",
            "/static/js/uid2-sdk.js",
            "/a.b/..c",
            "/%2F",
            "/%zz/a%",
            // The operator's own routes: their exact path only.
            "//",
            "//metrics",
            "/metrics/",
            "/%6detrics",
            "/v2/../metrics",
            "/ops//healthcheck",
        ] {
            assert_eq!(normalized(already), None, "{already}");
        }
    }

    /// Any path (of the characters that matter): no panic, and a rewritten path is an API path
    /// in normal form.
    #[test]
    fn every_path_normalises_safely() {
        use rand::RngExt;
        let pieces = [
            "/", "/", ".", "..", "%", "2", "e", "F", "z", "v2", "é", "~", "%2e", "%2F",
        ];
        let mut rng = rand::rng();
        for _ in 0..20_000 {
            let len = rng.random_range(0..12);
            let path: String = (0..len)
                .map(|_| pieces[rng.random_range(0..pieces.len())])
                .collect();
            let Some(out) = normalized(&path) else {
                continue;
            };
            assert!(
                API_PREFIXES.iter().any(|p| out.starts_with(p)),
                "{path:?} -> {out:?}"
            );
            let rest = &out[1..];
            assert!(
                rest.split('/').all(|s| !matches!(s, "" | "." | "..")),
                "{path:?} -> {out:?}"
            );
        }
    }

    #[test]
    fn the_query_is_kept() {
        let req = Request::builder()
            .uri("//v1/token/generate/?email=a%40b.com")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(
            normalize_request(req).uri(),
            "/v1/token/generate?email=a%40b.com"
        );
    }
}
