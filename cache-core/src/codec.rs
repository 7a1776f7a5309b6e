//! Value encoding: codecs, optional compression and the stored envelope.
//!
//! Every value is stored inside an *envelope*: a small fixed binary header (creation time, TTL,
//! stale windows, recompute time, ETag, content type, tags) followed by the payload. Reading a
//! hit parses the header in place (no allocation) and deserializes the payload straight from the
//! bytes Redis returned.
//!
//! # Codecs
//! | codec | feature | notes |
//! | --- | --- | --- |
//! | [`Codec::Json`] | always | `serde_json`; readable with `redis-cli` |
//! | [`Codec::MessagePack`] | `msgpack` | `rmp-serde` with named fields; smaller and faster |
//! | [`Codec::Compact`] | `compact` | postcard: no field names, about a third of JSON's size, the fastest |
//!
//! JSON floats round-trip exactly (`serde_json`'s `float_roundtrip`): a hit returns the loader's
//! `f64` bit for bit. Exact parsing costs about 2x the default float parsing (about 125 more
//! instructions per float, measured with `benches/hit_cost.rs`); MessagePack stores floats as
//! binary and needs no parsing.
//!
//! The codec is recorded per entry, so changing the configured codec never misreads old entries:
//! an entry is always decoded by the codec that wrote it (a JSON entry read by a cache configured
//! for [`Codec::Compact`] is decoded as JSON, and the other way round), and an entry written with
//! a codec this build cannot read (a compact entry read by a build without the `compact`
//! feature) is treated as a miss and replaced.
//!
//! # The compact codec
//! [`Codec::Compact`] was picked by measurement among three formats without field names
//! (`make bench-codecs`, `tests/benches/codecs.rs`): the same page of records (strings, `u64`,
//! `f64`, `Option`, `Vec`) encoded and decoded in interleaved rounds, median µs per operation.
//!
//! | codec | 1 KiB page: bytes | encode µs | decode µs | 16 KiB page: bytes | encode µs | decode µs |
//! | --- | --- | --- | --- | --- | --- | --- |
//! | JSON (`serde_json`, for reference) | 1110 | 2.57 | 6.02 | 16393 | 39.59 | 96.51 |
//! | MessagePack, named (`rmp_serde`, [`Codec::MessagePack`]) | 822 | 2.20 | 3.40 | 11943 | 31.08 | 59.56 |
//! | MessagePack, arrays (`rmp_serde::to_vec`) | 438 | 1.71 | 2.38 | 6515 | 8.22 | 46.15 |
//! | **postcard 1.1** | 403 | **0.59** | **2.25** | 5956 | **5.09** | **27.27** |
//! | bitcode 0.6 (serde mode) | **371** | 3.13 | 3.12 | **5147** | 6.68 | 38.22 |
//!
//! (2026-11-30, 2 cores shared with other jobs, 15 interleaved rounds; the bench prints the
//! min–max spread, which is wide on that machine.) postcard is the fastest to encode and to
//! decode at both sizes; bitcode is 8–14% smaller but slower, and its serde mode **panics** on
//! some types (a map of unknown length, an untagged enum whose variants differ in one sequence)
//! where postcard returns an error. Its 1.2 release needs Rust 1.88, above this workspace's
//! `rust-version`, so the dependency stays below 1.2.
//!
//! Without field names or type markers it has two rules:
//! * **Types that need a self-describing format** (`serde_json::Value`, `#[serde(untagged)]` or
//!   internally tagged enums, `#[serde(flatten)]`: their `Deserialize` calls `deserialize_any`)
//!   cannot be decoded. Such a type is detected once, at its first store through a read-through
//!   call (the compact payload is decoded once before it is stored) or at the first compact
//!   entry of it that fails to decode that way (written by [`Cache::set`](crate::Cache::set),
//!   which cannot check); that read is a miss. From then on the type is stored as JSON, which
//!   its entries record, and one warning `cache_codec_fallback` names the type and what to do.
//!   The caller always gets the loader's value, never an error.
//! * **A change of a cached type's fields needs a schema version bump** (`version = ..` on the
//!   resource, or the global version): JSON notices a renamed or missing field, a format
//!   without field names may not (two fields of one type swapped decode without an error).
//!
//! # Compression
//! With the `compression` feature and [`CacheBuilder::compress_above`](crate::CacheBuilder::compress_above),
//! payloads larger than the threshold are LZ4-compressed (flag bit 2). The ETag is always computed
//! over the uncompressed payload, so it does not depend on the setting.
//!
//! # Envelope format (version 2)
//! All integers are little-endian.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 1 | magic `0xCA` |
//! | 1 | 1 | format version `1` |
//! | 2 | 1 | flags: bits 0–1 codec (0 JSON, 1 MessagePack, 2 raw bytes, 3 compact), bit 2 LZ4 |
//! | 3 | 1 | reserved, `0` |
//! | 4 | 8 | created at, Unix milliseconds |
//! | 12 | 8 | fresh TTL, milliseconds |
//! | 20 | 8 | stale-while-revalidate window, milliseconds |
//! | 28 | 8 | stale-if-error window, milliseconds |
//! | 36 | 4 | recompute time of the loader, milliseconds (for early refresh) |
//! | 40 | 8 | ETag: XXH3-64 (seed 0) of the uncompressed payload |
//! | 48 | 1 + n | content type: length byte, then UTF-8 |
//! | … | 2 + … | tags: count (u16), then per tag a u16 length and UTF-8 bytes |
//! | … | 2 + 8 n | versions (version 2 only): count `n` (u16), then `n` u64: the namespace generation and each tag's version read before the value was loaded (empty when the store was not guarded) |
//! | … | rest | payload (LZ4 blocks carry a u32 uncompressed-size prefix) |
//!
//! ```
//! use cache_core::codec::{Codec, Envelope};
//!
//! let bytes = Codec::Json.encode_envelope(&vec![1, 2, 3], &Default::default()).unwrap();
//! let env = Envelope::parse(&bytes).unwrap();
//! assert_eq!(env.content_type(), "application/json");
//! let back: Vec<i32> = env.decode().unwrap();
//! assert_eq!(back, [1, 2, 3]);
//! ```

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{de::DeserializeOwned, Serialize};

