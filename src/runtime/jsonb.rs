//! SQLite's binary JSON ("JSONB", <https://sqlite.org/jsonb.html>), written
//! and read in Rust. The embedded store keeps contacts' attributes in it;
//! encoding them here, where an import validates its rows, spares the
//! import's single writer both the JSON text and SQLite's parse of it.
//!
//! Every element is a header (its type in the low four bits of the first
//! byte, its payload's size in the high four bits or in the 1, 2, 4 or 8
//! big-endian bytes after it) and a payload: numbers as their JSON text,
//! strings as UTF-8 (verbatim when no character needs escaping, else
//! marked "raw" so SQLite escapes them when it renders JSON), arrays and
//! objects as their elements one after another (an object's as label,
//! value, label, value). The headers written are the smallest that hold
//! the size, which is what SQLite itself writes.

use serde_json::{Map, Number, Value};

const NULL: u8 = 0;
const TRUE: u8 = 1;
const FALSE: u8 = 2;
const INT: u8 = 3;
const INT5: u8 = 4;
const FLOAT: u8 = 5;
const FLOAT5: u8 = 6;
/// UTF-8 that is a JSON string's content as it stands (nothing to escape).
const TEXT: u8 = 7;
/// UTF-8 holding JSON escapes (`\n`, `\u00e9`).
const TEXTJ: u8 = 8;
const TEXT5: u8 = 9;
/// UTF-8 stored verbatim that needs escaping to be JSON.
const TEXTRAW: u8 = 10;
const ARRAY: u8 = 11;
const OBJECT: u8 = 12;

/// The JSONB of an object.
pub fn encode_object(o: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * o.len() + 8);
    object(&mut out, o);
    out
}

/// The JSONB of any value.
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    value(&mut out, v);
    out
}

fn value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(NULL),
        Value::Bool(true) => out.push(TRUE),
        Value::Bool(false) => out.push(FALSE),
        Value::Number(n) => {
            let kind = if n.is_f64() { FLOAT } else { INT };
            // serde_json writes numbers as RFC 8259 JSON, which is what
            // these payloads hold (a float always has `.` or `e`).
            element(out, kind, n.to_string().as_bytes());
        }
        Value::String(s) => text(out, s),
        Value::Array(items) => container(out, ARRAY, |out| items.iter().for_each(|i| value(out, i))),
        Value::Object(o) => object(out, o),
    }
}

fn object(out: &mut Vec<u8>, o: &Map<String, Value>) {
    container(out, OBJECT, |out| {
        for (k, v) in o {
            text(out, k);
            value(out, v);
        }
    });
}

fn text(out: &mut Vec<u8>, s: &str) {
    let plain = !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
    element(out, if plain { TEXT } else { TEXTRAW }, s.as_bytes());
}

fn element(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    header(out, kind, payload.len());
    out.extend_from_slice(payload);
}

fn header(out: &mut Vec<u8>, kind: u8, size: usize) {
    match size {
        0..=11 => out.push((size as u8) << 4 | kind),
        12..=0xff => out.extend_from_slice(&[0xc0 | kind, size as u8]),
        0x100..=0xffff => {
            out.push(0xd0 | kind);
            out.extend_from_slice(&(size as u16).to_be_bytes());
        }
        _ => match u32::try_from(size) {
            Ok(s) => {
                out.push(0xe0 | kind);
                out.extend_from_slice(&s.to_be_bytes());
            }
            Err(_) => {
                out.push(0xf0 | kind);
                out.extend_from_slice(&(size as u64).to_be_bytes());
            }
        },
    }
}

