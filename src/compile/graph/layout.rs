//! The builder-style picture of a campaign as plain geometry: boxes with
//! their lines of text, and wires between them. Drawing it (SVG today, a web
//! console later) is someone else's job.
//!
//! Steps run top to bottom; the arms of an `if` or an A/B test sit side by
//! side under a chip naming the arm, and rejoin below. Every text is measured
//! with [`metrics`] and wrapped to its box; what does not fit ends in `…`,
//! and the box's tooltip holds the whole text.

use super::metrics::{self, Font, Weight};
use super::wrap;
use crate::check::model::{Campaign, Step, StepKind, Trigger};
use crate::compile::dis;
use crate::source::{SourceText, Span};

/// Width of every step box.
pub const NODE_W: f64 = 240.0;
const V_GAP: f64 = 30.0;
const H_GAP: f64 = 24.0;
const MARGIN: f64 = 24.0;
const PAD_Y: f64 = 9.0;
const MIN_NODE_H: f64 = 36.0;
/// From a fork's head down to the bar its arms hang from.
const BAR_GAP: f64 = 14.0;
/// From the bar to an arm's chip, and from the chip to the arm's first step.
const CHIP_GAP: f64 = 10.0;
const CHIP_TO_ARM: f64 = 18.0;
/// From the lowest arm down to where the arms rejoin.
const MERGE_GAP: f64 = 16.0;
const CHIP_PAD_Y: f64 = 4.0;
const CHIP_RADIUS: f64 = 8.0;
/// How far a hexagon's points reach out past its flat top.
pub const HEX_INSET: f64 = 18.0;
/// Where an A/B box draws its inner side bars.
pub const SPLIT_BAR: f64 = 8.0;

/// What a box stands for; the renderer picks shape and colours from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Start,
    Send,
    Wait,
    If,
    Split,
    Tag,
    End,
    /// The chip naming one arm of a fork (`yes`, `else if …`, `a 50%`).
    Arm,
}

impl Kind {
    /// Rounded corner radius for a box of height `h`.
    pub fn radius(self, h: f64) -> f64 {
        match self {
            Kind::Start | Kind::End => (h / 2.0).min(20.0),
            Kind::Wait | Kind::Tag => 10.0,
            Kind::Arm => CHIP_RADIUS,
            Kind::Send | Kind::Split | Kind::If => 3.0,
        }
    }

    /// Horizontal room kept free of text on each side, so text clears
    /// rounded corners, hexagon points and side bars.
    fn pad_x(self) -> f64 {
        match self {
            Kind::Start | Kind::End => 24.0,
            Kind::If => HEX_INSET + 6.0,
            Kind::Split => SPLIT_BAR + 8.0,
            Kind::Wait | Kind::Tag | Kind::Send => 12.0,
            Kind::Arm => CHIP_RADIUS + 3.0,
        }
    }
}

/// How a line of text is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A step's label (`hello:`) or the campaign's id.
    Label,
    Title,
    Detail,
    /// A condition: set like a detail, with room for more lines.
    Condition,
    /// The text of an arm's chip.
    Arm,
    /// A step's live counts, given by whoever draws the picture (the
    /// console); the renderer marks the line so it can be updated in place.
    Count,
}

impl Style {
    pub fn font(self) -> Font {
        match self {
            Style::Label => Font { size: 10.0, weight: Weight::Bold },
            Style::Title => Font { size: 13.0, weight: Weight::Bold },
            Style::Detail | Style::Condition => Font { size: 11.0, weight: Weight::Normal },
            Style::Arm => Font { size: 10.0, weight: Weight::Normal },
            Style::Count => Font { size: 10.0, weight: Weight::Bold },
        }
    }
    fn line_height(self) -> f64 {
        match self {
            Style::Label | Style::Arm | Style::Count => 13.0,
            Style::Title => 17.0,
            Style::Detail | Style::Condition => 14.0,
        }
    }
    fn max_lines(self) -> usize {
        match self {
            Style::Label | Style::Count => 1,
            Style::Title => 2,
            Style::Detail => 4,
            Style::Condition | Style::Arm => 8,
        }
    }
}