use crate::error::CacheError;

const MAGIC: u8 = 0xCA;
const FORMAT_VERSION: u8 = 2;
/// The previous format (no versions section): still read, never written.
const FORMAT_VERSION_1: u8 = 1;
const FIXED_HEADER: usize = 48;
const FLAG_LZ4: u8 = 0b100;
const CODEC_MASK: u8 = 0b11;
const CODEC_JSON: u8 = 0;
#[cfg_attr(not(feature = "msgpack"), allow(dead_code))]
const CODEC_MSGPACK: u8 = 1;
const CODEC_RAW: u8 = 2;
#[cfg_attr(not(feature = "compact"), allow(dead_code))]
const CODEC_COMPACT: u8 = 3;

/// How values are serialized.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    /// JSON via `serde_json` (the default).
    #[default]
    Json,
    /// MessagePack via `rmp-serde`, structs encoded as maps (feature `msgpack`).
    #[cfg(feature = "msgpack")]
    MessagePack,
    /// A compact binary format without field names: postcard (feature `compact`). About a third
    /// of JSON's size and the fastest of the measured codecs (see the module docs).
    /// A type it cannot carry (one that needs `deserialize_any`: `serde_json::Value`,
    /// `#[serde(untagged)]`, `#[serde(flatten)]`, ...) is stored as JSON instead, detected once
    /// per type (see "The compact codec" in the module docs).
    #[cfg(feature = "compact")]
    Compact,
}

impl Codec {
    fn id(self) -> u8 {
        match self {
            Codec::Json => CODEC_JSON,
            #[cfg(feature = "msgpack")]
            Codec::MessagePack => CODEC_MSGPACK,
            #[cfg(feature = "compact")]
            Codec::Compact => CODEC_COMPACT,
        }
    }

