#![allow(missing_docs)]
//! The compact codec (`Codec::Compact`, postcard): every payload shape round-trips (floats bit for
//! bit, NaN payloads included), entries of the other codec are read right after a switch in
//! either direction, an entry that does not decode is a miss and is replaced, and a type the
//! format cannot carry (it needs `deserialize_any`) is stored as JSON and served right, with one
//! warning: never an error, never a wrong value. On Redis, on a cluster and in memory.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_core::codec::Envelope;
use cache_core::{Cache, CacheKey, CacheStatus, Codec};
use common::{Ctx, Kind};
use serde::{Deserialize, Serialize};

const HOUR: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Unit,
    Tuple(u8, i64),
    Struct { name: String, at: Option<f32> },
}

/// Every shape the engine's values take: strings, integers at their limits, floats of every
/// kind, `Option`, enums of each variant kind, maps, nested sequences, tuples, bytes, chars.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Everything {
    text: String,
    empty: String,
    unicode: String,
    small: u8,
    big: u64,
    negative: i64,
    wide: i128,
    floats: Vec<f64>,
    single: Vec<f32>,
    some: Option<u64>,
    none: Option<String>,
    nested: Option<Option<bool>>,
    shapes: Vec<Shape>,
    map: HashMap<String, u64>,
    sorted: BTreeMap<u32, Vec<String>>,
    grid: Vec<Vec<u8>>,
    pair: (char, bool),
    unit: (),
}

/// Floats whose bits a lossy codec would change: NaNs with payloads, both zeros, subnormals,
/// infinities and the extremes.
fn floats() -> Vec<f64> {
    vec![
        f64::from_bits(0x7ff8_0000_dead_beef), // a quiet NaN with a payload
        f64::from_bits(0x7ff0_0000_0000_0001), // a signalling NaN
        f64::from_bits(0xfff8_0000_0000_0000), // a negative NaN
        -0.0,
        0.0,
        5e-324,                   // the smallest subnormal
        2.225_073_858_507_2e-308, // the largest subnormal
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MAX,
        f64::MIN_POSITIVE,
        0.1 + 0.2,
        55.398430706246764,
    ]
}

fn everything(id: u32) -> Everything {
    Everything {
        text: format!("record {id}"),
        empty: String::new(),
        unicode: "Śnieżka ⛰ \u{0}\u{7f} \"quoted\"".to_owned(),
        small: u8::MAX,
        big: u64::MAX,
        negative: i64::MIN,
        wide: i128::MIN + i128::from(id),
        floats: floats(),
        single: vec![
            f32::from_bits(0x7fc0_1234),
            -0.0,
            f32::MIN_POSITIVE / 2.0,
            0.1 + 0.2,
        ],
        some: Some(u64::from(id)),
        none: None,
        nested: Some(None),
        shapes: vec![
            Shape::Unit,
            Shape::Tuple(7, -3),
            Shape::Struct {
                name: "Ben Nevis".into(),
                at: Some(f32::NAN),
            },
            Shape::Struct {
                name: String::new(),
                at: None,
            },
        ],
        map: (0..20).map(|i| (format!("k{i}"), i * 1_000_003)).collect(),
        sorted: (0..5)
            .map(|i| (i, (0..i).map(|j| j.to_string()).collect()))
            .collect(),
        grid: vec![vec![], vec![0, 255], (0..=255).collect()],
        pair: ('ß', true),
        unit: (),
    }
}

/// Compares two values with floats compared by their bits (so `-0.0 != 0.0` and NaN payloads
/// count): the JSON text of each, with every float replaced by its bits first.
fn same(a: &Everything, b: &Everything) -> bool {
    fn canon(e: &Everything) -> String {
        let mut e = e.clone();
        let f: Vec<u64> = e.floats.iter().map(|f| f.to_bits()).collect();
        let s: Vec<u32> = e.single.iter().map(|f| f.to_bits()).collect();
        let at: Vec<Option<u32>> = e
            .shapes
            .iter()
            .map(|s| match s {
                Shape::Struct { at, .. } => at.map(f32::to_bits),
                _ => None,
            })
            .collect();
        e.floats.clear();
        e.single.clear();
        for s in &mut e.shapes {
            if let Shape::Struct { at, .. } = s {
                *at = None;
            }
        }
        let map: BTreeMap<_, _> = std::mem::take(&mut e.map).into_iter().collect();
        format!("{f:?} {s:?} {at:?} {map:?} {e:?}")
    }
    canon(a) == canon(b)
}

fn content_type(raw: &[u8]) -> String {
    Envelope::parse(raw).unwrap().content_type().to_owned()
}

