//! `uid2`: the operator (`uid2 serve`), its admin CLI, a load generator and token tools.

/// `println!` that returns an error where `println!` would panic, when standard output is gone
/// (a closed pipe, a full disk): what a command prints is often a secret shown only once, and
/// its loss must be reported, not crash the command after the store has changed.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
            .map_err(|e| anyhow::Error::new($crate::StdoutGone(e)))
    }};
}

/// Standard output could not be written ([`say!`]).
#[derive(Debug)]
struct StdoutGone(std::io::Error);

impl std::fmt::Display for StdoutGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "could not write to standard output: {}", self.0)
    }
}

impl std::error::Error for StdoutGone {}

mod admin;
mod bench;
mod rotate;
mod serve;
mod settings;
mod token;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use settings::{GlobalArgs, ServeArgs};

/// A self-hostable UID2 operator.
#[derive(Debug, Parser)]
#[command(name = "uid2", version, about)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the operator service (initialises an empty store on first start, as `init` does).
    Serve(ServeArgs),
    /// Creates and initialises a store (keys, salts, a demo publisher printed once); does nothing
    /// to a store that is already initialised. Every other command but `serve` needs one.
    Init,
    /// Manages API clients.
    #[command(subcommand)]
    Client(admin::ClientCommand),
    /// Manages sites.
    #[command(subcommand)]
    Site(admin::SiteCommand),
    /// Manages client-side token generation key pairs.
    #[command(subcommand)]
    Cstg(admin::CstgCommand),
    /// Records opt-outs.
    #[command(subcommand)]
    Optout(admin::OptoutCommand),
    /// Lists and rotates encryption keys.
    #[command(subcommand)]
    Keys(rotate::KeysCommand),
    /// Rotates salt buckets.
    #[command(subcommand)]
    Salts(rotate::SaltsCommand),
    /// Writes a consistent copy of an SQLite store to a new file, safe while operators run
    /// (PostgreSQL: use pg_dump).
    Backup(admin::BackupArgs),
    /// Inspects and decrypts tokens, for humans debugging them.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Load-tests an operator against its baseline route.
    Bench(bench::BenchArgs),
}

/// Runs the command; an error is printed as one line with its causes (`error: what: why`), and
/// never with a backtrace, even when `RUST_BACKTRACE` is set: these are a user's mistakes or an
/// unreachable store, not bugs, and the message is all they need. A reader that closed the
/// pipe (`uid2 client list | head -1`) ends the command quietly, as it ends `ls`, unless what
/// was lost says more (a secret shown once adds how to get another).
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e)
            if e.chain().count() == 1
                && e.downcast_ref::<StdoutGone>()
                    .is_some_and(|g| g.0.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in a log file or journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(args.resolve(&cli.global)?).await,
        Command::Init => admin::init(&cli.global).await,
        Command::Client(c) => admin::client(&cli.global, c).await,
        Command::Site(c) => admin::site(&cli.global, c).await,
        Command::Cstg(c) => admin::cstg(&cli.global, c).await,
        Command::Optout(c) => admin::optout(&cli.global, c).await,
        Command::Keys(c) => rotate::keys(&cli.global, c).await,
        Command::Salts(c) => rotate::salts(&cli.global, c).await,
        Command::Token(c) => token::run(&cli.global, c).await,
        Command::Backup(args) => admin::backup(&cli.global, args).await,
        Command::Bench(args) => bench::run(args).await,
    }
}