/// One line of text, centred on `x`, its baseline at `y`.
#[derive(Debug, Clone, PartialEq)]
pub struct TextLine {
    pub text: String,
    pub x: f64,
    pub y: f64,
    pub style: Style,
}

/// A box: a step, the start, the end, or an arm's chip.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: Kind,
    /// The step id (`hello`, `welcome/3/else/1`); empty for chips.
    pub step: String,
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    pub lines: Vec<TextLine>,
    /// Everything the box says, unshortened, one item per line.
    pub tooltip: String,
}

/// A connecting line through `points`; `arrow` marks the last point.
#[derive(Debug, Clone, PartialEq)]
pub struct Wire {
    pub points: Vec<(f64, f64)>,
    pub arrow: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub width: f64,
    pub height: f64,
    /// The campaign's id.
    pub title: String,
    /// Step boxes and chips; none overlap.
    pub nodes: Vec<Node>,
    pub wires: Vec<Wire>,
}

/// A text block before placement: its wrapped lines and how they are set.
pub(super) struct Block {
    style: Style,
    lines: Vec<String>,
}

/// A step box measured but not yet placed.
pub(super) struct Card {
    kind: Kind,
    step: String,
    blocks: Vec<Block>,
    pub(super) tooltip: String,
    w: f64,
    h: f64,
}

impl Card {
    /// Wraps each `(style, text)` into a box of `w`.
    pub(super) fn new(kind: Kind, step: String, texts: Vec<(Style, String)>, w: f64) -> Card {
        let room = w - 2.0 * kind.pad_x();
        let mut blocks = Vec::new();
        let mut tooltip = Vec::new();
        for (style, text) in texts {
            let fitted = wrap::fit(&text, style.font(), room, style.max_lines());
            // Counts change while the picture is shown; the tooltip keeps what does not.
            if style != Style::Count {
                tooltip.push(wrap::clean(&text));
            }
            blocks.push(Block { style, lines: fitted.lines });
        }
        let text_h: f64 = blocks.iter().map(|b| b.style.line_height() * b.lines.len() as f64).sum();
        let min = if kind == Kind::Arm { 0.0 } else { MIN_NODE_H };
        let pad = if kind == Kind::Arm { CHIP_PAD_Y } else { PAD_Y };
        Card { kind, step, blocks, tooltip: tooltip.join("\n"), w, h: (text_h + 2.0 * pad).max(min) }
    }

    /// A chip as narrow as its text allows, at most `max_w`.
    fn chip(text: &str, max_w: f64) -> Card {
        let mut c = Card::new(Kind::Arm, String::new(), vec![(Style::Arm, text.to_string())], max_w);
        let widest = c
            .blocks
            .iter()
            .flat_map(|b| b.lines.iter().map(move |l| metrics::width(l, b.style.font())))
            .fold(0.0, f64::max);
        c.w = (widest.ceil() + 2.0 * Kind::Arm.pad_x()).min(max_w);
        c
    }

    fn place(&self, cx: f64, top: f64) -> Node {
        let pad = if self.kind == Kind::Arm { CHIP_PAD_Y } else { PAD_Y };
        let text_h: f64 = self.blocks.iter().map(|b| b.style.line_height() * b.lines.len() as f64).sum();
        let mut y = top + pad + (self.h - 2.0 * pad - text_h) / 2.0;
        let mut lines = Vec::new();
        for b in &self.blocks {
            let f = b.style.font();
            let lh = b.style.line_height();
            for l in &b.lines {
                // Centre the font's full height (ascent + descent) in the line box.
                let baseline = y + (lh - f.ascent() - f.descent()) / 2.0 + f.ascent();
                lines.push(TextLine { text: l.clone(), x: cx, y: baseline, style: b.style });
                y += lh;
            }
        }
        Node {
            kind: self.kind,
            step: self.step.clone(),
            x: cx - self.w / 2.0,
            y: top,
            w: self.w,
            h: self.h,
            lines,
            tooltip: self.tooltip.clone(),
        }
    }
}

