//! Front-end benchmarks: parse throughput (issue: ≥ 20 MB/s on 5 MB) and
//! checking a 1,000-campaign workspace (< 1 s, linear from 100 to 1,000).

mod support;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flowc::check::{self, CheckOptions};
use flowc::source::FileId;
use flowc::workspace::{self, Root};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn parse(c: &mut Criterion) {
    let text = support::big_file(5 << 20);
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("5MB", |b| {
        b.iter(|| {
            let (tree, diags) = flowc::syntax::parse(&text, FileId(0));
            assert!(diags.is_empty());
            tree
        })
    });
    g.bench_function("5MB_one_thread", |b| {
        b.iter(|| flowc::syntax::parse_with(&text, FileId(0), flowc::syntax::ParseOptions { threads: 1 }))
    });
    g.finish();
}

/// The generated files, by their path relative to the current folder (the
/// loader asks for real, absolute paths).
fn reader(files: &HashMap<PathBuf, String>) -> impl Fn(&Path) -> Result<Vec<u8>, flowc::files::ReadError> + '_ {
    let cwd = std::env::current_dir().unwrap_or_default();
    move |p: &Path| {
        files
            .get(p.strip_prefix(&cwd).unwrap_or(p))
            .map(|s| s.clone().into_bytes())
            .ok_or(flowc::files::ReadError::NotFound)
    }
}

pub fn load_and_check(files: &HashMap<PathBuf, String>, roots: &[Root]) -> check::Analysis {
    let ws = workspace::load(roots, &reader(files));
    check::check_all(&ws, &[], &CheckOptions::default())
}

fn check(c: &mut Criterion) {
    let mut g = c.benchmark_group("check");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for n in [100usize, 1000] {
        let files: HashMap<PathBuf, String> =
            support::workspace(n).into_iter().map(|(p, t)| (PathBuf::from(p), t)).collect();
        let lines: usize = files.values().map(|t| t.lines().count()).sum();
        let roots: Vec<Root> =
            (0..n).map(|i| Root::discover(Path::new(&format!("ws/c{i}.flow"))).expect("root")).collect();
        let a = load_and_check(&files, &roots);
        assert!(!a.has_errors(), "generated workspace must check clean: {:?}", a.diags.first());
        eprintln!("check/{n}: {n} campaigns, {lines} lines");
        g.bench_function(format!("{n}_campaigns"), |b| b.iter(|| load_and_check(&files, &roots)));
        if n == 1000 {
            // Issue target: compiling adds less than 20% to checking.
            let ws = workspace::load(&roots, &reader(&files));
            let analysis = check::check_all(&ws, &[], &CheckOptions::default());
            g.bench_function("1000_campaigns_compile_only", |b| {
                b.iter(|| {
                    let mut programs = 0;
                    for (root, model) in &analysis.models {
                        for c in model.campaigns.iter().filter(|c| c.file == *root) {
                            std::hint::black_box(flowc::compile::compile(model, c, ws.sources.get(c.file)));
                            programs += 1;
                        }
                    }
                    assert_eq!(programs, 1000);
                })
            });
        }
    }
    g.finish();
}

/// Issue target: formatting the 1,000-campaign workspace in under 1 s.
fn format(c: &mut Criterion) {
    let files = support::workspace(1000);
    let mut g = c.benchmark_group("fmt");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("1000_campaigns", |b| {
        b.iter(|| {
            let mut bytes = 0;
            for (_, text) in &files {
                let (tree, diags) = flowc::syntax::parse(text, FileId(0));
                assert!(diags.is_empty());
                bytes += flowc::fmt::format(&tree, text).len();
            }
            bytes
        })
    });
    g.finish();
}

criterion_group!(benches, parse, check, format);
criterion_main!(benches);
