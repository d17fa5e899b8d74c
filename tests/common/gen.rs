//! Generated well-formed campaigns for property tests.

use proptest::prelude::*;

/// The declarations every generated campaign can use.
pub const PRELUDE: &str = r#"template e1 { channel email message marketing status published }
template e2 { channel email message marketing status published }
template s1 { channel sms message promotional status published }
template r1 { channel rcs message promotional status published }
contact {
  plan: enum(free, pro, enterprise)
  score: number
  fan: bool?
  seen_at: datetime?
}
event order.completed { amount: number }
segment vip = score >= 100 and plan in [pro, enterprise]
policy {
  frequency cap 3 per 7d
  frequency cap sms 1 per 1d
}
"#;

#[derive(Debug, Clone)]
pub enum GStep {
    Send(u8),
    Wait(u16),
    Tag(bool, u8),
    End,
    If(Vec<(u8, Vec<GStep>)>, Option<Vec<GStep>>),
    Ab(Vec<(u32, Vec<GStep>)>),
    /// `wait until { when … { } … timeout D { } }`: arm conditions, timeout minutes, timeout block.
    WaitUntil(Vec<(u8, Vec<GStep>)>, u16, Vec<GStep>),
    /// `wait until event … timeout D`.
    WaitShort(bool, u16),
    /// `set FIELD = EXPR`: which field and value, and whether labelled.
    Set(u8, bool),
}

pub fn step() -> impl Strategy<Value = GStep> {
    let leaf = prop_oneof![
        4 => (0u8..5).prop_map(GStep::Send),
        2 => (1u16..2000).prop_map(GStep::Wait),
        1 => (any::<bool>(), 0u8..3).prop_map(|(a, t)| GStep::Tag(a, t)),
        1 => Just(GStep::End),
        1 => (any::<bool>(), 1u16..2000).prop_map(|(w, m)| GStep::WaitShort(w, m)),
        1 => (0u8..6, any::<bool>()).prop_map(|(k, l)| GStep::Set(k, l)),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        let block = proptest::collection::vec(inner, 0..4);
        prop_oneof![
            (proptest::collection::vec((0u8..6, block.clone()), 1..3), proptest::option::of(block.clone()))
                .prop_map(|(a, e)| GStep::If(a, e)),
            (2usize..5, proptest::collection::vec(block.clone(), 4)).prop_map(|(n, blocks)| {
                // Weights that sum to exactly 100%.
                let mut out = Vec::new();
                let mut left = 100u32;
                for (i, b) in blocks.into_iter().take(n).enumerate() {
                    let w = if i + 1 == n { left } else { (left / (n - i) as u32).max(1) };
                    left -= w;
                    out.push((w, b));
                }
                GStep::Ab(out)
            }),
            (proptest::collection::vec((0u8..5, block.clone()), 1..4), 1u16..2000, block)
                .prop_map(|(arms, m, t)| GStep::WaitUntil(arms, m, t)),
        ]
    })
}

/// The `u8` picks the trigger (`% 4`), the goal, exit and `on
/// ineligible` settings (`/ 4 % 4`) and the delivery settings (`/ 16`).
pub fn campaign() -> impl Strategy<Value = (u8, Vec<GStep>)> {
    (0u8..64, proptest::collection::vec(step(), 1..8))
}

struct Writer {
    out: String,
    labels: usize,
    ab: usize,
    /// Labelled sends on every path so far (engagement predicates may use them).
    sent: Vec<String>,
}

/// Renders a generated campaign as `.flow` source that checks clean.
pub fn render(trigger: u8, steps: &[GStep]) -> String {
    format!("{PRELUDE}{}", render_campaign(trigger, steps))
}

