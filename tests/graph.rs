//! `flowc graph`: what the pictures show, how their text is escaped, and
//! that every text fits its box (SVG parsed back and measured, then rendered
//! to PNG with `rsvg-convert`).

mod common;

use flowc::check::model::Campaign;
use flowc::compile::{self, program::Program};
use flowc::source::SourceText;

/// A campaign whose strings carry markup and the quoting characters of
/// every output format.
const HOSTILE: &str = r#"template e1 { channel email message marketing status published }
contact {
  country: string
}
campaign esc {
  name "<script>alert(1)</script> \u{1} & \"q\""
  trigger event order.completed where amount > 10
  audience country == "<img src=x onerror=alert(1)> #quot; `b`"
  first: send email.marketing e1
  tag add "<script>alert('x')</script> #quot; & \" \\ `md`"
}
event order.completed { amount: number }
"#;

/// The tag as every format shows it (quoted like the source).
const HOSTILE_TAG: &str = r#""<script>alert('x')</script> #quot; & \" \\ `md`""#;

fn compiled(text: &str) -> (Program, Campaign, SourceText) {
    let (analysis, ws) = common::check_source(text);
    let errors: Vec<_> = analysis.diags.iter().filter(|d| d.is_error()).collect();
    assert!(errors.is_empty(), "must check clean: {errors:?}");
    let (_, model) = &analysis.models[0];
    let c = model.campaigns[0].clone();
    let src = ws.sources.get(c.file).clone();
    (compile::compile(model, &c, &src), c, src)
}

/// Mermaid's `#name;` / `#123;` entity codes back to text.
fn mermaid_decode(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('#') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        let end = tail.find(';').filter(|&e| e > 0 && tail[..e].chars().all(|c| c.is_ascii_alphanumeric()));
        match end {
            Some(e) => {
                let code = &tail[..e];
                let ch = match code {
                    "quot" => '"',
                    "lt" => '<',
                    "gt" => '>',
                    "amp" => '&',
                    n => {
                        n.parse::<u32>().ok().and_then(char::from_u32).unwrap_or_else(|| panic!("unknown entity #{n};"))
                    }
                };
                out.push(ch);
                rest = &tail[e + 1..];
            }
            None => {
                out.push('#');
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The quoted labels of a Mermaid flowchart, with the markup flowc itself
/// writes (`<br/>`, `<small>`) turned into spaces and entities decoded.
fn mermaid_labels(m: &str) -> Vec<String> {
    let mut labels = Vec::new();
    for line in m.lines() {
        let (Some(a), Some(b)) = (line.find('"'), line.rfind('"')) else { continue };
        if a == b {
            panic!("unbalanced quote in mermaid line: {line}");
        }
        let inner = &line[a + 1..b];
        assert!(!inner.contains('"'), "a raw quote inside a mermaid label: {line}");
        let plain = inner.replace("<br/>", "\n").replace("<small>", "").replace("</small>", "");
        assert!(!plain.contains('<') && !plain.contains('>'), "raw markup in a mermaid label: {line}");
        labels.push(mermaid_decode(&plain));
    }
    labels
}

#[test]
fn mermaid_escapes_markup_in_labels() {
    let (p, c, _) = compiled(HOSTILE);
    let m = compile::graph::mermaid(&p, &c);
    assert!(!m.to_lowercase().contains("<script"), "{m}");
    assert!(!m.to_lowercase().contains("<img"), "{m}");
    let labels = mermaid_labels(&m);
    assert!(labels.iter().any(|l| l.contains(HOSTILE_TAG)), "the tag reads back as written: {labels:#?}");
    assert!(
        labels.iter().any(|l| l.contains("<img src=x onerror=alert(1)> #quot; `b`")),
        "the audience reads back: {labels:#?}"
    );
}

/// DOT's quoted strings, unescaped (`\"`, `\\`; `\n` is a line break).
fn dot_strings(d: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = d.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut s = String::new();
        loop {
            match chars.next() {
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') | Some('l') => s.push('\n'),
                    Some(e @ ('"' | '\\')) => s.push(e),
                    other => panic!("unexpected escape \\{other:?} in DOT"),
                },
                Some(ch) => s.push(ch),
                None => panic!("unterminated string in DOT:\n{d}"),
            }
        }
        out.push(s);
    }
    out
}

#[test]
fn dot_escapes_quotes_and_backslashes() {
    let (p, c, _) = compiled(HOSTILE);
    let d = compile::graph::dot(&p, &c);
    let strings = dot_strings(&d);
    assert!(strings.iter().any(|s| s.contains(HOSTILE_TAG)), "the tag reads back as written: {strings:#?}");
    assert!(
        strings.iter().any(|s| s.contains("<img src=x onerror=alert(1)> #quot; `b`")),
        "the audience reads back: {strings:#?}"
    );
}

#[test]
fn svg_of_hostile_strings_is_well_formed_and_inert() {
    let (_, c, src) = compiled(HOSTILE);
    let svg = compile::graph::svg(&c, &src);
    let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
    let names: Vec<&str> = doc.descendants().filter(|n| n.is_element()).map(|n| n.tag_name().name()).collect();
    assert!(
        names
            .iter()
            .all(|n| ["svg", "title", "defs", "marker", "path", "rect", "g", "text", "line", "polygon", "polyline"]
                .contains(n)),
        "{names:?}"
    );
    let text: String = doc.descendants().filter(|n| n.is_text()).filter_map(|n| n.text()).collect();
    assert!(text.contains(HOSTILE_TAG), "the tag reads back as written");
}

/// The console's picture of `p`, each box with a wide count line.
fn program_svg(p: &Program) -> String {
    compile::graph::svg_of_program(p, &|_| Some("88,888 in · 88,888 sent · 8,888 failed".into()))
}

/// Every step id of a picture's boxes, in drawing order.
fn steps_drawn(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).expect("svg");
    doc.descendants().filter_map(|n| n.attribute("data-step")).map(str::to_string).collect()
}

