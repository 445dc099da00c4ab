//! The `gloam` binary.

use clap::Parser;

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GLOAM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = gloam_engine::cli::Cli::parse();
    if let Err(e) = gloam_engine::cli::run(cli) {
        eprintln!("gloam: {e:#}");
        std::process::exit(1);
    }
}
