//! The `zai-proxy` binary: configuration from env/flags (exit 2 when invalid), logs, serve
//! until SIGTERM/SIGINT, drain, exit 0.

use std::process::ExitCode;

use zai_proxy::{Config, logging, serve, shutdown};

fn main() -> ExitCode {
    let config = match Config::from_env_and_args() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("zai-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    logging::init(config.log_format);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
        serve(config, listener, shutdown::signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("zai-proxy stopped: {e}");
            ExitCode::FAILURE
        }
    }
}
