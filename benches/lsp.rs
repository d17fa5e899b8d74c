//! Language-server latency (issue: diagnostics published after a one-character
//! edit in a 5,000-line file, median under 50 ms). Drives the built `flowc lsp`
//! over stdio exactly as an editor does (full-text sync), and times each edit
//! from `didChange` sent to `publishDiagnostics` for that version received.
//!
//! Then hover latency on a 1,000-campaign file: a hover on an unchanged
//! document is answered from the cached analysis, not a recheck.
//!
//! `cargo bench --bench lsp`

#[path = "support/mod.rs"]
mod support;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

const LINES: usize = 5_000;
const EDITS: usize = 100;
const WARMUP: usize = 5;
const HOVER_CAMPAIGNS: usize = 1_000;
const HOVERS: usize = 20;

struct Server {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<std::process::ChildStdout>,
}

impl Server {
    fn send(&mut self, v: &Value) {
        let body = v.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).expect("write");
        self.stdin.flush().expect("flush");
    }

    fn recv(&mut self) -> Value {
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            self.out.read_line(&mut line).expect("read header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(n) = line.strip_prefix("Content-Length: ") {
                len = n.parse().expect("length");
            }
        }
        let mut buf = vec![0; len];
        self.out.read_exact(&mut buf).expect("read body");
        serde_json::from_slice(&buf).expect("json")
    }

    /// Waits for the answer to request `id`.
    fn response(&mut self, id: i64) -> Value {
        loop {
            let v = self.recv();
            if v["id"] == id {
                return v;
            }
        }
    }

    /// Waits for the diagnostics of `version`; returns how many errors were
    /// published (the generated campaigns carry a lint warning each: their
    /// marketing sends have no quiet hours).
    fn diagnostics_of(&mut self, version: i64) -> usize {
        loop {
            let v = self.recv();
            if v["method"] == "textDocument/publishDiagnostics" && v["params"]["version"] == version {
                let all = v["params"]["diagnostics"].as_array().cloned().unwrap_or_default();
                return all.iter().filter(|d| d["severity"] == 1).count();
            }
        }
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("flowc-lsp-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let mut text = support::shared(200);
    let mut i = 0;
    while text.lines().count() < LINES {
        text.push_str(&support::campaign(i, 200));
        i += 1;
    }
    let path = dir.join("big.flow");
    std::fs::write(&path, &text).expect("write");
    let uri = format!("file://{}", path.display());
    // The edit: one character appended to the first send's template name, then removed.
    let anchor = "hello: send email.marketing t0\n";
    let at = text.find(anchor).expect("anchor") + anchor.len() - 1;
    let edited = format!("{}x{}", &text[..at], &text[at..]);

    let mut child = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .arg("lsp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn flowc lsp");
    let stdin = child.stdin.take().expect("stdin");
    let out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut s = Server { child, stdin, out };
    s.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"processId": null, "rootUri": null, "capabilities": {}}}));
    let _ = s.recv();
    s.send(&json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}));
    let opened = Instant::now();
    s.send(&json!({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {"uri": uri, "languageId": "flow", "version": 0, "text": text}}}));
    assert_eq!(s.diagnostics_of(0), 0, "the generated file is clean");
    let open_ms = opened.elapsed().as_secs_f64() * 1e3;

    let mut times = Vec::with_capacity(EDITS);
    for v in 1..=(EDITS + WARMUP) as i64 {
        let body = if v % 2 == 1 { &edited } else { &text };
        let t = Instant::now();
        s.send(&json!({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {"textDocument": {"uri": uri, "version": v}, "contentChanges": [{"text": body}]}}));
        let n = s.diagnostics_of(v);
        let took = t.elapsed();
        assert_eq!(n, (v % 2) as usize, "the typo is reported, then cleared");
        if v as usize > WARMUP {
            times.push(took);
        }
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let pct = |p: f64| ms(times[((times.len() as f64 - 1.0) * p).round() as usize]);
    println!("lsp: {} lines, {} KiB; open {open_ms:.1} ms", text.lines().count(), text.len() / 1024);
    println!(
        "lsp: one-character edit -> diagnostics over {} edits: median {:.1} ms, p90 {:.1} ms, max {:.1} ms (target: median < 50 ms)",
        times.len(),
        pct(0.5),
        pct(0.9),
        ms(times[times.len() - 1])
    );

    // Hover on a large unchanged file.
    let mut big = support::shared(200);
    for i in 0..HOVER_CAMPAIGNS {
        big.push_str(&support::campaign(i, 200));
    }
    let hover_path = dir.join("campaigns.flow");
    std::fs::write(&hover_path, &big).expect("write");
    let hover_uri = format!("file://{}", hover_path.display());
    let line = big.lines().position(|l| l.starts_with("  hello: send")).expect("a send");
    s.send(&json!({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {"uri": hover_uri, "languageId": "flow", "version": 0, "text": big}}}));
    assert_eq!(s.diagnostics_of(0), 0, "the generated file is clean");
    let mut hovers = Vec::with_capacity(HOVERS);
    for id in 0..HOVERS as i64 {
        let t = Instant::now();
        s.send(&json!({"jsonrpc": "2.0", "id": 100 + id, "method": "textDocument/hover", "params": {"textDocument": {"uri": hover_uri}, "position": {"line": line, "character": 30}}}));
        let r = s.response(100 + id);
        hovers.push(t.elapsed());
        assert!(!r["result"].is_null(), "the template name has a hover: {r}");
    }
    hovers.sort();
    println!(
        "lsp: hover on {} lines ({HOVER_CAMPAIGNS} campaigns), {HOVERS} hovers: median {:.1} ms, max {:.1} ms",
        big.lines().count(),
        ms(hovers[HOVERS / 2]),
        ms(hovers[HOVERS - 1])
    );
    s.send(&json!({"jsonrpc": "2.0", "id": 2, "method": "shutdown", "params": null}));
    let _ = s.recv();
    s.send(&json!({"jsonrpc": "2.0", "method": "exit", "params": null}));
    let _ = s.child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
