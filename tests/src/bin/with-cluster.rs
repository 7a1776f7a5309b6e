//! `with-cluster <command> [args...]`: starts a real local Redis Cluster (3 masters, 3
//! replicas, free loopback ports), runs the command with `REDIS_CLUSTER_URLS` naming it, stops
//! the cluster and exits with the command's status. `make test` runs the test suite under it,
//! so the behaviour suites' cluster mode shares one cluster instead of starting one per test.
//! With `REDIS_CLUSTER_URLS` already set, the command runs against that cluster.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(program) = args.next() else {
        eprintln!("usage: with-cluster <command> [args...]");
        return ExitCode::from(2);
    };
    let cluster = cache_tests::RedisCluster::start();
    let urls = cluster.urls().join(",");
    eprintln!("with-cluster: REDIS_CLUSTER_URLS={urls}");
    let status = Command::new(&program)
        .args(args)
        .env("REDIS_CLUSTER_URLS", &urls)
        .status();
    drop(cluster);
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => ExitCode::from(u8::try_from(s.code().unwrap_or(1)).unwrap_or(1)),
        Err(e) => {
            eprintln!("with-cluster: cannot run {program}: {e}");
            ExitCode::from(2)
        }
    }
}
