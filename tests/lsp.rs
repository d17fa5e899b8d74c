//! The language server through a real client over stdio: JSON-RPC framing,
//! every feature, UTF-16 positions with non-ASCII text, and robustness.

mod common;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

struct Client {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<Value>,
    notes: Vec<Value>,
    next: i64,
}

impl Client {
    fn start() -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowc"))
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        len = v.parse().unwrap_or(0);
                    }
                }
                let mut buf = vec![0; len];
                if r.read_exact(&mut buf).is_err() {
                    return;
                }
                if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        Client { child, stdin, rx, notes: Vec::new(), next: 1 }
    }

    fn send(&mut self, v: &Value) {
        let body = v.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).expect("write");
        self.stdin.flush().expect("flush");
    }

    fn raw(&mut self, text: &str) {
        write!(self.stdin, "Content-Length: {}\r\n\r\n{text}", text.len()).expect("write");
        self.stdin.flush().expect("flush");
    }

    /// Bytes as they are, framing included: several messages in one write.
    fn raw_bytes(&mut self, bytes: &[u8]) {
        self.stdin.write_all(bytes).expect("write");
        self.stdin.flush().expect("flush");
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let v = self.rx.recv_timeout(Duration::from_secs(20)).expect("a response");
            if v.get("id") == Some(&json!(id)) {
                return v;
            }
            self.notes.push(v);
        }
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// The next diagnostics published for `uri`.
    fn diagnostics(&mut self, uri: &str) -> Vec<Value> {
        if let Some(i) = self
            .notes
            .iter()
            .position(|n| n["method"] == "textDocument/publishDiagnostics" && n["params"]["uri"] == uri)
        {
            return self.notes.remove(i)["params"]["diagnostics"].as_array().cloned().unwrap_or_default();
        }
        loop {
            let v = self.rx.recv_timeout(Duration::from_secs(20)).expect("diagnostics");
            if v["method"] == "textDocument/publishDiagnostics" && v["params"]["uri"] == uri {
                return v["params"]["diagnostics"].as_array().cloned().unwrap_or_default();
            }
        }
    }
}

const SHARED: &str = "template hello_email { channel email message marketing status published }\ntemplate draft_email { channel email message marketing status draft }\ntemplate promo { channel sms message promotional status published }\ncontact { plan: enum(free, pro) }\nsegment vip = plan == pro\n";

