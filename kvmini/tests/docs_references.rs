//! The documentation refers to code by item, never by line, and every
//! reference still names something that exists: in `docs/*.md` and
//! `README.md`, each code path in backticks (`kvmini/src/vm.rs`, or a
//! unique tail of one such as `vm.rs`) names a file of the repository,
//! and the item beside it (`` `vm.rs`, `Vm::new` ``, or a path before it:
//! `` `Vm::new` (`vm.rs`) ``) is defined in that file; no text, code blocks
//! included, gives a line number (`vm.rs:46`). Files of other languages
//! count when named with a directory (`sdk/c/kvmini.h`). And the crate doc of
//! `kvmini` lists every hypercall of `kvmini_abi::Port::ALL`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

use std::fs;
use std::path::{Path, PathBuf};

use kvmini_abi::Port;

/// The extensions of the files a reference may name.
const CODE: &[&str] = &["rs", "c", "h", "ld", "S"];

fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Every code file of the repository, as a path from its root with `/`.
fn code_files(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let entries = fs::read_dir(dir).expect("a readable directory");
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') || name == "target" {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| CODE.contains(&e))
            {
                let relative = path.strip_prefix(root).expect("under the root");
                out.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// The files a reference's path names: the file of that path from the
/// root, or else every file whose path ends with it.
fn resolve<'a>(path: &str, files: &'a [String]) -> Vec<&'a String> {
    if let Some(exact) = files.iter().find(|f| *f == path) {
        return vec![exact];
    }
    let tail = format!("/{}", path.trim_start_matches("./"));
    files.iter().filter(|f| f.ends_with(&tail)).collect()
}

/// `path` and the line number after it, when `span` is a code path
/// (`kvmini/src/vm.rs`, `vm.rs:46`, `vm.rs:47-60`).
fn code_path(span: &str) -> Option<(&str, Option<&str>)> {
    if span.contains(char::is_whitespace) || span.contains('*') {
        return None;
    }
    let (path, line) = match span.split_once(':') {
        Some((path, line)) => (path, Some(line)),
        None => (span, None),
    };
    let line_ok =
        line.is_none_or(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_digit() || c == '-'));
    let ext = path.rsplit_once('.').map(|(_, ext)| ext)?;
    // Other languages' files only with a directory (`sdk/c/kvmini.h`): a
    // bare `guest.c` may name a program of another project.
    let ours = ext == "rs" || (CODE.contains(&ext) && path.contains('/'));
    (line_ok && ours && !path.starts_with('.')).then_some((path, line))
}

/// The last segment of `span` when it is a Rust path (`Vm::new`,
/// `parse_size`, `Vcpu::run()`), the name an item is defined by.
fn item_name(span: &str) -> Option<&str> {
    let span = span.strip_suffix("()").unwrap_or(span);
    let ident = |s: &str| {
        s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    span.split("::")
        .all(ident)
        .then(|| span.rsplit("::").next())?
}

/// Whether `source` defines `name`: as a function, type, module, constant,
/// static, trait or macro, or as an enum variant or a struct field (a line
/// that starts with the name); in C and linker scripts, anywhere as a word.
fn defines(source: &str, name: &str, rust: bool) -> bool {
    fn is_ident(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '_'
    }
    // What follows `name` at the start of `text`, when it is a whole word.
    fn word<'a>(text: &'a str, name: &str) -> Option<&'a str> {
        text.strip_prefix(name)
            .filter(|rest| !rest.starts_with(is_ident))
    }
    if !rust {
        return source.match_indices(name).any(|(at, _)| {
            !source[..at].ends_with(is_ident) && word(&source[at..], name).is_some()
        });
    }
    const KEYWORDS: &[&str] = &[
        "fn",
        "struct",
        "enum",
        "mod",
        "const",
        "static",
        "trait",
        "type",
        "union",
        "macro_rules!",
    ];
    source.lines().any(|line| {
        let mut line = line.trim_start();
        for prefix in [
            "pub(crate) ",
            "pub(super) ",
            "pub ",
            "const ",
            "unsafe ",
            "async ",
        ] {
            line = line.strip_prefix(prefix).unwrap_or(line);
        }
        let declared = line.split_once(' ').is_some_and(|(keyword, rest)| {
            KEYWORDS.contains(&keyword) && word(rest.trim_start(), name).is_some()
        });
        // A variant (`Name,`, `Name(..)`, `Name {`, `Name = 1`) or a field
        // (`name: Type`).
        let member = word(line, name).is_some_and(|rest| {
            !rest.starts_with("::")
                && (rest.is_empty() || rest.trim_start().starts_with([',', '(', '{', ':', '=']))
        });
        declared || member
    })
}

