//! The browser client: the files of `web/`, served at `/` from the same
//! origin as the API so the page needs no CORS.
//!
//! They are compiled into the binary, so it serves the page from any
//! working directory, after `cargo install`, or alone in a container.
//! `--web-dir` serves a folder instead, read on every request, for working
//! on the page without rebuilding.
//!
//! Every file carries a strong `ETag` (a hash of its bytes) and
//! `Cache-Control: no-cache`: a browser revalidates on each load, so a
//! redeployed client never mixes with a cached one, and an unchanged file
//! costs a `304` with no body.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{
    CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderMap, HeaderValue, IF_NONE_MATCH,
    X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Response, StatusCode};

use crate::api::ApiError;

/// Where the page comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WebRoot {
    /// The files compiled into the binary.
    #[default]
    Embedded,
    /// A folder, read on every request.
    Dir(PathBuf),
}

/// Declares the embedded files; `every_web_file_is_embedded` below fails
/// when `web/` holds a file this list misses.
macro_rules! embed {
    ($($file:literal),* $(,)?) => {
        &[$(($file, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $file)))),*]
    };
}

static EMBEDDED: &[(&str, &[u8])] = embed!(
    "index.html",
    "app.js",
    "signal.js",
    "style.css",
    "favicon.svg",
);

/// Paths answered with another file: browsers and tools ask for
/// `/favicon.ico` whatever the page's `<link rel="icon">` says.
const ALIASES: &[(&str, &str)] = &[("favicon.ico", "favicon.svg")];

/// One file ready to send.
struct File {
    bytes: Bytes,
    etag: HeaderValue,
}

impl File {
    fn new(bytes: Bytes) -> File {
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        let hex: String = digest.as_ref()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let etag = HeaderValue::from_str(&format!("\"{hex}\""))
            .expect("a quoted hex string is a header value");
        File { bytes, etag }
    }
}

/// The embedded files by name, hashed once.
fn embedded() -> &'static HashMap<&'static str, File> {
    static FILES: OnceLock<HashMap<&'static str, File>> = OnceLock::new();
    FILES.get_or_init(|| {
        EMBEDDED
            .iter()
            .map(|(name, bytes)| (*name, File::new(Bytes::from_static(bytes))))
            .collect()
    })
}

/// Serves `path` (a URL path) from `root`. Only plain file names are
/// accepted, so no path can climb out of the folder.
pub async fn serve(
    root: &WebRoot,
    path: &str,
    request_headers: &HeaderMap,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let not_found = || ApiError::not_found(format!("nothing at {path}: the API is at /signal"));
    let mut relative = path.trim_start_matches('/').to_owned();
    if relative.is_empty() || relative.ends_with('/') {
        relative.push_str("index.html");
    }
    let safe = relative.split('/').all(|segment| {
        !segment.is_empty()
            && !segment.starts_with('.')
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    });
    if !safe {
        return Err(not_found());
    }
    if let Some((_, target)) = ALIASES.iter().find(|(alias, _)| *alias == relative) {
        relative = (*target).to_owned();
    }
    let read;
    let file = match root {
        WebRoot::Embedded => embedded().get(relative.as_str()).ok_or_else(not_found)?,
        WebRoot::Dir(dir) => {
            read = File::new(read_file(dir, &relative).await?.ok_or_else(not_found)?);
            &read
        }
    };
    let fresh = request_headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag.as_bytes() == file.etag.as_bytes());
    let mut response = if fresh {
        let mut response = Response::new(Full::default());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        Response::new(Full::new(file.bytes.clone()))
    };
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(content_type(&relative)),
    );
    headers.insert(ETAG, file.etag.clone());
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Revalidate every time: a redeployed client must not mix with a cached one.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// A file of the folder, or `None` when there is none by that name.
async fn read_file(dir: &Path, relative: &str) -> Result<Option<Bytes>, ApiError> {
    match tokio::fs::read(dir.join(relative)).await {
        Ok(bytes) => Ok(Some(Bytes::from(bytes))),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::IsADirectory) => Ok(None),
        Err(e) => {
            tracing::warn!(file = %relative, error = %e, "cannot read web file");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the server cannot read this file",
            ))
        }
    }
}

fn content_type(file: &str) -> &'static str {
    let extension = file.rsplit_once('.').map_or("", |(_, ext)| ext);
    match extension.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "txt" | "md" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web_dir() -> WebRoot {
        WebRoot::Dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("web"))
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("signal.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("a/b.CSS"), "text/css; charset=utf-8");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }

    #[test]
    fn every_web_file_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with('.'))
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = EMBEDDED.iter().map(|(n, _)| n.to_string()).collect();
        listed.sort();
        assert_eq!(listed, on_disk, "list every file of web/ in EMBEDDED");
    }

    #[tokio::test]
    async fn refuses_to_leave_the_folder() {
        for root in [WebRoot::Embedded, web_dir()] {
            for path in [
                "/../Cargo.toml",
                "/%2e%2e/Cargo.toml",
                "/.git/config",
                "//etc/passwd",
            ] {
                let err = serve(&root, path, &HeaderMap::new()).await.unwrap_err();
                assert_eq!(err.status, StatusCode::NOT_FOUND, "{path}");
            }
            let page = serve(&root, "/", &HeaderMap::new()).await.unwrap();
            assert_eq!(page.status(), StatusCode::OK);
        }
    }

    #[tokio::test]
    async fn the_folder_and_the_binary_serve_the_same_bytes_and_tags() {
        for (name, bytes) in EMBEDDED {
            let path = format!("/{name}");
            let from_binary = serve(&WebRoot::Embedded, &path, &HeaderMap::new())
                .await
                .unwrap();
            let from_dir = serve(&web_dir(), &path, &HeaderMap::new()).await.unwrap();
            assert_eq!(from_binary.headers()[ETAG], from_dir.headers()[ETAG]);
            assert_eq!(&*embedded()[name].bytes, *bytes);
        }
    }

    #[tokio::test]
    async fn a_known_tag_is_a_304_and_the_icon_has_its_usual_path() {
        let first = serve(&WebRoot::Embedded, "/app.js", &HeaderMap::new())
            .await
            .unwrap();
        let tag = first.headers()[ETAG].clone();
        assert!(tag.to_str().unwrap().starts_with('"'), "a strong tag");
        let mut headers = HeaderMap::new();
        headers.insert(IF_NONE_MATCH, tag.clone());
        let again = serve(&WebRoot::Embedded, "/app.js", &headers)
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[ETAG], tag);
        headers.insert(IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        let changed = serve(&WebRoot::Embedded, "/app.js", &headers)
            .await
            .unwrap();
        assert_eq!(changed.status(), StatusCode::OK);

        let icon = serve(&WebRoot::Embedded, "/favicon.ico", &HeaderMap::new())
            .await
            .unwrap();
        assert_eq!(icon.status(), StatusCode::OK);
        assert_eq!(icon.headers()[CONTENT_TYPE], "image/svg+xml");
    }
}