    /// The MIME type recorded in the envelope for this codec.
    pub fn content_type(self) -> &'static str {
        match self {
            Codec::Json => "application/json",
            #[cfg(feature = "msgpack")]
            Codec::MessagePack => "application/msgpack",
            #[cfg(feature = "compact")]
            Codec::Compact => "application/x-postcard",
        }
    }

    /// Parses a codec name (`json`, `msgpack`, `compact`).
    pub fn from_name(name: &str) -> Option<Codec> {
        match name {
            "json" => Some(Codec::Json),
            #[cfg(feature = "msgpack")]
            "msgpack" | "messagepack" => Some(Codec::MessagePack),
            #[cfg(feature = "compact")]
            "compact" | "postcard" => Some(Codec::Compact),
            _ => None,
        }
    }

    /// Serializes `value` into a complete envelope described by `meta`.
    ///
    /// # Errors
    /// [`CacheError::Encode`] when serialization fails.
    pub fn encode_envelope<T: Serialize + ?Sized>(
        self,
        value: &T,
        meta: &EnvelopeMeta<'_>,
    ) -> Result<Vec<u8>, CacheError> {
        #[cfg(feature = "compact")]
        if self == Codec::Compact {
            return compact::encode(value, meta);
        }
        self.encode_with(value, meta)
    }

    /// Like [`encode_envelope`](Self::encode_envelope), and with [`Codec::Compact`] checks, the
    /// first time a type is stored, that the compact entry decodes back (a type that needs
    /// `deserialize_any` would not): such a type is stored as JSON from then on, logged once.
    pub(crate) fn encode_checked<T: Serialize + DeserializeOwned>(
        self,
        value: &T,
        meta: &EnvelopeMeta<'_>,
    ) -> Result<Vec<u8>, CacheError> {
        #[cfg(feature = "compact")]
        if self == Codec::Compact {
            return compact::encode_checked(value, meta);
        }
        self.encode_with(value, meta)
    }

    /// Encodes with exactly this codec.
    fn encode_with<T: Serialize + ?Sized>(
        self,
        value: &T,
        meta: &EnvelopeMeta<'_>,
    ) -> Result<Vec<u8>, CacheError> {
        let mut buf = Vec::with_capacity(256);
        let header_len = write_header(&mut buf, self.id(), meta, self.content_type());
        match self {
            Codec::Json => {
                serde_json::to_writer(&mut buf, value).map_err(|e| CacheError::Encode(e.into()))?
            }
            #[cfg(feature = "msgpack")]
            Codec::MessagePack => rmp_serde::encode::write_named(&mut buf, value)
                .map_err(|e| CacheError::Encode(e.into()))?,
            #[cfg(feature = "compact")]
            Codec::Compact => {
                buf = postcard::to_extend(value, buf).map_err(|e| CacheError::Encode(e.into()))?
            }
        }
        finish(&mut buf, header_len, meta.compress_above);
        Ok(buf)
    }
}

/// The compact codec's guard against types it cannot carry.
///
/// postcard, like every format without field names or type markers, cannot decode a type whose
/// `Deserialize` asks the format what comes next (`deserialize_any`: `serde_json::Value`,
/// `#[serde(untagged)]` and internally tagged enums, `#[serde(flatten)]`). Such a type is found
/// once, and stored as JSON from then on (its entries say so in their codec bits, so every
/// reader decodes them right):
/// * at its first store through the read-through paths, which decode the compact payload once
///   before storing it;
/// * at the first compact entry of it that fails to decode with "not supported" (an entry
///   written by [`Cache::set`](crate::Cache::set), which cannot check): that read is a miss, and
///   the entry is replaced by the next store.
///
/// Either way one warning `cache_codec_fallback` names the type and what to do, and the caller
/// gets the loader's value: never an error, never a wrong value.
#[cfg(feature = "compact")]
mod compact {
    use std::collections::HashMap;
    use std::sync::{LazyLock, RwLock};

    use serde::{de::DeserializeOwned, Serialize};

    use super::{Codec, EnvelopeMeta};
    use crate::error::CacheError;

    /// What the compact codec does with a type, by type name.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Fit {
        /// Its compact entries decoded back: stored compact.
        Compact,
        /// It cannot be carried: stored as JSON.
        Json,
    }

    static TYPES: LazyLock<RwLock<HashMap<&'static str, Fit>>> = LazyLock::new(Default::default);

    fn fit(name: &str) -> Option<Fit> {
        TYPES
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
    }

    /// Records that `T` is stored as JSON; logs the first time.
    pub(super) fn fall_back<T: ?Sized>(why: &dyn std::fmt::Display) {
        let name = std::any::type_name::<T>();
        let previous = TYPES
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, Fit::Json);
        if previous != Some(Fit::Json) {
            tracing::warn!(
                name: "cache_codec_fallback", event = "cache_codec_fallback",
                r#type = name,
                error = %why,
                "the compact codec cannot carry this type (it needs a self-describing format: \
                 serde_json::Value, #[serde(untagged)], #[serde(flatten)], ...); its entries are \
                 stored as JSON. Use Codec::Json for this cache, or a type without these \
                 attributes, to silence this warning"
            );
        }
    }

    /// Whether a postcard error says the type needs what the format does not have
    /// (`deserialize_any` and friends, or a sequence of unknown length: `#[serde(flatten)]`).
    pub(super) fn is_unsupported(e: &postcard::Error) -> bool {
        matches!(
            e,
            postcard::Error::WontImplement | postcard::Error::SerializeSeqLengthUnknown
        )
    }

    /// Decodes a whole payload: bytes left over mean the entry is not a `T` (a type that
    /// changed shape), never a value.
    pub(super) fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, postcard::Error> {
        match postcard::take_from_bytes::<T>(payload)? {
            (value, []) => Ok(value),
            _ => Err(postcard::Error::DeserializeBadEncoding),
        }
    }

    pub(super) fn encode<T: Serialize + ?Sized>(
        value: &T,
        meta: &EnvelopeMeta<'_>,
    ) -> Result<Vec<u8>, CacheError> {
        if fit(std::any::type_name::<T>()) == Some(Fit::Json) {
            return Codec::Json.encode_with(value, meta);
        }
        match Codec::Compact.encode_with(value, meta) {
            Err(e) => {
                fall_back::<T>(&e);
                Codec::Json.encode_with(value, meta)
            }
            ok => ok,
        }
    }

    pub(super) fn encode_checked<T: Serialize + DeserializeOwned>(
        value: &T,
        meta: &EnvelopeMeta<'_>,
    ) -> Result<Vec<u8>, CacheError> {
        let name = std::any::type_name::<T>();
        match fit(name) {
            Some(Fit::Json) => return Codec::Json.encode_with(value, meta),
            Some(Fit::Compact) => return encode(value, meta),
            None => {}
        }
        let bytes = encode(value, meta)?;
        let env = super::Envelope::parse(&bytes)?;
        if !env.h.is_compact() {
            return Ok(bytes); // it fell back at encoding
        }
        match env
            .payload()
            .and_then(|p| decode::<T>(&p).map_err(|e| CacheError::Decode(e.into())))
        {
            Ok(_) => {
                TYPES
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(name)
                    .or_insert(Fit::Compact);
                Ok(bytes)
            }
            Err(e) => {
                fall_back::<T>(&e);
                Codec::Json.encode_with(value, meta)
            }
        }
    }
}

