//! Load benchmark of `flowc serve` (bounded, loopback only), as an operator
//! runs it: the contacts imported by `flowc contacts import`, the campaign
//! launched by `flowc campaign launch`, then the `flowc serve` process
//! driven with trigger requests over 50 concurrent keep-alive connections,
//! each naming a contact no request named before, while its runner steps
//! the enrollments. Reports requests/s and p50/p99 latency, and checks with
//! `flowc campaign report` that every contact was enrolled exactly once.
//!
//! The client is a plain keep-alive HTTP/1.1 writer and reader, all its
//! connections on one thread and one `epoll` (as `wrk` does), so its own
//! cost on the shared cores is small.
//!
//! The ceiling, measured in the same run against the same server: as many
//! requests refused at the token check (401), HTTP, routing and the
//! access log with no store work.
//!
//! The trigger phase runs `FLOWC_BENCH_ROUNDS` times (default 3) against
//! the same server, each round naming contacts no round named before, and
//! the bench reports each round and their median: on a shared 2-core
//! machine one round's figure moved by up to a quarter within one sitting.
//!
//! `cargo bench --bench serve` (FLOWC_BENCH_REQUESTS to change the number
//! of requests per round, default 100,000; FLOWC_BENCH_SERVE_ARGS to pass
//! options to `flowc serve`, such as `--batch 2000`).

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FLOW: &str = "template hello { channel email message transactional status published }\ncontact { plan: enum(free, pro) }\ncampaign by_api {\n  trigger api\n  send email.transactional hello\n}\n";
const TOKEN: &str = "bench-token-0123456789";
const CONNECTIONS: usize = 50;

fn flowc(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_flowc")).args(args).output().expect("flowc");
    assert!(o.status.success(), "flowc {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let requests: usize = std::env::var("FLOWC_BENCH_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
        / CONNECTIONS
        * CONNECTIONS;
    let rounds: usize = std::env::var("FLOWC_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    let dir = std::env::temp_dir().join(format!("flowc-serve-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    std::fs::write(path("api.flow"), FLOW).expect("flow");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path("c.jsonl")).expect("contacts"));
        for i in 0..requests * rounds {
            // An address and consent, so the campaign's sends are made, not skipped.
            writeln!(
                f,
                "{{\"id\":\"c{i}\",\"email\":\"c{i}@example.com\",\"consent\":[\"email\"],\"plan\":\"free\",\"created_at\":\"2026-11-20T10:00:00Z\"}}"
            )
            .expect("write");
        }
    }
    let db = path("s.db");
    flowc(&["contacts", "import", &path("c.jsonl"), "--db", &db, "--schema", &path("api.flow")]);
    flowc(&["balance", "top-up", "1000000", "--db", &db]);
    flowc(&["campaign", "launch", &path("api.flow"), "--db", &db, "--accept-cost"]);
    let mut server = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["serve", "--db", &db, "--listen", "127.0.0.1:0"])
        .args(std::env::var("FLOWC_BENCH_SERVE_ARGS").unwrap_or_default().split_whitespace())
        .env("FLOWC_API_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flowc serve");
    let mut lines = std::io::BufReader::new(server.stderr.take().expect("stderr")).lines();
    let base = loop {
        let line = lines.next().expect("flowc serve said where it listens").expect("line");
        if let Some(addr) = line.strip_prefix("flowc serve: listening on ") {
            break addr.trim_start_matches("http://").to_string();
        }
    };
    // The server logs each request to stderr: keep draining it.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).count());
    let addr: std::net::SocketAddr = base.parse().expect("address");

    let mut rates = Vec::new();
    for round in 0..rounds {
        let before = thread_cpu(server.id());
        let (secs, all) = drive(addr, round * requests, requests, TOKEN, 202);
        rates.push(report(
            &format!("flowc serve, round {}: {} trigger requests over {CONNECTIONS} connections", round + 1, all.len()),
            secs,
            &all,
        ));
        cpu_per_request(&before, &thread_cpu(server.id()), all.len());
    }
    rates.sort_by(|a, b| a.0.total_cmp(&b.0));
    let p99s: Vec<String> = rates.iter().map(|r| format!("{:.2?}", r.1)).collect();
    eprintln!(
        "flowc serve over {rounds} round(s): median {:.0} requests/s (min {:.0}, max {:.0}); p99 by round, slowest round first: {}",
        rates[rates.len() / 2].0,
        rates[0].0,
        rates[rates.len() - 1].0,
        p99s.join(", ")
    );
    // The ceiling, same server, same run: requests refused at the token
    // check, so HTTP, routing and the log line with no store work.
    let (secs, all) = drive(addr, 0, requests, "not-the-bench-token-0123", 401);
    report(&format!("ceiling (refused at the token check): {} requests", all.len()), secs, &all);
    // SIGTERM: the server finishes what it holds and exits.
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    let _ = server.wait();
    let _ = drain.join();
    let report: serde_json::Value =
        serde_json::from_str(&flowc(&["campaign", "report", "by_api", "--db", &db, "--format", "json"]))
            .expect("report");
    let total: u64 = report["executions"].as_object().expect("executions").values().filter_map(|v| v.as_u64()).sum();
    eprintln!("enrolled exactly once: {total} executions for {} contacts", requests * rounds);
    assert_eq!(total, (requests * rounds) as u64);
    let _ = std::fs::remove_dir_all(&dir);
}