#[test]
fn a_session_through_every_feature() {
    let dir = std::env::temp_dir().join(format!("flowc-lsp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("shared.flow"), SHARED).expect("shared");
    let main_path = dir.join("main.flow");
    let shared_uri = format!("file://{}", dir.join("shared.flow").display());
    let uri = format!("file://{}", main_path.display());
    // The typo sits after a comment with an emoji: 2 UTF-16 units, 1 scalar, 4 bytes.
    let text = "import \"shared.flow\"\n\ncampaign c {\n  trigger manual\n  audience vip\n  /*😀*/ hi: send email.marketing helo_email\n  wait 1d\n  if opened(hi) { end }\n}\n";
    std::fs::write(&main_path, text).expect("main");

    let mut c = Client::start();
    let init = c.request("initialize", json!({"processId": null, "rootUri": null, "capabilities": {}}));
    let caps = &init["result"]["capabilities"];
    assert_eq!(caps["positionEncoding"], "utf-16");
    for k in [
        "hoverProvider",
        "completionProvider",
        "definitionProvider",
        "documentFormattingProvider",
        "documentSymbolProvider",
        "codeActionProvider",
    ] {
        assert!(!caps[k].is_null(), "{k}");
    }
    c.notify("initialized", json!({}));
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri, "languageId": "flow", "version": 1, "text": text}}),
    );
    let diags = c.diagnostics(&uri);
    assert_eq!(diags.len(), 1, "{diags:?}");
    let d = &diags[0];
    assert_eq!(d["code"], "unknown-template");
    // Line 5 (0-based); `/*😀*/ hi: send email.marketing ` is 2+2+2+1+4+5+16 = 32 UTF-16 units after the indent.
    assert_eq!(d["range"]["start"], json!({"line": 5, "character": 34}));
    assert_eq!(d["range"]["end"], json!({"line": 5, "character": 44}));
    assert!(d["message"].as_str().is_some_and(|m| m.contains("did you mean `hello_email`?")));

    // The did-you-mean is a one-click fix.
    let actions = c.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": uri}, "range": d["range"], "context": {"diagnostics": [d]}}),
    );
    let edit = &actions["result"][0]["edit"]["changes"][&uri][0];
    assert_eq!(edit["newText"], "hello_email");
    assert_eq!(edit["range"], d["range"]);
    // The fix is the diagnostic's structured data, not text parsed back out of
    // the message: a client that shows (and returns) only the first line still
    // gets it, and a message that merely says "did you mean" is no fix.
    let mut bare = d.clone();
    bare["message"] = json!("unknown template");
    let actions = c.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": uri}, "range": d["range"], "context": {"diagnostics": [bare]}}),
    );
    assert_eq!(actions["result"][0]["edit"]["changes"][&uri][0]["newText"], "hello_email", "{actions}");
    let forged = json!({"range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 6}}, "code": "unknown-template", "source": "flowc", "message": "x\nhelp: did you mean `evil`?"});
    let actions = c.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": uri}, "range": forged["range"], "context": {"diagnostics": [forged]}}),
    );
    assert_eq!(actions["result"], json!([]), "{actions}");

    // Hover on the segment in `audience vip`.
    let h = c
        .request("textDocument/hover", json!({"textDocument": {"uri": uri}, "position": {"line": 4, "character": 12}}));
    let hover = h["result"]["contents"]["value"].as_str().unwrap_or_default().to_string();
    assert!(hover.contains("segment") && hover.contains("plan == pro"), "{hover}");
    // Hover on a step label used in an engagement predicate.
    let h = c
        .request("textDocument/hover", json!({"textDocument": {"uri": uri}, "position": {"line": 7, "character": 13}}));
    assert!(h["result"]["contents"]["value"].as_str().is_some_and(|v| v.contains("step") && v.contains("send")), "{h}");

    // Go to the segment's definition in the imported file.
    let def = c.request(
        "textDocument/definition",
        json!({"textDocument": {"uri": uri}, "position": {"line": 4, "character": 12}}),
    );
    assert!(def["result"]["uri"].as_str().is_some_and(|u| u.ends_with("shared.flow")), "{def}");
    assert_eq!(def["result"]["range"]["start"]["line"], 4);

    // Completion after `send email.marketing `: published email.marketing templates only.
    let edited = text.replace("helo_email", "");
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": edited}]}),
    );
    let _ = c.diagnostics(&uri);
    let comp = c.request(
        "textDocument/completion",
        json!({"textDocument": {"uri": uri}, "position": {"line": 5, "character": 34}}),
    );
    let labels: Vec<&str> =
        comp["result"].as_array().map(|a| a.iter().filter_map(|i| i["label"].as_str()).collect()).unwrap_or_default();
    assert_eq!(labels, vec!["hello_email"], "draft and sms templates are not offered");

    // Editing the imported file updates the importer's diagnostics.
    c.notify("textDocument/didChange", json!({"textDocument": {"uri": uri, "version": 3}, "contentChanges": [{"text": text.replace("helo_email", "hello_email")}]}));
    assert!(c.diagnostics(&uri).is_empty());
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": shared_uri, "languageId": "flow", "version": 1, "text": SHARED}}),
    );
    let _ = c.diagnostics(&uri);
    c.notify("textDocument/didChange", json!({"textDocument": {"uri": shared_uri, "version": 2}, "contentChanges": [{"text": SHARED.replace("segment vip", "segment vips")}]}));
    let after = c.diagnostics(&uri);
    assert!(after.iter().any(|d| d["code"] == "unknown-segment"), "{after:?}");

    // References across files, rename of a label, folding.
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": shared_uri, "version": 3}, "contentChanges": [{"text": SHARED}]}),
    );
    let _ = c.diagnostics(&uri);
    let refs = c.request("textDocument/references", json!({"textDocument": {"uri": uri}, "position": {"line": 4, "character": 12}, "context": {"includeDeclaration": true}}));
    let files: Vec<String> = refs["result"]
        .as_array()
        .map(|a| {
            a.iter().filter_map(|l| l["uri"].as_str().map(|u| u.rsplit('/').next().unwrap_or("").to_string())).collect()
        })
        .unwrap_or_default();
    assert_eq!(files, vec!["main.flow".to_string(), "shared.flow".to_string()], "{refs}");
    let rename = c.request(
        "textDocument/rename",
        json!({"textDocument": {"uri": uri}, "position": {"line": 5, "character": 10}, "newName": "greeting"}),
    );
    let edits = rename["result"]["changes"][&uri].as_array().cloned().unwrap_or_default();
    assert_eq!(edits.len(), 2, "the label and `opened(hi)`: {rename}");
    assert!(edits.iter().all(|e| e["newText"] == "greeting"));
    let bad = c.request(
        "textDocument/rename",
        json!({"textDocument": {"uri": uri}, "position": {"line": 5, "character": 10}, "newName": "Not Valid"}),
    );
    assert_eq!(bad["error"]["code"], -32602);
    let folds = c.request("textDocument/foldingRange", json!({"textDocument": {"uri": uri}}));
    assert!(
        folds["result"].as_array().is_some_and(|f| f.iter().any(|r| r["startLine"] == 2 && r["endLine"] == 8)),
        "{folds}"
    );

    // A request overtaken by an edit of its document is answered ContentModified (or, if the
    // edit had not arrived yet, normally); either way the server stays consistent.
    let id = c.next;
    c.next += 1;
    c.send(&json!({"jsonrpc": "2.0", "id": id, "method": "textDocument/hover", "params": {"textDocument": {"uri": uri}, "position": {"line": 4, "character": 12}}}));
    c.notify("textDocument/didChange", json!({"textDocument": {"uri": uri, "version": 4}, "contentChanges": [{"text": text.replace("helo_email", "hello_email")}]}));
    let r = loop {
        let v = c.rx.recv_timeout(Duration::from_secs(20)).expect("response");
        if v.get("id") == Some(&json!(id)) {
            break v;
        }
        c.notes.push(v);
    };
    assert!(r["error"]["code"] == -32801 || r["result"].is_object(), "{r}");
    assert!(c.diagnostics(&uri).is_empty());

    // Outline and formatting.
    let syms = c.request("textDocument/documentSymbol", json!({"textDocument": {"uri": uri}}));
    assert_eq!(syms["result"][0]["name"], "campaign c");
    assert!(syms["result"][0]["children"].as_array().is_some_and(|c| c.len() == 3), "send, wait and if: {syms}");
    let fmt = c.request(
        "textDocument/formatting",
        json!({"textDocument": {"uri": uri}, "options": {"tabSize": 2, "insertSpaces": true}}),
    );
    assert!(fmt["result"][0]["newText"].as_str().is_some_and(|t| t.contains("campaign c {\n  trigger manual")));

    // Robustness: unknown methods and bad params are errors; garbage is survived.
    let r = c.request("flowc/unknown", json!({}));
    assert_eq!(r["error"]["code"], -32601);
    let r = c.request("textDocument/hover", json!({"nonsense": true}));
    assert_eq!(r["error"]["code"], -32602);
    c.raw("{\"jsonrpc\": \"2.0\", \"method\": \"textDocument/didOpen\", \"params\": 42}");
    let r = c.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": "file:///nowhere.flow"}, "position": {"line": 99, "character": 99}}),
    );
    assert!(r["result"].is_null());

    // Shutdown and exit follow the protocol.
    let r = c.request("shutdown", Value::Null);
    assert!(r["result"].is_null() && r.get("error").is_none());
    c.notify("exit", Value::Null);
    let status = c.child.wait().expect("exit");
    assert!(status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn editor_packages_are_well_formed() {
    let root = common::root().join("editors");
    let pkg: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("vscode/package.json")).expect("package.json"))
            .expect("json");
    assert_eq!(pkg["contributes"]["languages"][0]["id"], "flow");
    assert_eq!(pkg["contributes"]["languages"][0]["extensions"][0], ".flow");
    let grammar_path = pkg["contributes"]["grammars"][0]["path"].as_str().expect("grammar path");
    let grammar: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("vscode").join(grammar_path)).expect("grammar"))
            .expect("json");
    assert_eq!(grammar["scopeName"], pkg["contributes"]["grammars"][0]["scopeName"]);
    let conf: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("vscode/language-configuration.json")).expect("config"),
    )
    .expect("json");
    assert_eq!(conf["comments"]["lineComment"], "//");
    assert!(pkg["scripts"]["package"].as_str().is_some_and(|s| s.contains("vsce package")));
    // Every keyword of the language is highlighted.
    let text = grammar.to_string();
    for kw in
        ["campaign", "segment", "template", "send", "wait", "ab_test", "variant", "fallback", "happened", "within"]
    {
        assert!(text.contains(kw), "{kw}");
    }
    assert!(std::fs::read_to_string(root.join("nvim/lua/flowc.lua")).expect("lua").contains("\"lsp\""));
}