async fn compact_codec_round_trips_every_payload_shape_bit_for_bit(ctx: Ctx) {
    let cache = ctx.builder().codec(Codec::Compact).build().unwrap();
    let key = cache.key("everything").id(1).build();
    let loaded = everything(1);

    let miss = cache
        .fetch(&key, HOUR, || async { Ok::<_, ()>(loaded.clone()) })
        .await
        .unwrap();
    assert_eq!(miss.status, CacheStatus::Miss);
    assert!(same(&miss.value, &loaded));
    let raw = cache.get_raw(&key).await.expect("stored");
    assert_eq!(content_type(&raw), "application/x-postcard");

    let hit = cache
        .fetch(&key, HOUR, || async { Err::<Everything, ()>(()) })
        .await
        .unwrap();
    assert_eq!(hit.status, CacheStatus::Hit);
    assert!(same(&hit.value, &loaded), "hit {:?}", hit.value);
    let got: Everything = cache.get(&key).await.expect("a hit");
    assert!(same(&got, &loaded), "get {got:?}");

    // `set` then `get` (the path without a read-through).
    let key2 = cache.key("everything").id(2).build();
    cache.set(&key2, &everything(2), HOUR).await.unwrap();
    let got: Everything = cache.get(&key2).await.expect("a hit");
    assert!(same(&got, &everything(2)));
    assert!(!same(&got, &loaded), "the comparison sees a difference");
}

/// An entry is decoded by the codec that wrote it: after a switch from JSON to compact (and
/// back), the other codec's entries are hits with the loader's value, never misread.
async fn entries_of_the_other_codec_are_read_right_after_a_switch_either_way(ctx: Ctx) {
    let json = ctx.builder().codec(Codec::Json).build().unwrap();
    let compact = ctx.builder().codec(Codec::Compact).build().unwrap();
    let loads = AtomicUsize::new(0);
    let load = |id: u32| {
        loads.fetch_add(1, Ordering::SeqCst);
        let mut e = everything(id);
        // JSON carries neither NaN nor infinities (serde_json writes `null`): finite floats.
        e.floats.retain(|f| f.is_finite());
        e.single.retain(|f| f.is_finite());
        e.shapes
            .retain(|s| !matches!(s, Shape::Struct { at: Some(_), .. }));
        // Nor `Some(None)` (both are `null`).
        e.nested = Some(Some(true));
        e
    };
    for (writer, reader, written) in [
        (&json, &compact, "application/json"),
        (&compact, &json, "application/x-postcard"),
    ] {
        let id = if written == "application/json" {
            10
        } else {
            11
        };
        let key = writer.key("switch").id(id).build();
        let stored = writer.get_or_load(&key, HOUR, || async { load(id) }).await;
        assert_eq!(content_type(&writer.get_raw(&key).await.unwrap()), written);
        let read = reader
            .fetch(&key, HOUR, || async { Ok::<_, ()>(load(999)) })
            .await
            .unwrap();
        assert_eq!(read.status, CacheStatus::Hit, "read across the switch");
        assert!(same(&read.value, &stored), "{written}: {:?}", read.value);
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        2,
        "one load per key, none on the reads"
    );
}

/// An entry that does not decode into the type read (a type changed shape, or an entry of a
/// build that wrote something else) is a miss: the loader's value is served and replaces it.
async fn an_entry_that_does_not_decode_is_a_miss_and_is_replaced(ctx: Ctx) {
    let cache = ctx.builder().codec(Codec::Compact).build().unwrap();
    let key = cache.key("changed").id(1).build();
    // postcard writes nothing for `()`: an `Everything` cannot decode from it.
    cache.set(&key, &(), HOUR).await.unwrap();
    let first = cache
        .fetch(&key, HOUR, || async { Ok::<_, ()>(everything(1)) })
        .await
        .unwrap();
    assert_eq!(first.status, CacheStatus::Miss);
    assert!(same(&first.value, &everything(1)));
    let second = cache
        .fetch(&key, HOUR, || async { Err::<Everything, ()>(()) })
        .await
        .unwrap();
    assert_eq!(second.status, CacheStatus::Hit, "the entry was replaced");
    assert!(same(&second.value, &everything(1)));
}

// ------------------------------------------------------------------ deserialize_any

/// Needs `deserialize_any`: an untagged enum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Loose {
    Number(u64),
    Text(String),
}

/// Needs `deserialize_any` to decode, and encodes without an error: a `serde_json::Value` and
/// an untagged enum (found by the check at the first store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Dynamic {
    id: u64,
    raw: serde_json::Value,
    loose: Vec<Loose>,
}

fn dynamic(id: u64) -> Dynamic {
    Dynamic {
        id,
        raw: serde_json::json!({"a": [1, 2.5, null, "x"], "b": {"c": true}}),
        loose: vec![Loose::Number(id), Loose::Text("t".into())],
    }
}

