//! The builder-style picture drawn from a compiled program rather than the
//! checked model: what a server that keeps only programs (the console of
//! `flowc serve`) can draw. The boxes, wrapping and placement are
//! [`layout`]'s; this module only recovers the nesting of the blocks from
//! the flat instruction array.
//!
//! Lowering emits blocks in source order with forward edges, so each fork
//! (an `if` chain, an A/B test, a `wait until`) covers the instructions
//! emitted after it within its source text, and its arms are the
//! instructions from each arm's entry up to where they rejoin (`joins`). Conditions are printed by `dis` (the program keeps no source
//! text), and each box can carry one line of counts the caller supplies.

use super::layout::{self, Card, Item, Kind, Layout, Style, NODE_W};
use crate::compile::dis;
use crate::compile::program::{NodeIdx, Op, Program, Trigger, WaitOn};

/// The text of a step's count line, by step id (`None`: no line). The start
/// box's id is `<campaign>/trigger`.
pub type Counts<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Deepest nesting drawn; the compiler stays far below it (the parser's
/// limit is 32), so only a crafted program is cut short here.
const MAX_DEPTH: usize = 64;

/// The picture of `p`, each box with the count line `counts` gives.
pub fn layout(p: &Program, counts: Counts) -> Layout {
    let mut start_texts = Vec::new();
    match &p.display_name {
        Some(display) => {
            start_texts.push((Style::Label, format!("campaign {}", p.campaign)));
            start_texts.push((Style::Title, display.clone()));
        }
        None => start_texts.push((Style::Title, p.campaign.clone())),
    }
    start_texts.push((Style::Condition, trigger_text(p)));
    if let Some(a) = &p.audience {
        start_texts.push((Style::Condition, format!("audience {}", dis::cond(p, a, &[]))));
    }
    let start_id = format!("{}/trigger", p.campaign);
    if let Some(c) = counts(&start_id) {
        start_texts.push((Style::Count, c));
    }
    let start = Card::new(Kind::Start, start_id, start_texts, NODE_W);
    let walk = Walk { p, joins: joins(p), counts };
    let steps = if p.nodes.is_empty() { Vec::new() } else { walk.seq(0, Stop::Exit, 0) };
    layout::finish(&p.campaign, start, steps)
}

fn trigger_text(p: &Program) -> String {
    match &p.trigger {
        // The layout of the model writes the schedule this way too.
        Trigger::Scheduled { at, zone } => format!("trigger scheduled at {} {zone}", at.replace('T', " ")),
        _ => format!("trigger {}", dis::trigger(p)),
    }
}

/// Where a walk along a block stops: at its fork's join, or at the end.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    At(usize),
    Exit,
}

/// Where each fork's arms rejoin (`Stop::Exit` when every arm ends).
///
/// A fork's instructions are the ones emitted from it until the first whose
/// source starts past the fork's own text (blocks are emitted in source
/// order, and a fork's span covers its arms); its join is where the edges
/// leaving those instructions go. The source decides, not the edges alone:
/// `if x { end } else { a }; b` and `if x { end } else { a; b }` compile to
/// the same edges. A program without spans falls back to the immediate
/// post-dominator.
fn joins(p: &Program) -> Vec<Stop> {
    let fallback = post_dominators(p);
    let n = p.nodes.len();
    (0..n)
        .map(|i| {
            let (start, end) = p.nodes[i].span;
            if end <= start || p.nodes[i].op.successors().len() < 2 {
                return fallback[i];
            }
            let region_end = (i + 1..n).find(|&j| p.nodes[j].span.0 >= end).unwrap_or(n);
            let leaving = (i..region_end)
                .flat_map(|j| p.nodes[j].op.successors())
                .map(|t| t.get())
                .filter(|&t| t >= region_end && t < n)
                .min();
            leaving.map_or(Stop::Exit, Stop::At)
        })
        .collect()
}

