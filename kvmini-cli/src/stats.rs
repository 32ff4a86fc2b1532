//! `--stats`' table of a Linux program's system calls: by name, most
//! made first, with how many failed, as `strace -c` counts them (without
//! times).

use kvmini::trace::SyscallCounts;

use crate::print::eprintln;

/// Prints the table of `counts` on stderr, each line marked with `who`;
/// nothing when no system call was made (an SDK guest).
pub fn print_syscalls(counts: &SyscallCounts, who: &str) {
    let (calls, errors) = counts.total();
    if calls == 0 {
        return;
    }
    eprintln!("kvmini:{who} system calls: {calls}, {errors} failed");
    eprintln!("  {:>9} {:>9} syscall", "calls", "errors");
    for count in counts.by_count() {
        let errors = if count.errors == 0 {
            String::new()
        } else {
            count.errors.to_string()
        };
        let name = if count.and_above() {
            format!("{} and above", count.name())
        } else {
            count.name().to_string()
        };
        eprintln!("  {:>9} {errors:>9} {name}", count.calls);
    }
}
