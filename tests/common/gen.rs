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
}
event order.completed { amount: number }
segment vip = score >= 100 and plan in [pro, enterprise]
"#;

#[derive(Debug, Clone)]
pub enum GStep {
    Send(u8),
    Wait(u16),
    Tag(bool, u8),
    End,
    If(Vec<(u8, Vec<GStep>)>, Option<Vec<GStep>>),
    Ab(Vec<(u32, Vec<GStep>)>),
}

pub fn step() -> impl Strategy<Value = GStep> {
    let leaf = prop_oneof![
        4 => (0u8..5).prop_map(GStep::Send),
        2 => (1u16..2000).prop_map(GStep::Wait),
        1 => (any::<bool>(), 0u8..3).prop_map(|(a, t)| GStep::Tag(a, t)),
        1 => Just(GStep::End),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        let block = proptest::collection::vec(inner, 0..4);
        prop_oneof![
            (proptest::collection::vec((0u8..6, block.clone()), 1..3), proptest::option::of(block.clone())).prop_map(|(a, e)| GStep::If(a, e)),
            (2usize..5, proptest::collection::vec(block, 4)).prop_map(|(n, blocks)| {
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
        ]
    })
}

pub fn campaign() -> impl Strategy<Value = (u8, Vec<GStep>)> {
    (0u8..4, proptest::collection::vec(step(), 1..8))
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
    w.out.push_str(match trigger {
        0 => "  trigger manual\n",
        1 => "  trigger api\n",
        2 => "  trigger event order.completed where amount > 10\n",
        _ => "  trigger scheduled at 2026-12-01 09:00 \"Europe/Paris\"\n  audience vip\n",
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
                GStep::Tag(add, t) => self.out.push_str(&format!("{pad}tag {} \"t{t}\"\n", if *add { "add" } else { "remove" })),
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
