//! `csrgate`: approve Kubernetes CertificateSigningRequests by CEL policy.
//!
//! The binary is glue: it parses the command line, runs one subcommand, prints an error
//! chain once and sets the exit code (0 done, 1 a test mismatch, 2 bad input).

use std::process::ExitCode;

// Why a feature, off by default: measured, musl's own allocator holds the least memory and
// mimalloc is the fastest (docs/operations.md, "Memory: the allocator of the image"); the
// image keeps musl's.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
mod cmd;
mod keygen;
mod load;
mod report;

fn main() -> ExitCode {
    let cli = cli::parse();
    match cmd::run(cli) {
        Ok(code) => code.into(),
        Err(error) => {
            eprintln!("error: {}", error_chain(error.as_ref()));
            cmd::Outcome::BadInput.into()
        }
    }
}

/// The error and its causes on one line, `outer: inner: innermost`.
fn error_chain(error: &(dyn std::error::Error + Send + Sync + 'static)) -> String {
    let mut text = error.to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