#[test]
fn utf8_positions_when_the_client_negotiates_them() {
    let dir = std::env::temp_dir().join(format!("flowc-lsp-utf8-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("shared.flow"), SHARED).expect("shared");
    let path = dir.join("main.flow");
    let uri = format!("file://{}", path.display());
    let text = "import \"shared.flow\"\n\ncampaign c {\n  trigger manual\n  audience vip\n  /*😀*/ hi: send email.marketing helo_email\n}\n";
    std::fs::write(&path, text).expect("main");
    for (offered, expect, start, label) in [
        // The emoji is 4 bytes, 2 UTF-16 units, 1 scalar.
        (json!(["utf-8", "utf-16"]), "utf-8", 36, 11),
        (json!(["utf-32"]), "utf-32", 33, 8),
        (json!(["utf-16", "utf-32"]), "utf-16", 34, 9),
    ] {
        let mut c = Client::start();
        let init = c.request(
            "initialize",
            json!({"processId": null, "rootUri": null, "capabilities": {"general": {"positionEncodings": offered}}}),
        );
        assert_eq!(init["result"]["capabilities"]["positionEncoding"], expect);
        c.notify("initialized", json!({}));
        c.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": "flow", "version": 1, "text": text}}),
        );
        let diags = c.diagnostics(&uri);
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(diags[0]["range"]["start"], json!({"line": 5, "character": start}), "{expect}");
        assert_eq!(diags[0]["range"]["end"]["character"], start + 10, "{expect}");
        // Positions sent by the client are read in the same encoding: hover the label after the emoji.
        let h = c.request(
            "textDocument/hover",
            json!({"textDocument": {"uri": uri}, "position": {"line": 5, "character": label}}),
        );
        assert!(
            h["result"]["contents"]["value"].as_str().is_some_and(|v| v.contains("step") && v.contains("hi")),
            "{expect}: {h}"
        );
        let r = c.request("shutdown", Value::Null);
        assert!(r.get("error").is_none());
        c.notify("exit", Value::Null);
        assert!(c.child.wait().expect("exit").success());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A burst of edits: diagnostics never go back to an older version, and the
/// last ones published are those of the last text.
#[test]
fn a_burst_of_edits_ends_with_the_latest_versions_diagnostics() {
    let dir = std::env::temp_dir().join(format!("flowc-lsp-burst-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let uri = format!("file://{}", dir.join("b.flow").display());
    let good = "template t { channel email message marketing status published }\ncampaign c {\n  trigger manual\n  send email.marketing t\n}\n";
    let mut c = Client::start();
    c.request("initialize", json!({"processId": null, "rootUri": null, "capabilities": {}}));
    c.notify("initialized", json!({}));
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri, "languageId": "flow", "version": 0, "text": good}}),
    );
    let _ = c.diagnostics(&uri);
    // 30 edits in one write: the server sees them queued.
    let mut burst = String::new();
    for v in 1..=30 {
        let text = if v == 30 {
            good.replace("send email.marketing t", "send email.marketing t_last")
        } else {
            good.replace(" t\n", &format!(" t{v}\n"))
        };
        let body = json!({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {"textDocument": {"uri": uri, "version": v}, "contentChanges": [{"text": text}]}}).to_string();
        burst.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    }
    c.raw_bytes(burst.as_bytes());
    let mut versions = Vec::new();
    let last = loop {
        let v = c.rx.recv_timeout(Duration::from_secs(20)).expect("diagnostics");
        if v["method"] == "textDocument/publishDiagnostics" && v["params"]["uri"] == uri.as_str() {
            let ver = v["params"]["version"].as_i64().expect("version");
            versions.push(ver);
            if ver == 30 {
                break v;
            }
        }
    };
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "published out of order: {versions:?}");
    let d = &last["params"]["diagnostics"];
    assert_eq!(d.as_array().map(Vec::len), Some(1), "{d}");
    assert!(d[0]["message"].as_str().is_some_and(|m| m.contains("t_last")), "{d}");
    let r = c.request("shutdown", Value::Null);
    assert!(r.get("error").is_none());
    c.notify("exit", Value::Null);
    assert!(c.child.wait().expect("exit").success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts a server and completes the handshake.
fn initialized() -> Client {
    let mut c = Client::start();
    let init = c.request("initialize", json!({"processId": null, "rootUri": null, "capabilities": {}}));
    assert!(init["result"]["capabilities"].is_object(), "{init}");
    c.notify("initialized", json!({}));
    c
}

/// The next message that is not a notification: a response.
fn next_response(c: &mut Client) -> Value {
    loop {
        let v = c.rx.recv_timeout(Duration::from_secs(20)).expect("a response");
        if v.get("method").is_none() {
            return v;
        }
        c.notes.push(v);
    }
}

/// Waits for the server to exit after its input closed.
fn exit_code(mut c: Client) -> Option<i32> {
    drop(c.stdin);
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = c.child.try_wait().expect("wait") {
            return status.code();
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = c.child.kill();
            panic!("the server did not exit when its input closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn malformed_json_is_a_parse_error_and_the_server_goes_on() {
    let mut c = initialized();
    // A lone surrogate is not valid JSON text.
    c.raw(r#"{"jsonrpc": "2.0", "id": 5, "method": "textDocument/hover", "params": "\ud800"}"#);
    let r = next_response(&mut c);
    assert_eq!(r["error"]["code"], -32700, "{r}");
    assert!(r["id"].is_null(), "the id of unparsable input is unknown: {r}");
    // Valid JSON that is no JSON-RPC message is an invalid request.
    c.raw("[1, 2, 3]");
    let r = next_response(&mut c);
    assert_eq!(r["error"]["code"], -32600, "{r}");
    // Not UTF-8 at all.
    c.raw_bytes(b"Content-Length: 4\r\n\r\n\xff\xfe\xfd\xfc");
    let r = next_response(&mut c);
    assert_eq!(r["error"]["code"], -32700, "{r}");
    // A header block without Content-Length.
    c.raw_bytes(b"Content-Type: application/vscode-jsonrpc\r\n\r\n");
    let r = next_response(&mut c);
    assert_eq!(r["error"]["code"], -32700, "{r}");
    // Still serving.
    let r = c.request("flowc/unknown", json!({}));
    assert_eq!(r["error"]["code"], -32601, "{r}");
    let r = c.request("shutdown", Value::Null);
    assert!(r.get("error").is_none(), "{r}");
    c.notify("exit", Value::Null);
    assert_eq!(c.child.wait().expect("exit").code(), Some(0));
}

#[test]
fn a_message_over_the_size_limit_is_refused_and_skipped() {
    let mut c = initialized();
    // Just over 64 MiB, sent in full: skipped without being kept, then the next message is served.
    let size = (64 << 20) + 1;
    let mut body = format!("Content-Length: {size}\r\n\r\n").into_bytes();
    body.resize(body.len() + size, b' ');
    c.raw_bytes(&body);
    let r = next_response(&mut c);
    assert_eq!(r["error"]["code"], -32600, "{r}");
    assert!(r["error"]["message"].as_str().is_some_and(|m| m.contains("64 MiB")), "{r}");
    let r = c.request("flowc/unknown", json!({}));
    assert_eq!(r["error"]["code"], -32601, "{r}");
    let r = c.request("shutdown", Value::Null);
    assert!(r.get("error").is_none(), "{r}");
    c.notify("exit", Value::Null);
    assert_eq!(c.child.wait().expect("exit").code(), Some(0));
}

#[test]
fn an_absurd_content_length_is_refused_before_any_allocation() {
    for claimed in ["100000000000", "4000000000", "99999999999999999999999"] {
        let mut c = initialized();
        c.raw_bytes(format!("Content-Length: {claimed}\r\n\r\n{{\"jsonrpc\"").as_bytes());
        let r = next_response(&mut c);
        assert!(r["error"]["code"] == -32600 || r["error"]["code"] == -32700, "{claimed}: {r}");
        #[cfg(target_os = "linux")]
        {
            // The peak resident size stays far below what the header claims.
            let status = std::fs::read_to_string(format!("/proc/{}/status", c.child.id())).expect("status");
            let peak_kib: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .expect("VmHWM");
            assert!(peak_kib < 512 * 1024, "{claimed}: peak {peak_kib} KiB");
        }
        // The input ends inside the announced body: the server exits, without
        // a shutdown request, so with 1 — not killed by an allocation failure.
        assert_eq!(exit_code(c), Some(1), "{claimed}");
    }
}

#[test]
fn exit_without_shutdown_exits_1() {
    let mut c = initialized();
    c.notify("exit", Value::Null);
    assert_eq!(c.child.wait().expect("exit").code(), Some(1));
    // Before initialize as well.
    let mut c = Client::start();
    c.notify("exit", Value::Null);
    assert_eq!(c.child.wait().expect("exit").code(), Some(1));
}

#[test]
fn requests_before_initialize_and_after_shutdown_are_refused() {
    let mut c = Client::start();
    let r = c.request("textDocument/hover", json!({}));
    assert_eq!(r["error"]["code"], -32002, "{r}");
    let init = c.request("initialize", json!({"processId": null, "rootUri": null, "capabilities": {}}));
    assert!(init["result"]["capabilities"].is_object(), "{init}");
    let r = c.request("shutdown", Value::Null);
    assert!(r.get("error").is_none(), "{r}");
    let r = c.request("textDocument/hover", json!({}));
    assert_eq!(r["error"]["code"], -32600, "{r}");
    c.notify("exit", Value::Null);
    assert_eq!(c.child.wait().expect("exit").code(), Some(0));
}

#[test]
fn the_server_never_reads_through_links_out_of_the_workspace_nor_special_files() {
    let t = common::TempDir::new("lsp-links");
    let ws = t.0.join("ws");
    std::fs::create_dir_all(&ws).expect("dir");
    std::fs::write(t.0.join("secret.txt"), "SECRET-FIRST-LINE\n").expect("secret");
    std::os::unix::fs::symlink(t.0.join("secret.txt"), ws.join("pw.flow")).expect("link");
    std::os::unix::fs::symlink("/dev/zero", ws.join("zero.flow")).expect("link");
    assert!(Command::new("mkfifo").arg(ws.join("fifo.flow")).status().expect("mkfifo").success());
    let uri = format!("file://{}", ws.join("main.flow").display());
    let text = "import \"pw.flow\"\nimport \"zero.flow\"\nimport \"fifo.flow\"\n";
    let mut c = initialized();
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri, "languageId": "flow", "version": 1, "text": text}}),
    );
    let diags = c.diagnostics(&uri);
    let messages: Vec<&str> = diags.iter().filter_map(|d| d["message"].as_str()).collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(messages[0].contains("outside the workspace") && !messages[0].contains("SECRET"), "{messages:?}");
    assert!(messages[1].contains("outside the workspace"), "{messages:?}");
    assert!(messages[2].contains("not a regular file"), "{messages:?}");
    let r = c.request("shutdown", Value::Null);
    assert!(r.get("error").is_none(), "{r}");
    c.notify("exit", Value::Null);
    assert_eq!(c.child.wait().expect("exit").code(), Some(0));
}

#[test]
fn the_server_finds_the_same_workspace_root_as_check() {
    let t = common::TempDir::new("lsp-root");
    let ws = t.0.join("ws");
    std::fs::create_dir_all(ws.join("sub")).expect("dir");
    std::fs::write(ws.join("shared.flow"), "template hello { channel email message marketing status published }\n")
        .expect("shared");
    let path = ws.join("sub/c5.flow");
    let text = "import \"../shared.flow\"\ncampaign c5 {\n  trigger manual\n  send email.marketing hello\n}\n";
    std::fs::write(&path, text).expect("c5");
    // Opened through a linked folder: the server resolves it like `flowc check` does.
    std::os::unix::fs::symlink(&ws, t.0.join("link")).expect("link");
    let uri = format!("file://{}/link/sub/c5.flow", t.0.display());
    // Unmarked, the import leaves the workspace (and `hello` is unknown); marked, all is well.
    for (marked, expect) in [(false, 2), (true, 0)] {
        if marked {
            std::fs::write(ws.join("flowc.toml"), "").expect("toml");
        }
        let mut c = initialized();
        c.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": "flow", "version": 1, "text": text}}),
        );
        let diags = c.diagnostics(&uri);
        assert_eq!(diags.len(), expect, "flowc.toml: {marked}: {diags:?}");
        if expect > 0 {
            assert!(diags[0]["message"].as_str().is_some_and(|m| m.contains("outside the workspace")), "{diags:?}");
        } else {
            // Go to definition on the import opens the imported file.
            let def = c.request(
                "textDocument/definition",
                json!({"textDocument": {"uri": uri}, "position": {"line": 0, "character": 10}}),
            );
            assert!(def["result"]["uri"].as_str().is_some_and(|u| u.ends_with("/ws/shared.flow")), "{def}");
        }
        let r = c.request("shutdown", Value::Null);
        assert!(r.get("error").is_none(), "{r}");
        c.notify("exit", Value::Null);
        assert_eq!(c.child.wait().expect("exit").code(), Some(0));
    }
}

