//! The `strata` command: parses arguments and dispatches; the work is in
//! the library.

fn main() {
    std::process::exit(strata::cli::main());
}