#[test]
fn the_picture_from_the_program_has_the_boxes_of_the_picture_from_the_model() {
    // The console keeps only programs; its picture must show the same steps
    // in the same places the builder's does (jumps are paths, not boxes).
    let mut paths: Vec<std::path::PathBuf> = std::fs::read_dir(common::root().join("examples"))
        .expect("examples")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "flow"))
        .map(|p| p.strip_prefix(common::root()).expect("rel").to_path_buf())
        .collect();
    paths.extend(["tests/data/compile/wait_until.flow", "tests/data/compile/delivery.flow"].map(Into::into));
    for path in &paths {
        let path = path.display();
        let (analysis, ws) = common::check_file(std::path::Path::new(&path.to_string()), &Default::default());
        let (root, model) = &analysis.models[0];
        for c in model.campaigns.iter().filter(|c| c.file == *root) {
            let src = ws.sources.get(c.file);
            let p = compile::compile(model, c, src);
            let from_model = compile::graph::layout::layout(c, src);
            let from_program = compile::graph::from_program::layout(&p, &|_| None);
            // Heights may differ: conditions are printed by `dis` (the program
            // keeps no source text), not as the author wrapped them.
            let boxes = |l: &compile::graph::layout::Layout| -> Vec<(String, i64)> {
                l.nodes.iter().map(|n| (n.step.clone(), n.x.round() as i64)).collect()
            };
            assert_eq!(boxes(&from_program), boxes(&from_model), "{path}: {}", c.name);
            assert_eq!(from_program.wires.len(), from_model.wires.len(), "{path}: {}", c.name);
        }
    }
}

#[test]
fn the_program_picture_marks_each_count_line_with_its_step() {
    let (p, _, _) = compiled(HOSTILE);
    let svg = program_svg(&p);
    let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
    let counted: Vec<&str> = doc.descendants().filter_map(|n| n.attribute("data-count")).collect();
    let steps = steps_drawn(&svg);
    assert_eq!(counted, steps, "one count line per step box, named by its step");
    let text: String = doc.descendants().filter(|n| n.is_text()).filter_map(|n| n.text()).collect();
    assert!(text.contains(HOSTILE_TAG), "the tag reads back as written");
    assert!(!svg.contains("<script>") && !svg.contains("<img"), "markup in names is escaped");
}