/// Builds an envelope around bytes that are already encoded (HTTP bodies, for instance).
pub fn encode_raw_envelope(payload: &[u8], content_type: &str, meta: &EnvelopeMeta<'_>) -> Vec<u8> {
    encode_raw_with(content_type, meta, payload.len(), |buf| {
        buf.extend_from_slice(payload);
    })
}

/// Builds a raw envelope whose payload `write` appends to the buffer (no intermediate copy);
/// `hint` is the expected payload size.
pub(crate) fn encode_raw_with(
    content_type: &str,
    meta: &EnvelopeMeta<'_>,
    hint: usize,
    write: impl FnOnce(&mut Vec<u8>),
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(FIXED_HEADER + 64 + hint);
    let header_len = write_header(&mut buf, CODEC_RAW, meta, content_type);
    write(&mut buf);
    finish(&mut buf, header_len, meta.compress_above);
    buf
}

/// Metadata written into an envelope.
#[derive(Debug, Clone, Default)]
pub struct EnvelopeMeta<'a> {
    /// Creation time, Unix milliseconds; `0` means "now".
    pub created_at_ms: u64,
    /// Fresh lifetime.
    pub ttl: Duration,
    /// Stale-while-revalidate window after the fresh lifetime.
    pub stale_while_revalidate: Duration,
    /// Stale-if-error window after the fresh lifetime.
    pub stale_if_error: Duration,
    /// How long the loader took (used by early refresh).
    pub recompute: Duration,
    /// Tags the entry carries.
    pub tags: &'a [String],
    /// The versions the value was loaded under: the namespace generation, then one per tag in
    /// the order of `tags` (empty: not recorded). Checked on hits when Redis may evict keys.
    pub versions: &'a [u64],
    /// Compress payloads larger than this many bytes (needs the `compression` feature).
    pub compress_above: Option<usize>,
}

