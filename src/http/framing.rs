//! Message framing between client, terminus and backend: a message whose length could be read
//! two ways is refused, never forwarded (request smuggling, response splitting).
//!
//! hyper's HTTP/1 parser and the h2 crate refuse most broken framing before a request reaches
//! terminus: bytes that are not allowed in a header line, obs-fold, differing Content-Lengths,
//! a last coding other than `chunked`, Transfer-Encoding in HTTP/1.0, bad chunk sizes, HTTP/2
//! connection-specific fields and a content-length the DATA frames disagree with. The checks
//! here cover what they let through, strictly as HAProxy does: the only coding accepted is one
//! `chunked`, and a length is one value made of digits. The length that passes is written back
//! in canonical form; hyper's client then frames the body toward the backend itself (the
//! client's Transfer-Encoding goes with the hop-by-hop headers).
//!
//! hyper resolves two cases before the service sees them, so they never reach these checks:
//! repeated identical Content-Length lines are merged into one, and a Content-Length next to
//! Transfer-Encoding is dropped. `raw_framing` (requests) and `upstream::response_heads`
//! (responses) read the raw heads beside hyper to find them; the refusals are made here and in
//! the proxy. tests/smuggling.rs holds the vectors.

use std::fmt;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode, Version};

use crate::upstream::response_heads::AmbiguousResponse;
use crate::upstream::UpstreamError;

/// Why a message's framing is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// Content-Length and Transfer-Encoding together.
    LengthAndCoding,
    /// Content-Length that is not one run of digits, or several values (that disagree, for a
    /// response).
    BadLength,
    /// Transfer-Encoding other than one `chunked`.
    BadCoding,
    /// Transfer-Encoding in an HTTP/1.0 message, which has no chunked coding.
    CodingInHttp10,
    /// An HTTP/2 field that belongs to an HTTP/1.1 connection (RFC 9113 section 8.2.2).
    ConnectionSpecific,
    /// HTTP/2 `te` other than `trailers`.
    TeNotTrailers,
    /// hyper's parser refused the backend's Content-Length or Transfer-Encoding.
    RefusedByParser,
    /// The client's chunked body broke off on a bad chunk size or line end.
    BadChunk,
}

impl Violation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LengthAndCoding => "content-length with transfer-encoding",
            Self::BadLength => "invalid or repeated content-length",
            Self::BadCoding => "transfer-encoding other than chunked",
            Self::CodingInHttp10 => "transfer-encoding in HTTP/1.0",
            Self::ConnectionSpecific => "connection-specific field in HTTP/2",
            Self::TeNotTrailers => "te other than trailers in HTTP/2",
            Self::RefusedByParser => "framing refused by the HTTP/1 parser",
            Self::BadChunk => "malformed chunked body from the client",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Fields an HTTP/2 message must not carry: they describe an HTTP/1.1 connection, and passed
/// on to an HTTP/1.1 backend they would frame the request anew.
const CONNECTION_SPECIFIC: [HeaderName; 5] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Checks a client's request head, and writes its Content-Length back as one canonical value.
/// A request may carry one Content-Length, or (HTTP/1.1 only) one `Transfer-Encoding: chunked`.
pub fn check_request(version: Version, headers: &mut HeaderMap) -> Result<(), Violation> {
    if version >= Version::HTTP_2 {
        http2_fields(headers)?;
    } else {
        coding(version, headers)?;
    }
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let Some(first) = values.next() else {
        return Ok(());
    };
    if values.next().is_some() {
        return Err(Violation::BadLength);
    }
    let len = digits(first.as_bytes()).ok_or(Violation::BadLength)?;
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(())
}

/// An attempt ended by broken framing, and whose it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broken {
    pub violation: Violation,
    /// The backend's response, else the client's request body.
    pub by_backend: bool,
}

impl Broken {
    /// What the client gets: 502 for the backend's framing, 400 for its own.
    pub fn status(self) -> StatusCode {
        if self.by_backend {
            StatusCode::BAD_GATEWAY
        } else {
            StatusCode::BAD_REQUEST
        }
    }

