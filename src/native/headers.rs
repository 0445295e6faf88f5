//! Envoy's headers as the core reads them.

use std::borrow::Cow;

use crate::core::http::ProviderResponse;

/// Each (name, value) as text: borrowed when it is UTF-8 (always, in
/// practice), replaced as text (U+FFFD) otherwise; HTTP allows other bytes
/// in a value, and they never match what Sésame looks for.
pub fn text_pairs<'a>(
    raw: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> Vec<(Cow<'a, str>, Cow<'a, str>)> {
    raw.map(|(k, v)| (String::from_utf8_lossy(k), String::from_utf8_lossy(v)))
        .collect()
}

/// A provider's answer: its headers, `:status` among them, and its body in
/// chunks. `answered` is false when the call failed (reset, too large):
/// status 0, as when no answer came.
pub fn provider_response<'a>(
    answered: bool,
    headers: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    chunks: impl Iterator<Item = &'a [u8]>,
) -> ProviderResponse {
    if !answered {
        return ProviderResponse {
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
        };
    }
    let headers: Vec<(String, String)> = text_pairs(headers)
        .into_iter()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    ProviderResponse::from_parts(headers, chunks.flatten().copied().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_text_is_borrowed_unless_it_is_not_utf8() {
        let raw: Vec<(&[u8], &[u8])> = vec![(b":path", b"/app"), (b"x-odd", b"caf\xe9")];
        let pairs = text_pairs(raw.into_iter());
        assert!(matches!(pairs[0].1, Cow::Borrowed("/app")));
        assert_eq!(pairs[1].1, "caf\u{fffd}");
    }

    #[test]
    fn a_provider_answer_has_its_status_headers_and_whole_body() {
        let headers: Vec<(&[u8], &[u8])> =
            vec![(b":status", b"200"), (b"content-type", b"application/json")];
        let chunks: Vec<&[u8]> = vec![b"{\"a\":", b"1}"];
        let r = provider_response(true, headers.into_iter(), chunks.into_iter());
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"{\"a\":1}");
        assert_eq!(r.headers[1].1, "application/json");
    }

    #[test]
    fn a_failed_call_has_status_zero_whatever_came() {
        let headers: Vec<(&[u8], &[u8])> = vec![(b":status", b"200")];
        let r = provider_response(false, headers.into_iter(), std::iter::empty());
        assert_eq!(r.status, 0);
        assert!(r.body.is_empty());
    }
}