/// Each instruction's immediate post-dominator. Successors point forward,
/// so one backward pass finds them (Cooper, Harvey and Kennedy's
/// intersection, with the index as the order).
fn post_dominators(p: &Program) -> Vec<Stop> {
    let n = p.nodes.len();
    let mut ipdom = vec![Stop::Exit; n];
    for i in (0..n).rev() {
        let mut acc: Option<Stop> = None;
        for s in p.nodes[i].op.successors() {
            // A successor out of order is a corrupt program (the codec
            // refuses those); drawing it as an end keeps the walk finite.
            let s = if s.get() > i && s.get() < n { Stop::At(s.get()) } else { Stop::Exit };
            acc = Some(match acc {
                None => s,
                Some(a) => meet(&ipdom, a, s),
            });
        }
        ipdom[i] = acc.unwrap_or(Stop::Exit);
    }
    ipdom
}

fn meet(ipdom: &[Stop], mut a: Stop, mut b: Stop) -> Stop {
    loop {
        match (a, b) {
            (Stop::At(x), Stop::At(y)) if x == y => return a,
            (Stop::At(x), Stop::At(y)) if x < y => a = ipdom[x],
            (Stop::At(_), Stop::At(y)) => b = ipdom[y],
            (Stop::At(x), Stop::Exit) => a = ipdom[x],
            (Stop::Exit, Stop::At(y)) => b = ipdom[y],
            (Stop::Exit, Stop::Exit) => return Stop::Exit,
        }
    }
}

struct Walk<'a> {
    p: &'a Program,
    joins: Vec<Stop>,
    counts: Counts<'a>,
}