fn write_header(
    buf: &mut Vec<u8>,
    codec: u8,
    meta: &EnvelopeMeta<'_>,
    content_type: &str,
) -> usize {
    let created = if meta.created_at_ms == 0 {
        now_ms()
    } else {
        meta.created_at_ms
    };
    buf.extend_from_slice(&[MAGIC, FORMAT_VERSION, codec, 0]);
    buf.extend_from_slice(&created.to_le_bytes());
    buf.extend_from_slice(&duration_ms(meta.ttl).to_le_bytes());
    buf.extend_from_slice(&duration_ms(meta.stale_while_revalidate).to_le_bytes());
    buf.extend_from_slice(&duration_ms(meta.stale_if_error).to_le_bytes());
    let recompute = u32::try_from(meta.recompute.as_millis()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&recompute.to_le_bytes());
    buf.extend_from_slice(&0u64.to_le_bytes()); // ETag, patched in `finish`
    let ct = truncate_utf8(content_type, u8::MAX as usize);
    buf.push(ct.len() as u8);
    buf.extend_from_slice(ct.as_bytes());
    let count = meta.tags.len().min(u16::MAX as usize);
    buf.extend_from_slice(&(count as u16).to_le_bytes());
    for tag in &meta.tags[..count] {
        let tag = truncate_utf8(tag, u16::MAX as usize);
        buf.extend_from_slice(&(tag.len() as u16).to_le_bytes());
        buf.extend_from_slice(tag.as_bytes());
    }
    // The versions are recorded only when they match the tags (generation + one per tag).
    let versions = if meta.versions.len() == count + 1 {
        meta.versions
    } else {
        &[]
    };
    buf.extend_from_slice(&(versions.len() as u16).to_le_bytes());
    for v in versions {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    buf.len()
}

#[cfg_attr(not(feature = "compression"), allow(clippy::ptr_arg))]
fn finish(buf: &mut Vec<u8>, header_len: usize, compress_above: Option<usize>) {
    let etag = xxhash_rust::xxh3::xxh3_64(&buf[header_len..]);
    buf[40..48].copy_from_slice(&etag.to_le_bytes());
    #[cfg(feature = "compression")]
    if let Some(threshold) = compress_above {
        if buf.len() - header_len > threshold {
            let compressed = lz4_flex::compress_prepend_size(&buf[header_len..]);
            if compressed.len() < buf.len() - header_len {
                buf.truncate(header_len);
                buf.extend_from_slice(&compressed);
                buf[2] |= FLAG_LZ4;
            }
        }
    }
    #[cfg(not(feature = "compression"))]
    let _ = compress_above;
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The fixed fields of an envelope and where its variable parts are, without a borrow: the
/// engine parses an entry once and keeps this next to the bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    flags: u8,
    created_at_ms: u64,
    ttl_ms: u64,
    swr_ms: u64,
    sie_ms: u64,
    recompute_ms: u32,
    etag: u64,
    content_type: (usize, usize),
    tags: (usize, usize),
    tag_count: u16,
    /// Offset and count of the recorded versions (count 0: none).
    versions: (usize, u16),
    payload: usize,
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl Header {
    /// Parses the header of an envelope.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Header, CacheError> {
        let bad = |why: &str| CacheError::Decode(format!("invalid envelope: {why}").into());
        if bytes.len() < FIXED_HEADER + 3 || bytes[0] != MAGIC {
            return Err(bad("missing magic byte"));
        }
        let format = bytes[1];
        if format != FORMAT_VERSION && format != FORMAT_VERSION_1 {
            return Err(bad("unknown format version"));
        }
        let mut at = FIXED_HEADER;
        let ct_len = bytes[at] as usize;
        at += 1;
        let ct = bytes.get(at..at + ct_len).ok_or_else(|| bad("truncated"))?;
        std::str::from_utf8(ct).map_err(|_| bad("content type"))?;
        let content_type = (at, at + ct_len);
        at += ct_len;
        let count_bytes = bytes.get(at..at + 2).ok_or_else(|| bad("truncated"))?;
        let tag_count = u16::from_le_bytes([count_bytes[0], count_bytes[1]]);
        at += 2;
        let tags_start = at;
        for _ in 0..tag_count {
            let l = bytes.get(at..at + 2).ok_or_else(|| bad("truncated tags"))?;
            at += 2 + u16::from_le_bytes([l[0], l[1]]) as usize;
        }
        if at > bytes.len() {
            return Err(bad("truncated tags"));
        }
        let tags_end = at;
        let mut versions = (at, 0u16);
        if format == FORMAT_VERSION {
            let n = bytes
                .get(at..at + 2)
                .ok_or_else(|| bad("truncated versions"))?;
            let n = u16::from_le_bytes([n[0], n[1]]);
            at += 2;
            versions = (at, n);
            at += 8 * usize::from(n);
            if at > bytes.len() {
                return Err(bad("truncated versions"));
            }
        }
        let mut recompute = [0u8; 4];
        recompute.copy_from_slice(&bytes[36..40]);
        Ok(Header {
            flags: bytes[2],
            created_at_ms: read_u64(bytes, 4),
            ttl_ms: read_u64(bytes, 12),
            swr_ms: read_u64(bytes, 20),
            sie_ms: read_u64(bytes, 28),
            recompute_ms: u32::from_le_bytes(recompute),
            etag: read_u64(bytes, 40),
            content_type,
            tags: (tags_start, tags_end),
            tag_count,
            versions,
            payload: at,
        })
    }

    /// Creation time, Unix milliseconds: with the key, identifies one stored value.
    pub(crate) fn created_at_ms(&self) -> u64 {
        self.created_at_ms
    }

    /// The recorded versions (the generation, then one per tag): `None` when not recorded.
    pub(crate) fn versions<'b>(&self, bytes: &'b [u8]) -> Option<impl Iterator<Item = u64> + 'b> {
        let (at, n) = self.versions;
        (n > 0 && usize::from(n) == usize::from(self.tag_count) + 1)
            .then(|| (0..usize::from(n)).map(move |i| read_u64(bytes, at + 8 * i)))
    }

    /// Offset of the payload in the envelope bytes.
    pub(crate) fn payload_offset(&self) -> usize {
        self.payload
    }

    /// Age at `now_ms`; zero if the clock went backwards.
    pub(crate) fn age_at(&self, now_ms: u64) -> Duration {
        Duration::from_millis(now_ms.saturating_sub(self.created_at_ms))
    }

    /// Fresh lifetime.
    pub(crate) fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }

    /// Stale-while-revalidate window.
    pub(crate) fn stale_while_revalidate(&self) -> Duration {
        Duration::from_millis(self.swr_ms)
    }

    /// Stale-if-error window.
    pub(crate) fn stale_if_error(&self) -> Duration {
        Duration::from_millis(self.sie_ms)
    }

    /// Loader time recorded at store time.
    pub(crate) fn recompute(&self) -> Duration {
        Duration::from_millis(u64::from(self.recompute_ms))
    }

    /// The strong ETag value.
    pub(crate) fn etag(&self) -> u64 {
        self.etag
    }

    /// Whether the payload is LZ4-compressed.
    pub(crate) fn is_compressed(&self) -> bool {
        self.flags & FLAG_LZ4 != 0
    }

    /// Whether the payload is JSON (the `Json` codec).
    pub(crate) fn is_json(&self) -> bool {
        self.flags & CODEC_MASK == CODEC_JSON
    }

    /// Whether the payload is in the compact codec.
    #[cfg_attr(not(feature = "compact"), allow(dead_code))]
    pub(crate) fn is_compact(&self) -> bool {
        self.flags & CODEC_MASK == CODEC_COMPACT
    }

    /// Whether the payload holds raw bytes (an HTTP response) rather than a serialized value.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn is_raw(&self) -> bool {
        self.flags & CODEC_MASK == CODEC_RAW
    }

    /// Where the entry stands at `now_ms`: the one rule for fresh, stale and expired.
    pub(crate) fn freshness(&self, now_ms: u64) -> (Freshness, Duration) {
        let age = self.age_at(now_ms);
        let ttl = self.ttl();
        let state = if age < ttl {
            Freshness::Fresh
        } else if age < ttl + self.stale_while_revalidate() {
            Freshness::Stale
        } else if age < ttl + self.stale_if_error() {
            Freshness::IfError
        } else {
            Freshness::Expired
        };
        (state, age)
    }
}

