//! The payloads of the codec and peer benches: pages of records with strings, `u64`, `f64`,
//! `Option` and `Vec`, sized to about 1 KiB and 16 KiB of JSON.
#![allow(dead_code, unreachable_pub)]

use serde::{Deserialize, Serialize};

/// One record of an API response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: u64,
    pub name: String,
    pub owner: String,
    pub score: f64,
    pub rating: Option<f64>,
    pub parent: Option<u64>,
    pub views: u64,
    pub tags: Vec<String>,
    pub public: bool,
}

/// A page of records: the cached value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    pub id: u64,
    pub total: u64,
    pub next: Option<String>,
    pub items: Vec<Record>,
}

const NAMES: [&str; 5] = [
    "Ben Nevis",
    "Scafell Pike",
    "Snowdon",
    "Cross Fell",
    "Kinder Scout",
];
const OWNERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
const TAGS: [&str; 6] = ["trig", "pillar", "bolt", "fbm", "passive", "intersected"];

/// The page `id`: the smallest page whose JSON is at least `target` bytes; pages of different
/// ids differ in every record (so that a body served for the wrong id is detected).
pub fn page(id: u64, target: usize) -> Page {
    let mut p = Page {
        id,
        total: 6_500,
        next: Some(format!("/items/{id}?page=2")),
        items: Vec::new(),
    };
    let mut i: u64 = 0;
    while serde_json::to_vec(&p).map_or(0, |v| v.len()) < target {
        let n = i as usize;
        p.items.push(Record {
            id: id * 1_000_000 + i,
            name: format!("{} {id}-{i}", NAMES[n % NAMES.len()]),
            owner: OWNERS[n % OWNERS.len()].to_owned(),
            score: 56.796_8 + (id + i) as f64 * 0.013_7,
            rating: (i % 3 != 0).then(|| 1.0 + (i % 50) as f64 / 12.5),
            parent: (i % 2 == 0).then_some(id * 1_000_000 + i / 2),
            views: (i * 7_919 + id) % 100_000,
            tags: TAGS[..1 + n % 3].iter().map(|t| (*t).to_owned()).collect(),
            public: i % 4 != 0,
        });
        i += 1;
    }
    p
}

/// The two payload sizes of every bench: label and JSON size target.
pub const SIZES: [(&str, usize); 2] = [("1 KiB", 1024), ("16 KiB", 16 * 1024)];
