//! JSON-RPC framing over stdio, bounded: `Content-Length` headers, then
//! that many bytes of JSON.
//!
//! lsp-server's own transport trusts the header (it allocates whatever
//! `Content-Length` claims, and aborts when it cannot) and ends the session at
//! the first body that is not a message. Here a message larger than
//! [`MAX_MESSAGE_BYTES`] is answered with an error and skipped without
//! being kept, a body that is not JSON is answered with a parse error
//! (−32700), one that is JSON but no message with an invalid request
//! (−32600), and the server reads on.

use lsp_server::{ErrorCode, Message};
use serde_json::{json, Value};
use std::io::{self, BufRead, Read, Write};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender};
use std::thread::JoinHandle;

/// The largest message the server accepts (docs/language-server.md). The
/// same as the source file limit: a larger document could not be checked
/// anyway.
pub const MAX_MESSAGE_BYTES: u64 = 64 << 20;

/// A header line longer than this is not a header; it is skipped in pieces.
const MAX_HEADER_LINE: u64 = 8 << 10;

/// One unit read from the client.
#[derive(Debug)]
pub enum Frame {
    Message(Message),
    /// Input that is not a message, and the error that answers it; `id` is
    /// the request's id when it could be read, else null.
    Invalid {
        id: Value,
        code: i32,
        message: String,
    },
}

/// Reads frames from `inner`, keeping at most one message in memory.
pub struct FrameReader<R> {
    inner: R,
    /// Bytes of a refused message still to be skipped before the next header.
    skip: u64,
}

impl<R: BufRead> FrameReader<R> {
    pub fn new(inner: R) -> FrameReader<R> {
        FrameReader { inner, skip: 0 }
    }

    /// The next frame, or `None` when the input ends (also inside a message).
    pub fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        if self.skip > 0 {
            let want = std::mem::take(&mut self.skip);
            let skipped = io::copy(&mut (&mut self.inner).take(want), &mut io::sink())?;
            if skipped < want {
                return Ok(None);
            }
        }
        let header = match self.read_header()? {
            Some(h) => h,
            None => return Ok(None),
        };
        let size = match header {
            Header::Length(n) => n,
            Header::Malformed(why) => {
                return Ok(Some(invalid(
                    Value::Null,
                    ErrorCode::ParseError,
                    format!("malformed message header: {why}"),
                )))
            }
            Header::TooLarge(claimed) => {
                self.skip = claimed.unwrap_or(0);
                let size = claimed.map_or_else(
                    || "a Content-Length beyond any size".to_string(),
                    |n| format!("a message of {n} bytes"),
                );
                let message = format!("{size} is larger than the {} MiB limit; it is skipped", MAX_MESSAGE_BYTES >> 20);
                return Ok(Some(invalid(Value::Null, ErrorCode::InvalidRequest, message)));
            }
        };
        // Grows only as bytes arrive: a header that promises more than is sent costs nothing.
        let mut body = Vec::new();
        (&mut self.inner).take(size).read_to_end(&mut body)?;
        if (body.len() as u64) < size {
            return Ok(None);
        }
        Ok(Some(parse_body(&body)))
    }

    /// Reads one header block up to its blank line. Blank lines before any
    /// header are skipped.
    fn read_header(&mut self) -> io::Result<Option<Header>> {
        let mut length: Option<Header> = None;
        let mut malformed: Option<String> = None;
        let mut seen_any = false;
        loop {
            let Some(line) = self.read_line()? else { return Ok(None) };
            let line = match line {
                Line::Text(t) => t,
                Line::TooLong => {
                    seen_any = true;
                    malformed.get_or_insert_with(|| format!("a header line longer than {MAX_HEADER_LINE} bytes"));
                    continue;
                }
            };
            if line.is_empty() {
                if !seen_any {
                    continue;
                }
                break;
            }
            seen_any = true;
            let Some((name, value)) = line.split_once(':') else {
                malformed.get_or_insert_with(|| format!("`{}` is not `Name: value`", shorten(&line)));
                continue;
            };
            if name.trim().eq_ignore_ascii_case("Content-Length") {
                length = Some(content_length(value.trim()));
            }
        }
        Ok(Some(match (malformed, length) {
            (Some(why), _) => Header::Malformed(why),
            (None, Some(h)) => h,
            (None, None) => Header::Malformed("no Content-Length".into()),
        }))
    }

    /// One line without its `\r\n` (or `\n`), at most [`MAX_HEADER_LINE`]
    /// bytes kept; `None` at the end of input.
    fn read_line(&mut self) -> io::Result<Option<Line>> {
        let mut buf = Vec::new();
        let n = (&mut self.inner).take(MAX_HEADER_LINE).read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        if buf.last() != Some(&b'\n') {
            if (n as u64) < MAX_HEADER_LINE {
                return Ok(None);
            }
            // Drop the rest of the overlong line, a piece at a time.
            loop {
                buf.clear();
                let n = (&mut self.inner).take(MAX_HEADER_LINE).read_until(b'\n', &mut buf)?;
                if n == 0 {
                    return Ok(None);
                }
                if buf.last() == Some(&b'\n') {
                    return Ok(Some(Line::TooLong));
                }
            }
        }
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        Ok(Some(Line::Text(String::from_utf8_lossy(&buf).into_owned())))
    }
}

