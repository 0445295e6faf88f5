//! What a request path could mean.
//!
//! Envoy, Sésame and the application may each read one path differently:
//! Envoy passes `;` parameters, `%2e`, `%2f` and repeated slashes on unless
//! told otherwise, and Tomcat, Jetty or Spring drop `;` parameters, decode
//! `%2e` and merge slashes before they route. So a path is read every way a
//! server might read it (as written, and normalised with and without each
//! of the steps that servers disagree on), and the request is held to the
//! rules of every route any of those readings falls on. A path that cannot
//! be read safely at all (broken or double percent-encoding, encoded control
//! characters, bytes outside printable ASCII) is refused.

/// Why a path cannot be read safely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnsafePath {
    /// It does not start with `/`.
    NotAbsolute,
    /// A byte outside printable ASCII, or a `#`.
    Byte(u8),
    /// `%` not followed by two hexadecimal digits.
    BrokenEscape,
    /// `%25` followed by two hexadecimal digits: a server that decodes twice
    /// reads another path.
    DoubleEncoded,
    /// An escaped control character (`%00` to `%1F`, `%7F`).
    EscapedControl,
}

impl UnsafePath {
    pub fn describe(&self) -> &'static str {
        match self {
            UnsafePath::NotAbsolute => "the path does not start with /",
            UnsafePath::Byte(_) => "the path holds a byte outside printable ASCII, or a #",
            UnsafePath::BrokenEscape => "the path holds a broken %-escape",
            UnsafePath::DoubleEncoded => "the path is percent-encoded twice (%25)",
            UnsafePath::EscapedControl => "the path holds an escaped control character",
        }
    }
}

/// The other readings of a path: each distinct normalised form that differs
/// from the path as written (none for a plain path, and then nothing is
/// allocated: the path as written is its one reading).
pub fn other_readings(path: &str) -> Result<Vec<String>, UnsafePath> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(UnsafePath::NotAbsolute);
    }
    let mut plain = true;
    let mut previous = 0u8;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !(0x21..=0x7e).contains(&b) || b == b'#' {
            return Err(UnsafePath::Byte(b));
        }
        match b {
            b'%' => {
                let value = escaped(bytes, i).ok_or(UnsafePath::BrokenEscape)?;
                if value < 0x20 || value == 0x7f {
                    return Err(UnsafePath::EscapedControl);
                }
                if value == b'%' && escaped_hex_follows(bytes, i + 3) {
                    return Err(UnsafePath::DoubleEncoded);
                }
                plain = false;
            }
            b';' | b'\\' => plain = false,
            b'/' if previous == b'/' => plain = false,
            b'.' if previous == b'/' => plain = false,
            _ => {}
        }
        previous = b;
        i += 1;
    }
    let mut out: Vec<String> = Vec::new();
    if plain {
        return Ok(out);
    }
    for strip_parameters in [true, false] {
        for escaped_separators in [true, false] {
            let reading = normalise(path, strip_parameters, escaped_separators);
            if reading != path && !out.contains(&reading) {
                out.push(reading);
            }
        }
    }
    Ok(out)
}

/// The byte a `%XY` escape at `i` stands for.
fn escaped(bytes: &[u8], i: usize) -> Option<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let high = hex(*bytes.get(i + 1)?)?;
    let low = hex(*bytes.get(i + 2)?)?;
    Some((high * 16 + low) as u8)
}

