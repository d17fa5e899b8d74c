//! HTML for the console's pages: [`escape`], and [`Html`], a builder that
//! takes markup only as `&'static str` (written in this crate) and escapes
//! every other text it is given, so a name from a `.flow` file or a contact
//! can only ever become text.

use std::fmt::Display;

/// `s` as HTML text or a quoted attribute value: `& < > " '` become
/// character references, so nothing in it can open a tag, end an attribute
/// or start an entity.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A page being written.
#[derive(Default)]
pub struct Html {
    out: String,
}

/// An SVG picture whose text the graph renderer has already escaped
/// (`compile::graph::render`); the only markup not written here.
pub struct Svg(pub String);

impl Html {
    pub fn new() -> Html {
        Html::default()
    }

    /// Markup written in this crate.
    pub fn m(&mut self, markup: &'static str) -> &mut Html {
        self.out.push_str(markup);
        self
    }

    /// Text from anywhere, escaped.
    pub fn t(&mut self, text: impl Display) -> &mut Html {
        self.out.push_str(&escape(&text.to_string()));
        self
    }

    /// Another piece of the page, built the same way.
    pub fn html(&mut self, other: Html) -> &mut Html {
        self.out.push_str(&other.out);
        self
    }

    /// The timeline picture, without its XML declaration (it is inline in HTML).
    pub fn svg(&mut self, svg: &Svg) -> &mut Html {
        let body = match svg.0.strip_prefix("<?xml") {
            Some(rest) => rest.split_once("?>").map_or("", |(_, r)| r),
            None => &svg.0,
        };
        self.out.push_str(body.trim_start());
        self
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_never_becomes_markup() {
        let mut h = Html::new();
        h.m("<p title=\"").t("\" onmouseover=\"x").m("\">").t("<img src=x onerror=alert(1)> & 'q'").m("</p>");
        assert_eq!(
            h.finish(),
            "<p title=\"&quot; onmouseover=&quot;x\">&lt;img src=x onerror=alert(1)&gt; &amp; &#39;q&#39;</p>"
        );
    }

    #[test]
    fn the_svg_loses_its_xml_declaration() {
        let mut h = Html::new();
        h.svg(&Svg("<?xml version=\"1.0\"?>\n<svg></svg>\n".into()));
        assert_eq!(h.finish(), "<svg></svg>\n");
    }
}
