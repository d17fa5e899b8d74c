//! The operator console of `flowc serve` (docs/console.md) over loopback,
//! against the real binary: sign-in, the session cookie, CSRF, the security
//! headers, escaping of names from `.flow` files and contacts, pause and
//! resume through the console, and hostile requests.
//!
//! `the_console_in_a_real_browser` runs the same pages in headless Chromium
//! (Debian's) under Playwright (tests/console/test_console.py), installed by
//! tests/console/setup.sh (which `.ci/run` runs first, and which the test
//! runs itself when needed). Under `CI` a failed install fails the test;
//! elsewhere (say, offline) it is skipped with a message.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Command};
use std::time::Duration;

const TOKEN: &str = "console-token-0123456789abcdef";
const XSS: &str = "<img src=x onerror=alert(1)>";
const XSS_ESCAPED: &str = "&lt;img src=x onerror=alert(1)&gt;";

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(db: &str) -> Server {
        let (child, base, lines) = common::spawn_serve(db, &[], TOKEN);
        let addr = base.trim_start_matches("http://").to_string();
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        Server { child, addr }
    }

    /// One request over a fresh connection; never follows redirects.
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut s = std::net::TcpStream::connect(&self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.addr);
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        // The server may answer (413) and close before the whole body is sent.
        let _ = s.write_all(head.as_bytes());
        let _ = s.write_all(body);
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        Reply::parse(&raw)
    }

    fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        match cookie {
            Some(c) => self.request("GET", path, &[("Cookie", c)], b""),
            None => self.request("GET", path, &[], b""),
        }
    }

    fn post_form(&self, path: &str, cookie: Option<&str>, form: &str) -> Reply {
        let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
        if let Some(c) = cookie {
            headers.push(("Cookie", c));
        }
        self.request("POST", path, &headers, form.as_bytes())
    }

    /// Signs in; the cookie to send back (`name=value`).
    fn sign_in(&self) -> String {
        let r = self.post_form("/login", None, &format!("token={TOKEN}"));
        assert_eq!(r.status, 303, "{}", r.body);
        let set = r.header("set-cookie").expect("a session cookie");
        set.split(';').next().expect("name=value").trim().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn parse(raw: &[u8]) -> Reply {
        let text = String::from_utf8_lossy(raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Reply { status, headers, body: body.to_string() }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The value of the hidden CSRF field of the page's forms.
    fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").unwrap_or_else(|| panic!("no CSRF field in\n{}", self.body));
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').expect("closing quote")].to_string()
    }
}

fn flowc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flowc")).args(args).current_dir(common::root()).output().expect("flowc")
}

const SCHEMA: &str = r#"
template hello { channel email message transactional status published }
template welcome_a { channel email message transactional status published }
template welcome_b { channel email message transactional status published }
contact { plan: enum(free, pro) }
"#;

/// A campaign with every kind of box, for the README's screenshot.
const ONBOARDING: &str = r#"campaign onboarding {
  name "Onboarding for new sign-ups"
  trigger api
  hello: send email.transactional hello
  ab_test subject {
    variant a 50% { send email.transactional welcome_a }
    variant b 50% { send email.transactional welcome_b }
  }
  wait 2d
  if plan == pro {
    tag add "pro-onboarded"
  } else {
    send email.transactional hello
  }
}
"#;