/// Every campaign of every example, and of the long-names file, as
/// (a name for messages, SVG).
fn pictures() -> Vec<(String, String)> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(common::root().join("examples"))
        .expect("examples")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "flow"))
        .collect();
    files.sort();
    files.push(common::root().join("tests/data/graph/long_names.flow"));
    files.push(common::root().join("tests/data/compile/wait_until.flow"));
    files.push(common::root().join("tests/data/compile/delivery.flow"));
    let mut out = Vec::new();
    for path in files {
        let rel = path.strip_prefix(common::root()).expect("rel").to_path_buf();
        let (analysis, ws) = common::check_file(&rel, &Default::default());
        assert!(!analysis.has_errors(), "{}: {:?}", rel.display(), analysis.diags);
        let (root, model) = &analysis.models[0];
        for c in model.campaigns.iter().filter(|c| c.file == *root) {
            let src = ws.sources.get(c.file);
            out.push((format!("{}:{}", rel.display(), c.name), compile::graph::svg(c, src)));
            // The console's picture: drawn from the program, with a count line in every box.
            let p = compile::compile(model, c, src);
            out.push((format!("{}:{} (program)", rel.display(), c.name), program_svg(&p)));
        }
    }
    assert!(out.len() >= 7, "{} pictures", out.len());
    out
}

/// An axis-aligned rectangle.
#[derive(Debug, Clone, Copy)]
struct Rect {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

impl Rect {
    fn corners(&self) -> [(f64, f64); 4] {
        [(self.x0, self.y0), (self.x1, self.y0), (self.x1, self.y1), (self.x0, self.y1)]
    }
    fn overlaps(&self, o: &Rect) -> bool {
        self.x0 < o.x1 - EPS && o.x0 < self.x1 - EPS && self.y0 < o.y1 - EPS && o.y0 < self.y1 - EPS
    }
}

const EPS: f64 = 0.01;

/// A box's outline, as drawn.
#[derive(Debug)]
enum Shape {
    Rounded {
        r: Rect,
        rx: f64,
    },
    /// A convex polygon.
    Polygon(Vec<(f64, f64)>),
}

impl Shape {
    fn bounds(&self) -> Rect {
        match self {
            Shape::Rounded { r, .. } => *r,
            Shape::Polygon(p) => Rect {
                x0: p.iter().map(|q| q.0).fold(f64::INFINITY, f64::min),
                y0: p.iter().map(|q| q.1).fold(f64::INFINITY, f64::min),
                x1: p.iter().map(|q| q.0).fold(f64::NEG_INFINITY, f64::max),
                y1: p.iter().map(|q| q.1).fold(f64::NEG_INFINITY, f64::max),
            },
        }
    }

    fn contains(&self, (px, py): (f64, f64)) -> bool {
        match self {
            Shape::Rounded { r, rx } => {
                if px < r.x0 - EPS || px > r.x1 + EPS || py < r.y0 - EPS || py > r.y1 + EPS {
                    return false;
                }
                // In a corner square, the point must be inside the corner's circle.
                let cx = px.clamp(r.x0 + rx, r.x1 - rx);
                let cy = py.clamp(r.y0 + rx, r.y1 - rx);
                (px - cx).hypot(py - cy) <= rx + EPS
            }
            Shape::Polygon(p) => {
                let n = p.len();
                let signs: Vec<f64> = (0..n)
                    .map(|i| {
                        let (a, b) = (p[i], p[(i + 1) % n]);
                        (b.0 - a.0) * (py - a.1) - (b.1 - a.1) * (px - a.0)
                    })
                    .collect();
                signs.iter().all(|s| *s >= -EPS) || signs.iter().all(|s| *s <= EPS)
            }
        }
    }
}

fn num(n: roxmltree::Node, attr: &str) -> f64 {
    n.attribute(attr).unwrap_or_else(|| panic!("<{}> without {attr}", n.tag_name().name())).parse().expect("number")
}

fn shape_of(n: roxmltree::Node) -> Option<Shape> {
    match n.tag_name().name() {
        "rect" => {
            let r = Rect {
                x0: num(n, "x"),
                y0: num(n, "y"),
                x1: num(n, "x") + num(n, "width"),
                y1: num(n, "y") + num(n, "height"),
            };
            let rx: f64 = n.attribute("rx").map_or(0.0, |v| v.parse().expect("rx"));
            Some(Shape::Rounded { r, rx: rx.min((r.x1 - r.x0) / 2.0).min((r.y1 - r.y0) / 2.0) })
        }
        "polygon" => {
            let pts = n.attribute("points").expect("points");
            let pts = pts
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').expect("x,y");
                    (x.parse().expect("x"), y.parse().expect("y"))
                })
                .collect();
            Some(Shape::Polygon(pts))
        }
        _ => None,
    }
}