impl Walk<'_> {
    /// The items of the block from instruction `from` up to `stop`.
    fn seq(&self, from: usize, stop: Stop, depth: usize) -> Vec<Item> {
        let mut out = Vec::new();
        let mut at = Stop::At(from);
        while let Stop::At(i) = at {
            if at == stop || i >= self.p.nodes.len() {
                break;
            }
            let (item, next) = self.item(i, depth);
            out.extend(item);
            // Forward only: a corrupt program cannot make the walk go round.
            at = match next {
                Stop::At(j) if j > i => Stop::At(j),
                _ => Stop::Exit,
            };
        }
        out
    }

    /// Instruction `i` as an item (none for a jump), and where its block goes on.
    fn item(&self, i: usize, depth: usize) -> (Option<Item>, Stop) {
        let node = &self.p.nodes[i];
        let id = node.id.0.as_str();
        let next = |n: NodeIdx| Stop::At(n.get());
        let card = |kind, rest: Vec<(Style, String)>| self.card(kind, id, rest);
        let p = self.p;
        match &node.op {
            Op::Send { target, fallback, next: n } => {
                let mut rest = vec![
                    (Style::Title, format!("SEND {}.{}", target.channel, target.message)),
                    (Style::Detail, target.template.clone()),
                ];
                if let Some(f) = fallback {
                    rest.push((Style::Detail, format!("fallback {}.{} {}", f.channel, f.message, f.template)));
                }
                (Some(Item::Card(card(Kind::Send, rest))), next(*n))
            }
            Op::Wait { minutes, next: n } => (
                Some(Item::Card(card(Kind::Wait, vec![(Style::Title, format!("WAIT {}", dis::duration(*minutes)))]))),
                next(*n),
            ),
            Op::Tag { add, tag, next: n } => {
                let verb = if *add { "TAG add" } else { "TAG remove" };
                let rest = vec![(Style::Title, verb.into()), (Style::Detail, format!("{tag:?}"))];
                (Some(Item::Card(card(Kind::Tag, rest))), next(*n))
            }
            Op::Set { field, next: n, .. } => {
                // `instruction` prints `SET field = value`; the box shows the value below.
                let text = dis::instruction(p, &node.op);
                let value = text.split_once(" = ").map_or(String::new(), |(_, v)| v.to_string());
                let rest = vec![(Style::Title, format!("SET {field}")), (Style::Condition, format!("= {value}"))];
                (Some(Item::Card(card(Kind::Tag, rest))), next(*n))
            }
            Op::End => (Some(Item::Card(card(Kind::End, vec![(Style::Title, "END".into())]))), Stop::Exit),
            // Jumps only name a path (an empty arm, a `wait until`'s arm); the
            // picture shows the path itself.
            Op::Jump { target } => (None, next(*target)),
            _ if depth >= MAX_DEPTH => (None, self.joins[i]),
            Op::Branch { cond, then, otherwise } => {
                let join = self.joins[i];
                let head =
                    card(Kind::If, vec![(Style::Title, "IF".into()), (Style::Condition, dis::cond(p, cond, &[]))]);
                let mut arms = vec![("yes".to_string(), self.arm(*then, join, depth))];
                // `else if` arms are branches named `<if>/elif<k>`, each the otherwise of the one before.
                let mut rest = *otherwise;
                for k in 1.. {
                    let elif = format!("{id}/elif{k}");
                    match p.nodes.get(rest.get()) {
                        Some(n) if n.id.0 == elif => match &n.op {
                            Op::Branch { cond, then, otherwise } => {
                                arms.push((
                                    format!("else if {}", dis::cond(p, cond, &[])),
                                    self.arm(*then, join, depth),
                                ));
                                rest = *otherwise;
                            }
                            _ => break,
                        },
                        _ => break,
                    }
                }
                arms.push(("else".into(), self.arm(rest, join, depth)));
                (Some(layout::fork(head, arms)), join)
            }
            Op::Split { name, variants } => {
                let join = self.joins[i];
                let head = card(
                    Kind::Split,
                    vec![
                        (Style::Title, format!("A/B {name}")),
                        (Style::Detail, format!("{} variants", variants.len())),
                    ],
                );
                let arms = variants
                    .iter()
                    .map(|v| (format!("{} {}%", v.name, dis::percent(v.weight_bp)), self.arm(v.target, join, depth)))
                    .collect();
                (Some(layout::fork(head, arms)), join)
            }
            Op::WaitUntil { arms, timeout_minutes, timeout } => {
                let join = self.joins[i];
                let n = arms.len();
                let head = card(
                    Kind::Wait,
                    vec![
                        (Style::Title, "WAIT UNTIL".into()),
                        (Style::Detail, format!("first of {n} arm{}", if n == 1 { "" } else { "s" })),
                    ],
                );
                let mut lanes: Vec<(String, Vec<Item>)> = arms
                    .iter()
                    .map(|a| {
                        let label = match &a.on {
                            WaitOn::Event { event } => dis::event_match(p, event),
                            WaitOn::State { cond } => dis::cond(p, cond, &[]),
                        };
                        (label, self.arm(a.target, join, depth))
                    })
                    .collect();
                lanes.push((format!("timeout {}", dis::duration(*timeout_minutes)), self.arm(*timeout, join, depth)));
                (Some(layout::fork(head, lanes)), join)
            }
        }
    }

    fn arm(&self, entry: NodeIdx, join: Stop, depth: usize) -> Vec<Item> {
        self.seq(entry.get(), join, depth + 1)
    }

    /// A step's box: its label first when it has one (a structural id has a
    /// `/`; a label is an identifier), its count line last.
    fn card(&self, kind: Kind, id: &str, rest: Vec<(Style, String)>) -> Card {
        let mut texts = Vec::new();
        if !id.contains('/') {
            texts.push((Style::Label, format!("{id}:")));
        }
        texts.extend(rest);
        if let Some(c) = (self.counts)(id) {
            texts.push((Style::Count, c));
        }
        let mut c = Card::new(kind, id.to_string(), texts, NODE_W);
        c.tooltip.push_str(&format!("\nstep {id}"));
        c
    }
}