// Issue 22: reach and cost where campaigns are written.

const REACH_FLOW: &str = "template hello_email { channel email message marketing status published }\ncontact { plan: enum(free, pro) }\nsegment vip = plan == pro\ncampaign promo_run {\n  trigger manual\n  audience vip\n  s: send email.marketing hello_email\n}\n";

/// A workspace whose `flowc.toml` names `c.db`, filled by `flowc contacts
/// import` with `n` contacts, a third of them `pro`.
fn reach_workspace(t: &common::TempDir, n: usize) -> std::path::PathBuf {
    let ws = t.0.join("ws");
    std::fs::create_dir_all(&ws).expect("dir");
    std::fs::write(ws.join("flowc.toml"), "database = \"c.db\"\n").expect("toml");
    std::fs::write(ws.join("main.flow"), REACH_FLOW).expect("flow");
    import_contacts(&ws, 0..n);
    ws
}

fn import_contacts(ws: &std::path::Path, ids: std::ops::Range<usize>) {
    let rows: String = ids
        .map(|i| {
            format!(
                "{{\"id\":\"c{i}\",\"email\":\"c{i}@example.com\",\"plan\":\"{}\",\"consent\":[\"email\"]}}\n",
                if i % 3 == 0 { "pro" } else { "free" }
            )
        })
        .collect();
    std::fs::write(ws.join("contacts.jsonl"), rows).expect("contacts");
    let o = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["contacts", "import", "contacts.jsonl", "--db", "c.db", "--schema", "main.flow"])
        .current_dir(ws)
        .output()
        .expect("import");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// What `flowc estimate` says: (audience, expected cost).