/// Whether two hexadecimal digits stand at `i`.
fn escaped_hex_follows(bytes: &[u8], i: usize) -> bool {
    bytes
        .get(i..i + 2)
        .is_some_and(|two| two.iter().all(u8::is_ascii_hexdigit))
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// One normalised reading (RFC 3986 §6.2.2 and what servers add to it):
/// segments split on `/` (and on `\\`, `%2F` and `%5C` with
/// `escaped_separators`), `;` parameters removed from each segment (with
/// `strip_parameters`), escapes of unreserved characters decoded and the
/// others upper-cased, empty segments merged, dot segments resolved.
/// Only called on a path `readings` found safe (printable ASCII, every `%`
/// followed by two hexadecimal digits).
fn normalise(path: &str, strip_parameters: bool, escaped_separators: bool) -> String {
    let bytes = path.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    // Where each segment written to `out` starts (at its `/`).
    let mut starts: Vec<usize> = Vec::new();
    let mut i = 1;
    loop {
        // One raw segment: up to the next separator or the end.
        let begin = out.len();
        out.push(b'/');
        let mut in_parameters = false;
        let mut end_of_path = true;
        while i < bytes.len() {
            let b = bytes[i];
            let escape = if b == b'%' { escaped(bytes, i) } else { None };
            if b == b'/'
                || (escaped_separators && (b == b'\\' || matches!(escape, Some(b'/' | b'\\'))))
            {
                i += if b == b'%' { 3 } else { 1 };
                end_of_path = false;
                break;
            }
            if b == b';' && strip_parameters {
                in_parameters = true;
            }
            match escape {
                _ if in_parameters => {}
                Some(value) if is_unreserved(value) => out.push(value),
                Some(_) => out.extend_from_slice(&[
                    b'%',
                    bytes[i + 1].to_ascii_uppercase(),
                    bytes[i + 2].to_ascii_uppercase(),
                ]),
                None => out.push(b),
            }
            i += if escape.is_some() { 3 } else { 1 };
        }
        match &out[begin + 1..] {
            // Empty and `.` segments go; a directory stays a directory.
            b"" | b"." => out.truncate(begin),
            b".." => {
                out.truncate(starts.pop().unwrap_or(begin));
            }
            _ => starts.push(begin),
        }
        if end_of_path {
            let segment_kept = starts.last().is_some_and(|s| *s == begin) && out.len() > begin;
            if !segment_kept {
                out.push(b'/');
            }
            break;
        }
    }
    // Only printable ASCII went in, and escapes of anything else stay escapes.
    String::from_utf8(out).unwrap_or_else(|_| "/".into())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every reading: the path as written, then the others.
    fn all(path: &str) -> Vec<String> {
        let mut all = vec![path.to_string()];
        all.extend(other_readings(path).unwrap());
        all
    }

    #[test]
    fn a_plain_path_has_one_reading() {
        for path in [
            "/",
            "/admin/users",
            "/a/.well-known/x",
            "/a..b",
            "/a/b.",
            "/x-y_z~",
        ] {
            assert_eq!(other_readings(path), Ok(Vec::new()), "{path}");
        }
    }

    /// Spellings of `/admin/users` that servers read as `/admin/users`.
    pub(crate) const ADMIN_SPELLINGS: &[&str] = &[
        "/admin;x=1/users",
        "/admin/;/users",
        "/admin/./users",
        "/./admin/users",
        "/%61dmin/users",
        "//admin/users",
        "/admin%2fusers",
        "/admin%2Fusers",
        "/admin%5cusers",
        "/admin\\users",
        "/x/../admin/users",
        "/x/%2e%2e/admin/users",
        "/x/.%2E/admin/users",
        "/x/..;/admin/users",
        "/public/..;/admin/users",
        "/../admin/users",
        "/admin//users",
        "/admin/users;jsessionid=1",
    ];

    #[test]
    fn every_spelling_of_admin_users_is_read_as_admin_users() {
        for path in ADMIN_SPELLINGS {
            let r = all(path);
            assert_eq!(r[0], *path);
            assert!(r.iter().any(|p| p == "/admin/users"), "{path}: {r:?}");
        }
    }

    #[test]
    fn readings_keep_what_servers_disagree_on_apart() {
        // A server that keeps `;` parameters, or that does not take %2F for a
        // separator, reads these otherwise: both readings are kept.
        assert_eq!(all("/a;p/b"), ["/a;p/b", "/a/b"].map(String::from).to_vec());
        assert_eq!(
            all("/a%2fb/../c"),
            ["/a%2fb/../c", "/a/c", "/c"].map(String::from).to_vec()
        );
        // Escapes of reserved or non-ASCII characters stay escapes.
        assert_eq!(all("/a/./%c3%a9")[1], "/a/%C3%A9");
        assert_eq!(all("/a/./%3b")[1], "/a/%3B");
        // Dot segments at the end leave a directory.
        assert_eq!(all("/a/b/..")[1], "/a/");
        assert_eq!(all("/a/.")[1], "/a/");
        assert_eq!(all("/..")[1], "/");
        assert_eq!(all("/a/")[0], "/a/");
    }

    #[test]
    fn paths_that_cannot_be_read_safely() {
        for (path, why) in [
            ("", UnsafePath::NotAbsolute),
            ("admin", UnsafePath::NotAbsolute),
            ("*", UnsafePath::NotAbsolute),
            ("/a%", UnsafePath::BrokenEscape),
            ("/a%2", UnsafePath::BrokenEscape),
            ("/a%zz", UnsafePath::BrokenEscape),
            ("/a%00b", UnsafePath::EscapedControl),
            ("/a%0d%0a", UnsafePath::EscapedControl),
            ("/a%7f", UnsafePath::EscapedControl),
            ("/a%252e%252e/", UnsafePath::DoubleEncoded),
            ("/a%252F", UnsafePath::DoubleEncoded),
            ("/a b", UnsafePath::Byte(b' ')),
            ("/a#b", UnsafePath::Byte(b'#')),
            ("/caf\u{e9}", UnsafePath::Byte(0xc3)),
            ("/a\tb", UnsafePath::Byte(b'\t')),
        ] {
            assert_eq!(other_readings(path), Err(why), "{path:?}");
        }
        // A literal percent sign is fine.
        assert_eq!(all("/100%25"), ["/100%25"].map(String::from).to_vec());
        assert_eq!(all("/100%25x")[0], "/100%25x");
    }
}
