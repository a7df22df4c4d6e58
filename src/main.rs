use clap::Parser;

use wormfs::cli::{self, Cli};

fn main() {
    let cli = Cli::parse();
    let default_level = if cli.verbose { "debug" } else { "info" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level))
        .format_timestamp_millis()
        .init();
    match cli::dispatch(cli) {
        Ok(code) => std::process::exit(code),
        Err(failure) => {
            eprintln!("wormfs: error: {}", failure.message);
            std::process::exit(failure.code);
        }
    }
}
