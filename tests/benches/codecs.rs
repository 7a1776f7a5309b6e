//! The compact codec candidates, side by side: encode and decode time and size.
//!
//! Run with `make bench-codecs` (`cargo bench -p cache-tests --bench codecs`). For the 1 KiB and
//! 16 KiB pages of `support/records.rs` (records with strings, `u64`, `f64`, `Option`, `Vec`),
//! every codec encodes and decodes the page in interleaved rounds (the order alternates, so that
//! machine noise hits every codec alike); the table gives the median over rounds of the time per
//! operation with the min–max spread, the encoded size, and each codec's ratio to JSON. Every
//! decoded value is asserted equal to the encoded one. No Redis: this is the codec alone.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Instant;

#[path = "support/records.rs"]
mod records;

use records::{page, Page, SIZES};

const COMMAND: &str = "make bench-codecs";
const ROUNDS: usize = 15;
/// Operations per codec and round (scaled down for the larger page).
const OPS: usize = 4_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Candidate {
    Json,
    MsgpackNamed,
    MsgpackArrays,
    Postcard,
    Bitcode,
}

impl Candidate {
    const ALL: [Candidate; 5] = [
        Candidate::Json,
        Candidate::MsgpackNamed,
        Candidate::MsgpackArrays,
        Candidate::Postcard,
        Candidate::Bitcode,
    ];

    fn label(self) -> &'static str {
        match self {
            Candidate::Json => "JSON (serde_json)",
            Candidate::MsgpackNamed => "MessagePack, named (rmp_serde)",
            Candidate::MsgpackArrays => "MessagePack, arrays (rmp_serde::to_vec)",
            Candidate::Postcard => "postcard 1.1",
            Candidate::Bitcode => "bitcode 0.6 (serde)",
        }
    }

    fn encode(self, p: &Page) -> Vec<u8> {
        match self {
            Candidate::Json => serde_json::to_vec(p).expect("json"),
            Candidate::MsgpackNamed => rmp_serde::to_vec_named(p).expect("msgpack"),
            Candidate::MsgpackArrays => rmp_serde::to_vec(p).expect("msgpack"),
            Candidate::Postcard => postcard::to_allocvec(p).expect("postcard"),
            Candidate::Bitcode => bitcode::serialize(p).expect("bitcode"),
        }
    }

    fn decode(self, b: &[u8]) -> Page {
        match self {
            Candidate::Json => serde_json::from_slice(b).expect("json"),
            Candidate::MsgpackNamed | Candidate::MsgpackArrays => {
                rmp_serde::from_slice(b).expect("msgpack")
            }
            Candidate::Postcard => postcard::from_bytes(b).expect("postcard"),
            Candidate::Bitcode => bitcode::deserialize(b).expect("bitcode"),
        }
    }
}

/// Nanoseconds per operation of each round.
#[derive(Default, Clone)]
struct Rounds(Vec<f64>);

impl Rounds {
    fn median(&self) -> f64 {
        let mut s = self.0.clone();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    }
    fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::INFINITY, f64::min)
    }
    fn max(&self) -> f64 {
        self.0.iter().copied().fold(0.0, f64::max)
    }
    fn cell(&self) -> String {
        format!(
            "{:>8.2} ({:.2}-{:.2})",
            self.median() / 1_000.0,
            self.min() / 1_000.0,
            self.max() / 1_000.0
        )
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    println!("codec candidates, {ROUNDS} interleaved rounds; times in µs per operation, median (min-max)");
    println!("command: {COMMAND}");
    for (label, target) in SIZES {
        let p = page(1, target);
        let ops = (OPS * 1024 / target).max(200);
        let mut enc = vec![Rounds::default(); Candidate::ALL.len()];
        let mut dec = vec![Rounds::default(); Candidate::ALL.len()];
        let bytes: Vec<Vec<u8>> = Candidate::ALL.iter().map(|c| c.encode(&p)).collect();
        for (c, b) in Candidate::ALL.iter().zip(&bytes) {
            assert_eq!(c.decode(b), p, "{} round-trips the page", c.label());
            // Floats bit-exact too (PartialEq on f64 would accept -0.0 == 0.0).
            let back = c.decode(b);
            for (x, y) in back.items.iter().zip(&p.items) {
                assert_eq!(x.score.to_bits(), y.score.to_bits());
            }
        }
        for round in 0..ROUNDS {
            let order: Vec<usize> = if round % 2 == 0 {
                (0..Candidate::ALL.len()).collect()
            } else {
                (0..Candidate::ALL.len()).rev().collect()
            };
            for i in order {
                let c = Candidate::ALL[i];
                let t = Instant::now();
                for _ in 0..ops {
                    black_box(c.encode(black_box(&p)));
                }
                enc[i].0.push(t.elapsed().as_nanos() as f64 / ops as f64);
                let t = Instant::now();
                for _ in 0..ops {
                    black_box(c.decode(black_box(&bytes[i])));
                }
                dec[i].0.push(t.elapsed().as_nanos() as f64 / ops as f64);
            }
        }
        println!();
        println!(
            "{label} page ({} records, JSON {} bytes)",
            p.items.len(),
            bytes[0].len()
        );
        println!(
            "{:<42} {:>7} {:>6}  {:>24} {:>6}  {:>24} {:>6}",
            "codec", "bytes", "/JSON", "encode µs", "/JSON", "decode µs", "/JSON"
        );
        for (i, c) in Candidate::ALL.iter().enumerate() {
            println!(
                "{:<42} {:>7} {:>6.2}  {:>24} {:>6.2}  {:>24} {:>6.2}",
                c.label(),
                bytes[i].len(),
                bytes[i].len() as f64 / bytes[0].len() as f64,
                enc[i].cell(),
                enc[i].median() / enc[0].median(),
                dec[i].cell(),
                dec[i].median() / dec[0].median(),
            );
        }
    }
}
