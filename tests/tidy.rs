//! Rules of the code's shape, checked on the source text: commands stay
//! thin, modules depend on each other in one direction, and only the store
//! builds store paths. Each failure names the file and the rule.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap_or_else(|e| panic!("reading {}: {e}", d.display())).flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The source without its comments and without its `#[cfg(test)]` part
/// (tests may reach anywhere).
fn code_of(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines().map(|l| if l.trim_start().starts_with("//") { "" } else { l }).collect::<Vec<_>>().join("\n")
}

fn rel(p: &Path) -> String {
    p.strip_prefix(repo()).unwrap_or(p).display().to_string()
}

/// The modules named after `prefix` (`crate::`, `super::`), including those
/// inside a `prefix{a, b::c}` group.
fn named_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            let mut items = Vec::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => items.push(std::mem::take(&mut item)),
                    _ if depth == 0 => item.push(c),
                    _ => {}
                }
            }
            items.push(item);
            for it in items {
                let name: String = it.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// Strongly connected groups of more than one node.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Reachability by depth-first search from each node: small graphs.
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(n) = todo.pop() {
            for m in graph.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    todo.push(m.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> = graph.keys().map(|k| (k, reach(k))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for a in graph.keys() {
        if done.contains(a) {
            continue;
        }
        let group: Vec<String> = graph
            .keys()
            .filter(|b| *b == a || (reachable[a].contains(*b) && reachable[*b].contains(a)))
            .cloned()
            .collect();
        if group.len() > 1 {
            done.extend(group.iter().cloned());
            out.push(group);
        }
    }
    out
}

#[test]
fn commands_only_parse_and_print() {
    let forbidden = [
        ("img_sys", "a system call"),
        (".index()", "the index"),
        (".index_mut()", "the index"),
        ("Client::connect", "a registry client"),
    ];
    let mut found = Vec::new();
    for f in rust_files(&repo().join("src/cli")) {
        let code = code_of(&f);
        for (what, meaning) in forbidden {
            if code.contains(what) {
                found.push(format!("{} names {what} ({meaning}); move that work into ops/", rel(&f)));
            }
        }
    }
    assert!(found.is_empty(), "src/cli parses flags and prints, nothing more:\n{}", found.join("\n"));
}

#[test]
fn top_level_modules_have_no_cycles() {
    let src = repo().join("src");
    let mut modules: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for e in fs::read_dir(&src).unwrap().flatten() {
        let p = e.path();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "main" || name == "lib" {
            continue;
        }
        let files = if p.is_dir() { rust_files(&p) } else { vec![p] };
        modules.entry(name).or_default().extend(files);
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, files) in &modules {
        let deps = graph.entry(m.clone()).or_default();
        for f in files {
            for n in named_after(&code_of(f), "crate::") {
                if n != *m && modules.contains_key(&n) {
                    deps.insert(n);
                }
            }
        }
    }
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "modules that depend on each other (give what they share a home below both): {found:?}\n{graph:#?}"
    );
}

#[test]
fn files_of_one_module_do_not_use_each_other() {
    let mut found = Vec::new();
    let mut dirs: Vec<(PathBuf, String)> = Vec::new();
    for e in fs::read_dir(repo().join("src")).unwrap().flatten() {
        if e.path().is_dir() {
            let name = e.file_name().to_string_lossy().into_owned();
            dirs.push((e.path(), format!("crate::{name}::")));
        }
    }
    for krate in ["fuse", "sys", "gotemplate"] {
        let d = repo().join(krate).join("src");
        if d.is_dir() {
            dirs.push((d, "crate::".into()));
        }
    }
    for (dir, own) in dirs {
        let files: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "rs"))
            .filter(|p| !matches!(p.file_stem().unwrap().to_str(), Some("mod" | "lib" | "main")))
            .collect();
        let names: BTreeSet<String> =
            files.iter().map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in &files {
            let me = f.file_stem().unwrap().to_string_lossy().into_owned();
            let code = code_of(f);
            let mut used = named_after(&code, &own);
            used.extend(named_after(&code, "super::"));
            let deps = graph.entry(me.clone()).or_default();
            deps.extend(used.into_iter().filter(|n| *n != me && names.contains(n)));
        }
        for group in cycles(&graph) {
            found.push(format!("{}: {}", rel(&dir), group.join(" <-> ")));
        }
    }
    assert!(
        found.is_empty(),
        "files that depend on each other (give what they share a file of its own):\n{}",
        found.join("\n")
    );
}

#[test]
fn only_the_store_builds_store_paths() {
    // The names of the store's own files and directories (store/paths.rs).
    let names = ["\"img.db\"", "\"gc.lock\"", "\"lazy\"", "\"mounts\"", "\"uploads\"", "\"ingest\"", "\"indexes\""];
    let mut found = Vec::new();
    for f in rust_files(&repo().join("src")) {
        if rel(&f).starts_with("src/store/") {
            continue;
        }
        let code = code_of(&f);
        for n in names {
            if code.contains(&format!("join({n})")) {
                found.push(format!("{} joins {n}; ask StorePaths for that path", rel(&f)));
            }
        }
        // An OCI layout has a blobs/sha256 too: archives write those.
        if !rel(&f).starts_with("src/archive/") && code.contains("join(\"blobs/sha256\")") {
            found.push(format!("{} joins \"blobs/sha256\"; ask StorePaths for the blob's path", rel(&f)));
        }
    }
    assert!(found.is_empty(), "store paths are made by store/paths.rs only:\n{}", found.join("\n"));
}

#[test]
fn the_rules_see_what_they_look_for() {
    let code =
        "use crate::{ops::pull, mount, index::{Index, X}};\nlet x = crate::store::Store::open(p);\nnotcrate::skip";
    let got = named_after(code, "crate::");
    assert_eq!(got.into_iter().collect::<Vec<_>>(), ["index", "mount", "ops", "store"]);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.insert("a".into(), ["b".to_string()].into());
    g.insert("b".into(), ["c".to_string()].into());
    g.insert("c".into(), ["a".to_string()].into());
    g.insert("d".into(), ["a".to_string()].into());
    assert_eq!(cycles(&g), vec![vec!["a".to_string(), "b".into(), "c".into()]]);
    g.get_mut("c").unwrap().clear();
    assert!(cycles(&g).is_empty());
}
