//! `LOG_FORMAT=json`: the gallery service logs one JSON object per line, and every cache event
//! carries its name in an `event` field, with the key the response's `X-Cache-Key` names.

#[path = "../../trigs/tests/support/json_logs.rs"]
mod json_logs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_json_prints_each_cache_event_with_its_name_as_a_field() {
    json_logs::json_logs_name_each_cache_event(
        env!("CARGO_BIN_EXE_gallery"),
        &[
            ("GALLERY_DB", "{dir}/gallery.sqlite3".into()),
            ("GALLERY_SEED_ITEMS", "300".into()),
            ("GALLERY_SEED_USERS", "20".into()),
        ],
        "/content/1",
        "content:1",
    )
    .await;
}
