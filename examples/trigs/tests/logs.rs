//! `LOG_FORMAT=json`: the trigs service logs one JSON object per line, and every cache event
//! carries its name in an `event` field, with the key the response's `X-Cache-Key` names.

#[path = "support/json_logs.rs"]
mod json_logs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_json_prints_each_cache_event_with_its_name_as_a_field() {
    json_logs::json_logs_name_each_cache_event(
        env!("CARGO_BIN_EXE_trigs"),
        &[
            ("TRIGS_DB", "{dir}/trigs.sqlite3".into()),
            ("TRIGS_SEED_TRIGS", "50".into()),
            ("TRIGS_SEED_USERS", "10".into()),
            ("TRIGS_SEED_LOGS", "200".into()),
        ],
        "/v1/trigs/1",
        "trig:1",
    )
    .await;
}
