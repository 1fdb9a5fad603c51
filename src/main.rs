use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use signal_relay::config::Command;
use signal_relay::{Config, Server};
use tracing_subscriber::EnvFilter;

// Connections are served on the server's own event loops (one per core);
// this thread only accepts, places connections and sweeps.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let config = Config::parse();
    if let Some(Command::Ticket(ticket)) = &config.command {
        // Only the ticket on stdout, so `$(signal-relay ticket …)` is it.
        return match ticket.run(std::time::SystemTime::now()) {
            Ok(printed) => {
                println!("{printed}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("signal-relay ticket: {error}");
                ExitCode::FAILURE
            }
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // Every parked poll holds a socket: allow as many as the system lets us.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open-files limit raised to the hard limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open-files limit"),
    }
    let settings = match config.settings() {
        Ok(settings) => settings,
        Err(error) => {
            tracing::error!("invalid configuration: {error}");
            return ExitCode::FAILURE;
        }
    };
    if config.listens_on_port_variable() {
        tracing::info!(
            listen = %settings.listen,
            "PORT is set and --listen is not: listening on every interface on port $PORT, as container platforms expect"
        );
    }
    let server = match Server::bind(settings).await {
        Ok(server) => server,
        Err(error) => {
            tracing::error!("{error}");
            return ExitCode::FAILURE;
        }
    };
    server.run(shutdown_requested()).await;
    ExitCode::SUCCESS
}

/// Completes on Ctrl-C or SIGTERM (what systemd, Docker and Kubernetes send).
async fn shutdown_requested() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
