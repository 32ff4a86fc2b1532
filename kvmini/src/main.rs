//! The `kvmini` command: parse the command line, then hand it to the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match kvmini::cli::parse(std::env::args_os()) {
        Ok(args) => args,
        Err(code) => return code,
    };
    kvmini::cli::execute(args)
}
