//! The `alertpost` command: parses the command line, sets up logging and
//! signals, and calls one library function per subcommand. No delivery
//! logic lives here.

/// `println!` that does not panic when stdout is gone: a reader that hung
/// up (`alertpost check | head -1`) ends the command quietly, as SIGPIPE
/// would; any other failure to write is an error (exit 1), not a panic.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let written = writeln!(std::io::stdout().lock(), $($arg)*);
        $crate::stdout_failed(written);
    }};
}

/// `print!`, likewise.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        let written = write!(stdout, $($arg)*).and_then(|()| stdout.flush());
        $crate::stdout_failed(written);
    }};
}

/// What a failed write to stdout means (see [`outln`]).
fn stdout_failed(written: std::io::Result<()>) {
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            std::process::exit(1);
        }
    }
}

mod admin_client;
mod attempts;
mod cli;
mod commands;
mod dlq;
mod logging;
mod publish;
mod serve;
mod signals;
mod test_cmd;

use std::process::ExitCode;

/// mimalloc, not glibc's malloc: see `BENCHMARKS.md` (where the time goes).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for this process. mimalloc's regions are
/// 2 MiB-aligned: given huge pages, a small process holds whole ones (a
/// 24 MiB `publish` took 52 MiB). Its `no_thp` feature only stops it asking
/// for them, which a kernel set to `always` does not wait for.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        // Not fatal: memory is only larger. Logging is not set up yet.
        eprintln!("alertpost: cannot turn transparent huge pages off: {e}");
    }
}

use clap::Parser;

/// Exit codes: 0 success, 1 runtime failure, 2 bad usage or invalid input.
pub(crate) enum Failure {
    /// Bad usage, invalid config or input: exit 2.
    Usage(anyhow::Error),
    /// Something failed while running: exit 1.
    Runtime(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::Runtime(e.into())
    }
}

fn main() -> ExitCode {
    no_huge_pages();
    let mut cli = cli::Cli::parse();
    logging::init(cli.global.log_format);
    if let Some(path) = &cli.global.amqp_file {
        match std::fs::read_to_string(path) {
            // One URL, or several (a cluster), on one line or many.
            Ok(text) => {
                let urls: Vec<&str> = text
                    .split([',', '\n'])
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .collect();
                cli.global.amqp = urls.join(",");
            }
            Err(e) => {
                eprintln!("error: cannot read --amqp-file {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