/// Where an entry stands in its lifetime (see [`Header::freshness`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// Within its TTL: served as a hit.
    Fresh,
    /// Past its TTL, inside the stale-while-revalidate window: served stale while one refresh
    /// runs.
    Stale,
    /// Past its TTL and the stale-while-revalidate window, inside the stale-if-error window:
    /// served only when the loader fails.
    IfError,
    /// Past every window: a miss.
    Expired,
}

/// A parsed, borrowed view of a stored envelope. Parsing does not copy the payload.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    bytes: &'a [u8],
    h: Header,
}

impl<'a> Envelope<'a> {
    /// Parses an envelope.
    ///
    /// # Errors
    /// [`CacheError::Decode`] if the bytes are not an envelope of a known format version.
    pub fn parse(bytes: &'a [u8]) -> Result<Envelope<'a>, CacheError> {
        Ok(Envelope {
            bytes,
            h: Header::parse(bytes)?,
        })
    }

    /// The envelope of `bytes` whose header was parsed before.
    pub(crate) fn with_header(bytes: &'a [u8], h: Header) -> Envelope<'a> {
        Envelope { bytes, h }
    }

    /// Creation time in Unix milliseconds.
    pub fn created_at_ms(&self) -> u64 {
        self.h.created_at_ms
    }

    /// Fresh lifetime.
    pub fn ttl(&self) -> Duration {
        self.h.ttl()
    }

    /// Stale-while-revalidate window.
    pub fn stale_while_revalidate(&self) -> Duration {
        self.h.stale_while_revalidate()
    }

    /// Stale-if-error window.
    pub fn stale_if_error(&self) -> Duration {
        self.h.stale_if_error()
    }

    /// Time the loader took to compute this value.
    pub fn recompute(&self) -> Duration {
        self.h.recompute()
    }

    /// Age at `now_ms` (Unix milliseconds); zero if the clock went backwards.
    pub fn age_at(&self, now_ms: u64) -> Duration {
        self.h.age_at(now_ms)
    }

    /// The strong ETag value (hash of the uncompressed payload).
    pub fn etag(&self) -> u64 {
        self.h.etag
    }

    /// The ETag formatted for an HTTP header: `"<16 hex digits>"`.
    pub fn etag_header(&self) -> String {
        format!("\"{:016x}\"", self.h.etag)
    }

    /// Content type recorded at store time.
    pub fn content_type(&self) -> &'a str {
        let (a, b) = self.h.content_type;
        std::str::from_utf8(&self.bytes[a..b]).unwrap_or_default()
    }

    /// Whether the payload is LZ4-compressed.
    pub fn is_compressed(&self) -> bool {
        self.h.is_compressed()
    }

    /// The tags stored with the entry.
    pub fn tags(&self) -> impl Iterator<Item = &'a str> + 'a {
        let mut rest = &self.bytes[self.h.tags.0..self.h.tags.1];
        (0..self.h.tag_count).filter_map(move |_| {
            let len = u16::from_le_bytes([*rest.first()?, *rest.get(1)?]) as usize;
            let tag = rest.get(2..2 + len)?;
            rest = &rest[2 + len..];
            std::str::from_utf8(tag).ok()
        })
    }

    /// The stored payload bytes (compressed when [`is_compressed`](Self::is_compressed)).
    fn raw_payload(&self) -> &'a [u8] {
        &self.bytes[self.h.payload..]
    }