/// The extent of a `<text>`: its advance width from the metrics table the
/// picture was laid out with, and the font's full ascent and descent.
fn text_extent(t: roxmltree::Node) -> Rect {
    use compile::graph::metrics::{width, Font, Weight};
    let size = num(t, "font-size");
    let weight = Weight::from_svg(t.attribute("font-weight").unwrap_or("normal")).expect("font-weight");
    let font = Font { size, weight };
    let s = t.text().unwrap_or("");
    let w = width(s, font);
    let (x, y) = (num(t, "x"), num(t, "y"));
    let x0 = match t.attribute("text-anchor").unwrap_or("start") {
        "middle" => x - w / 2.0,
        "end" => x - w,
        _ => x,
    };
    Rect { x0, y0: y - font.ascent(), x1: x0 + w, y1: y + font.descent() }
}

/// Checks one picture: every text sits inside the shape of its own box,
/// clear of the box's inner lines and of the other texts; boxes do not
/// overlap and stay on the canvas. Returns the problems found.
fn misfits(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{e}"));
    let root = doc.root_element();
    assert_eq!(
        root.attribute("font-family"),
        Some(compile::graph::metrics::FAMILY),
        "the picture declares the family it was measured with"
    );
    let canvas = Rect { x0: 0.0, y0: 0.0, x1: num(root, "width"), y1: num(root, "height") };
    let mut problems = Vec::new();
    let mut boxes: Vec<(String, Rect)> = Vec::new();
    for t in root.descendants().filter(|n| n.has_tag_name("text")) {
        let in_box = t.parent().is_some_and(|p| p.has_tag_name("g"));
        if !in_box {
            problems.push(format!("text {:?} is not in a box", t.text()));
        }
    }
    for g in root.descendants().filter(|n| n.has_tag_name("g")) {
        let name = g.attribute("data-step").map_or_else(
            || format!("chip {:?}", g.children().find(|c| c.has_tag_name("title")).and_then(|c| c.text())),
            str::to_string,
        );
        let Some(shape) = g.children().find_map(shape_of) else {
            problems.push(format!("{name}: no shape"));
            continue;
        };
        let bounds = shape.bounds();
        for c in bounds.corners() {
            if !(Shape::Rounded { r: canvas, rx: 0.0 }).contains(c) {
                problems.push(format!("{name}: off the canvas"));
            }
        }
        let bars: Vec<Rect> = g
            .children()
            .filter(|c| c.has_tag_name("line"))
            .map(|l| Rect {
                x0: num(l, "x1").min(num(l, "x2")),
                y0: num(l, "y1").min(num(l, "y2")),
                x1: num(l, "x1").max(num(l, "x2")),
                y1: num(l, "y1").max(num(l, "y2")),
            })
            .collect();
        let texts: Vec<(String, Rect)> = g
            .children()
            .filter(|c| c.has_tag_name("text"))
            .map(|t| (t.text().unwrap_or("").to_string(), text_extent(t)))
            .collect();
        for (i, (s, r)) in texts.iter().enumerate() {
            if r.corners().iter().any(|c| !shape.contains(*c)) {
                problems.push(format!(
                    "{name}: {s:?} ({:.1}..{:.1} x {:.1}..{:.1}) extends past its box {bounds:?}",
                    r.x0, r.x1, r.y0, r.y1
                ));
            }
            for b in &bars {
                let line = Rect { x0: b.x0 - 0.5, x1: b.x1 + 0.5, ..*b };
                if line.overlaps(r) {
                    problems.push(format!("{name}: {s:?} crosses a line of its box"));
                }
            }
            for (s2, r2) in &texts[i + 1..] {
                if r.overlaps(r2) {
                    problems.push(format!("{name}: {s:?} overlaps {s2:?}"));
                }
            }
        }
        for (other, ob) in &boxes {
            if ob.overlaps(&bounds) {
                problems.push(format!("{name} overlaps {other}"));
            }
        }
        boxes.push((name, bounds));
    }
    problems
}