/// A database with contacts (one whose id is markup), a balance and three
/// API-triggered campaigns: `by_api`, `onboarding` and `shady`, whose
/// display name and tag are markup.
fn setup(dir: &common::TempDir) -> String {
    let db = dir.path("c.db");
    let mut contacts: Vec<String> = (0..60)
        .map(|i| {
            let plan = if i % 3 == 0 { "pro" } else { "free" };
            format!(r#"{{"id":"c{i}","email":"c{i}@example.com","plan":"{plan}","consent":["email"]}}"#)
        })
        .collect();
    contacts.push(format!(
        r#"{{"id":{},"email":"x@example.com","plan":"pro","consent":["email"]}}"#,
        serde_json::json!(XSS)
    ));
    std::fs::write(dir.path("contacts.jsonl"), contacts.join("\n")).expect("contacts");
    std::fs::write(dir.path("schema.flow"), SCHEMA).expect("schema");
    let o =
        flowc(&["contacts", "import", &dir.path("contacts.jsonl"), "--schema", &dir.path("schema.flow"), "--db", &db]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(flowc(&["balance", "top-up", "100", "--db", &db]).status.success());
    let campaigns = [
        ("by_api", "campaign by_api {\n  trigger api\n  s: send email.transactional hello\n  wait 1d\n}\n".to_string()),
        ("onboarding", ONBOARDING.to_string()),
        (
            "shady",
            format!(
                "campaign shady {{\n  name {}\n  trigger api\n  tag add {}\n  send email.transactional hello\n}}\n",
                serde_json::json!(XSS),
                serde_json::json!(XSS)
            ),
        ),
    ];
    for (name, body) in campaigns {
        let file = dir.path(&format!("{name}.flow"));
        std::fs::write(&file, format!("{SCHEMA}{body}")).expect("flow");
        let o = flowc(&["campaign", "launch", &file, "--db", &db, "--accept-cost"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    db
}

fn wait_for(f: impl FnMut() -> bool) {
    common::wait_for(f)
}

/// The campaign's state through the JSON API (the bearer token).
fn api_state(server: &Server, id: &str) -> String {
    let r =
        server.request("GET", &format!("/v1/campaigns/{id}"), &[("Authorization", &format!("Bearer {TOKEN}"))], b"");
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
    v["state"].as_str().unwrap_or_default().to_string()
}

#[track_caller]
fn assert_console_headers(r: &Reply) {
    let csp = r.header("content-security-policy").unwrap_or_else(|| panic!("no CSP on {r:?}"));
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "CSP lacks {directive}: {csp}");
    }
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
}

#[test]
fn sign_in_sessions_csrf_headers_and_escaping() {
    let dir = common::TempDir::new("console");
    let db = setup(&dir);
    let server = Server::start(&db);

    // Without a session: the sign-in form, with the security headers, and no script inline.
    let r = server.get("/", None);
    assert_eq!(r.status, 200);
    assert!(r.body.contains(r#"action="/login""#) && r.body.contains(r#"name="token""#), "{}", r.body);
    assert_console_headers(&r);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(!r.body.contains("<script>") && !r.body.contains("style="), "nothing inline: {}", r.body);
    // Pages behind the session send the browser to the form; the live numbers answer 401.
    let r = server.get("/campaigns/by_api", None);
    assert_eq!((r.status, r.header("location")), (303, Some("/")));
    assert_console_headers(&r);
    assert_eq!(server.get("/campaigns/by_api/live", None).status, 401);
    assert_eq!(server.get("/live", None).status, 401);

    // A wrong token: 401, the form again with a message, no cookie, the token not echoed.
    let r = server.post_form("/login", None, "token=not-the-token-at-all");
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_none(), "{:?}", r.headers);
    assert!(r.body.contains(r#"name="token""#) && !r.body.contains("not-the-token-at-all"), "{}", r.body);
    assert_console_headers(&r);
    assert_eq!(server.post_form("/login", None, "").status, 401, "no token at all");

    // The good token: a session cookie, HttpOnly and SameSite=Strict, for the whole site.
    let r = server.post_form("/login", None, &format!("token={TOKEN}"));
    assert_eq!((r.status, r.header("location")), (303, Some("/")));
    let set = r.header("set-cookie").expect("cookie").to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.split(';').any(|a| a.trim() == attr), "{attr} missing from {set}");
    }
    assert!(!set.contains(TOKEN), "the cookie is a session id, not the token");
    let cookie = set.split(';').next().expect("name=value").to_string();

    // The campaign list: every campaign with its state as a word, the XSS name escaped.
    let list = server.get("/", Some(&cookie));
    assert_eq!(list.status, 200);
    assert_console_headers(&list);
    // SCHEDULED, or RUNNING once the runner started it.
    assert!(list.body.contains("by_api") && list.body.contains("data-state=\""), "{}", list.body);
    assert!(list.body.contains(XSS_ESCAPED), "the display name shows as text");
    assert!(!list.body.contains(XSS), "never raw");
    let live: serde_json::Value = serde_json::from_str(&server.get("/live", Some(&cookie)).body).expect("live JSON");
    let set = live["set"].as_str().unwrap_or_default().split(',').collect::<Vec<_>>();
    assert!(set.contains(&"by_api") && set.contains(&"shady"), "{live}");
    assert!(live["values"]["c.by_api.exec.total"].is_string(), "{live}");
    assert!(live["states"]["by_api"].is_string(), "{live}");

    // The campaign page: the timeline (inline SVG with a count line per
    // step), the CSRF token in its forms, names escaped in HTML and SVG.
    let page = server.get("/campaigns/shady", Some(&cookie));
    assert_eq!(page.status, 200, "{}", page.body);
    assert_console_headers(&page);
    assert!(page.body.contains("<svg") && page.body.contains("data-count=\"shady/trigger\""), "{}", page.body);
    assert!(page.body.contains(XSS_ESCAPED) && !page.body.contains(XSS), "{}", page.body);
    assert!(page.body.contains("PAUSED_BALANCE") && page.body.contains("PAUSED_ERROR"), "the explicit-resume rule");
    let csrf = page.csrf();
    assert!(csrf.len() >= 32);
    // A contact id is text too, wherever the page shows it.
    let looked_up = server.get("/campaigns/shady?contact=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E", Some(&cookie));
    assert_eq!(looked_up.status, 200);
    assert!(looked_up.body.contains(XSS_ESCAPED) && !looked_up.body.contains(XSS), "{}", looked_up.body);

    // The scheduled API campaign starts running under the runner.
    wait_for(|| api_state(&server, "by_api") == "RUNNING");

    // Pause: without the CSRF token, or with a wrong one, 403 and nothing changes.
    for form in [
        "confirm=yes",
        "confirm=yes&csrf=",
        "confirm=yes&csrf=0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let r = server.post_form("/campaigns/by_api/pause", Some(&cookie), form);
        assert_eq!(r.status, 403, "{form}: {}", r.body);
        assert_console_headers(&r);
    }
    assert_eq!(api_state(&server, "by_api"), "RUNNING");
    // Without the confirmation, a page that asks; nothing changes yet.
    let r = server.post_form("/campaigns/by_api/pause", Some(&cookie), &format!("csrf={csrf}"));
    assert_eq!(r.status, 200);
    assert!(r.body.contains(r#"name="confirm" value="yes""#), "{}", r.body);
    assert_eq!(api_state(&server, "by_api"), "RUNNING");
    // With both: paused, through the same lifecycle as the API.
    let r = server.post_form("/campaigns/by_api/pause", Some(&cookie), &format!("csrf={csrf}&confirm=yes"));
    assert_eq!((r.status, r.header("location")), (303, Some("/campaigns/by_api?done=pause")), "{}", r.body);
    assert_eq!(api_state(&server, "by_api"), "PAUSED");
    // A transition the state does not allow is refused with the reason.
    let r = server.post_form("/campaigns/by_api/pause", Some(&cookie), &format!("csrf={csrf}&confirm=yes"));
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("PAUSED"), "{}", r.body);
    let r = server.post_form("/campaigns/by_api/resume", Some(&cookie), &format!("csrf={csrf}&confirm=yes"));
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(api_state(&server, "by_api"), "RUNNING");
    // The audit log on the page shows both.
    let page = server.get("/campaigns/by_api", Some(&cookie));
    assert!(page.body.contains("paused by an operator") && page.body.contains("resumed"), "{}", page.body);

    // The session is not the API's token: the bearer API ignores the cookie.
    let r = server.request("GET", "/v1/campaigns", &[("Cookie", &cookie)], b"");
    assert_eq!(r.status, 401);

    // Logout needs the CSRF token too; then the cookie is worth nothing.
    assert_eq!(server.post_form("/logout", Some(&cookie), "").status, 403);
    let r = server.post_form("/logout", Some(&cookie), &format!("csrf={csrf}"));
    assert_eq!((r.status, r.header("location")), (303, Some("/")));
    assert!(r.header("set-cookie").is_some_and(|c| c.contains("Max-Age=0")), "{:?}", r.headers);
    assert_eq!(server.get("/campaigns/by_api", Some(&cookie)).status, 303);
    assert!(server.get("/", Some(&cookie)).body.contains(r#"name="token""#));
    let r = server.post_form("/campaigns/by_api/pause", Some(&cookie), &format!("csrf={csrf}&confirm=yes"));
    assert_eq!(r.status, 403, "an ended session's CSRF token is worth nothing");
    assert_eq!(api_state(&server, "by_api"), "RUNNING");
}

#[test]
fn assets_are_embedded_and_nothing_loads_from_elsewhere() {
    let dir = common::TempDir::new("console-assets");
    let db = setup(&dir);
    let server = Server::start(&db);
    let js = server.get("/assets/console.js", None);
    assert_eq!(js.status, 200);
    assert!(js.header("content-type").is_some_and(|t| t.starts_with("text/javascript")));
    assert!(!js.body.contains("innerHTML"), "console.js writes text, never markup");
    let css = server.get("/assets/console.css", None);
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").is_some_and(|t| t.starts_with("text/css")));
    assert!(css.body.contains("prefers-color-scheme: dark"));
    assert_console_headers(&css);
    let cookie = server.sign_in();
    for path in ["/", "/campaigns/by_api"] {
        let page = server.get(path, Some(&cookie));
        for attr in ["src=\"", "href=\"", "action=\"", "url("] {
            for scheme in ["http:", "https:", "//"] {
                let far = format!("{attr}{scheme}");
                assert!(!page.body.contains(&far), "{path} loads nothing from elsewhere: {far}");
            }
        }
        assert!(page.body.contains(r#"src="/assets/console.js""#), "{path}");
    }
}

#[test]
fn hostile_requests_get_a_clear_status() {
    let dir = common::TempDir::new("console-hostile");
    let db = setup(&dir);
    let server = Server::start(&db);
    let cookie = server.sign_in();
    // Bodies past the limit: 413 before any handler, signed in or not.
    let huge = format!("token={}", "a".repeat(400 * 1024));
    assert_eq!(server.post_form("/login", None, &huge).status, 413);
    assert_eq!(server.post_form("/campaigns/by_api/pause", Some(&cookie), &huge).status, 413);
    // Malformed forms and bodies that are not forms.
    assert_eq!(server.post_form("/login", None, "token=%ZZ%").status, 401);
    let r = server.request("POST", "/login", &[("Content-Type", "application/json")], br#"{"token": "x"}"#);
    assert_eq!(r.status, 401);
    // Cookies that are not ours, or mangled: no session, no panic.
    for bad in [
        "flowc_session=",
        "flowc_session=zzzz",
        "flowc_session=%00%ff",
        "a=b; flowc_session",
        ";;;==;",
        &format!("flowc_session={}", "f".repeat(4000)),
    ] {
        let r = server.get("/campaigns/by_api", Some(bad));
        assert_eq!(r.status, 303, "{bad}");
        assert!(server.get("/", Some(bad)).body.contains(r#"name="token""#), "{bad}");
    }
    // The good cookie among others still works.
    assert_eq!(server.get("/campaigns/by_api", Some(&format!("x=1; {cookie}; y=2"))).status, 200);
    // Unknown campaigns, ids that are not identifiers, unknown pages.
    let r = server.get("/campaigns/nope", Some(&cookie));
    assert_eq!(r.status, 404);
    assert!(r.body.contains("nope"), "{}", r.body);
    assert_console_headers(&r);
    assert_eq!(server.get("/campaigns/%ZZ", Some(&cookie)).status, 404);
    assert_eq!(server.get("/campaigns/Not%20An%20Id", Some(&cookie)).status, 404);
    assert_eq!(server.get("/campaigns/nope/live", Some(&cookie)).status, 404);
    let page = server.get("/campaigns/by_api", Some(&cookie));
    let csrf = page.csrf();
    let r = server.post_form("/campaigns/nope/pause", Some(&cookie), &format!("csrf={csrf}&confirm=yes"));
    assert_eq!(r.status, 404);
    // A contact lookup of an unknown or absurd id answers, never fails.
    assert_eq!(server.get("/campaigns/by_api?contact=nobody", Some(&cookie)).status, 200);
    assert_eq!(server.get(&format!("/campaigns/by_api?contact={}", "x".repeat(5000)), Some(&cookie)).status, 200);
    // Methods the console does not take.
    assert_eq!(server.request("DELETE", "/", &[], b"").status, 405);
    // The server is still there.
    assert_eq!(server.get("/", Some(&cookie)).status, 200);
}

/// Whether Chromium and the pinned Python packages are there; installs them
/// once per test binary (tests/console/setup.sh).
fn browser_tools() -> bool {
    let out = Command::new("bash").arg(common::root().join("tests/console/setup.sh")).output();
    let ready = match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "tests/console/setup.sh failed:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) => Err(format!("cannot run tests/console/setup.sh: {e}")),
    };
    match ready {
        Ok(()) => true,
        Err(e) if std::env::var_os("CI").is_some() => panic!("{e}"),
        Err(e) => {
            eprintln!(
                "SKIPPED: the browser test's tools are unavailable ({e}); `bash tests/console/setup.sh` installs them"
            );
            false
        }
    }
}

/// The console in headless Chromium: sign in, see the campaigns, open one,
/// watch a count rise while contacts are triggered, pause and resume with
/// confirmation, a bad token refused, the XSS campaign and contact as text,
/// a phone's width in dark mode. Screenshots go to target/console-shots;
/// `UPDATE_EXPECT=1` (or a missing file) writes the README's docs/console.png.
#[test]
fn the_console_in_a_real_browser() {
    if !browser_tools() {
        return;
    }
    let dir = common::TempDir::new("console-browser");
    let db = setup(&dir);
    let server = Server::start(&db);
    // The scheduled API campaigns start under the runner before the test looks.
    for id in ["by_api", "onboarding", "shady"] {
        wait_for(|| api_state(&server, id) == "RUNNING");
    }
    let shots = common::root().join("target/console-shots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).expect("screenshot folder");
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("chromium");
    let python = common::root().join("target/console-tools/venv/bin/python");
    let out = Command::new(python)
        .args(["-m", "pytest", "-q", "-s", "tests/console"])
        .current_dir(common::root())
        .env("CONSOLE_URL", format!("http://{}", server.addr))
        .env("CONSOLE_TOKEN", TOKEN)
        .env("CHROMIUM", chromium)
        .env("CONSOLE_SHOTS", &shots)
        .output()
        .expect("run pytest");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser test failed:\n{text}");
    // Every test ran: a collection mistake must not pass as green.
    assert!(text.contains("5 passed"), "{text}");
    eprintln!("console screenshots: {}", shots.display());
    let taken = std::fs::read(shots.join("console.png")).expect("the console screenshot");
    assert!(taken.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let readme_shot = common::root().join("docs/console.png");
    if std::env::var_os("UPDATE_EXPECT").is_some() || !readme_shot.exists() {
        std::fs::write(&readme_shot, &taken).expect("write docs/console.png");
    }
}