/// A container whose payload `fill` writes: the header's size is known
/// only after, so the payload is moved up behind a header longer than the
/// one byte reserved for it.
fn container(out: &mut Vec<u8>, kind: u8, fill: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.push(0);
    fill(out);
    let size = out.len() - at - 1;
    let mut head = Vec::with_capacity(9);
    header(&mut head, kind, size);
    let extra = head.len() - 1;
    if extra > 0 {
        out.resize(out.len() + extra, 0);
        out.copy_within(at + 1..at + 1 + size, at + 1 + extra);
    }
    out[at..at + head.len()].copy_from_slice(&head);
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not binary JSON at byte {at}: {why}")]
pub struct Malformed {
    pub at: usize,
    pub why: &'static str,
}

/// How deeply arrays and objects may nest in what `decode` reads: deeper
/// is refused, never a stack overflow. Attributes nest two deep (a set is
/// an array of strings); serde_json refuses text nested past 128.
const MAX_DEPTH: usize = 128;

/// The value a JSONB blob holds; the whole blob must be that one element.
/// Reads RFC 8259 payloads, which is all flowc writes: JSON5 numbers and
/// escapes (which SQLite also accepts) are refused as malformed.
pub fn decode(bytes: &[u8]) -> Result<Value, Malformed> {
    let (v, end) = element_at(bytes, 0, 0)?;
    if end != bytes.len() {
        return Err(Malformed { at: end, why: "bytes after the value" });
    }
    Ok(v)
}

/// The element at `at`, and where the next one starts.
fn element_at(bytes: &[u8], at: usize, depth: usize) -> Result<(Value, usize), Malformed> {
    let bad = |why| Malformed { at, why };
    if depth > MAX_DEPTH {
        return Err(bad("nested deeper than 128"));
    }
    let first = *bytes.get(at).ok_or(bad("the value ends early"))?;
    let (kind, size_code) = (first & 0x0f, first >> 4);
    let (size, start) = match size_code {
        0..=11 => (usize::from(size_code), at + 1),
        _ => {
            let n = 1usize << (size_code - 12);
            let raw = bytes.get(at + 1..at + 1 + n).ok_or(bad("the header ends early"))?;
            let size = raw.iter().fold(0u64, |s, b| s << 8 | u64::from(*b));
            (usize::try_from(size).map_err(|_| bad("a size larger than memory"))?, at + 1 + n)
        }
    };
    let end = start.checked_add(size).ok_or(bad("a size larger than memory"))?;
    let payload = bytes.get(start..end).ok_or(bad("the payload ends early"))?;
    let utf8 = || std::str::from_utf8(payload).map_err(|_| bad("text that is not UTF-8"));
    let v = match kind {
        NULL => Value::Null,
        TRUE => Value::Bool(true),
        FALSE => Value::Bool(false),
        INT => {
            let text = utf8()?;
            let n = match (text.parse::<i64>(), text.parse::<u64>()) {
                (Ok(i), _) => Number::from(i),
                (_, Ok(u)) => Number::from(u),
                // Beyond 64 bits, as serde_json reads it: a float.
                _ => float(text).ok_or(bad("an integer that is not JSON"))?,
            };
            Value::Number(n)
        }
        // Rust's own parse is exact (serde_json's default one may be a bit
        // off), so a float reads back as the one written.
        FLOAT => Value::Number(float(utf8()?).ok_or(bad("a float that is not JSON"))?),
        TEXT | TEXTRAW => Value::String(utf8()?.to_string()),
        TEXTJ => {
            let quoted = format!("\"{}\"", utf8()?);
            Value::String(serde_json::from_str(&quoted).map_err(|_| bad("an escape that is not JSON"))?)
        }
        ARRAY => {
            let mut items = Vec::new();
            let mut next = start;
            while next < end {
                let (item, after) = element_at(&bytes[..end], next, depth + 1)?;
                items.push(item);
                next = after;
            }
            Value::Array(items)
        }
        OBJECT => {
            let mut object = Map::new();
            let mut next = start;
            while next < end {
                let (label, after) = element_at(&bytes[..end], next, depth + 1)?;
                let Value::String(label) = label else { return Err(bad("an object label that is not text")) };
                let (item, after) = element_at(&bytes[..end], after, depth + 1)?;
                object.insert(label, item);
                next = after;
            }
            Value::Object(object)
        }
        INT5 | FLOAT5 | TEXT5 => return Err(bad("JSON5, which flowc does not write")),
        _ => return Err(bad("a reserved element type")),
    };
    Ok((v, end))
}

/// A finite float in JSON's syntax (`1.5`, `-2e10`), exactly.
fn float(text: &str) -> Option<Number> {
    let json = text.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
    json.then(|| text.parse::<f64>().ok()).flatten().and_then(Number::from_f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn small_values_have_one_byte_headers() {
        assert_eq!(encode(&json!(null)), [0x00]);
        assert_eq!(encode(&json!(true)), [0x01]);
        assert_eq!(encode(&json!(12)), [0x23, b'1', b'2']);
        assert_eq!(encode(&json!(1.5)), [0x35, b'1', b'.', b'5']);
        assert_eq!(encode(&json!("ab")), [0x27, b'a', b'b']);
        assert_eq!(encode(&json!("a\"")), [0x2a, b'a', b'"']);
        assert_eq!(encode(&json!([1])), [0x2b, 0x13, b'1']);
    }

    #[test]
    fn larger_payloads_take_longer_headers() {
        let s = "x".repeat(300);
        let e = encode(&json!(s));
        assert_eq!(&e[..3], &[0xd7, 0x01, 0x2c]);
        let object = json!({ "k": "y".repeat(20) });
        let e = encode(&object);
        // label (1 + 1) + value (2 + 20) = 24 bytes of payload
        assert_eq!(&e[..2], &[0xcc, 24]);
        assert_eq!(decode(&e), Ok(object));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        // Arrays in arrays, each header claiming the rest of the blob.
        let mut deep = Vec::new();
        for level in 0..100_000usize {
            let rest = 100_000 - level - 1;
            deep.push(0xeb);
            deep.extend_from_slice(&((rest * 5) as u32).to_be_bytes());
        }
        assert!(decode(&deep).is_err());
        let nest = |levels: usize| (0..levels).fold(json!(1), |inner, _| json!([inner]));
        assert!(decode(&encode(&nest(129))).is_err());
        assert_eq!(decode(&encode(&nest(128))), Ok(nest(128)));
    }

    #[test]
    fn floats_read_back_bit_for_bit() {
        for f in [0.1, 1.0 / 3.0, 2.2250738585072014e-308, 1.7976931348623157e308, -0.0, 123456.789e-5] {
            let v = json!(f);
            assert_eq!(decode(&encode(&v)), Ok(v), "{f}");
        }
    }

    #[test]
    fn truncated_or_trailing_bytes_are_refused() {
        let e = encode(&json!({ "a": [1, 2, "three"] }));
        for cut in 0..e.len() {
            assert!(decode(&e[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = e.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }
}
