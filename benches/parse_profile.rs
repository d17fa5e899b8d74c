//! Not a benchmark: a plain loop for profilers (`valgrind --tool=callgrind`).
#[path = "support/mod.rs"]
mod support;
fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let text = support::big_file(1 << 20);
    let t = std::time::Instant::now();
    let (tree, diags) = flowc::syntax::parse(&text, flowc::source::FileId(0));
    eprintln!("{} items, {} diags, {:?}", tree.items.len(), diags.len(), t.elapsed());
}