pub(super) struct Arm {
    chip: Card,
    items: Vec<Item>,
}

/// The layout tree: a sequence of boxes and forks.
pub(super) enum Item {
    Card(Card),
    Fork { head: Card, arms: Vec<Arm>, falls_through: bool },
}

impl Item {
    fn width(&self) -> f64 {
        match self {
            Item::Card(c) => c.w,
            Item::Fork { arms, .. } => arms_width(arms).max(NODE_W),
        }
    }

    fn height(&self) -> f64 {
        match self {
            Item::Card(c) => c.h,
            Item::Fork { head, arms, .. } => {
                let chips = arms.iter().map(|a| a.chip.h).fold(0.0, f64::max);
                let body = arms.iter().map(|a| seq_height(&a.items)).fold(0.0, f64::max);
                head.h + BAR_GAP + CHIP_GAP + chips + CHIP_TO_ARM + body + MERGE_GAP
            }
        }
    }

    /// Whether every path through this item ends inside it.
    fn ends(&self) -> bool {
        match self {
            Item::Card(c) => c.kind == Kind::End,
            Item::Fork { falls_through, .. } => !falls_through,
        }
    }
}

fn arms_width(arms: &[Arm]) -> f64 {
    arms.iter().map(|a| seq_width(&a.items)).sum::<f64>() + H_GAP * arms.len().saturating_sub(1) as f64
}

fn seq_width(items: &[Item]) -> f64 {
    items.iter().map(Item::width).fold(NODE_W, f64::max)
}

fn seq_height(items: &[Item]) -> f64 {
    items.iter().map(Item::height).sum::<f64>() + V_GAP * items.len().saturating_sub(1) as f64
}

fn seq_ends(items: &[Item]) -> bool {
    items.last().is_some_and(Item::ends)
}

/// The author's text for a condition, on one line.
///
/// The one place the picture prints a condition: it shows the source as
/// written, so it never disagrees with the file.
fn condition_text(src: &SourceText, span: Span) -> String {
    src.text.get(span.range()).unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" ")
}

fn trigger_text(c: &Campaign, src: &SourceText) -> String {
    match &c.trigger {
        Trigger::Scheduled { at, zone } => format!("trigger scheduled at {} {zone}", at.format("%Y-%m-%d %H:%M")),
        Trigger::Event { event, filter: Some(f) } => {
            format!("trigger event {event} where {}", condition_text(src, f.span))
        }
        Trigger::Event { event, filter: None } => format!("trigger event {event}"),
        Trigger::Manual | Trigger::Missing => "trigger manual".into(),
        Trigger::Api => "trigger api".into(),
    }
}

/// A step's texts: its label first when it has one.
fn texts(s: &Step, rest: Vec<(Style, String)>) -> Vec<(Style, String)> {
    let mut out = Vec::new();
    if s.labelled {
        out.push((Style::Label, format!("{}:", s.id.0)));
    }
    out.extend(rest);
    out
}

fn items(steps: &[Step], src: &SourceText) -> Vec<Item> {
    steps.iter().map(|s| item(s, src)).collect()
}