#[test]
fn every_text_fits_its_box() {
    let mut problems = Vec::new();
    for (name, svg) in pictures() {
        problems.extend(misfits(&svg).into_iter().map(|p| format!("{name}: {p}")));
    }
    assert!(problems.is_empty(), "{} misfit(s):\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn the_fit_check_catches_a_text_too_wide_for_its_box() {
    let svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="300" height="100" font-family="{}"><g class="step" data-step="s"><rect x="10" y="10" width="100" height="40" rx="3"/><text x="60" y="35" font-size="13" font-weight="bold" text-anchor="middle">a text far too wide for this box</text></g></svg>"#,
        compile::graph::metrics::FAMILY
    );
    let found = misfits(&svg);
    assert!(found.iter().any(|p| p.contains("extends past its box")), "{found:?}");
}

/// All the visible text of the picture's boxes, each box's lines joined by
/// spaces, so wrapped text reads as one string again.
fn box_texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).expect("svg");
    doc.descendants()
        .filter(|n| n.has_tag_name("g"))
        .map(|g| g.children().filter(|c| c.has_tag_name("text")).filter_map(|t| t.text()).collect::<Vec<_>>().join(" "))
        .collect()
}

fn welcome() -> (Program, Campaign, SourceText) {
    let rel = std::path::Path::new("examples/welcome.flow");
    let (analysis, ws) = common::check_file(rel, &Default::default());
    let (root, model) = &analysis.models[0];
    let c = model.campaigns.iter().find(|c| c.file == *root).expect("welcome").clone();
    let src = ws.sources.get(c.file).clone();
    (compile::compile(model, &c, &src), c, src)
}

#[test]
fn svg_shows_trigger_where_audience_labels_and_fallbacks() {
    let (_, c, src) = welcome();
    let svg = compile::graph::svg(&c, &src);
    let texts = box_texts(&svg);
    for want in [
        "trigger event contact.created where tags has \"onboarding\"",
        "audience new_signups",
        "hello:",
        "fallback none",
        "fallback sms.promotional pro_offer_sms",
        "else if plan == pro",
        "holdout 20%",
    ] {
        assert!(texts.iter().any(|t| t.contains(want)), "{want:?} not shown in {texts:#?}");
    }
}

#[test]
fn long_text_is_shortened_with_the_whole_of_it_in_the_tooltip() {
    let rel = std::path::Path::new("tests/data/graph/long_names.flow");
    let (analysis, ws) = common::check_file(rel, &Default::default());
    let (_, model) = &analysis.models[0];
    let c = model.campaigns.iter().find(|c| c.display_name.is_some()).expect("campaign");
    let svg = compile::graph::svg(c, ws.sources.get(c.file));
    let doc = roxmltree::Document::parse(&svg).expect("svg");
    let cut: Vec<_> =
        doc.descendants().filter(|n| n.has_tag_name("text") && n.text().is_some_and(|t| t.ends_with('…'))).collect();
    assert!(!cut.is_empty(), "some text of the long-names file is shortened");
    let solid = "a-single-tag-of-eighty-characters-with-no-spaces-at-all-so-it-must-break-zzzzzzz";
    let tooltips: Vec<&str> = doc.descendants().filter(|n| n.has_tag_name("title")).filter_map(|n| n.text()).collect();
    assert!(tooltips.iter().any(|t| t.contains(solid)), "the whole tag is in a tooltip");
    for t in cut {
        let g = t.parent().expect("box");
        let tip = g.children().find(|n| n.has_tag_name("title")).and_then(|n| n.text()).unwrap_or("");
        let shown = t.text().unwrap_or("").trim_end_matches('…');
        assert!(
            tip.replace(char::is_whitespace, "").contains(&shown.replace(char::is_whitespace, "")),
            "{shown:?} is part of the tooltip {tip:?}"
        );
    }
}

#[test]
fn dot_and_mermaid_show_the_trigger_audience_and_fallback_none() {
    let (p, c, _) = welcome();
    let d = dot_strings(&compile::graph::dot(&p, &c));
    let m = mermaid_labels(&compile::graph::mermaid(&p, &c));
    for (format, labels) in [("dot", &d), ("mermaid", &m)] {
        for want in [
            "TRIGGER event contact.created where tags has \"onboarding\"",
            "AUDIENCE in_segment(new_signups)",
            "fallback none",
            "hello",
        ] {
            assert!(labels.iter().any(|l| l.contains(want)), "{format}: {want:?} not shown in {labels:#?}");
        }
    }
}

