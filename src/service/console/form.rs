//! `application/x-www-form-urlencoded` bodies and query strings, read by
//! hand: the console's forms have a few short fields, so a field that does
//! not decode is simply absent.

/// The value of field `name` in `encoded` (`a=1&b=x+y`), decoded; the first
/// one when it is given twice; `None` when absent or not valid UTF-8.
pub fn field(encoded: &[u8], name: &str) -> Option<String> {
    encoded.split(|b| *b == b'&').find_map(|pair| {
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        (decode(k)?.as_str() == name).then(|| decode(v)).flatten()
    })
}

/// Percent-decoding with `+` for space; `None` for a bad escape or bytes
/// that are not UTF-8.
fn decode(s: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_decode_or_are_absent() {
        let body = b"csrf=ab%20c&confirm=yes&x=%ZZ&token=a+b&confirm=no";
        assert_eq!(field(body, "csrf").as_deref(), Some("ab c"));
        assert_eq!(field(body, "confirm").as_deref(), Some("yes"));
        assert_eq!(field(body, "token").as_deref(), Some("a b"));
        assert_eq!(field(body, "x"), None);
        assert_eq!(field(body, "missing"), None);
        assert_eq!(field(b"a=%e2%82%ac", "a").as_deref(), Some("€"));
        assert_eq!(field(b"a=%ff", "a"), None);
        assert_eq!(field(b"a=%4", "a"), None);
        assert_eq!(field(b"", "a"), None);
    }
}
