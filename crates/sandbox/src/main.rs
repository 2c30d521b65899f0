//! `keaplink-sandbox`: a stand-in Keap on 127.0.0.1.
//!
//! Options (or the environment variable in brackets):
//!   --port N             [SANDBOX_PORT]          0 picks a free port (default 8788)
//!   --client-id ID       [KEAP_CLIENT_ID]        default "keaplink-dev"
//!   --client-secret S    [KEAP_CLIENT_SECRET]    default "keaplink-dev-secret"
//!   --redirect-uri URI   (repeatable)            exact registered redirect URIs; none: any
//!   --expires-in SECS    [SANDBOX_EXPIRES_IN]    access token lifetime (default 86400)
//!   --state FILE         [SANDBOX_STATE]         keep sessions and live tokens in FILE across
//!                                                restarts (default: memory only)
//! Prints `keaplink-sandbox listening on http://127.0.0.1:PORT` once it accepts connections.

use keaplink_sandbox::{try_router, Config};
use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut port: u16 = env_or("SANDBOX_PORT", "8788")
        .parse()
        .unwrap_or_else(|_| fail("SANDBOX_PORT is not a port"));
    let mut config = Config {
        client_id: env_or("KEAP_CLIENT_ID", "keaplink-dev"),
        client_secret: env_or("KEAP_CLIENT_SECRET", "keaplink-dev-secret"),
        redirect_uris: vec![],
        expires_in: env_or("SANDBOX_EXPIRES_IN", "86400")
            .parse()
            .unwrap_or_else(|_| fail("SANDBOX_EXPIRES_IN is not a number")),
        state_file: std::env::var_os("SANDBOX_STATE")
            .filter(|v| !v.is_empty())
            .map(Into::into),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .unwrap_or_else(|| fail(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--port" => {
                port = value()
                    .parse()
                    .unwrap_or_else(|_| fail("--port is not a port"))
            }
            "--client-id" => config.client_id = value(),
            "--client-secret" => config.client_secret = value(),
            "--redirect-uri" => config.redirect_uris.push(value()),
            "--state" => config.state_file = Some(value().into()),
            "--expires-in" => {
                config.expires_in = value()
                    .parse()
                    .unwrap_or_else(|_| fail("--expires-in is not a number"))
            }
            "-h" | "--help" => {
                println!("see the top of crates/sandbox/src/main.rs");
                return;
            }
            other => fail(&format!("unknown option {other}")),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("cannot start the runtime: {e}")));
    rt.block_on(async move {
        let app = try_router(config).unwrap_or_else(|e| fail(&e));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| fail(&format!("cannot listen on 127.0.0.1:{port}: {e}")));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| fail(&e.to_string()));
        println!("keaplink-sandbox listening on http://{addr}");
        let _ = std::io::stdout().flush();
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .unwrap_or_else(|e| fail(&e.to_string()));
    });
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn fail(msg: &str) -> ! {
    eprintln!("keaplink-sandbox: {msg}");
    std::process::exit(2)
}