/// The campaign alone, as a file that imports the prelude would hold it.
pub fn render_campaign(trigger: u8, steps: &[GStep]) -> String {
    let mut w = Writer { out: String::new(), labels: 0, ab: 0, sent: Vec::new() };
    w.out.push_str("campaign gen {\n");
    w.out.push_str(match trigger % 4 {
        0 => "  trigger manual\n",
        1 => "  trigger api\n",
        2 => "  trigger event order.completed where amount > 10\n",
        _ => "  trigger scheduled at 2026-12-01 09:00 \"Europe/Paris\"\n  audience vip\n",
    });
    w.out.push_str(match trigger / 4 % 4 {
        0 => "",
        1 => "  goal event order.completed within 7d\n",
        2 => "  goal event order.completed where amount > 5 within 1d\n  exit when event order.completed\n",
        _ => {
            "  exit when plan == free\n  exit when event order.completed where amount > 100\n  on ineligible continue\n"
        }
    });
    // The builder's order: goal, exits, on ineligible, then the delivery rules.
    w.out.push_str(match trigger / 16 {
        0 => "",
        1 => "  quiet hours 21:00 to 08:00\n  reentry always\n",
        2 => "  quiet hours 22:30 to 06:15 then skip\n  reentry after 30d\n  rate limit 600 per minute\n",
        _ => "  reentry once\n  rate limit 5 per second\n",
    });
    w.out.push_str("  first: send email.marketing e1\n");
    w.sent.push("first".into());
    w.block(steps, 1);
    w.out.push_str("}\n");
    w.out
}

impl Writer {
    fn block(&mut self, steps: &[GStep], depth: usize) -> bool {
        let pad = "  ".repeat(depth);
        for s in steps {
            match s {
                GStep::Send(k) => {
                    self.labels += 1;
                    let label = format!("s{}", self.labels);
                    let text = match k {
                        0 => "send email.marketing e1".to_string(),
                        1 => "send e2".to_string(),
                        2 => "send sms.promotional s1".to_string(),
                        3 => "send rcs.promotional r1 fallback sms.promotional s1".to_string(),
                        _ => "send rcs.promotional r1 fallback none".to_string(),
                    };
                    self.out.push_str(&format!("{pad}{label}: {text}\n"));
                    self.sent.push(label);
                }
                GStep::Wait(m) => self.out.push_str(&format!("{pad}wait {m}m\n")),
                GStep::Set(k, labelled) => {
                    let label = if *labelled {
                        self.labels += 1;
                        format!("s{}: ", self.labels)
                    } else {
                        String::new()
                    };
                    let text = match k {
                        0 => "set score = score + 1",
                        1 => "set plan = pro",
                        2 => "set fan = score > 10 and not (plan == free)",
                        3 => "set seen_at = now + 1d",
                        4 => "set seen_at = none",
                        _ => "set fan = none",
                    };
                    self.out.push_str(&format!("{pad}{label}{text}\n"));
                }
                GStep::Tag(add, t) => {
                    self.out.push_str(&format!("{pad}tag {} \"t{t}\"\n", if *add { "add" } else { "remove" }))
                }
                GStep::End => {
                    self.out.push_str(&format!("{pad}end\n"));
                    return true;
                }
                GStep::If(arms, otherwise) => {
                    let saved = self.sent.clone();
                    for (i, (c, body)) in arms.iter().enumerate() {
                        // An `else if` is reached without the sends of the arms before it.
                        self.sent = saved.clone();
                        let cond = match c {
                            0 => "plan == pro".to_string(),
                            1 => format!("opened({})", self.sent.last().cloned().unwrap_or_default()),
                            2 => "score > 50 and not (plan in [free])".to_string(),
                            3 => "happened order.completed within 7d where amount > 20".to_string(),
                            4 => "consent(sms) or capable(rcs)".to_string(),
                            _ => "vip".to_string(),
                        };
                        let kw = if i == 0 { format!("{pad}if") } else { " else if".to_string() };
                        self.out.push_str(&format!("{kw} {cond} {{\n"));
                        self.sent = saved.clone();
                        self.block(body, depth + 1);
                        self.out.push_str(&format!("{pad}}}"));
                    }
                    if let Some(body) = otherwise {
                        self.out.push_str(" else {\n");
                        self.sent = saved.clone();
                        self.block(body, depth + 1);
                        self.out.push_str(&format!("{pad}}}"));
                    }
                    self.out.push('\n');
                    self.sent = saved;
                }
                GStep::WaitShort(filtered, m) => {
                    let filter = if *filtered { " where amount > 20" } else { "" };
                    self.out.push_str(&format!("{pad}wait until event order.completed{filter} timeout {m}m\n"));
                }
                GStep::WaitUntil(arms, m, timeout) => {
                    self.out.push_str(&format!("{pad}wait until {{\n"));
                    let saved = self.sent.clone();
                    for (c, body) in arms {
                        let cond = match c {
                            0 => "event order.completed".to_string(),
                            1 => "event order.completed where amount > 20".to_string(),
                            2 => "plan == pro".to_string(),
                            3 => format!("opened({})", saved.last().cloned().unwrap_or_default()),
                            _ => "tags has \"t1\"".to_string(),
                        };
                        self.out.push_str(&format!("{pad}  when {cond} {{\n"));
                        self.sent = saved.clone();
                        self.block(body, depth + 2);
                        self.out.push_str(&format!("{pad}  }}\n"));
                    }
                    self.out.push_str(&format!("{pad}  timeout {m}m {{\n"));
                    self.sent = saved.clone();
                    self.block(timeout, depth + 2);
                    self.out.push_str(&format!("{pad}  }}\n"));
                    self.sent = saved;
                    self.out.push_str(&format!("{pad}}}\n"));
                }
                GStep::Ab(variants) => {
                    self.ab += 1;
                    self.out.push_str(&format!("{pad}ab_test t{} {{\n", self.ab));
                    let saved = self.sent.clone();
                    for (i, (w, body)) in variants.iter().enumerate() {
                        self.out.push_str(&format!("{pad}  variant v{i} {w}% {{\n"));
                        self.sent = saved.clone();
                        self.block(body, depth + 2);
                        self.out.push_str(&format!("{pad}  }}\n"));
                    }
                    self.sent = saved;
                    self.out.push_str(&format!("{pad}}}\n"));
                }
            }
        }
        false
    }
}