/// CPU time (user + system, in clock ticks) of each of the server's
/// threads, summed by thread name; empty where `/proc` cannot say.
fn thread_cpu(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return by_name };
    for t in tasks.flatten() {
        let (Ok(name), Ok(stat)) =
            (std::fs::read_to_string(t.path().join("comm")), std::fs::read_to_string(t.path().join("stat")))
        else {
            continue;
        };
        // Fields after the command (which may hold spaces), from the state on.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are the 14th and 15th fields of the line: the
        // 12th and 13th counted from the state (the 3rd).
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        if let (Some(u), Some(s)) = (ticks(11), ticks(12)) {
            *by_name.entry(name.trim().to_string()).or_insert(0) += u + s;
        }
    }
    by_name
}

/// Where the server's CPU went, per request, by thread (a clock tick is
/// 10 ms on Linux).
fn cpu_per_request(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
    requests: usize,
) {
    let parts: Vec<String> = after
        .iter()
        .map(|(name, t)| (name, t.saturating_sub(before.get(name).copied().unwrap_or(0))))
        .filter(|(_, d)| *d > 0)
        .map(|(name, d)| format!("{name} {:.1} µs", d as f64 * 10_000.0 / requests as f64))
        .collect();
    if !parts.is_empty() {
        eprintln!("server CPU per request, by thread: {}", parts.join(", "));
    }
}

/// One line: what ran, its rate, and the median and 99th percentile of
/// its latencies (sorted). Returns the rate and the 99th percentile.
fn report(what: &str, secs: f64, sorted: &[Duration]) -> (f64, Duration) {
    let p = |q: f64| sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)];
    let rate = sorted.len() as f64 / secs;
    eprintln!("{what} in {secs:.2} s = {rate:.0} requests/s; p50 {:.2?}, p99 {:.2?}", p(0.50), p(0.99));
    (rate, p(0.99))
}

/// Sends `requests` triggers over `CONNECTIONS` keep-alive connections,
/// each naming a contact no request named before (from `c{first}` on), and
/// checks each answer's status: the wall time and every latency, sorted.
///
/// The connections are driven by one thread (tokio's current-thread
/// runtime, one `epoll` for all of them), as `wrk` drives its own: with a
/// blocking thread per connection, the client's wake-ups took about a third
/// of the two cores it shares with the server.
fn drive(
    addr: std::net::SocketAddr,
    first: usize,
    requests: usize,
    token: &'static str,
    expect: u16,
) -> (f64, Vec<Duration>) {
    let per = requests / CONNECTIONS;
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("runtime");
    rt.block_on(async move {
        let started = Instant::now();
        let mut connections = tokio::task::JoinSet::new();
        for w in 0..CONNECTIONS {
            connections.spawn(async move {
                let conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
                conn.set_nodelay(true).expect("nodelay");
                let mut lat = Vec::with_capacity(per);
                let mut buf = Vec::with_capacity(4096);
                for k in 0..per {
                    let body = format!("{{\"contacts\": [\"c{}\"]}}", first + w * per + k);
                    let request = format!(
                        "POST /v1/campaigns/by_api/trigger HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let t = Instant::now();
                    send(&conn, request.as_bytes()).await;
                    let status = read_response(&conn, &mut buf).await;
                    assert_eq!(status, expect, "{}", String::from_utf8_lossy(&buf));
                    lat.push(t.elapsed());
                }
                lat
            });
        }
        let mut all = Vec::with_capacity(requests);
        while let Some(lat) = connections.join_next().await {
            all.extend(lat.expect("connection"));
        }
        let secs = started.elapsed().as_secs_f64();
        all.sort();
        (secs, all)
    })
}

/// Writes all of `bytes`.
async fn send(conn: &tokio::net::TcpStream, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        conn.writable().await.expect("writable");
        match conn.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("send: {e}"),
        }
    }
}

/// Reads one response (headers, then `Content-Length` bytes of body) into
/// `buf`; returns its status.
async fn read_response(conn: &tokio::net::TcpStream, buf: &mut Vec<u8>) -> u16 {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            }
        }
        conn.readable().await.expect("readable");
        match conn.try_read(&mut chunk) {
            Ok(0) => panic!("the server closed the connection"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}
