//! The `kvmini` command: parse the command line, then build and run
//! sandboxes with the kvmini library.

mod cli;
mod core_file;
mod print;
mod signals;
mod stats;
mod verbose;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match cli::parse(std::env::args_os()) {
        Ok(args) => args,
        Err(code) => return code,
    };
    cli::execute(args)
}