fn estimated(ws: &std::path::Path, file: &str) -> (u64, f64) {
    let o = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["estimate", file, "--db", "c.db", "--format", "json"])
        .current_dir(ws)
        .output()
        .expect("estimate");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e: Value = serde_json::from_slice(&o.stdout).expect("json");
    (e["audience"].as_u64().expect("audience"), e["cost"]["expected"].as_f64().expect("cost"))
}

fn reach_client(capabilities: Value) -> Client {
    let mut c = Client::start();
    let init = c.request("initialize", json!({"processId": null, "rootUri": null, "capabilities": capabilities}));
    assert!(init["result"]["capabilities"]["codeLensProvider"].is_object(), "{init}");
    assert_eq!(init["result"]["capabilities"]["executeCommandProvider"]["commands"], json!(["flowc.showEstimate"]));
    c.notify("initialized", json!({}));
    c
}

/// Asks for the lenses of `uri` until `done` holds of them (the estimate is
/// made off the main loop, so the first answers may have none).
fn lenses_until(c: &mut Client, uri: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let started = std::time::Instant::now();
    loop {
        let r = c.request("textDocument/codeLens", json!({"textDocument": {"uri": uri}}));
        let lenses = r["result"].as_array().cloned().unwrap_or_default();
        if done(&lenses) {
            return lenses;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "lenses never settled: {lenses:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn title(lenses: &[Value]) -> String {
    lenses.first().and_then(|l| l["command"]["title"].as_str()).unwrap_or_default().to_string()
}

#[test]
fn a_lens_shows_reach_and_cost_from_the_workspace_database_and_follows_edits_and_data() {
    let t = common::TempDir::new("lsp-reach");
    let ws = reach_workspace(&t, 30);
    let (audience, cost) = estimated(&ws, "main.flow");
    assert_eq!(audience, 10);
    let uri = format!("file://{}", ws.join("main.flow").display());
    let mut c = reach_client(json!({
        "workspace": {"codeLens": {"refreshSupport": true}},
        "window": {"showDocument": {"support": true}}
    }));
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri, "languageId": "flow", "version": 1, "text": REACH_FLOW}}),
    );
    // Diagnostics come first, whatever the estimate is doing.
    assert!(c.diagnostics(&uri).is_empty());
    let lenses = lenses_until(&mut c, &uri, |l| !l.is_empty());
    assert_eq!(lenses.len(), 1, "{lenses:?}");
    assert_eq!(title(&lenses), format!("≈ {audience} contacts · €{cost:.2}"), "the numbers of `flowc estimate`");
    assert_eq!(lenses[0]["range"]["start"]["line"], 3, "above the campaign");
    assert_eq!(lenses[0]["command"]["command"], "flowc.showEstimate");
    // The server asked the client to refresh when the estimate was ready.
    let refreshed = |c: &mut Client| {
        while let Ok(v) = c.rx.try_recv() {
            c.notes.push(v);
        }
        c.notes.iter().any(|n| n["method"] == "workspace/codeLens/refresh" && n.get("id").is_some())
    };
    assert!(refreshed(&mut c), "no workspace/codeLens/refresh: {:?}", c.notes);

    // Clicking the lens opens the per-step estimate.
    let args = lenses[0]["command"]["arguments"].clone();
    let r = c.request("workspace/executeCommand", json!({"command": "flowc.showEstimate", "arguments": args}));
    let text = r["result"]["text"].as_str().unwrap_or_default().to_string();
    assert!(text.contains("campaign promo_run: audience 10 contact(s)"), "{r}");
    assert!(text.contains("email.marketing"), "{text}");
    let shown = c
        .notes
        .iter()
        .chain(std::iter::from_fn(|| c.rx.recv_timeout(Duration::from_secs(5)).ok()).take(1).collect::<Vec<_>>().iter())
        .find(|n| n["method"] == "window/showDocument")
        .cloned()
        .expect("window/showDocument");
    let file = shown["params"]["uri"].as_str().and_then(|u| u.strip_prefix("file://")).expect("a file URI");
    assert_eq!(std::fs::read_to_string(file).expect("the shown file"), text);

    // Hover on the segment: its size now.
    let hover =
        c.request("textDocument/hover", json!({"textDocument": {"uri": uri}, "position": {"line": 2, "character": 9}}));
    let first = hover["result"]["contents"]["value"].as_str().unwrap_or_default().to_string();
    assert!(first.contains("**segment** `vip`"), "{hover}");
    let started = std::time::Instant::now();
    loop {
        let hover = c.request(
            "textDocument/hover",
            json!({"textDocument": {"uri": uri}, "position": {"line": 2, "character": 9}}),
        );
        let value = hover["result"]["contents"]["value"].as_str().unwrap_or_default().to_string();
        if value.contains("**now**: 10 contacts") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no segment size: {value}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // An edit of the campaign: the lens follows the new audience.
    let everyone = REACH_FLOW.replace("  audience vip\n", "");
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": everyone}]}),
    );
    let lenses = lenses_until(&mut c, &uri, |l| title(l).starts_with("≈ 30 contacts"));
    assert!(title(&lenses).starts_with("≈ 30 contacts · €"), "{lenses:?}");

    // New contacts in the database: the lens follows the data.
    import_contacts(&ws, 30..45);
    let lenses = lenses_until(&mut c, &uri, |l| title(l).starts_with("≈ 45 contacts"));
    std::fs::write(ws.join("everyone.flow"), &everyone).expect("flow");
    let (audience, cost) = estimated(&ws, "everyone.flow");
    assert_eq!(title(&lenses), format!("≈ {audience} contacts · €{cost:.2}"));
    let r = c.request("shutdown", Value::Null);
    assert!(r.get("error").is_none(), "{r}");
    c.notify("exit", Value::Null);
    assert_eq!(c.child.wait().expect("exit").code(), Some(0));
}

