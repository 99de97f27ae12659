//! `sessiond`: the session authority's server and command-line interface. Thin: it parses
//! arguments, loads the layered configuration and calls `sessiond-server` / `sessiond-core`.
//!
//! Operator commands run against a running server (`--server URL` plus an API key from
//! `SESSIOND_API_KEY` / `SESSIOND_API_KEY_FILE`) or, without `--server`, directly on the data
//! directory (which then must not be in use by a server).
#![forbid(unsafe_code)]

mod cli;
mod client;
mod direct;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: the request path makes many small, short-lived
/// allocations (headers, futures), which glibc's malloc serves noticeably slower under load
/// (see docs/performance.md, "Server forward-auth").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(cli::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