/// Issue 19: a `set` is a box like a tag's, saying `set field = value`, in
/// the native SVG, DOT and Mermaid alike.
#[test]
fn set_steps_draw_like_tags() {
    let rel = std::path::Path::new("tests/data/compile/delivery.flow");
    let (analysis, ws) = common::check_file(rel, &Default::default());
    assert!(!analysis.has_errors(), "{:?}", analysis.diags);
    let (root, model) = &analysis.models[0];
    let c = model.campaigns.iter().find(|c| c.file == *root).expect("black_friday").clone();
    let src = ws.sources.get(c.file).clone();
    let p = compile::compile(model, &c, &src);
    let texts = box_texts(&compile::graph::svg(&c, &src));
    for want in ["SET lifetime_value = lifetime_value + 10", "bump: SET plan = pro", "SET last_promo_at = none"] {
        assert!(texts.iter().any(|t| t == want), "svg: {want:?} not a box of its own in {texts:#?}");
    }
    let dot = compile::graph::dot(&p, &c);
    let d = dot_strings(&dot);
    let m = mermaid_labels(&compile::graph::mermaid(&p, &c));
    for (format, labels) in [("dot", &d), ("mermaid", &m)] {
        for want in ["SET lifetime_value = lifetime_value + 10\nblack_friday/2", "SET plan = pro\nbump"] {
            assert!(labels.iter().any(|l| l == want), "{format}: {want:?} not shown in {labels:#?}");
        }
    }
    // The same colour as a tag's box.
    assert!(dot.contains("  n2 [shape=box, fillcolor=\"#d1fae5\""), "{dot}");
}

fn wait_until_fixture() -> (Program, Campaign, SourceText) {
    let rel = std::path::Path::new("tests/data/compile/wait_until.flow");
    let (analysis, ws) = common::check_file(rel, &Default::default());
    assert!(!analysis.has_errors(), "{:?}", analysis.diags);
    let (root, model) = &analysis.models[0];
    let c = model.campaigns.iter().find(|c| c.file == *root).expect("cart_wait").clone();
    let src = ws.sources.get(c.file).clone();
    (compile::compile(model, &c, &src), c, src)
}

/// Issue 18: a `wait until` is a split with one lane per arm and one for the
/// timeout, labelled with the arm's condition and `timeout 3d`, in the
/// native SVG, DOT and Mermaid alike.
#[test]
fn wait_until_draws_one_lane_per_arm_and_the_timeout() {
    let (p, c, src) = wait_until_fixture();
    let texts = box_texts(&compile::graph::svg(&c, &src));
    for want in [
        "cart: WAIT UNTIL first of 3 arms",
        "WAIT UNTIL first of 1 arm",
        "event order.completed where amount > 50",
        "clicked(reminder)",
        "plan == pro",
        "timeout 3d",
        "timeout 2d",
    ] {
        assert!(texts.iter().any(|t| t == want), "svg: {want:?} not a box of its own in {texts:#?}");
    }
    let dot = compile::graph::dot(&p, &c);
    let m = compile::graph::mermaid(&p, &c);
    let d = dot_strings(&dot);
    let ml = mermaid_labels(&m);
    for (format, labels) in [("dot", &d), ("mermaid", &ml)] {
        for want in [
            "event order.completed where amount > 50",
            "clicked(reminder)",
            "plan == pro",
            "timeout 3d",
            "event order.completed",
            "timeout 2d",
        ] {
            assert!(labels.iter().any(|l| l == want), "{format}: edge {want:?} not shown in {labels:#?}");
        }
    }
    // The wait (node 1) has one edge per path, to the path's own jump.
    assert!(dot.contains("  n1 -> n2 [label=\"event order.completed where amount > 50\"];"), "{dot}");
    assert!(dot.contains("  n1 -> n8 [label=\"timeout 3d\"];"), "{dot}");
    assert!(m.contains("  n1 -->|\"timeout 3d\"| n8"), "{m}");
}