enum Line {
    Text(String),
    TooLong,
}

enum Header {
    Length(u64),
    /// Over the limit; the claimed size when it fits in a `u64`.
    TooLarge(Option<u64>),
    Malformed(String),
}

fn content_length(value: &str) -> Header {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Header::Malformed(format!("Content-Length `{}` is not a number", shorten(value)));
    }
    match value.parse::<u64>() {
        Ok(n) if n <= MAX_MESSAGE_BYTES => Header::Length(n),
        Ok(n) => Header::TooLarge(Some(n)),
        Err(_) => Header::TooLarge(None),
    }
}

fn parse_body(body: &[u8]) -> Frame {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return invalid(Value::Null, ErrorCode::ParseError, format!("the message is not valid JSON: {e}")),
    };
    // The id, if there is one, so the error answers the request it belongs to.
    let id = match value.get("id") {
        Some(id @ (Value::Number(_) | Value::String(_))) => id.clone(),
        _ => Value::Null,
    };
    // Decided by shape, not by trying each kind in turn: a request whose id
    // lsp-server cannot hold must be refused, not taken for a notification.
    let shape = match &value {
        Value::Object(o) => (o.contains_key("method"), o.contains_key("id")),
        _ => (false, false),
    };
    let message = match shape {
        (true, true) => serde_json::from_value(value).map(Message::Request),
        (true, false) => serde_json::from_value(value).map(Message::Notification),
        (false, true) => serde_json::from_value(value).map(Message::Response),
        (false, false) => {
            return invalid(id, ErrorCode::InvalidRequest, "not a JSON-RPC request, response or notification".into())
        }
    };
    match message {
        Ok(m) => Frame::Message(m),
        Err(e) => invalid(id, ErrorCode::InvalidRequest, format!("not a valid JSON-RPC message: {e}")),
    }
}

fn invalid(id: Value, code: ErrorCode, message: String) -> Frame {
    Frame::Invalid { id, code: code as i32, message }
}

