//! The `airtwin` command: parses the arguments and hands them to [`airtwin::cli`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    airtwin::cli::main(airtwin::cli::Cli::parse())
}