/// Whether `rsvg-convert` can run here. Under `CI` it must (`.ci/run`
/// installs Debian's librsvg2-bin); elsewhere its absence skips the test,
/// said on standard error past the test harness's capture.
fn rsvg_convert() -> bool {
    use std::io::Write;
    let found = std::process::Command::new("rsvg-convert").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "rsvg-convert is not installed: .ci/run installs it (Debian package librsvg2-bin)"
        );
        let _ = writeln!(std::io::stderr(), "SKIPPED: rsvg-convert is not installed (apt-get install librsvg2-bin)");
    }
    found
}

/// Width and height from a PNG's header.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR", "not a PNG");
    let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    (be(16), be(20))
}

#[test]
fn every_picture_renders_to_png() {
    if !rsvg_convert() {
        return;
    }
    let dir = common::TempDir::new("graph-png");
    for (i, (name, svg)) in pictures().iter().enumerate() {
        let input = dir.path(&format!("{i}.svg"));
        let output = dir.path(&format!("{i}.png"));
        std::fs::write(&input, svg).expect("write svg");
        let run = std::process::Command::new("rsvg-convert")
            .args(["-o", &output, &input])
            .output()
            .expect("run rsvg-convert");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success() && stderr.trim().is_empty(), "{name}: rsvg-convert failed: {stderr}");
        let doc = roxmltree::Document::parse(svg).expect("svg");
        let want: (u32, u32) = (num(doc.root_element(), "width") as u32, num(doc.root_element(), "height") as u32);
        assert_eq!(png_size(&std::fs::read(&output).expect("png")), want, "{name}: the PNG has the picture's size");
    }
}

#[test]
fn graph_help_describes_every_flag_and_not_dis() {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_flowc")).args(["graph", "--help"]).output().expect("run flowc");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(!help.contains("dis"), "{help}");
    // Every argument and option line has its own words after the flag
    // (clap puts only `[default: …]` there when there is no help).
    let mut flags = 0;
    for line in help.lines().filter(|l| l.starts_with("  ")) {
        let entry = line.trim_start();
        if !(entry.starts_with('-') || entry.starts_with('<')) {
            continue;
        }
        flags += 1;
        let words = entry.split_once("  ").map(|(_, rest)| rest.trim()).unwrap_or("");
        assert!(!words.is_empty() && !words.starts_with('['), "no help for `{entry}`:\n{help}");
    }
    assert!(flags >= 7, "{help}");
}

/// A decoded 8-bit PNG as darkness per pixel (0 white … 255 black).
struct Ink {
    w: usize,
    h: usize,
    dark: Vec<u8>,
}

fn decode_png(bytes: &[u8]) -> Ink {
    let (w, h) = png_size(bytes);
    let (w, h) = (w as usize, h as usize);
    let (depth, color, interlace) = (bytes[24], bytes[25], bytes[28]);
    assert!(depth == 8 && interlace == 0, "only 8-bit, non-interlaced PNGs (rsvg-convert's)");
    let bpp = match color {
        0 => 1,
        2 => 3,
        4 => 2,
        6 => 4,
        c => panic!("PNG colour type {c}"),
    };
    let mut idat = Vec::new();
    let mut i = 8;
    while i + 12 <= bytes.len() {
        let len = u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize;
        let kind = &bytes[i + 4..i + 8];
        if kind == b"IDAT" {
            idat.extend_from_slice(&bytes[i + 8..i + 8 + len]);
        }
        i += 12 + len;
    }
    let raw = miniz_oxide::inflate::decompress_to_vec_zlib(&idat).expect("inflate PNG");
    let stride = w * bpp;
    assert_eq!(raw.len(), h * (stride + 1), "PNG data size");
    let mut prev = vec![0u8; stride];
    let mut dark = Vec::with_capacity(w * h);
    for r in 0..h {
        let filter = raw[r * (stride + 1)];
        let mut row = raw[r * (stride + 1) + 1..(r + 1) * (stride + 1)].to_vec();
        for x in 0..stride {
            let a = if x >= bpp { row[x - bpp] } else { 0 };
            let b = prev[x];
            let c = if x >= bpp { prev[x - bpp] } else { 0 };
            let add = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                4 => {
                    let p = i16::from(a) + i16::from(b) - i16::from(c);
                    let (pa, pb, pc) = ((p - i16::from(a)).abs(), (p - i16::from(b)).abs(), (p - i16::from(c)).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                f => panic!("PNG filter {f}"),
            };
            row[x] = row[x].wrapping_add(add);
        }
        for px in row.chunks(bpp) {
            // The picture has an opaque white background, so colour alone says how dark.
            let lightest_channel = match bpp {
                1 | 2 => px[0],
                _ => px[0].min(px[1]).min(px[2]),
            };
            dark.push(255 - lightest_channel);
        }
        prev = row;
    }
    Ink { w, h, dark }
}

/// The picture's texts alone, black on white, and where the metrics say
/// each one is.
fn texts_alone(svg: &str) -> (String, Vec<(String, Rect)>) {
    let doc = roxmltree::Document::parse(svg).expect("svg");
    let root = doc.root_element();
    let (w, h) = (num(root, "width"), num(root, "height"));
    let mut out = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{}"><rect width="100%" height="100%" fill="#ffffff"/>"##,
        root.attribute("font-family").unwrap_or("")
    );
    let mut rects = Vec::new();
    for t in root.descendants().filter(|n| n.has_tag_name("text")) {
        let text = t.text().unwrap_or("");
        let escaped = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        out.push_str(&format!(
            r##"<text x="{}" y="{}" font-size="{}" font-weight="{}" text-anchor="{}" fill="#000000">{escaped}</text>"##,
            num(t, "x"),
            num(t, "y"),
            num(t, "font-size"),
            t.attribute("font-weight").unwrap_or("normal"),
            t.attribute("text-anchor").unwrap_or("start")
        ));
        rects.push((text.to_string(), text_extent(t)));
    }
    out.push_str("</svg>");
    (out, rects)
}