/// The text of `markdown` outside fenced code blocks (which become empty
/// lines), so that line numbers stay.
fn prose(markdown: &str) -> String {
    let mut fenced = false;
    let mut out = String::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// The stale references of the document `doc` with text `markdown`, one
/// line each: `doc:line: what`; `checked` counts the paths and the items
/// looked up.
fn stale_references(
    doc: &str,
    markdown: &str,
    root: &Path,
    files: &[String],
    checked: &mut (usize, usize),
) -> Vec<String> {
    let mut stale = Vec::new();
    // Line numbers anywhere, code blocks included: `file.rs:12`.
    for (n, line) in markdown.lines().enumerate() {
        for word in line.split(|c: char| c.is_whitespace() || "`()[],;\"'".contains(c)) {
            if let Some((_, Some(_))) = code_path(word.trim_end_matches(['.', ','])) {
                stale.push(format!("{doc}:{}: a line number: {word}", n + 1));
            }
        }
    }
    // Code paths in backticks, and the items beside them.
    let text = prose(markdown);
    let pieces: Vec<&str> = text.split('`').collect();
    let line_of = |piece: usize| {
        pieces[..piece]
            .iter()
            .map(|p| p.matches('\n').count())
            .sum::<usize>()
            + 1
    };
    // Odd pieces are inside backticks; even ones between them.
    for i in (1..pieces.len()).step_by(2) {
        let Some((path, line)) = code_path(pieces[i]) else {
            continue;
        };
        if line.is_some() {
            continue; // reported above
        }
        let at = line_of(i);
        checked.0 += 1;
        let found = resolve(path, files);
        if found.is_empty() {
            stale.push(format!("{doc}:{at}: no such file: {path}"));
            continue;
        }
        // `path`, `item` / `path`: `item` / `path` `item`; or `item` (`path`).
        let after = (i + 2 < pieces.len()
            && pieces[i + 1].len() <= 8
            && pieces[i + 1].chars().all(|c| " ,:\n".contains(c)))
        .then(|| pieces[i + 2]);
        let before = (i >= 2 && pieces[i - 1] == " (" && pieces[i - 2].contains("::"))
            .then(|| pieces[i - 2]);
        for item in [before, after].into_iter().flatten() {
            let Some(name) = item_name(item) else {
                continue;
            };
            checked.1 += 1;
            let defined = found.iter().any(|file| {
                let source = fs::read_to_string(root.join(file)).expect("a readable file");
                defines(&source, name, file.ends_with(".rs"))
            });
            if !defined {
                stale.push(format!("{doc}:{at}: {path} defines no {item}"));
            }
        }
    }
    stale
}

#[test]
fn every_code_reference_in_the_docs_names_an_item_that_exists() {
    let root = repo_root();
    let files = code_files(&root);
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    docs.push(root.join("README.md"));
    assert!(docs.len() > 3, "{docs:?}");
    let mut stale = Vec::new();
    let mut checked = (0, 0);
    for doc in &docs {
        let name = doc
            .strip_prefix(&root)
            .expect("under the root")
            .display()
            .to_string();
        let markdown = fs::read_to_string(doc).expect("a readable document");
        stale.extend(stale_references(
            &name,
            &markdown,
            &root,
            &files,
            &mut checked,
        ));
    }
    assert!(
        stale.is_empty(),
        "stale code references:\n{}",
        stale.join("\n")
    );
    // The docs refer to code hundreds of times: a checker that finds few
    // references has stopped recognising them.
    let (paths, items) = checked;
    assert!(paths > 250 && items > 80, "{paths} paths, {items} items");
}

#[test]
fn stale_references_of_every_kind_are_found() {
    let root = repo_root();
    let files = code_files(&root);
    let markdown = "\
Fine: `kvmini/src/vm.rs`, `Vm::new`; `vm.rs`: `create_vcpu`; `Vcpu::run` (`vcpu.rs`);
`kvmini-abi/src/lib.rs` `Console`; `sandbox/run.rs`, `Machine`; `sdk/c/kvmini.h`, `KVMINI_PORT_CONSOLE`;
`grants.rs`, `--dir`; `src/main.rs`; `run()` (`run_again.rs`); another project's `guest.c`.
A line: `vm.rs:46`, and (vcpu.rs:229-284).
Gone: `kvmini/src/nothing.rs`, `nothing_here.rs` and `sdk/c/nothing.h`.
Renamed: `kvmini/src/vm.rs`, `Vm::old_name`; `Vm::gone` (`vm.rs`); `vcpu.rs`,
   `Vcpu::old`; `sdk/c/kvmini.h`, `KVMINI_PORT_GONE`.
```rust
// memory.rs:20-26
fn main() {}
```
";
    let mut checked = (0, 0);
    let stale = stale_references("doc.md", markdown, &root, &files, &mut checked);
    assert_eq!(
        stale,
        [
            "doc.md:4: a line number: vm.rs:46",
            "doc.md:4: a line number: vcpu.rs:229-284",
            "doc.md:9: a line number: memory.rs:20-26",
            "doc.md:5: no such file: kvmini/src/nothing.rs",
            "doc.md:5: no such file: nothing_here.rs",
            "doc.md:5: no such file: sdk/c/nothing.h",
            "doc.md:6: kvmini/src/vm.rs defines no Vm::old_name",
            "doc.md:6: vm.rs defines no Vm::gone",
            "doc.md:6: vcpu.rs defines no Vcpu::old",
            "doc.md:7: sdk/c/kvmini.h defines no KVMINI_PORT_GONE",
        ]
    );
    assert_eq!(checked, (16, 10));
}

/// The crate doc's hypercall table: one row per port, `| `0x....` | `name` |`.
#[test]
fn the_crate_doc_lists_every_hypercall() {
    let lib = fs::read_to_string(repo_root().join("kvmini/src/lib.rs")).expect("lib.rs");
    let rows: Vec<String> = lib
        .lines()
        .filter_map(|line| line.strip_prefix("//! | `0x"))
        .map(|row| format!("| `0x{row}"))
        .collect();
    let listed: Vec<(String, String)> = rows
        .iter()
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            (cells[1].to_owned(), cells[2].to_owned())
        })
        .collect();
    let want: Vec<(String, String)> = Port::ALL
        .iter()
        .map(|&port| {
            (
                format!("`{:#06X}`", port as u16).replace("0X", "0x"),
                format!("`{}`", port.name()),
            )
        })
        .collect();
    assert_eq!(listed, want);
}
