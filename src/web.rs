//! The browser client: files of the web folder, served at `/` from the same
//! origin as the API so the page needs no CORS.

use std::io::ErrorKind;
use std::path::Path;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, X_CONTENT_TYPE_OPTIONS};
use hyper::{Response, StatusCode};

use crate::api::ApiError;

/// Serves `path` (a URL path) from `dir`. Only plain file names are
/// accepted, so no path can climb out of the folder.
pub async fn serve(dir: &Path, path: &str) -> Result<Response<Full<Bytes>>, ApiError> {
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
    let bytes = match tokio::fs::read(dir.join(&relative)).await {
        Ok(bytes) => bytes,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::IsADirectory) => {
            return Err(not_found());
        }
        Err(e) => {
            tracing::warn!(file = %relative, error = %e, "cannot read web file");
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the server cannot read this file",
            ));
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(content_type(&relative)),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Revalidate every time: a redeployed client must not mix with a cached one.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
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

    #[test]
    fn content_types() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("signal.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("a/b.CSS"), "text/css; charset=utf-8");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }

    #[tokio::test]
    async fn refuses_to_leave_the_folder() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        for path in [
            "/../Cargo.toml",
            "/%2e%2e/Cargo.toml",
            "/.git/config",
            "//etc/passwd",
        ] {
            let err = serve(&dir, path).await.unwrap_err();
            assert_eq!(err.status, StatusCode::NOT_FOUND, "{path}");
        }
        assert_eq!(serve(&dir, "/").await.unwrap().status(), StatusCode::OK);
    }
}
