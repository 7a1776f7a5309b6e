//! The cache's `tracing` events carry their name in an `event` field, which the stock
//! `tracing-subscriber` formatters print: `event="cache_hit"` in text, `"event":"cache_hit"` in
//! JSON (`.json().flatten_event(true)` puts it at the top level, as the seed's
//! `{"event": "cache_hit", "key": "trig:123:v1", "age": 45}`).

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cache_core::{Cache, Policy};

/// A `MakeWriter` appending to a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8(
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
        .expect("utf-8 logs")
    }
}

/// A miss, a hit and a tag invalidation on the in-memory backend; returns the hit's key.
async fn miss_hit_invalidate() -> String {
    let cache = Cache::builder().namespace("logs").build().expect("cache");
    let key = cache.key("trig").id(123).build();
    let policy = || Policy::ttl(Duration::from_secs(60)).tag("trig:123");
    let load = || async { "Ben Nevis".to_owned() };
    assert_eq!(cache.get_or_load(&key, policy(), load).await, "Ben Nevis");
    assert_eq!(cache.get_or_load(&key, policy(), load).await, "Ben Nevis");
    cache
        .invalidate_tags(&["trig:123"])
        .await
        .expect("invalidate");
    key.as_str().to_owned()
}

#[tokio::test]
async fn stock_text_formatter_prints_the_event_name_field() {
    let buf = Buffer::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let key = {
        let _guard = tracing::subscriber::set_default(subscriber);
        miss_hit_invalidate().await
    };
    let text = buf.text();
    let line = |event: &str| {
        text.lines()
            .find(|l| l.contains(&format!("event=\"{event}\"")))
            .unwrap_or_else(|| panic!("no event=\"{event}\" in:\n{text}"))
            .to_owned()
    };
    assert!(line("cache_miss_stored").contains(&format!("key=\"{key}\"")));
    let hit = line("cache_hit");
    assert!(
        hit.contains(" DEBUG ")
            && hit.contains(&format!("key=\"{key}\""))
            && hit.contains("age_ms="),
        "{hit}"
    );
    assert!(line("cache_invalidated").contains("trig:123"));
}

#[tokio::test]
async fn stock_json_formatter_prints_the_event_name_field() {
    let buf = Buffer::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let key = {
        let _guard = tracing::subscriber::set_default(subscriber);
        miss_hit_invalidate().await
    };
    let events: Vec<serde_json::Value> = buf
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let event = |name: &str| {
        events
            .iter()
            .find(|e| e["event"] == name)
            .unwrap_or_else(|| panic!("no {name} in {events:#?}"))
    };
    assert_eq!(event("cache_miss_stored")["key"], key.as_str());
    let hit = event("cache_hit");
    assert_eq!(hit["key"], key.as_str());
    assert_eq!(hit["level"], "DEBUG");
    assert!(hit["age_ms"].is_u64(), "{hit}");
    assert!(event("cache_invalidated")["tags"]
        .as_str()
        .is_some_and(|t| t.contains("trig:123")));
}
