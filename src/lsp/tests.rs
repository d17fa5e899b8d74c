//! The server in-process: a panicking handler, and analyses answered from
//! the cache until something they read changes (counted, never timed).

use super::*;
use lsp_server::Request;

#[test]
fn a_panicking_handler_is_answered_with_an_internal_error() {
    let r = guarded(RequestId::from(7), || panic!("a bug"));
    assert_eq!(r.id, RequestId::from(7));
    let e = r.error.expect("an error response");
    assert_eq!(e.code, ErrorCode::InternalError as i32);
    assert!(r.result.is_none());
    let ok = guarded(RequestId::from(8), || Response::new_ok(RequestId::from(8), 1));
    assert!(ok.error.is_none());
}

const SHARED: &str = "template hello_email { channel email message marketing status published }\ncontact { plan: enum(free, pro) }\nsegment vip = plan == pro\n";
const MAIN: &str = "import \"shared.flow\"\n\ncampaign c {\n  trigger manual\n  audience vip\n  hi: send email.marketing hello_email\n  wait 1d\n  if opened(hi) { end }\n}\n";

struct Session {
    server: Server,
    next: i32,
}

impl Session {
    fn notify(&mut self, method: &str, params: serde_json::Value) -> Vec<Notification> {
        self.server.notification(Notification::new(method.into(), params))
    }
    fn request(&mut self, method: &str, params: serde_json::Value) -> Response {
        self.next += 1;
        self.server.request(Request::new(RequestId::from(self.next), method.into(), params))
    }
    fn analyses(&self) -> u64 {
        self.server.cache.computed()
    }
}

fn uri(p: &Path) -> String {
    format!("file://{}", p.display())
}

