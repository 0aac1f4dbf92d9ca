//! Answers terminus writes itself when it cannot forward: a status with a short body.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use super::body::ProxyBody;

/// A response with `status` and a one-line body naming it.
pub fn error_response(status: StatusCode) -> Response<ProxyBody> {
    let body = match status {
        StatusCode::BAD_REQUEST => Bytes::from_static(b"400 Bad Request\n"),
        StatusCode::NOT_FOUND => {
            Bytes::from_static(b"404 Not Found: no route for this host and path\n")
        }
        StatusCode::BAD_GATEWAY => Bytes::from_static(b"502 Bad Gateway\n"),
        StatusCode::SERVICE_UNAVAILABLE => {
            Bytes::from_static(b"503 Service Unavailable: no usable backend\n")
        }
        StatusCode::GATEWAY_TIMEOUT => Bytes::from_static(b"504 Gateway Timeout\n"),
        other => Bytes::from(format!("{other}\n")),
    };
    let mut resp = Response::new(ProxyBody::local(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