/// Expression trees made directly, not parsed from text: they include the
/// shapes text never produces (an `or` straight under a `not`, a chain inside
/// a chain of the same operator, a comparison inside a comparison), which is
/// where a printer without parentheses goes wrong.
pub mod expr {
    use flowc::source::Span;
    use flowc::syntax::ast::*;
    use proptest::prelude::*;
    use proptest::sample::select;

    fn name(s: &str) -> Name {
        Name { text: s.to_string(), span: Span::default() }
    }

    fn e(kind: ExprKind) -> Expr {
        Expr { kind, span: Span::default() }
    }

    fn duration() -> impl Strategy<Value = DurationLit> {
        let unit = select(vec![DurationUnit::Minute, DurationUnit::Hour, DurationUnit::Day, DurationUnit::Week]);
        proptest::collection::vec((1u64..500, unit), 1..3)
            .prop_map(|parts| DurationLit { parts, span: Span::default() })
    }

    fn date() -> impl Strategy<Value = DateLit> {
        (1970i32..2100, 1u32..13, 1u32..29, proptest::option::of((0u32..24, 0u32..60))).prop_map(|(y, m, d, t)| {
            DateLit {
                date: chrono::NaiveDate::from_ymd_opt(y, m, d).expect("a valid day"),
                time: t.map(|(h, mi)| chrono::NaiveTime::from_hms_opt(h, mi, 0).expect("a valid time")),
                span: Span::default(),
            }
        })
    }

    fn number() -> impl Strategy<Value = f64> {
        prop_oneof![(-1000i64..1000).prop_map(|n| n as f64), -1e6f64..1e6, Just(1e20), Just(-0.5)]
    }

    fn event() -> impl Strategy<Value = Name> {
        select(vec!["order.completed", "signup", "a.b.c"]).prop_map(name)
    }

    pub fn leaf() -> impl Strategy<Value = Expr> {
        prop_oneof![
            3 => select(vec!["plan", "score", "tags", "amount", "pro", "x_1", "happened"]).prop_map(|n| e(ExprKind::Name(name(n)))),
            1 => (select(vec!["opened", "consent", "in_segment"]), select(vec!["hello", "email", "vip"])).prop_map(|(f, a)| e(ExprKind::Call { func: name(f), arg: name(a) })),
            1 => any::<bool>().prop_map(|b| e(ExprKind::Bool(b))),
            2 => number().prop_map(|v| e(ExprKind::Number { value: v, text: v.to_string() })),
            // Any characters: quotes, backslashes, control characters, emoji.
            1 => proptest::collection::vec(any::<char>(), 0..6).prop_map(|c| e(ExprKind::Str(c.into_iter().collect()))),
            1 => duration().prop_map(|d| e(ExprKind::Duration(d))),
            1 => date().prop_map(|d| e(ExprKind::Date(d))),
            1 => Just(e(ExprKind::Now)),
            1 => Just(e(ExprKind::None)),
            1 => (event(), proptest::option::of(duration())).prop_map(|(event, within)| e(ExprKind::Happened { event, within, filter: Vec::new() })),
        ]
    }

