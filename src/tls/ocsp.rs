//! Reading a DER OCSP response to staple. Only the outer shape is checked (one DER SEQUENCE
//! that fills the file, starting with the ENUMERATED responseStatus); the response's
//! signature, status, certificate and freshness are the CA's and the operator's business.

use std::path::Path;

/// Larger files are not OCSP responses: a real one is a few KiB at most.
pub const MAX_OCSP_BYTES: usize = 64 * 1024;

/// Why an OCSP response file was refused. The text after `; ` says what was expected.
#[derive(Debug, thiserror::Error)]
pub enum OcspError {
    #[error("cannot read {path}: {source}; expected a readable DER OCSP response file")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a DER OCSP response ({detail}); expected a DER OCSP response (an OCSPResponse), as `openssl ocsp -respout FILE` writes it")]
    NotDer { path: String, detail: String },
}

/// Reads `path` and checks that it looks like a DER OCSPResponse.
pub fn read_response(path: &Path) -> Result<Vec<u8>, OcspError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| OcspError::Read {
        path: shown.clone(),
        source,
    })?;
    check_der(&bytes).map_err(|detail| OcspError::NotDer {
        path: shown,
        detail,
    })?;
    Ok(bytes)
}

/// `OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED, responseBytes [0] EXPLICIT ... OPTIONAL }`:
/// checks the SEQUENCE tag, that its definite length covers exactly the rest of the bytes,
/// and that it opens with an ENUMERATED.
fn check_der(bytes: &[u8]) -> Result<(), String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    if bytes.len() > MAX_OCSP_BYTES {
        return Err(format!(
            "{} bytes, more than the {MAX_OCSP_BYTES} allowed",
            bytes.len()
        ));
    }
    if bytes[0] != 0x30 {
        return Err(format!(
            "it starts with byte 0x{:02x}, not 0x30 (SEQUENCE): a PEM or base64 file must be decoded first",
            bytes[0]
        ));
    }
    let (len, header) =
        der_length(&bytes[1..]).ok_or_else(|| "the SEQUENCE length is malformed".to_string())?;
    let body = &bytes[1 + header..];
    if body.len() != len {
        return Err(format!(
            "the SEQUENCE says {len} bytes but {} follow",
            body.len()
        ));
    }
    if body.first() != Some(&0x0a) {
        return Err("the SEQUENCE does not start with the ENUMERATED responseStatus".into());
    }
    Ok(())
}

/// A DER definite length at the start of `bytes`: (length, bytes the length field took).
fn der_length(bytes: &[u8]) -> Option<(usize, usize)> {
    let first = *bytes.first()?;
    if first < 0x80 {
        return Some((usize::from(first), 1));
    }
    // 0x80 is the indefinite form (not DER); more than 4 octets is far past MAX_OCSP_BYTES.
    let count = usize::from(first & 0x7f);
    if count == 0 || count > 4 {
        return None;
    }
    let octets = bytes.get(1..1 + count)?;
    let len = octets
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    Some((len, 1 + count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_response_passes_and_broken_ones_say_why() {
        // OCSPResponse { responseStatus: malformedRequest }.
        assert_eq!(check_der(&[0x30, 0x03, 0x0a, 0x01, 0x01]), Ok(()));
        let long = [&[0x30, 0x81, 0x03, 0x0a, 0x01, 0x00][..]].concat();
        assert_eq!(check_der(&long), Ok(()));
        for (bytes, why) in [
            (&b""[..], "empty"),
            (&b"MAMKAQE="[..], "not 0x30"),
            (&[0x30, 0x05, 0x0a, 0x01, 0x01][..], "says 5 bytes but 3"),
            (&[0x30, 0x80, 0x0a, 0x01, 0x01][..], "malformed"),
            (&[0x30, 0x03, 0x02, 0x01, 0x01][..], "ENUMERATED"),
        ] {
            let err = check_der(bytes).unwrap_err();
            assert!(err.contains(why), "{bytes:?}: {err}");
        }
        let big = vec![0x30; MAX_OCSP_BYTES + 1];
        assert!(check_der(&big).unwrap_err().contains("more than"));
    }
}
