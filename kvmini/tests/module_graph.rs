//! No module imports another in a cycle, and no library file is over
//! about 600 lines.
//!
//! Reads the sources of the library and of the CLI, follows the `mod`
//! declarations from the crate root (leaving out `#[cfg(test)]` modules),
//! and records every `crate::`, `super::` and `self::` path as an edge
//! between two sibling modules: a use of `crate::a::b::x` from inside
//! `crate::a::c` is an edge `a::c -> a::b`, one from inside `crate::d` an
//! edge `d -> a`. A parent using its child, or a child its parent, is not
//! an edge. Any strongly connected set of two or more siblings is a cycle,
//! and the test names it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path below the crate root (empty for the root).
type ModPath = Vec<String>;

struct Module {
    path: ModPath,
    file: PathBuf,
    /// The file's code, comments, strings and test modules removed.
    code: String,
}

/// Blanks comments and the insides of string and character literals,
/// keeping every other byte where it is (so offsets match the raw text).
fn strip(source: &str) -> String {
    let b = source.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for x in &mut out[from..to.min(b.len())] {
            if *x != b'\n' {
                *x = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if b[i..].starts_with(b"//") {
            let end = b[i..]
                .iter()
                .position(|&x| x == b'\n')
                .map_or(b.len(), |p| i + p);
            blank(&mut out, i, end);
            i = end;
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            let mut j = i;
            while j < b.len() {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if c == b'r' && matches!(b.get(i + 1), Some(b'"' | b'#')) && !ident_before(b, i) {
            let mut j = i + 1;
            while b.get(j) == Some(&b'#') {
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                i += 1;
                continue;
            }
            let mut close = vec![b'"'];
            close.extend(std::iter::repeat_n(b'#', j - i - 1));
            let open = j + 1;
            let mut k = open;
            while k < b.len() && !b[k..].starts_with(&close) {
                k += 1;
            }
            blank(&mut out, open, k);
            i = k + close.len();
        } else if c == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i + 1, j);
            i = j + 1;
        } else if c == b'\'' {
            // A character literal ('x', '\n', '\u{7f}'); anything else is a
            // lifetime or a label.
            let end = if b.get(i + 1) == Some(&b'\\') {
                b[i + 3..]
                    .iter()
                    .position(|&x| x == b'\'')
                    .map(|p| i + 3 + p)
            } else {
                let ch = source[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + ch) == Some(&b'\'')).then_some(i + 1 + ch)
            };
            match end {
                Some(e) => {
                    blank(&mut out, i + 1, e);
                    i = e + 1;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    // Only whole UTF-8 sequences were blanked, byte by byte.
    String::from_utf8(out).unwrap()
}

fn ident_before(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The index just past the block that opens at the first `{` from `start`.
fn block_end(code: &str, start: usize) -> usize {
    let mut depth = 0;
    for (k, c) in code[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return start + k + 1;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// A `mod` declaration: its name, whether it is test-only, its `#[path]`,
/// and for an inline module the range of its body.
struct ModDecl {
    name: String,
    test_only: bool,
    path_attr: Option<String>,
    inline: Option<(usize, usize)>,
    /// Where the declaration starts, its attributes included.
    start: usize,
}

fn mod_decls(raw: &str, code: &str) -> Vec<ModDecl> {
    let mut decls = Vec::new();
    let b = code.as_bytes();
    let mut from = 0;
    while let Some(p) = code[from..].find("mod ") {
        let at = from + p;
        from = at + 4;
        if ident_before(b, at) {
            continue;
        }
        let rest = &code[at + 4..];
        let name: String = rest
            .trim_start()
            .chars()
            .take_while(|&c| c.is_ascii_alphanumeric() || c == '_')
            .collect();
        let after = rest.trim_start()[name.len()..].trim_start();
        let inline = match after.chars().next() {
            Some(';') => None,
            Some('{') => {
                let open = at + 4 + rest.len() - after.len();
                Some((open, block_end(code, open)))
            }
            _ => continue,
        };
        // The attributes are the lines above the declaration that start
        // with `#[`, read from the raw text (the strip blanks their strings).
        let line_start = code[..at].rfind('\n').map_or(0, |n| n + 1);
        let mut start = line_start;
        let mut test_only = raw[line_start..at].contains("#[cfg(test)]");
        let mut path_attr = None;
        let mut prefix = &raw[..line_start];
        while let Some(line) = prefix.trim_end_matches('\n').lines().last() {
            let t = line.trim();
            if !t.starts_with("#[") && !t.starts_with("//") {
                break;
            }
            if t.starts_with("#[cfg(test)]") {
                test_only = true;
            }
            if let Some(p) = t.strip_prefix("#[path = \"") {
                path_attr = p.split('"').next().map(str::to_owned);
            }
            let cut = prefix.trim_end_matches('\n').len() - line.len();
            prefix = &raw[..cut];
            start = cut;
        }
        if let Some((_, end)) = inline {
            from = end;
        }
        decls.push(ModDecl {
            name,
            test_only,
            path_attr,
            inline,
            start,
        });
    }
    decls
}

/// Reads the module tree below the crate root file `root`.
fn read_crate(root: &Path) -> Vec<Module> {
    let mut modules = Vec::new();
    read_module(root, Vec::new(), true, &mut modules);
    modules
}

fn read_module(file: &Path, path: ModPath, owns_dir: bool, out: &mut Vec<Module>) {
    let raw = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let stripped = strip(&raw);
    let decls = mod_decls(&raw, &stripped);
    let dir = if owns_dir {
        file.parent().unwrap().to_path_buf()
    } else {
        file.with_extension("")
    };
    let mut code = stripped.clone();
    for d in decls.iter().rev() {
        if d.test_only {
            let end = d.inline.map_or_else(
                || d.start + stripped[d.start..].find(';').unwrap() + 1,
                |(_, e)| e,
            );
            code.replace_range(d.start..end, &" ".repeat(end - d.start));
            continue;
        }
        if d.inline.is_some() {
            continue;
        }
        let mut child = path.clone();
        child.push(d.name.clone());
        let (child_file, child_owns) = match &d.path_attr {
            Some(p) => (file.parent().unwrap().join(p), false),
            None => {
                let flat = dir.join(format!("{}.rs", d.name));
                if flat.exists() {
                    (flat, false)
                } else {
                    (dir.join(&d.name).join("mod.rs"), true)
                }
            }
        };
        read_module(&child_file, child, child_owns, out);
    }
    out.push(Module {
        path,
        file: file.to_path_buf(),
        code,
    });
}

/// The paths a module's code names, each as segments below the crate root.
fn referenced_paths(module: &Module) -> Vec<ModPath> {
    let code = &module.code;
    let b = code.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts = ["crate::", "super::", "self::"]
            .iter()
            .find(|p| code[i..].starts_with(**p));
        let Some(first) = starts else {
            i += 1;
            continue;
        };
        if ident_before(b, i) || (i > 0 && matches!(b[i - 1], b'$' | b':')) {
            i += first.len();
            continue;
        }
        let base: ModPath = match *first {
            "crate::" => Vec::new(),
            "self::" => module.path.clone(),
            _ => module.path[..module.path.len().saturating_sub(1)].to_vec(),
        };
        let mut j = i + first.len();
        let mut base = base;
        while code[j..].starts_with("super::") {
            base.pop();
            j += "super::".len();
        }
        let (paths, end) = parse_tree(code, j, base);
        found.extend(paths);
        i = end.max(i + 1);
    }
    found
}

/// Parses a path or use tree at `at` (after its `crate::`-like prefix),
/// returning every full path it names and where it ends.
fn parse_tree(code: &str, mut at: usize, prefix: ModPath) -> (Vec<ModPath>, usize) {
    let b = code.as_bytes();
    let mut path = prefix;
    loop {
        while at < b.len() && b[at].is_ascii_whitespace() {
            at += 1;
        }
        if at < b.len() && b[at] == b'{' {
            let mut all = Vec::new();
            at += 1;
            loop {
                while at < b.len() && (b[at].is_ascii_whitespace() || b[at] == b',') {
                    at += 1;
                }
                if at >= b.len() || b[at] == b'}' {
                    return (all, at + 1);
                }
                let (more, end) = parse_tree(code, at, path.clone());
                all.extend(more);
                at = end.max(at + 1);
            }
        }
        let start = at;
        while at < b.len() && is_ident(b[at]) {
            at += 1;
        }
        if at == start {
            return (vec![path], at);
        }
        let seg = &code[start..at];
        if seg != "self" {
            path.push(seg.to_owned());
        }
        if code[at..].starts_with("::") {
            at += 2;
        } else {
            return (vec![path], at);
        }
    }
}

/// The edges between sibling modules, with one place each comes from.
fn edges(modules: &[Module]) -> BTreeMap<(ModPath, ModPath), ModPath> {
    let known: BTreeSet<&ModPath> = modules.iter().map(|m| &m.path).collect();
    let mut out = BTreeMap::new();
    for m in modules {
        for p in referenced_paths(m) {
            // The longest prefix that is a module.
            let mut target = p.clone();
            while !known.contains(&target) {
                target.pop();
            }
            let common = m
                .path
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common < m.path.len() && common < target.len() {
                let from = m.path[..=common].to_vec();
                let to = target[..=common].to_vec();
                out.entry((from, to)).or_insert_with(|| m.path.clone());
            }
        }
    }
    out
}

/// Every cycle, as the sorted members of each strongly connected set of
/// two or more modules, with the edges inside it.
fn cycles(modules: &[Module]) -> Vec<String> {
    let edges = edges(modules);
    let mut graph: BTreeMap<&ModPath, Vec<&ModPath>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from).or_default().push(to);
    }
    // Two modules are in one cycle when each reaches the other.
    let reach = |from: &ModPath| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from];
        while let Some(n) = stack.pop() {
            for &next in graph.get(n).map_or(&[][..], Vec::as_slice) {
                if seen.insert(next) {
                    stack.push(next);
                }
            }
        }
        seen
    };
    let nodes: BTreeSet<&ModPath> = edges.keys().flat_map(|(a, b)| [a, b]).collect();
    let reached: BTreeMap<&ModPath, BTreeSet<&ModPath>> =
        nodes.iter().map(|&n| (n, reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for &n in &nodes {
        if done.contains(n) || !reached[n].contains(n) {
            continue;
        }
        let set: Vec<&ModPath> = nodes
            .iter()
            .copied()
            .filter(|m| reached[n].contains(m) && reached[m].contains(n))
            .collect();
        let inside: Vec<String> = edges
            .iter()
            .filter(|((a, b), _)| set.contains(&a) && set.contains(&b))
            .map(|((a, b), at)| format!("{} -> {} (in {})", name(a), name(b), name(at)))
            .collect();
        out.push(format!(
            "cycle between {}: {}",
            set.iter().map(|m| name(m)).collect::<Vec<_>>().join(", "),
            inside.join("; ")
        ));
        done.extend(set);
    }
    out
}

fn name(path: &ModPath) -> String {
    format!("crate::{}", path.join("::"))
}

fn crate_cycles(root: &Path) -> Vec<String> {
    cycles(&read_crate(root))
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn library_modules_import_each_other_in_no_cycle() {
    let root = workspace().join("kvmini/src/lib.rs");
    let modules = read_crate(&root);
    // The walk reaches the modules it must: a broken walk finds no cycle.
    for m in ["sandbox::run", "arch::x86_64::paging", "loader", "stop"] {
        let path: ModPath = m.split("::").map(str::to_owned).collect();
        assert!(
            modules.iter().any(|x| x.path == path),
            "module {m} not read"
        );
    }
    assert!(!edges(&modules).is_empty());

    assert_eq!(cycles(&modules), Vec::<String>::new());
}

/// The longest a library file may be, its `#[cfg(test)]` modules left
/// out: "about 600 lines", with room for a few more.
const MOST_LINES: usize = 650;

/// The files of the crate rooted at `root` that are longer than
/// [`MOST_LINES`] without their test modules, with their lengths.
fn long_files(root: &Path) -> Vec<(PathBuf, usize)> {
    let mut modules = Vec::new();
    read_module(root, Vec::new(), true, &mut modules);
    let mut long: Vec<(PathBuf, usize)> = modules
        .into_iter()
        .map(|m| (m.file, m.code.lines().count()))
        .filter(|&(_, lines)| lines > MOST_LINES)
        .collect();
    long.sort();
    long
}

#[test]
fn no_library_file_is_over_about_600_lines() {
    for root in [
        "kvmini/src/lib.rs",
        "kvmini-abi/src/lib.rs",
        "kvmini-guest/src/lib.rs",
    ] {
        assert_eq!(long_files(&workspace().join(root)), Vec::new(), "{root}");
    }
}

#[test]
fn a_long_file_is_named_and_its_test_module_is_not_counted() {
    let body = "fn f() {}\n".repeat(MOST_LINES);
    let tests = format!("#[cfg(test)]\nmod tests {{\n{body}}}\n");
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("lib.rs", "mod long;\nmod tested;\n");
    write("long.rs", &format!("{body}fn g() {{}}\n"));
    write("tested.rs", &format!("fn g() {{}}\n{tests}"));
    assert_eq!(
        long_files(&dir.path().join("lib.rs")),
        vec![(dir.path().join("long.rs"), MOST_LINES + 1)]
    );
}

#[test]
fn cli_modules_import_each_other_in_no_cycle() {
    let root = workspace().join("kvmini-cli/src/main.rs");
    let modules = read_crate(&root);
    assert!(modules.len() > 1, "the CLI's modules were not read");
    assert_eq!(cycles(&modules), Vec::<String>::new());
}

/// Writes a crate of the given files into a temporary folder and returns
/// the cycles found in it.
fn planted(files: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    crate_cycles(&dir.path().join("lib.rs"))
}

#[test]
fn a_planted_cycle_between_top_level_modules_is_named() {
    let found = planted(&[
        ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        ("a.rs", "use crate::b::Thing;\n"),
        ("b.rs", "pub struct Thing;\nfn f() { crate::c::g() }\n"),
        ("c/mod.rs", "mod inner;\npub fn g() {}\n"),
        ("c/inner.rs", "use crate::{a, b::Thing};\n"),
    ]);
    assert_eq!(
        found,
        vec![
            "cycle between crate::a, crate::b, crate::c: crate::a -> crate::b (in crate::a); \
             crate::b -> crate::c (in crate::b); crate::c -> crate::a (in crate::c::inner); \
             crate::c -> crate::b (in crate::c::inner)"
        ]
    );
}

#[test]
fn a_planted_cycle_between_submodules_of_one_folder_is_named() {
    let found = planted(&[
        ("lib.rs", "pub mod f;\n"),
        ("f/mod.rs", "mod x;\nmod y;\nuse self::x::X;\n"),
        ("f/x.rs", "pub struct X;\nuse super::y::Y;\n"),
        ("f/y.rs", "pub struct Y(super::super::f::x::X);\n"),
    ]);
    assert_eq!(
        found,
        vec![
            "cycle between crate::f::x, crate::f::y: crate::f::x -> crate::f::y (in crate::f::x); \
             crate::f::y -> crate::f::x (in crate::f::y)"
        ]
    );
}

#[test]
fn parents_children_tests_comments_and_strings_make_no_cycle() {
    let found = planted(&[
        (
            "lib.rs",
            "pub mod a;\npub mod b;\n#[cfg(test)]\nmod tests;\n\
             #[cfg(test)]\nmod inline { use crate::a; }\n",
        ),
        // The parent uses its child and the child its parent: no edge.
        ("a/mod.rs", "mod kid;\npub struct P;\nuse kid::K;\n"),
        ("a/kid.rs", "pub struct K(super::P);\nuse crate::b::B;\n"),
        (
            "b.rs",
            "pub struct B;\n// crate::a::P\nconst S: &str = \"crate::a::P\";\n\
             const R: &str = r#\"crate::a\"#;\nconst C: char = '{';\n\
             #[cfg(test)]\nmod tests { use crate::a::P; }\n",
        ),
        ("tests.rs", "use crate::a::P;\nuse crate::b::B;\n"),
    ]);
    assert_eq!(found, Vec::<String>::new());
}