    /// The uncompressed payload bytes (borrowed unless compressed).
    ///
    /// # Errors
    /// [`CacheError::Decode`] if decompression fails or is not compiled in.
    pub fn payload(&self) -> Result<Cow<'a, [u8]>, CacheError> {
        if !self.is_compressed() {
            return Ok(Cow::Borrowed(self.raw_payload()));
        }
        #[cfg(feature = "compression")]
        {
            lz4_flex::decompress_size_prepended(self.raw_payload())
                .map(Cow::Owned)
                .map_err(|e| CacheError::Decode(e.into()))
        }
        #[cfg(not(feature = "compression"))]
        Err(CacheError::Decode(
            "entry is LZ4-compressed but the `compression` feature is off".into(),
        ))
    }

    /// Deserializes the payload with the codec recorded in the envelope.
    ///
    /// # Errors
    /// [`CacheError::Decode`] if the payload does not deserialize into `T` or the codec is not
    /// compiled in.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, CacheError> {
        let payload = self.payload()?;
        match self.h.flags & CODEC_MASK {
            CODEC_JSON => {
                serde_json::from_slice(&payload).map_err(|e| CacheError::Decode(e.into()))
            }
            #[cfg(feature = "msgpack")]
            CODEC_MSGPACK => {
                rmp_serde::from_slice(&payload).map_err(|e| CacheError::Decode(e.into()))
            }
            #[cfg(feature = "compact")]
            CODEC_COMPACT => compact::decode(&payload).map_err(|e| {
                if compact::is_unsupported(&e) {
                    compact::fall_back::<T>(&e);
                }
                CacheError::Decode(e.into())
            }),
            CODEC_RAW => Err(CacheError::Decode(
                "entry holds raw bytes; read it with Envelope::payload".into(),
            )),
            other => Err(CacheError::Decode(
                format!("codec {other} is not compiled in").into(),
            )),
        }
    }
}