#[test]
fn requests_on_unchanged_documents_reuse_the_analysis() {
    let dir = std::env::temp_dir().join(format!("flowc-lsp-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let dir = std::fs::canonicalize(&dir).expect("canonical");
    std::fs::write(dir.join("shared.flow"), SHARED).expect("shared");
    std::fs::write(dir.join("main.flow"), MAIN).expect("main");
    let (main, shared) = (uri(&dir.join("main.flow")), uri(&dir.join("shared.flow")));
    let mut s = Session { server: Server::with_client(Encoding::Utf16, super::Client::default()), next: 0 };
    let at = |u: &str| serde_json::json!({"textDocument": {"uri": u}, "position": {"line": 5, "character": 30}});

    let published = s.notify(
        "textDocument/didOpen",
        serde_json::json!({"textDocument": {"uri": main, "languageId": "flow", "version": 1, "text": MAIN}}),
    );
    assert_eq!(published.len(), 1);
    assert_eq!(s.analyses(), 1, "opening checks the document once");

    // Every query on the unchanged document answers from that analysis.
    let hover = s.request("textDocument/hover", at(&main));
    assert!(hover.result.as_ref().is_some_and(|r| !r.is_null()), "{hover:?}");
    assert!(s.request("textDocument/definition", at(&main)).result.is_some_and(|r| !r.is_null()));
    assert!(s.request("textDocument/completion", at(&main)).result.is_some());
    assert!(s.request("textDocument/references", serde_json::json!({"textDocument": {"uri": main}, "position": {"line": 4, "character": 12}, "context": {"includeDeclaration": true}})).result.is_some());
    assert!(s
        .request("textDocument/documentSymbol", serde_json::json!({"textDocument": {"uri": main}}))
        .result
        .is_some());
    assert!(s
        .request("textDocument/foldingRange", serde_json::json!({"textDocument": {"uri": main}}))
        .result
        .is_some());
    s.request("textDocument/hover", at(&main));
    assert_eq!(s.analyses(), 1, "no request rechecked the workspace");

    // An edit: one new analysis, published and then reused by the hover.
    let edited = MAIN.replace("wait 1d", "wait 2d");
    s.notify(
        "textDocument/didChange",
        serde_json::json!({"textDocument": {"uri": main, "version": 2}, "contentChanges": [{"text": edited}]}),
    );
    assert_eq!(s.analyses(), 2);
    s.request("textDocument/hover", at(&main));
    assert_eq!(s.analyses(), 2);

    // Opening the imported file invalidates its importer too.
    s.notify(
        "textDocument/didOpen",
        serde_json::json!({"textDocument": {"uri": shared, "languageId": "flow", "version": 1, "text": SHARED}}),
    );
    assert_eq!(s.analyses(), 4, "main and shared, each once");
    // An edit of the import rechecks both; the importer sees the new text.
    let renamed = SHARED.replace("hello_email", "hi_email");
    let published = s.notify(
        "textDocument/didChange",
        serde_json::json!({"textDocument": {"uri": shared, "version": 2}, "contentChanges": [{"text": renamed}]}),
    );
    assert_eq!(s.analyses(), 6);
    let main_diags: Vec<_> = published
        .iter()
        .filter(|n| n.params["uri"] == main.as_str())
        .flat_map(|n| n.params["diagnostics"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(main_diags.iter().any(|d| d["code"] == "unknown-template"), "{main_diags:?}");
    s.request("textDocument/hover", at(&main));
    assert_eq!(s.analyses(), 6);

    // Closed, the import is read from disk again: one recheck, then cached.
    s.notify("textDocument/didClose", serde_json::json!({"textDocument": {"uri": shared}}));
    s.request("textDocument/hover", at(&main));
    s.request("textDocument/hover", at(&main));
    assert_eq!(s.analyses(), 7);
    // A change on disk that no notification announced is still seen.
    std::fs::write(dir.join("shared.flow"), format!("{SHARED}segment other = plan == free\n")).expect("rewrite");
    s.request("textDocument/hover", at(&main));
    assert_eq!(s.analyses(), 8);
    // A save, and a watched-files notification, drop what they may have changed.
    s.notify("textDocument/didSave", serde_json::json!({"textDocument": {"uri": main}}));
    s.request("textDocument/hover", at(&main));
    assert_eq!(s.analyses(), 9);
    s.notify("workspace/didChangeWatchedFiles", serde_json::json!({"changes": []}));
    assert_eq!(s.analyses(), 10, "the open document is rechecked and republished");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 18: hover on `wait until`, its arms, goal, exit and `on
/// ineligible`; completion of events and of an event's properties after
/// `where`; the wait and its arms in the outline.
#[test]
fn wait_until_goal_and_exits_hover_complete_and_outline() {
    let dir = std::env::temp_dir().join(format!("flowc-lsp-wait-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let dir = std::fs::canonicalize(&dir).expect("canonical");
    let shared = format!("{SHARED}event order.completed {{ amount: number }}\n");
    let main = "import \"shared.flow\"\n\ncampaign c {\n  trigger event order.completed where amount > 1\n  goal event order.completed within 7d\n  exit when event order.completed where amount > 5\n  on ineligible continue\n  hi: send email.marketing hello_email\n  cart: wait until {\n    when event order.completed where amount > 50 { end }\n    when clicked(hi) { }\n    timeout 3d { }\n  }\n}\n";
    std::fs::write(dir.join("shared.flow"), shared).expect("shared");
    std::fs::write(dir.join("main.flow"), main).expect("main");
    let u = uri(&dir.join("main.flow"));
    let mut s = Session { server: Server::with_client(Encoding::Utf16, super::Client::default()), next: 0 };
    s.notify(
        "textDocument/didOpen",
        serde_json::json!({"textDocument": {"uri": u, "languageId": "flow", "version": 1, "text": main}}),
    );
    let at = |line: u32, character: u32| serde_json::json!({"textDocument": {"uri": u}, "position": {"line": line, "character": character}});
    let mut hover = |line, character| {
        let r = s.request("textDocument/hover", at(line, character));
        r.result.and_then(|v| v["contents"]["value"].as_str().map(str::to_string)).unwrap_or_default()
    };
    for (line, character, want) in [
        (8, 9, "**wait until** `cart` (2 arms)"),
        (9, 5, "**when** `cart/when1`: an event arm"),
        (10, 5, "**when** `cart/when2`: a state arm"),
        (11, 5, "**timeout** `cart/timeout`"),
        (4, 3, "**goal**"),
        (5, 3, "**exit** `exit:1`"),
        (6, 3, "**on ineligible continue**"),
    ] {
        let text = hover(line, character);
        assert!(text.starts_with(want), "{line}:{character}: {text:?} should start with {want:?}");
    }

    let mut labels = |line, character| {
        let r = s.request("textDocument/completion", at(line, character));
        let items = r.result.unwrap_or_default();
        let list = items.as_array().cloned().or_else(|| items["items"].as_array().cloned()).unwrap_or_default();
        list.iter().filter_map(|i| i["label"].as_str().map(str::to_string)).collect::<Vec<_>>()
    };
    assert!(labels(4, 13).contains(&"order.completed".to_string()), "events after `goal event`");
    // `    when event order.completed where ` is 37 characters: properties only.
    assert_eq!(labels(9, 37), ["amount"]);
    // A trigger's `where` reads the event's properties, then contact fields.
    let trigger = labels(3, 38);
    assert!(trigger.contains(&"amount".to_string()) && trigger.contains(&"plan".to_string()), "{trigger:?}");

    let r = s.request("textDocument/documentSymbol", serde_json::json!({"textDocument": {"uri": u}}));
    let syms = r.result.expect("symbols");
    let steps = syms[0]["children"].as_array().expect("steps");
    let wait = steps.iter().find(|x| x["name"] == "cart: wait until").expect("the wait");
    let arms: Vec<&str> =
        wait["children"].as_array().expect("arms").iter().filter_map(|x| x["name"].as_str()).collect();
    assert_eq!(arms, ["when event order.completed where amount > 50", "when clicked(hi)", "timeout 3d"]);
    assert_eq!(wait["children"][0]["children"][0]["name"], "end");
}

/// Issue 19: hover on the delivery rules, `set` and the policy; completion
/// of writable fields after `set ` and of channels after `frequency cap `;
/// the policy and set steps in the outline.
#[test]
fn delivery_rules_hover_complete_and_outline() {
    let dir = std::env::temp_dir().join(format!("flowc-lsp-delivery-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let dir = std::fs::canonicalize(&dir).expect("canonical");
    let main = "import \"shared.flow\"\n\npolicy {\n  frequency cap 3 per 7d\n  frequency cap sms 1 per 1d\n}\n\ncampaign c {\n  trigger manual\n  quiet hours 21:00 to 08:00 then skip\n  reentry after 30d\n  rate limit 600 per minute\n  hi: send email.marketing hello_email\n  bump: set plan = pro\n}\n";
    // The same, being typed: `frequency cap ` and `set ` wait for a name.
    let typing = main
        .replace("cap sms 1 per 1d", "cap ")
        .replace("  bump: set plan = pro\n", "  bump: set plan = pro\n  set \n");
    std::fs::write(dir.join("shared.flow"), SHARED).expect("shared");
    std::fs::write(dir.join("main.flow"), main).expect("main");
    std::fs::write(dir.join("typing.flow"), &typing).expect("typing");
    let u = uri(&dir.join("main.flow"));
    let t = uri(&dir.join("typing.flow"));
    let mut s = Session { server: Server::with_client(Encoding::Utf16, super::Client::default()), next: 0 };
    for (doc, text) in [(&u, main.to_string()), (&t, typing.clone())] {
        s.notify(
            "textDocument/didOpen",
            serde_json::json!({"textDocument": {"uri": doc, "languageId": "flow", "version": 1, "text": text}}),
        );
    }
    let at = |line: u32, character: u32| serde_json::json!({"textDocument": {"uri": u}, "position": {"line": line, "character": character}});
    let mut hover = |line, character| {
        let r = s.request("textDocument/hover", at(line, character));
        r.result.and_then(|v| v["contents"]["value"].as_str().map(str::to_string)).unwrap_or_default()
    };
    for (line, character, want) in [
        (2, 2, "**policy**"),
        (3, 5, "**frequency cap** 3 per 7d"),
        (9, 4, "**quiet hours** 21:00 to 08:00, then skip"),
        (10, 4, "**reentry after 30d**"),
        (11, 4, "**rate limit** 600 per minute"),
        (13, 9, "**set** `plan`"),
        (13, 13, "**contact field** `plan`"),
    ] {
        let text = hover(line, character);
        assert!(text.starts_with(want), "{line}:{character}: {text:?} should start with {want:?}");
    }

    let typed_at = |line: u32, character: u32| serde_json::json!({"textDocument": {"uri": t}, "position": {"line": line, "character": character}});
    let mut labels = |line, character| {
        let r = s.request("textDocument/completion", typed_at(line, character));
        let items = r.result.unwrap_or_default();
        let list = items.as_array().cloned().or_else(|| items["items"].as_array().cloned()).unwrap_or_default();
        list.iter().filter_map(|i| i["label"].as_str().map(str::to_string)).collect::<Vec<_>>()
    };
    let fields = labels(14, 6);
    assert!(fields.contains(&"plan".to_string()) && fields.contains(&"locale".to_string()), "{fields:?}");
    for readonly in ["id", "created_at", "tags"] {
        assert!(!fields.contains(&readonly.to_string()), "`{readonly}` is not writable: {fields:?}");
    }
    assert!(!fields.contains(&"send".to_string()), "only fields after `set `: {fields:?}");
    let channels = labels(4, 16);
    assert!(channels.contains(&"sms".to_string()) && channels.contains(&"email".to_string()), "{channels:?}");
    assert!(!channels.contains(&"send".to_string()), "only channels after `frequency cap `: {channels:?}");

    let r = s.request("textDocument/documentSymbol", serde_json::json!({"textDocument": {"uri": u}}));
    let syms = r.result.expect("symbols");
    let names: Vec<&str> = syms.as_array().expect("symbols").iter().filter_map(|x| x["name"].as_str()).collect();
    assert!(names.contains(&"policy"), "{names:?}");
    let policy = syms.as_array().expect("symbols").iter().find(|x| x["name"] == "policy").expect("policy");
    assert_eq!(policy["children"][0]["name"], "frequency cap 3 per 7d");
    let campaign = syms.as_array().expect("symbols").iter().find(|x| x["name"] == "campaign c").expect("campaign");
    let steps: Vec<&str> =
        campaign["children"].as_array().expect("steps").iter().filter_map(|x| x["name"].as_str()).collect();
    assert!(steps.contains(&"bump: set plan"), "{steps:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