    /// Any expression tree of a few levels (every kind, in every position).
    pub fn tree() -> impl Strategy<Value = Expr> {
        leaf().prop_recursive(4, 40, 3, |inner| {
            let cmp = select(vec![CmpOp::Eq, CmpOp::Ne, CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge]);
            let arith = select(vec![ArithOp::Add, ArithOp::Sub]);
            prop_oneof![
                proptest::collection::vec(inner.clone(), 2..4).prop_map(|v| e(ExprKind::Or(v))),
                proptest::collection::vec(inner.clone(), 2..4).prop_map(|v| e(ExprKind::And(v))),
                inner.clone().prop_map(|x| e(ExprKind::Not(Box::new(x)))),
                (cmp, inner.clone(), inner.clone()).prop_map(|(op, l, r)| e(ExprKind::Compare {
                    op,
                    lhs: Box::new(l),
                    rhs: Box::new(r)
                })),
                (inner.clone(), proptest::collection::vec(inner.clone(), 0..3))
                    .prop_map(|(l, list)| e(ExprKind::In { lhs: Box::new(l), list })),
                (inner.clone(), inner.clone())
                    .prop_map(|(l, r)| e(ExprKind::Has { lhs: Box::new(l), rhs: Box::new(r) })),
                (inner.clone(), proptest::collection::vec((arith, inner.clone()), 1..3))
                    .prop_map(|(f, rest)| e(ExprKind::Arith { first: Box::new(f), rest })),
                inner.clone().prop_map(|x| e(ExprKind::Paren(Box::new(x)))),
                (event(), proptest::option::of(duration()), proptest::collection::vec(inner, 1..3))
                    .prop_map(|(event, within, filter)| e(ExprKind::Happened { event, within, filter })),
            ]
        })
    }

    /// The tree without what printing may change: spans, the text of
    /// numbers, and parentheses (the printer adds those the grammar needs).
    pub fn normalize(x: &Expr) -> Expr {
        let n = |v: &Name| name(&v.text);
        let d = |v: &DurationLit| DurationLit { parts: v.parts.clone(), span: Span::default() };
        let b = |v: &Expr| Box::new(normalize(v));
        let all = |v: &[Expr]| v.iter().map(normalize).collect::<Vec<_>>();
        e(match &x.kind {
            ExprKind::Paren(inner) => return normalize(inner),
            ExprKind::Or(v) => ExprKind::Or(all(v)),
            ExprKind::And(v) => ExprKind::And(all(v)),
            ExprKind::Not(v) => ExprKind::Not(b(v)),
            ExprKind::Compare { op, lhs, rhs } => ExprKind::Compare { op: *op, lhs: b(lhs), rhs: b(rhs) },
            ExprKind::In { lhs, list } => ExprKind::In { lhs: b(lhs), list: all(list) },
            ExprKind::Has { lhs, rhs } => ExprKind::Has { lhs: b(lhs), rhs: b(rhs) },
            ExprKind::Arith { first, rest } => {
                ExprKind::Arith { first: b(first), rest: rest.iter().map(|(op, v)| (*op, normalize(v))).collect() }
            }
            ExprKind::Name(v) => ExprKind::Name(n(v)),
            ExprKind::Call { func, arg } => ExprKind::Call { func: n(func), arg: n(arg) },
            ExprKind::Happened { event, within, filter } => {
                ExprKind::Happened { event: n(event), within: within.as_ref().map(d), filter: all(filter) }
            }
            ExprKind::Number { value, .. } => ExprKind::Number { value: *value, text: String::new() },
            ExprKind::Duration(v) => ExprKind::Duration(d(v)),
            ExprKind::Date(v) => ExprKind::Date(DateLit { date: v.date, time: v.time, span: Span::default() }),
            other => other.clone(),
        })
    }
}
