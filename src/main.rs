use clap::Parser;

use wormfs::cli::{self, Cli, Command};

fn main() {
    let cli = Cli::parse();
    // Like every Unix tool: a reader that goes away (`wormfs log | head`) ends the command
    // quietly, killed by SIGPIPE (status 141 in the shell), instead of an error line about a
    // broken pipe. Not the daemon: a client closing the control socket must not kill it.
    if !matches!(cli.command, Command::Mount(_)) {
        // SAFETY: restoring the default disposition of one signal before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
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
