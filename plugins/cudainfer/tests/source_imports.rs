//! The import rules of docs/architecture.md, checked on the source text so
//! that they cannot rot: the top-level modules of `src/` import each other
//! without a cycle, `families/` never imports `inference/`, `inference/`
//! names no family, and the metas import no element or engine.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("readable source directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The file's lines of code: comments dropped (line comments and doc
/// comments; the sources use no block comments).
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    let text = fs::read_to_string(path).expect("readable source file");
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let code = match line.find("//") {
                // A `//` inside a string (a URL) is rare enough in use
                // lines to ignore; the rules only read paths.
                Some(at) => &line[..at],
                None => line,
            };
            let code = code.trim();
            (!code.is_empty()).then(|| (i + 1, code.to_string()))
        })
        .collect()
}

/// The top-level module a file under `src/` belongs to (`None` for lib.rs,
/// the crate root, which declares and re-exports them all).
fn top_module(path: &Path) -> Option<String> {
    let relative = path.strip_prefix(src()).expect("under src/");
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (name != "lib").then(|| name.to_string())
}

/// The top-level modules named by `crate::` paths on `line`, grouped
/// imports (`use crate::{a, b::C}`) included.
fn crate_paths(line: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let head = item.trim().split("::").next().unwrap_or("").trim();
                if modules.contains(head) {
                    found.insert(head.to_string());
                }
            }
        } else {
            let head: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if modules.contains(&head) {
                found.insert(head);
            }
        }
    }
    found
}

/// Which top-level modules each one imports.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let files = rust_files(&src());
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(from) = top_module(file) else {
            continue;
        };
        let edges = graph.entry(from.clone()).or_default();
        for (_, line) in code_lines(file) {
            edges.extend(
                crate_paths(&line, &modules)
                    .into_iter()
                    .filter(|m| *m != from),
            );
        }
    }
    graph
}

/// A cycle of `graph`, if it has one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// Lines of files under `src/<dir>` whose code matches `bad`.
fn offending(dir: &str, bad: impl Fn(&str) -> bool) -> Vec<String> {
    rust_files(&src().join(dir))
        .iter()
        .flat_map(|file| {
            code_lines(file)
                .into_iter()
                .filter(|(_, line)| bad(line))
                .map(move |(n, line)| format!("{}:{n}: {line}", file.display()))
        })
        .collect()
}

#[test]
fn top_level_modules_import_each_other_without_a_cycle() {
    let graph = module_graph();
    assert!(graph.contains_key("families") && graph.contains_key("inference"));
    assert_eq!(find_cycle(&graph), None, "import graph: {graph:#?}");
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&graph), None);
    graph.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

#[test]
fn grouped_and_plain_crate_paths_are_both_read() {
    let modules: BTreeSet<String> = ["spec", "meta", "inference"].map(String::from).into();
    let found = crate_paths("use crate::{spec, meta::detections::X, Skip};", &modules);
    assert_eq!(found, ["meta", "spec"].map(String::from).into());
    let found = crate_paths("let x = crate::inference::run(crate::Foo);", &modules);
    assert_eq!(found, ["inference"].map(String::from).into());
}

#[test]
fn families_never_import_inference() {
    let lines = offending("families", |line| line.contains("inference::"));
    assert!(
        lines.is_empty(),
        "families/ imports inference/:\n{}",
        lines.join("\n")
    );
}

#[test]
fn inference_names_no_family() {
    // Families are reached through the contract (`families::Family`,
    // `families::new_family`), never by name.
    let names = ["yolox", "yolov8", "ssd", "ultraface"];
    let modules = ["yolox", "yolov8", "ssd", "classifier", "raw"];
    let lines = offending("inference", |line| {
        let lower = line.to_lowercase();
        names.iter().any(|n| lower.contains(n))
            || modules
                .iter()
                .any(|m| line.contains(&format!("families::{m}")))
            || line.contains("ModelType::")
    });
    assert!(
        lines.is_empty(),
        "inference/ names a family:\n{}",
        lines.join("\n")
    );
}

#[test]
fn metas_import_no_element_or_engine() {
    let others = [
        "cudapreprocess",
        "trtinfer",
        "inferoverlay",
        "infertrack",
        "inferpublish",
        "inference",
        "families",
        "preprocess",
    ];
    let lines = offending("meta", |line| {
        others.iter().any(|m| line.contains(&format!("crate::{m}")))
    });
    assert!(
        lines.is_empty(),
        "meta/ imports above it:\n{}",
        lines.join("\n")
    );
}
