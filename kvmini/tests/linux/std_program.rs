//! A Rust program using std, built with `-C target-feature=+crt-static`
//! (static-pie with glibc): its arguments, files under the directory its
//! first argument names, a HashMap, formatting, and its exit: status 7, or
//! a panic (101) when an argument says "panic".

use std::collections::HashMap;
use std::io::Write as _;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!("args={args:?}");
    let dir = args.first().cloned().unwrap_or_else(|| ".".to_owned());
    let text = std::fs::read_to_string(format!("{dir}/in.txt")).expect("in.txt is readable");
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for word in text.split_whitespace() {
        *counts.entry(word).or_default() += 1;
    }
    let mut sorted: Vec<(&str, usize)> = counts.into_iter().collect();
    sorted.sort();
    println!(
        "words={sorted:?} pi={:.3} hex={:#x}",
        std::f64::consts::PI,
        48879
    );
    let made = format!("{dir}/made");
    std::fs::create_dir(&made).expect("create_dir");
    std::fs::write(format!("{made}/out.txt"), "written\n").expect("write");
    std::fs::rename(format!("{made}/out.txt"), format!("{made}/moved.txt")).expect("rename");
    std::fs::write(format!("{made}/gone.txt"), "").expect("write");
    std::fs::remove_file(format!("{made}/gone.txt")).expect("remove_file");
    let mut names: Vec<String> = std::fs::read_dir(&made)
        .expect("read_dir")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    println!("made={names:?}");
    println!(
        "missing={:?}",
        std::fs::read("missing").map_err(|e| e.kind())
    );
    std::io::stdout().flush().expect("stdout flushes");
    if args.iter().any(|a| a == "panic") {
        panic!("asked to panic");
    }
    std::process::exit(7);
}