/// Where the renderer really drew the text: every clearly dark pixel of the
/// texts-only rendering lies inside the extent the metrics gave its text,
/// so the box check above holds for real glyphs, not just for the table.
#[test]
fn rendered_text_stays_inside_its_measured_extent() {
    if !rsvg_convert() {
        return;
    }
    let dir = common::TempDir::new("graph-ink");
    let mut widest_ratio: f64 = 0.0;
    let mut problems = Vec::new();
    for (i, (name, svg)) in pictures().iter().enumerate() {
        let (alone, rects) = texts_alone(svg);
        let input = dir.path(&format!("{i}.svg"));
        let output = dir.path(&format!("{i}.png"));
        std::fs::write(&input, &alone).expect("write svg");
        let run = std::process::Command::new("rsvg-convert")
            .args(["-o", &output, &input])
            .output()
            .expect("run rsvg-convert");
        assert!(run.status.success(), "{name}: {}", String::from_utf8_lossy(&run.stderr));
        let ink = decode_png(&std::fs::read(&output).expect("png"));
        // Half-covered pixels of anti-aliasing may spill one pixel.
        let grown: Vec<Rect> = rects
            .iter()
            .map(|(_, r)| Rect { x0: r.x0 - 1.0, y0: r.y0 - 1.0, x1: r.x1 + 1.0, y1: r.y1 + 1.0 })
            .collect();
        let mut ink_x: Vec<(f64, f64)> = vec![(f64::INFINITY, f64::NEG_INFINITY); rects.len()];
        let mut stray = 0;
        for y in 0..ink.h {
            for x in 0..ink.w {
                if ink.dark[y * ink.w + x] < 128 {
                    continue;
                }
                let (cx, cy) = (x as f64 + 0.5, y as f64 + 0.5);
                match grown.iter().position(|r| r.x0 <= cx && cx <= r.x1 && r.y0 <= cy && cy <= r.y1) {
                    Some(k) => ink_x[k] = (ink_x[k].0.min(x as f64), ink_x[k].1.max(x as f64 + 1.0)),
                    None => {
                        if stray < 5 {
                            problems.push(format!("{name}: ink at ({x}, {y}) outside every measured text"));
                        }
                        stray += 1;
                    }
                }
            }
        }
        for ((text, r), (x0, x1)) in rects.iter().zip(ink_x) {
            if x1 > x0 && text.chars().count() >= 8 {
                widest_ratio = widest_ratio.max((x1 - x0) / (r.x1 - r.x0));
            }
        }
    }
    eprintln!("widest drawn text / measured width: {widest_ratio:.3}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(widest_ratio > 0.5, "the check saw the text ({widest_ratio})");
}