    /// The access log's termination reason.
    pub fn reason(self) -> &'static str {
        if self.by_backend {
            "upstream_bad_framing"
        } else {
            "bad_framing"
        }
    }
}

/// Screens what an attempt got: a response with ambiguous framing, a response head hyper's
/// parser refused for its framing, or a client body whose chunked framing broke while it was
/// being sent. A good response has its Content-Length written back as one value; other
/// failures pass for the caller.
pub fn check_attempt<B>(sent: &mut Result<Response<B>, UpstreamError>) -> Option<Broken> {
    let backend = |violation| Broken {
        violation,
        by_backend: true,
    };
    // hyper names what it refused only in its messages: "invalid content-length parsed" for a
    // response head, "Invalid chunk size line: ..." and the like for a request body (a
    // response body is read later, after the head reached the client).
    let says = |why: &str, words: &[&str]| {
        let why = why.to_ascii_lowercase();
        words.iter().any(|w| why.contains(w))
    };
    match sent {
        Ok(resp) => {
            let version = resp.version();
            response_fields(version, resp.headers_mut())
                .err()
                .map(backend)
        }
        Err(UpstreamError::InvalidResponse(why)) if why == AmbiguousResponse::TEXT => {
            Some(backend(Violation::LengthAndCoding))
        }
        Err(UpstreamError::InvalidResponse(why))
            if says(why, &["content-length", "transfer-encoding"]) =>
        {
            Some(backend(Violation::RefusedByParser))
        }
        Err(UpstreamError::Other(why)) if says(why, &["chunk", "trailer"]) => Some(Broken {
            violation: Violation::BadChunk,
            by_backend: false,
        }),
        Err(_) => None,
    }
}

/// A response may repeat Content-Length if every value agrees (RFC 9112 section 6.3); it is
/// forwarded with one.
fn response_fields(version: Version, headers: &mut HeaderMap) -> Result<(), Violation> {
    if version < Version::HTTP_2 {
        coding(version, headers)?;
    }
    if !headers.contains_key(header::CONTENT_LENGTH) {
        return Ok(());
    }
    let mut len = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for item in value.as_bytes().split(|&b| b == b',') {
            let n = digits(item).ok_or(Violation::BadLength)?;
            if len.is_some_and(|l| l != n) {
                return Err(Violation::BadLength);
            }
            len = Some(n);
        }
    }
    if let Some(len) = len {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    Ok(())
}

/// HTTP/1 Transfer-Encoding: absent, or exactly one field `chunked` (case-insensitive, as
/// coding names are) in HTTP/1.1 without Content-Length.
fn coding(version: Version, headers: &HeaderMap) -> Result<(), Violation> {
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter();
    let Some(first) = codings.next() else {
        return Ok(());
    };
    if version < Version::HTTP_11 {
        return Err(Violation::CodingInHttp10);
    }
    if headers.contains_key(header::CONTENT_LENGTH) {
        return Err(Violation::LengthAndCoding);
    }
    let chunked = first
        .as_bytes()
        .trim_ascii()
        .eq_ignore_ascii_case(b"chunked");
    if !chunked || codings.next().is_some() {
        return Err(Violation::BadCoding);
    }
    Ok(())
}

/// HTTP/2 requests: no connection-specific field, and `te` only as `trailers`.
fn http2_fields(headers: &HeaderMap) -> Result<(), Violation> {
    if CONNECTION_SPECIFIC.iter().any(|h| headers.contains_key(h)) {
        return Err(Violation::ConnectionSpecific);
    }
    if headers.get_all(header::TE).iter().any(|v| v != "trailers") {
        return Err(Violation::TeNotTrailers);
    }
    Ok(())
}