#[test]
fn a_missing_or_corrupt_database_shows_no_lens_and_no_error() {
    let t = common::TempDir::new("lsp-reach-bad");
    let ws = t.0.join("ws");
    std::fs::create_dir_all(&ws).expect("dir");
    std::fs::write(ws.join("main.flow"), REACH_FLOW).expect("flow");
    std::fs::write(ws.join("corrupt.db"), b"this is not a database, only text that is long enough".repeat(200))
        .expect("corrupt");
    for db in ["missing.db", "corrupt.db"] {
        std::fs::write(ws.join("flowc.toml"), format!("database = \"{db}\"\n")).expect("toml");
        let uri = format!("file://{}", ws.join("main.flow").display());
        let mut c = reach_client(json!({"workspace": {"codeLens": {"refreshSupport": true}}}));
        c.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": "flow", "version": 1, "text": REACH_FLOW}}),
        );
        assert!(c.diagnostics(&uri).is_empty(), "{db}");
        for _ in 0..10 {
            let r = c.request("textDocument/codeLens", json!({"textDocument": {"uri": uri}}));
            assert_eq!(r["result"], json!([]), "{db}: {r}");
            std::thread::sleep(Duration::from_millis(30));
        }
        let hover = c.request(
            "textDocument/hover",
            json!({"textDocument": {"uri": uri}, "position": {"line": 2, "character": 9}}),
        );
        let value = hover["result"]["contents"]["value"].as_str().unwrap_or_default();
        assert!(value.contains("**segment** `vip`") && !value.contains("**now**"), "{db}: {value}");
        while let Ok(v) = c.rx.try_recv() {
            c.notes.push(v);
        }
        let noisy: Vec<&Value> = c
            .notes
            .iter()
            .filter(|n| {
                matches!(
                    n["method"].as_str(),
                    Some("window/showMessage" | "window/logMessage" | "workspace/codeLens/refresh")
                )
            })
            .collect();
        assert!(noisy.is_empty(), "{db}: {noisy:?}");
        let r = c.request("shutdown", Value::Null);
        assert!(r.get("error").is_none(), "{r}");
        c.notify("exit", Value::Null);
        assert_eq!(c.child.wait().expect("exit").code(), Some(0));
    }
}