/// A flattened map: postcard cannot even encode it (a map of unknown length).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Flattened {
    id: u64,
    #[serde(flatten)]
    extra: BTreeMap<String, String>,
}

fn flattened(id: u64) -> Flattened {
    Flattened {
        id,
        extra: [("more".to_owned(), format!("v{id}"))].into(),
    }
}

/// Read-through calls check a type's first compact entry before storing it: a type that needs
/// `deserialize_any` is stored as JSON from its first store, and every read is a hit with the
/// loader's value.
async fn a_type_that_needs_deserialize_any_is_stored_as_json_and_served_right(ctx: Ctx) {
    stored_as_json_and_served_right(&ctx, "dynamic", dynamic).await;
    stored_as_json_and_served_right(&ctx, "flattened", flattened).await;
}

async fn stored_as_json_and_served_right<T>(ctx: &Ctx, resource: &str, make: fn(u64) -> T)
where
    T: Serialize + serde::de::DeserializeOwned + Clone + PartialEq + std::fmt::Debug + Send,
{
    let cache = ctx.builder().codec(Codec::Compact).build().unwrap();
    let loads = AtomicUsize::new(0);
    for id in 0..3u64 {
        let key = cache.key(resource).id(id).build();
        for round in 0..3 {
            let got = cache
                .fetch(&key, HOUR, || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, ()>(make(id))
                })
                .await
                .unwrap();
            assert_eq!(got.value, make(id));
            let want = if round == 0 {
                CacheStatus::Miss
            } else {
                CacheStatus::Hit
            };
            assert_eq!(got.status, want, "{resource} {id} read {round}");
        }
        let raw = cache.get_raw(&key).await.unwrap();
        assert_eq!(content_type(&raw), "application/json");
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        3,
        "{resource}: one load per key"
    );
}

/// `set` cannot check (it has no `Deserialize`): its compact entry of such a type fails to decode
/// with "not supported", which is a miss (never an error, never a wrong value), logs one warning
/// naming the type, and the type is stored as JSON from then on.
async fn a_compact_entry_that_needs_deserialize_any_is_a_miss_then_replaced_as_json(
    ctx: &Ctx,
    log: &cache_tests::LogCapture,
) {
    /// Its own type: the fallback is remembered per type, process-wide.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(untagged)]
    enum Untagged {
        Number(u64),
        Text(String),
    }
    let cache: Cache = ctx.builder().codec(Codec::Compact).build().unwrap();
    let keys: Vec<CacheKey> = (0..2)
        .map(|i| cache.key("untagged").id(i).build())
        .collect();
    let value = vec![Untagged::Number(7), Untagged::Text("seven".into())];
    for key in &keys {
        cache.set(key, &value, HOUR).await.unwrap();
    }
    assert_eq!(
        content_type(&cache.get_raw(&keys[0]).await.unwrap()),
        "application/x-postcard",
        "set wrote a compact entry"
    );
    assert_eq!(cache.get::<Vec<Untagged>>(&keys[0]).await, None, "a miss");
    let loads = AtomicUsize::new(0);
    for key in &keys {
        let got = cache
            .fetch(key, HOUR, || async {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(value.clone())
            })
            .await
            .unwrap();
        assert_eq!((got.status, &got.value), (CacheStatus::Miss, &value));
        let hit = cache
            .fetch(key, HOUR, || async { Err::<Vec<Untagged>, ()>(()) })
            .await
            .unwrap();
        assert_eq!((hit.status, &hit.value), (CacheStatus::Hit, &value));
        assert_eq!(
            content_type(&cache.get_raw(key).await.unwrap()),
            "application/json",
            "replaced by a JSON entry"
        );
    }
    assert_eq!(loads.load(Ordering::SeqCst), 2);
    let warnings = log.lines_with("cache_codec_fallback");
    assert_eq!(warnings.len(), 1, "logged once: {warnings:?}");
    assert!(warnings[0].contains("Untagged"), "{}", warnings[0]);
    assert!(warnings[0].contains("Codec::Json"), "says what to do");
}

// The log capture is thread-local: these run on a current-thread runtime.
#[tokio::test]
async fn a_compact_entry_that_needs_deserialize_any_is_a_miss_then_replaced_as_json_redis() {
    let log = cache_tests::LogCapture::start();
    let ctx = Ctx::new(Kind::Redis);
    a_compact_entry_that_needs_deserialize_any_is_a_miss_then_replaced_as_json(&ctx, &log).await;
}

on_both_backends!(
    compact_codec_round_trips_every_payload_shape_bit_for_bit,
    entries_of_the_other_codec_are_read_right_after_a_switch_either_way,
    an_entry_that_does_not_decode_is_a_miss_and_is_replaced,
    a_type_that_needs_deserialize_any_is_stored_as_json_and_served_right,
);
