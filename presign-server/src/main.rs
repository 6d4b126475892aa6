//! `tidemark-server`: parses flags (or `TIDEMARK_…` variables) and runs the server.

use clap::Parser;
use tidemark_server::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "tidemark_server=info,tower_http=warn".into()),
        )
        .init();
    let config = Config::parse();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    tidemark_server::run(listener, config, tidemark_server::shutdown_signal()).await?;
    Ok(())
}