fn item(s: &Step, src: &SourceText) -> Item {
    let id = s.id.0.clone();
    let card = |kind, rest| {
        let mut c = Card::new(kind, id.clone(), texts(s, rest), NODE_W);
        c.tooltip.push_str(&format!("\nstep {id}"));
        c
    };
    match &s.kind {
        StepKind::Send { target, fallback, explicit_no_fallback } => {
            let mut rest = vec![
                (Style::Title, format!("SEND {}.{}", target.channel, target.message)),
                (Style::Detail, target.template.clone()),
            ];
            match fallback {
                Some(f) => rest.push((Style::Detail, format!("fallback {}.{} {}", f.channel, f.message, f.template))),
                None if *explicit_no_fallback => rest.push((Style::Detail, "fallback none".into())),
                None => {}
            }
            Item::Card(card(Kind::Send, rest))
        }
        StepKind::Wait { minutes } => {
            Item::Card(card(Kind::Wait, vec![(Style::Title, format!("WAIT {}", dis::duration(*minutes)))]))
        }
        StepKind::Tag { add, tag } => {
            let verb = if *add { "TAG add" } else { "TAG remove" };
            Item::Card(card(Kind::Tag, vec![(Style::Title, verb.into()), (Style::Detail, format!("{tag:?}"))]))
        }
        StepKind::End => Item::Card(card(Kind::End, vec![(Style::Title, "END".into())])),
        // Drawn like a tag: both write the contact.
        StepKind::Set { field, value } => Item::Card(card(
            Kind::Tag,
            vec![
                (Style::Title, format!("SET {field}")),
                (Style::Condition, format!("= {}", condition_text(src, value.span))),
            ],
        )),
        StepKind::If { arms, otherwise } => {
            let first = arms.first().map(|(c, _)| condition_text(src, c.span)).unwrap_or_default();
            let head = card(Kind::If, vec![(Style::Title, "IF".into()), (Style::Condition, first)]);
            let mut out: Vec<(String, Vec<Item>)> = Vec::new();
            for (k, (c, body)) in arms.iter().enumerate() {
                let label = if k == 0 { "yes".to_string() } else { format!("else if {}", condition_text(src, c.span)) };
                out.push((label, items(body, src)));
            }
            out.push(("else".into(), items(otherwise, src)));
            fork(head, out)
        }
        StepKind::WaitUntil { arms, timeout_minutes, timeout } => {
            let head = card(
                Kind::Wait,
                vec![
                    (Style::Title, "WAIT UNTIL".into()),
                    (Style::Detail, format!("first of {} arm{}", arms.len(), if arms.len() == 1 { "" } else { "s" })),
                ],
            );
            let mut lanes: Vec<(String, Vec<Item>)> =
                arms.iter().map(|a| (condition_text(src, a.span), items(&a.steps, src))).collect();
            lanes.push((format!("timeout {}", dis::duration(*timeout_minutes)), items(timeout, src)));
            fork(head, lanes)
        }
        StepKind::AbTest { name, variants } => {
            let head = card(
                Kind::Split,
                vec![(Style::Title, format!("A/B {name}")), (Style::Detail, format!("{} variants", variants.len()))],
            );
            let arms = variants
                .iter()
                .map(|v| (format!("{} {}%", v.name, dis::percent(v.weight_bp)), items(&v.steps, src)))
                .collect();
            fork(head, arms)
        }
    }
}

pub(super) fn fork(head: Card, arms: Vec<(String, Vec<Item>)>) -> Item {
    // Every A/B variant is taken by someone; an `if` always has its else arm
    // here (empty when not written), so the fork ends only if every arm does.
    let falls_through = !arms.iter().all(|(_, a)| seq_ends(a));
    let arms = arms
        .into_iter()
        .map(|(label, items)| {
            let w = seq_width(&items);
            Arm { chip: Card::chip(&label, w), items }
        })
        .collect();
    Item::Fork { head, arms, falls_through }
}

/// Places `items` centred on `cx` from `top`; returns the open exit (its
/// bottom y) or `None` when every path ends inside.
fn place_seq(out: &mut Layout, items: &[Item], cx: f64, mut top: f64, mut entry: Option<f64>) -> Option<f64> {
    for item in items {
        if let Some(from) = entry {
            out.wires.push(Wire { points: vec![(cx, from), (cx, top)], arrow: true });
        }
        entry = place_item(out, item, cx, top);
        top += item.height() + V_GAP;
    }
    entry
}

