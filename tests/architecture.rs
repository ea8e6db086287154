//! Keeps the module map of ARCHITECTURE.md true: imports between castgate's
//! top-level modules point one way (no cycle), and the leaf modules import
//! nothing of castgate.
//!
//! It reads `src/` as text: every `crate::NAME` path (including inside
//! `use crate::{…}` groups) in a module's non-test code is an edge from that
//! module to `NAME`. Test code (`#[cfg(test)]` items and the files of
//! `#[cfg(test)] mod NAME;` modules) may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that must not import any other castgate module.
const LEAVES: &[&str] = &[
    "amf",
    "limits",
    "locks",
    "settings",
    "shutdown",
    "stream_key",
    "text",
];

/// One import: from a module to another, with where it is written.
#[derive(Clone, Debug)]
struct Edge {
    to: String,
    at: String,
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level modules: `src/NAME.rs` and `src/NAME/`, but not the crate
/// roots and the binaries.
fn top_level_modules() -> BTreeSet<String> {
    std::fs::read_dir(src())
        .expect("src/ is readable")
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            if p.is_dir() {
                Some(name)
            } else {
                name.strip_suffix(".rs").map(str::to_string)
            }
        })
        .filter(|n| !matches!(n.as_str(), "lib" | "main" | "bin"))
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `text` without comment lines (a doc link is not an import) and without
/// its `#[cfg(test)]` items: the attribute's next item is skipped, a
/// `mod NAME;` line or a braced block.
fn without_tests(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim_start().starts_with("//") {
            out.push('\n');
            continue;
        }
        if line.trim() != "#[cfg(test)]" {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        // Skip the item: up to its `;`, or its balanced braces.
        let mut depth = 0i32;
        let mut opened = false;
        for line in lines.by_ref() {
            for c in line.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if (opened && depth <= 0) || (!opened && line.trim_end().ends_with(';')) {
                break;
            }
        }
        out.push('\n');
    }
    out
}

/// The castgate modules a text names: `crate::NAME` and the names inside
/// `crate::{…}` groups (their first segment), each with its line number.
fn imports(text: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find("crate::") {
        let start = from + i;
        from = start + "crate::".len();
        // `crate::` preceded by an identifier character is another path
        // (`$crate::`, `my_crate::`).
        if start > 0
            && (bytes[start - 1].is_ascii_alphanumeric()
                || bytes[start - 1] == b'_'
                || bytes[start - 1] == b'$')
        {
            continue;
        }
        let line = text[..start].matches('\n').count() + 1;
        let rest = &text[from..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            for item in split_top_level(&group[..end]) {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push((name, line));
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push((name, line));
            }
        }
    }
    found
}

/// The index of the `}` closing a group whose `{` was just consumed.
fn matching_brace(s: &str) -> usize {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    s.len()
}

/// Splits `a, b::{c, d}, e` at its top-level commas.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut last) = (0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[last..i]);
                last = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[last..]);
    parts
}

/// The files of test-only modules: `#[cfg(test)] mod NAME;` in `dir/x.rs`
/// is `dir/x/NAME.rs` (or `dir/NAME.rs` from a `mod.rs`, `lib.rs`).
fn test_module_files(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for pair in lines.windows(2) {
            let (attr, decl) = (pair[0], pair[1]);
            let Some(name) = decl.strip_prefix("mod ").and_then(|d| d.strip_suffix(';')) else {
                continue;
            };
            if attr != "#[cfg(test)]" {
                continue;
            }
            let dir = file.parent().unwrap();
            let stem = file.file_stem().unwrap().to_str().unwrap();
            let base = if matches!(stem, "mod" | "lib" | "main") {
                dir.to_path_buf()
            } else {
                dir.join(stem)
            };
            out.insert(base.join(format!("{name}.rs")));
            out.insert(base.join(name).join("mod.rs"));
        }
    }
    out
}

/// Module → the modules it imports, with one place each edge is written.
fn graph() -> BTreeMap<String, BTreeMap<String, Edge>> {
    let modules = top_level_modules();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let test_files = test_module_files(&files);
    let mut graph: BTreeMap<String, BTreeMap<String, Edge>> = modules
        .iter()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect();
    for file in files {
        let rel = file.strip_prefix(src()).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        let module = first.strip_suffix(".rs").unwrap_or(first).to_string();
        if !modules.contains(&module) || test_files.contains(&file) {
            continue;
        }
        let text = without_tests(&std::fs::read_to_string(&file).unwrap());
        for (to, line) in imports(&text) {
            if to == module || !modules.contains(&to) {
                continue;
            }
            let at = format!("src/{}:{line}", rel.display());
            graph
                .get_mut(&module)
                .unwrap()
                .entry(to.clone())
                .or_insert(Edge { to, at });
        }
    }
    graph
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeMap<String, Edge>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeMap<String, Edge>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph[v].keys() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                s.found.push(scc);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.found
}

#[test]
fn top_level_modules_import_one_way() {
    let graph = graph();
    let found = cycles(&graph);
    let mut report = String::new();
    for scc in &found {
        report.push_str(&format!("cycle among {}:\n", scc.join(", ")));
        for from in scc {
            for (to, edge) in &graph[from] {
                if scc.contains(to) {
                    report.push_str(&format!("  {from} -> {} ({})\n", edge.to, edge.at));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "imports between modules form cycles:\n{report}"
    );
}

#[test]
fn leaf_modules_import_nothing_of_castgate() {
    let graph = graph();
    // `media` reads Enhanced RTMP's AMF-encoded video metadata: AMF, a leaf,
    // is all it may import.
    let media = graph.get("media").expect("no module media in src/");
    let beyond: Vec<_> = media
        .values()
        .filter(|e| e.to != "amf")
        .map(|e| format!("{} ({})", e.to, e.at))
        .collect();
    assert!(beyond.is_empty(), "media imports more than amf: {beyond:?}");
    for leaf in LEAVES {
        let edges = graph
            .get(*leaf)
            .unwrap_or_else(|| panic!("no module {leaf} in src/"));
        assert!(
            edges.is_empty(),
            "{leaf} is a leaf module but imports {:?}",
            edges
                .values()
                .map(|e| format!("{} ({})", e.to, e.at))
                .collect::<Vec<_>>()
        );
    }
}

/// The reader itself: groups, nested groups, test items and other crates'
/// paths.
#[test]
fn the_import_reader_finds_what_it_must() {
    let text = "use crate::{hub::{Hub, X}, media as m};\n\
                //! See [`Ctx`](crate::server::Ctx).\n\
                fn f() { crate::auth::check(); my_crate::no(); }\n\
                #[cfg(test)]\nmod tests {\n    use crate::server::Y;\n    fn g() { }\n}\n\
                #[cfg(test)]\nmod more;\n\
                use crate::egress::Relays;\n";
    let names: Vec<(String, usize)> = imports(&without_tests(text));
    let names: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["hub", "media", "auth", "egress"]);

    let mut g: BTreeMap<String, BTreeMap<String, Edge>> = BTreeMap::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e")] {
        g.entry(a.into()).or_default().insert(
            b.into(),
            Edge {
                to: b.into(),
                at: String::new(),
            },
        );
        g.entry(b.into()).or_default();
    }
    assert_eq!(
        cycles(&g),
        vec![vec!["a".to_string(), "b".into(), "c".into()]]
    );
}
