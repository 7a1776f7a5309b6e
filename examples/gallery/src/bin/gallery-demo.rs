//! The demo walk against a running gallery: every step prints its status and `X-Cache-*`
//! headers and asserts them; the exit status is non-zero at the first failed assertion.
//!
//! ```text
//! cargo run -p gallery --bin gallery-demo -- [BASE_URL] [--stop-redis REDIS_URL] [--fresh N]
//! ```
//!
//! * `BASE_URL`: default `http://127.0.0.1:3001` (or `GALLERY_URL`).
//! * `--stop-redis REDIS_URL`: near the end, send `SHUTDOWN NOSAVE` to this Redis (the one the
//!   gallery uses) and check that the service still answers (`X-Cache-Status: SKIP`). Only give
//!   it a throw-away server, as `scripts/demo.sh` does.
//! * `--fresh N`: also run N rounds of the randomized freshness check (writes, then every
//!   affected cached read compared with a bypassed one); it runs before Redis is stopped.
//! * `ADMIN_TOKEN`: the admin bearer token (default `gallery-dev-token`).

use std::process::ExitCode;

use gallery::demo::{self, DemoOptions};
use gallery::server::DEFAULT_ADMIN_TOKEN;

async fn shutdown_redis(url: String) -> Result<(), String> {
    let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    // The server closes the connection instead of replying: an error here is expected.
    let _ = redis::cmd("SHUTDOWN")
        .arg("NOSAVE")
        .query_async::<()>(&mut con)
        .await;
    drop(con);
    // The closed connection is the signal; confirm that no new connection is accepted.
    for _ in 0..50 {
        if client.get_multiplexed_async_connection().await.is_err() {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Err(format!("{url} still accepts connections after SHUTDOWN"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut base = std::env::var("GALLERY_URL").unwrap_or_else(|_| "http://127.0.0.1:3001".into());
    let mut stop: Option<String> = None;
    let mut fresh = 0usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--stop-redis" => stop = args.next(),
            "--fresh" => fresh = args.next().and_then(|n| n.parse().ok()).unwrap_or(20),
            "-h" | "--help" => {
                println!("usage: gallery-demo [BASE_URL] [--stop-redis REDIS_URL] [--fresh N]");
                return ExitCode::SUCCESS;
            }
            _ => base = a,
        }
    }
    let opts = DemoOptions {
        base: base.clone(),
        admin_token: std::env::var("ADMIN_TOKEN").unwrap_or_else(|_| DEFAULT_ADMIN_TOKEN.into()),
        print: true,
    };
    println!("gallery demo against {base}");
    if fresh > 0 {
        match demo::freshness_check(&base, fresh, 7).await {
            Ok(n) => {
                println!("freshness check: {fresh} writes, {n} cached reads equal to fresh ones")
            }
            Err(e) => {
                eprintln!("FAILED: freshness check: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let stop_fn = stop.map(|url| move || shutdown_redis(url));
    match demo::run(&opts, stop_fn).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