/// A length: digits only around optional whitespace (no sign, no hex, no list), within u64.
fn digits(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Asks hyper to close an HTTP/1 connection after this response: once a request's framing is
/// in doubt, so is where the next one starts. HTTP/2 frames each stream, so its connection
/// stays.
pub fn close_after<B>(resp: &mut Response<B>, version: Version) {
    if version < Version::HTTP_2 {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Fields<'a> = &'a [(&'a str, &'a str)];

    fn head(fields: Fields) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in fields {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        h
    }

    fn request(version: Version, fields: Fields) -> Result<HeaderMap, Violation> {
        let mut h = head(fields);
        check_request(version, &mut h).map(|()| h)
    }

    #[test]
    fn http1_requests_carry_one_length_or_one_chunked() {
        use Violation::*;
        let v11 = Version::HTTP_11;
        let cases: &[(Fields, Result<(), Violation>)] = &[
            (&[("content-length", "5")], Ok(())),
            (&[("transfer-encoding", "ChUnKeD")], Ok(())),
            (
                &[("content-length", "5"), ("content-length", "5")],
                Err(BadLength),
            ),
            (&[("content-length", "5, 5")], Err(BadLength)),
            (&[("content-length", "+5")], Err(BadLength)),
            (&[("content-length", "0x5")], Err(BadLength)),
            (
                &[("content-length", "99999999999999999999")],
                Err(BadLength),
            ),
            (&[("content-length", "")], Err(BadLength)),
            (
                &[("content-length", "5"), ("transfer-encoding", "chunked")],
                Err(LengthAndCoding),
            ),
            (&[("transfer-encoding", "gzip, chunked")], Err(BadCoding)),
            (&[("transfer-encoding", "identity")], Err(BadCoding)),
            (
                &[
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked"),
                ],
                Err(BadCoding),
            ),
        ];
        for (fields, want) in cases {
            assert_eq!(request(v11, fields).map(|_| ()), *want, "{fields:?}");
        }
        let err = request(Version::HTTP_10, &[("transfer-encoding", "chunked")]);
        assert_eq!(err.unwrap_err(), CodingInHttp10);
        let h = request(v11, &[("content-length", " 007 ")]).unwrap();
        assert_eq!(h["content-length"], "7");
    }

    #[test]
    fn http2_requests_carry_no_connection_fields() {
        let v2 = Version::HTTP_2;
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "upgrade",
        ] {
            let err = request(v2, &[(name, "x")]).unwrap_err();
            assert_eq!(err, Violation::ConnectionSpecific, "{name}");
        }
        assert_eq!(
            request(v2, &[("te", "gzip")]).unwrap_err(),
            Violation::TeNotTrailers
        );
        assert!(request(v2, &[("te", "trailers"), ("content-length", "3")]).is_ok());
    }

    fn response(fields: Fields) -> Result<Response<()>, UpstreamError> {
        let mut resp = Response::new(());
        *resp.headers_mut() = head(fields);
        Ok(resp)
    }

    #[test]
    fn responses_with_two_readings_are_refused() {
        let mut same = response(&[("content-length", "4"), ("content-length", "4, 4")]);
        assert!(check_attempt(&mut same).is_none());
        let same = same.unwrap();
        assert_eq!(same.headers().get_all("content-length").iter().count(), 1);
        for fields in [
            &[("content-length", "4"), ("content-length", "5")][..],
            &[("content-length", "4"), ("transfer-encoding", "chunked")],
            &[("transfer-encoding", "xchunked")],
            &[("transfer-encoding", "gzip, chunked")],
        ] {
            assert!(check_attempt(&mut response(fields)).is_some(), "{fields:?}");
        }
        let parser = "invalid content-length parsed".to_owned();
        let mut refused = Err::<Response<()>, _>(UpstreamError::InvalidResponse(parser));
        let broken = check_attempt(&mut refused).unwrap();
        assert_eq!(
            (broken.status(), broken.reason()),
            (StatusCode::BAD_GATEWAY, "upstream_bad_framing")
        );
        let chunk =
            "error from user's Body stream: Invalid chunk size line: Invalid Size".to_owned();
        let broken = check_attempt(&mut Err::<Response<()>, _>(UpstreamError::Other(chunk)));
        assert_eq!(broken.unwrap().status(), StatusCode::BAD_REQUEST);
        let mut other = Err::<Response<()>, _>(UpstreamError::Reset);
        assert!(check_attempt(&mut other).is_none());
    }
}