fn place_item(out: &mut Layout, item: &Item, cx: f64, top: f64) -> Option<f64> {
    match item {
        Item::Card(c) => {
            out.nodes.push(c.place(cx, top));
            (c.kind != Kind::End).then_some(top + c.h)
        }
        Item::Fork { head, arms, falls_through } => {
            out.nodes.push(head.place(cx, top));
            let bar_y = top + head.h + BAR_GAP;
            let chip_top = bar_y + CHIP_GAP;
            let chips_h = arms.iter().map(|a| a.chip.h).fold(0.0, f64::max);
            let arms_top = chip_top + chips_h + CHIP_TO_ARM;
            let body = arms.iter().map(|a| seq_height(&a.items)).fold(0.0, f64::max);
            let merge_y = arms_top + body + MERGE_GAP;
            let total = item.width();
            let used = arms_width(arms);
            let mut x = cx - total / 2.0 + (total - used) / 2.0;
            let centres: Vec<f64> = arms
                .iter()
                .map(|a| {
                    let w = seq_width(&a.items);
                    let c = x + w / 2.0;
                    x += w + H_GAP;
                    c
                })
                .collect();
            out.wires.push(Wire { points: vec![(cx, top + head.h), (cx, bar_y)], arrow: false });
            if let (Some(first), Some(last)) = (centres.first(), centres.last()) {
                out.wires.push(Wire { points: vec![(*first, bar_y), (*last, bar_y)], arrow: false });
            }
            let mut any_open = false;
            for (arm, acx) in arms.iter().zip(centres) {
                out.wires.push(Wire { points: vec![(acx, bar_y), (acx, chip_top)], arrow: false });
                out.nodes.push(arm.chip.place(acx, chip_top));
                let chip_bottom = chip_top + arm.chip.h;
                let exit = if arm.items.is_empty() {
                    Some(chip_bottom)
                } else {
                    out.wires.push(Wire { points: vec![(acx, chip_bottom), (acx, arms_top)], arrow: true });
                    place_seq(out, &arm.items, acx, arms_top, None)
                };
                if let Some(from) = exit {
                    any_open = true;
                    out.wires.push(Wire { points: vec![(acx, from), (acx, merge_y), (cx, merge_y)], arrow: false });
                }
            }
            (any_open && *falls_through).then_some(merge_y)
        }
    }
}

/// The picture of a campaign: its trigger and audience, then every step.
pub fn layout(c: &Campaign, src: &SourceText) -> Layout {
    let mut start_texts = Vec::new();
    match &c.display_name {
        Some(display) => {
            start_texts.push((Style::Label, format!("campaign {}", c.name)));
            start_texts.push((Style::Title, display.clone()));
        }
        None => start_texts.push((Style::Title, c.name.clone())),
    }
    start_texts.push((Style::Condition, trigger_text(c, src)));
    if let Some(a) = &c.audience {
        start_texts.push((Style::Condition, format!("audience {}", condition_text(src, a.span))));
    }
    let start = Card::new(Kind::Start, format!("{}/trigger", c.name), start_texts, NODE_W);
    finish(&c.name, start, items(&c.steps, src))
}

/// Places the start card, `steps` and (when a path runs off the end) an END
/// card: the geometry every front end shares.
pub(super) fn finish(name: &str, start: Card, steps: Vec<Item>) -> Layout {
    let mut all = vec![Item::Card(start)];
    all.extend(steps);
    if !seq_ends(&all) {
        all.push(Item::Card(Card::new(Kind::End, format!("{name}/end"), vec![(Style::Title, "END".into())], NODE_W)));
    }
    let width = seq_width(&all) + 2.0 * MARGIN;
    let height = seq_height(&all) + 2.0 * MARGIN;
    let mut out = Layout { width, height, title: wrap::clean(name), nodes: Vec::new(), wires: Vec::new() };
    place_seq(&mut out, &all, width / 2.0, MARGIN, None);
    out
}
