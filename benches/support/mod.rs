//! Generated workloads shared by the benchmarks.
#![allow(dead_code)]

use std::fmt::Write;

/// A shared declarations file: templates, contact fields, events, segments.
pub fn shared(templates: usize) -> String {
    let mut s = String::from("contact {\n  plan: enum(free, pro, enterprise)\n  lifetime_value: number\n  country: string\n  birthday: date?\n}\n");
    s.push_str("event order.completed {\n  amount: number\n  currency: string\n}\n");
    for i in 0..templates {
        let (ch, msg) =
            [("email", "marketing"), ("sms", "promotional"), ("rcs", "promotional"), ("email", "transactional")][i % 4];
        let _ = writeln!(
            s,
            "template t{i} {{\n  channel {ch}\n  message {msg}\n  status published\n  version {}\n}}",
            i % 7 + 1
        );
    }
    for i in 0..20 {
        let _ = writeln!(
            s,
            "segment seg{i} = lifetime_value >= {} and plan in [pro, enterprise] or tags has \"s{i}\"",
            i * 50
        );
    }
    s
}

/// One campaign of about 60 lines touching every step kind.
pub fn campaign(i: usize, templates: usize) -> String {
    let t = |k: usize| (i * 7 + k * 4) % templates / 4 * 4; // an email.marketing template
    let sms = |k: usize| ((i + k) * 4 + 1) % templates / 4 * 4 + 1;
    let mut s = String::new();
    let _ = writeln!(s, "campaign c{i} {{");
    let _ = writeln!(s, "  name \"Campaign {i}\"");
    let _ = writeln!(s, "  trigger event order.completed where amount > {} and currency == \"EUR\"", i % 100);
    let _ = writeln!(s, "  audience seg{} or (country == \"FR\" and created_at > now - 30d)", i % 20);
    let _ = writeln!(s, "  hello: send email.marketing t{}", t(0));
    let _ = writeln!(s, "  wait 1d 12h");
    for k in 0..4 {
        let _ = writeln!(s, "  // follow-up {k}");
        let _ = writeln!(s, "  if opened(hello) and plan == pro {{");
        let _ = writeln!(s, "    tag add \"engaged-{k}\"");
        let _ = writeln!(s, "    f{k}: send email.marketing t{}", t(k + 1));
        let _ = writeln!(s, "  }} else if happened order.completed within {}d where amount > 50 {{", k + 1);
        let _ = writeln!(s, "    send sms.promotional t{} fallback none", sms(k));
        let _ = writeln!(s, "  }} else {{");
        let _ = writeln!(s, "    wait {}h", k + 1);
        let _ = writeln!(s, "  }}");
    }
    let _ = writeln!(s, "  ab_test split{i} {{");
    let _ = writeln!(s, "    variant a 45% {{");
    let _ = writeln!(s, "      send email.marketing t{}", t(9));
    let _ = writeln!(s, "      wait 2d");
    let _ = writeln!(s, "    }}");
    let _ = writeln!(s, "    variant b 45% {{");
    let _ = writeln!(s, "      send sms.promotional t{} fallback none", sms(5));
    let _ = writeln!(s, "    }}");
    let _ = writeln!(s, "    variant holdout 10% {{ }}");
    let _ = writeln!(s, "  }}");
    let _ = writeln!(s, "  tag remove \"cold\"");
    let _ = writeln!(s, "  end");
    let _ = writeln!(s, "}}");
    s
}

/// A workspace of `n` campaign files, each importing `shared.flow`.
pub fn workspace(n: usize) -> Vec<(String, String)> {
    let templates = 200;
    let mut files = vec![("ws/shared.flow".to_string(), shared(templates))];
    for i in 0..n {
        files.push((format!("ws/c{i}.flow"), format!("import \"shared.flow\"\n{}", campaign(i, templates))));
    }
    files
}

/// One file of about `bytes` bytes: the shared declarations then campaigns.
pub fn big_file(bytes: usize) -> String {
    let mut s = shared(200);
    let mut i = 0;
    while s.len() < bytes {
        s.push_str(&campaign(i, 200));
        i += 1;
    }
    s
}