fn shorten(s: &str) -> String {
    const KEEP: usize = 40;
    match s.char_indices().nth(KEEP) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// What the writer thread sends.
pub enum Outgoing {
    Message(Message),
    /// An error answer to input that was not a message (its id may be null).
    Error {
        id: Value,
        code: i32,
        message: String,
    },
    /// Everything before this has been written; the writer stops.
    Stop,
}

/// Writes one framed JSON body.
fn write_frame(out: &mut impl Write, body: &str) -> io::Result<()> {
    write!(out, "Content-Length: {}\r\n\r\n", body.len())?;
    out.write_all(body.as_bytes())?;
    out.flush()
}

/// The server's ends of stdio: messages in, messages (and error answers) out.
pub struct Stdio {
    pub incoming: Receiver<Message>,
    pub outgoing: Sender<Outgoing>,
    writer: JoinHandle<()>,
}

impl Stdio {
    /// Writes everything sent so far, then stops the writer. The reader
    /// thread may still be blocked on stdin; the process exit ends it.
    pub fn finish(self) {
        let _ = self.outgoing.send(Outgoing::Stop);
        let _ = self.writer.join();
    }
}

pub fn stdio() -> Stdio {
    // Rendezvous, as lsp-server's transport: the reader takes the next
    // message off stdin only when the server asks, so input waits in the pipe.
    let (in_tx, incoming) = sync_channel::<Message>(0);
    let (outgoing, out_rx) = channel::<Outgoing>();
    let answers = outgoing.clone();
    std::thread::spawn(move || {
        let mut frames = FrameReader::new(io::stdin().lock());
        while let Ok(Some(frame)) = frames.next_frame() {
            let sent = match frame {
                Frame::Message(m) => in_tx.send(m).is_ok(),
                Frame::Invalid { id, code, message } => answers.send(Outgoing::Error { id, code, message }).is_ok(),
            };
            if !sent {
                break;
            }
        }
    });
    let writer = std::thread::spawn(move || {
        let stdout = io::stdout();
        let mut out = stdout.lock();
        for o in out_rx {
            let written = match o {
                Outgoing::Message(m) => m.write(&mut out),
                Outgoing::Error { id, code, message } => write_frame(
                    &mut out,
                    &json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string(),
                ),
                Outgoing::Stop => break,
            };
            if written.is_err() {
                break;
            }
        }
    });
    Stdio { incoming, outgoing, writer }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8]) -> Vec<Frame> {
        let mut r = FrameReader::new(input);
        let mut out = Vec::new();
        while let Some(f) = r.next_frame().expect("io") {
            out.push(f);
        }
        out
    }

    fn framed(body: &str) -> String {
        format!("Content-Length: {}\r\n\r\n{body}", body.len())
    }

    fn code(f: &Frame) -> Option<i32> {
        match f {
            Frame::Invalid { code, .. } => Some(*code),
            Frame::Message(_) => None,
        }
    }

    #[test]
    fn messages_and_garbage_in_one_stream() {
        let input = [
            framed(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#),
            framed(r#"{"jsonrpc":"2.0","id":2,"method":"x","params":"\ud800"}"#),
            framed(r#"{"jsonrpc":"2.0","id":3}"#),
            framed("[1]"),
            framed(r#"{"jsonrpc":"2.0","id":9999999999,"method":"x"}"#),
            "X-Nothing: 1\r\n\r\n".to_string(),
            "\r\n".to_string() + &framed(r#"{"jsonrpc":"2.0","method":"exit"}"#),
        ]
        .concat();
        let f = frames(input.as_bytes());
        let codes: Vec<Option<i32>> = f.iter().map(code).collect();
        assert_eq!(codes, vec![None, Some(-32700), None, Some(-32600), Some(-32600), Some(-32700), None]);
        // An id the message type cannot hold is still echoed.
        assert!(matches!(&f[4], Frame::Invalid { id, .. } if *id == json!(9999999999u64)));
    }

    #[test]
    fn an_oversized_message_is_refused_then_skipped() {
        let big = "x".repeat(10);
        let mut input = format!("Content-Length: {}\r\n\r\n", MAX_MESSAGE_BYTES + 1).into_bytes();
        input.resize(input.len() + (MAX_MESSAGE_BYTES as usize) + 1, b' ');
        input.extend(framed(&format!(r#"{{"jsonrpc":"2.0","method":"{big}"}}"#)).as_bytes());
        let f = frames(&input);
        assert_eq!(f.len(), 2);
        assert_eq!(code(&f[0]), Some(-32600));
        assert!(matches!(&f[1], Frame::Message(Message::Notification(n)) if n.method == big));
    }

    #[test]
    fn a_claimed_size_costs_nothing_until_it_arrives() {
        // 4 GB promised, 3 bytes sent: refused at once, then the input ends.
        let f = frames(b"Content-Length: 4000000000\r\n\r\n{\"j");
        assert_eq!(f.len(), 1);
        assert_eq!(code(&f[0]), Some(-32600));
        // Under the limit but cut short: the input just ends.
        assert!(frames(b"Content-Length: 1000\r\n\r\n{\"j").is_empty());
        // Beyond u64.
        assert_eq!(
            frames(b"Content-Length: 99999999999999999999999\r\n\r\n").iter().map(code).collect::<Vec<_>>(),
            vec![Some(-32600)]
        );
        assert_eq!(frames(b"Content-Length: -1\r\n\r\n").iter().map(code).collect::<Vec<_>>(), vec![Some(-32700)]);
    }

    #[test]
    fn an_endless_header_line_is_read_in_pieces() {
        let mut input = vec![b'a'; 100_000];
        input.extend(b"\r\n\r\n");
        input.extend(framed(r#"{"jsonrpc":"2.0","method":"exit"}"#).as_bytes());
        let f = frames(&input);
        assert_eq!(f.iter().map(code).collect::<Vec<_>>(), vec![Some(-32700), None]);
    }
}