/// Current Unix time in milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Item {
        id: u32,
        name: String,
    }

    fn meta(tags: &[String]) -> EnvelopeMeta<'_> {
        EnvelopeMeta {
            created_at_ms: 1_700_000_000_000,
            ttl: Duration::from_secs(60),
            stale_while_revalidate: Duration::from_secs(5),
            stale_if_error: Duration::from_secs(7),
            recompute: Duration::from_millis(12),
            tags,
            versions: &[],
            compress_above: None,
        }
    }

    #[test]
    fn recorded_versions_round_trip_and_version_1_entries_still_parse() {
        let tags = vec!["trig:1".to_string(), "trigs:list".to_string()];
        let mut m = meta(&tags);
        let versions = [7, 8, 9];
        m.versions = &versions;
        let bytes = Codec::Json.encode_envelope(&1u32, &m).unwrap();
        let h = Header::parse(&bytes).unwrap();
        assert_eq!(h.versions(&bytes).unwrap().collect::<Vec<_>>(), versions);
        assert_eq!(Envelope::parse(&bytes).unwrap().decode::<u32>().unwrap(), 1);
        // Versions that do not match the tags (generation + one per tag) are not recorded.
        m.versions = &versions[..2];
        let bytes = Codec::Json.encode_envelope(&1u32, &m).unwrap();
        assert!(Header::parse(&bytes).unwrap().versions(&bytes).is_none());
        // A version 1 entry (no versions section) is still read.
        let mut v1 = Codec::Json.encode_envelope(&1u32, &meta(&tags)).unwrap();
        let at = v1.len() - 1 - 2; // the empty versions count sits before the 1-byte payload
        v1.drain(at..at + 2);
        v1[1] = FORMAT_VERSION_1;
        let env = Envelope::parse(&v1).unwrap();
        assert_eq!(env.tags().collect::<Vec<_>>(), ["trig:1", "trigs:list"]);
        assert_eq!(env.decode::<u32>().unwrap(), 1);
    }

    #[test]
    fn envelope_round_trips_metadata_and_value() {
        let tags = vec!["trig:1".to_string(), "trigs:list".to_string()];
        let item = Item {
            id: 7,
            name: "Ben Nevis".into(),
        };
        let bytes = Codec::Json.encode_envelope(&item, &meta(&tags)).unwrap();
        let env = Envelope::parse(&bytes).unwrap();
        assert_eq!(env.created_at_ms(), 1_700_000_000_000);
        assert_eq!(env.ttl(), Duration::from_secs(60));
        assert_eq!(env.stale_while_revalidate(), Duration::from_secs(5));
        assert_eq!(env.stale_if_error(), Duration::from_secs(7));
        assert_eq!(env.recompute(), Duration::from_millis(12));
        assert_eq!(env.tags().collect::<Vec<_>>(), ["trig:1", "trigs:list"]);
        assert_eq!(env.content_type(), "application/json");
        assert_eq!(env.decode::<Item>().unwrap(), item);
        let json = br#"{"id":7,"name":"Ben Nevis"}"#;
        assert_eq!(env.etag(), xxhash_rust::xxh3::xxh3_64(json));
        assert_eq!(env.payload().unwrap().as_ref(), json);
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        for bytes in [&b""[..], b"hello", &[MAGIC, 9, 0, 0], &[MAGIC; 60]] {
            assert!(
                Envelope::parse(bytes).is_err()
                    || Envelope::parse(bytes).unwrap().decode::<Item>().is_err()
            );
        }
    }

    #[test]
    fn decoding_into_the_wrong_type_is_an_error_that_keeps_its_source() {
        let bytes = Codec::Json.encode_envelope(&"text", &meta(&[])).unwrap();
        let env = Envelope::parse(&bytes).unwrap();
        let err = env.decode::<Item>().unwrap_err();
        assert!(matches!(err, CacheError::Decode(_)));
        let source = std::error::Error::source(&err).expect("the serde error is the source");
        assert!(source.downcast_ref::<serde_json::Error>().is_some());
    }

    #[test]
    fn raw_envelope_keeps_bytes_and_content_type() {
        let bytes = encode_raw_envelope(b"<html>", "text/html", &meta(&[]));
        let env = Envelope::parse(&bytes).unwrap();
        assert_eq!(env.content_type(), "text/html");
        assert_eq!(env.payload().unwrap().as_ref(), b"<html>");
        assert!(env.decode::<String>().is_err());
    }

    #[cfg(feature = "compression")]
    #[test]
    fn large_payloads_are_compressed_above_the_threshold_only() {
        let big = "x".repeat(10_000);
        let mut m = meta(&[]);
        m.compress_above = Some(1024);
        let compressed = Codec::Json.encode_envelope(&big, &m).unwrap();
        let env = Envelope::parse(&compressed).unwrap();
        assert!(env.is_compressed());
        assert!(compressed.len() < 1000);
        assert_eq!(env.decode::<String>().unwrap(), big);
        let small = Codec::Json.encode_envelope(&"short", &m).unwrap();
        assert!(!Envelope::parse(&small).unwrap().is_compressed());
        // The ETag does not depend on compression.
        m.compress_above = None;
        let plain = Codec::Json.encode_envelope(&big, &m).unwrap();
        assert_eq!(Envelope::parse(&plain).unwrap().etag(), env.etag());
    }

    #[cfg(feature = "msgpack")]
    #[test]
    fn msgpack_round_trips_and_is_smaller() {
        let items: Vec<Item> = (0..50)
            .map(|id| Item {
                id,
                name: format!("n{id}"),
            })
            .collect();
        let mp = Codec::MessagePack
            .encode_envelope(&items, &meta(&[]))
            .unwrap();
        let js = Codec::Json.encode_envelope(&items, &meta(&[])).unwrap();
        let env = Envelope::parse(&mp).unwrap();
        assert_eq!(env.content_type(), "application/msgpack");
        assert_eq!(env.decode::<Vec<Item>>().unwrap(), items);
        assert!(mp.len() < js.len());
    }
}
