//! The shared half of the hit benches (`hit_path`, `cluster`): a realistic cached value (a page
//! of rows whose JSON reaches a target size) and latency samples with their percentiles.
#![allow(dead_code)]

use serde::{Deserialize, Serialize};

/// One row of a realistic API response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Trig {
    id: u64,
    name: String,
    county: String,
    grid_ref: String,
    latitude: f64,
    longitude: f64,
    height_m: u32,
    condition: String,
    visits: u32,
    logged: bool,
}

/// A page of rows, the cached value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Payload {
    pub(crate) page: u32,
    pub(crate) per_page: u32,
    pub(crate) total: u64,
    pub(crate) items: Vec<Trig>,
}

const NAMES: [&str; 6] = [
    "Ben Nevis",
    "Scafell Pike",
    "Snowdon Summit",
    "Cross Fell",
    "High Willhays",
    "Kinder Scout",
];
const COUNTIES: [&str; 4] = ["Highland", "Cumbria", "Gwynedd", "Devon"];
const CONDITIONS: [&str; 3] = ["Good", "Slightly damaged", "Destroyed"];

/// The smallest page whose JSON is at least `target` bytes.
pub(crate) fn payload(target: usize) -> Payload {
    let mut p = Payload {
        page: 1,
        per_page: 0,
        total: 6_500,
        items: Vec::new(),
    };
    let mut i: u64 = 0;
    while serde_json::to_vec(&p).map_or(0, |v| v.len()) < target {
        let n = i as usize;
        p.items.push(Trig {
            id: 1_000 + i * 37,
            name: format!("{} {}", NAMES[n % NAMES.len()], i),
            county: COUNTIES[n % COUNTIES.len()].to_owned(),
            grid_ref: format!("NN {:05} {:05}", 16_671 + i * 13, 71_262 - i * 7),
            latitude: 56.796_8 + i as f64 * 0.013_7,
            longitude: -5.003_6 - i as f64 * 0.021_1,
            height_m: 1_345 - (i as u32 * 11) % 1_000,
            condition: CONDITIONS[n % CONDITIONS.len()].to_owned(),
            visits: (i as u32 * 7_919) % 500,
            logged: i % 3 == 0,
        });
        i += 1;
    }
    p.per_page = p.items.len() as u32;
    p
}

/// Latency samples of one variant, in nanoseconds.
#[derive(Default)]
pub(crate) struct Samples(pub(crate) Vec<u64>);

impl Samples {
    pub(crate) fn mean_us(&self) -> f64 {
        self.0.iter().sum::<u64>() as f64 / self.0.len() as f64 / 1_000.0
    }

    pub(crate) fn pct_us(&self, p: f64) -> f64 {
        let mut s = self.0.clone();
        s.sort_unstable();
        let i = ((s.len() as f64 * p).ceil() as usize).clamp(1, s.len()) - 1;
        s[i] as f64 / 1_000.0
    }
}
