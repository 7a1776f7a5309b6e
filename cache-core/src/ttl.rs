//! Durations for TTLs: parsing, formatting and jitter.
//!
//! ```
//! use std::time::Duration;
//! use cache_core::ttl::{format_duration, jitter, parse_duration};
//!
//! assert_eq!(parse_duration("1h30m")?, Duration::from_secs(5400));
//! assert_eq!(parse_duration(" 3600 ")?, Duration::from_secs(3600));
//! assert_eq!(parse_duration("250ms")?, Duration::from_millis(250));
//! assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
//!
//! let ttl = jitter(Duration::from_secs(60), 0.1);
//! assert!(ttl >= Duration::from_secs(54) && ttl <= Duration::from_secs(60));
//! # Ok::<(), cache_core::ttl::DurationParseError>(())
//! ```
//!
//! # Syntax
//!
//! A duration is either a bare integer, meaning seconds (`"3600"`), or one or more
//! `<integer><unit>` terms with the units
//!
//! | unit | meaning |
//! | --- | --- |
//! | `d` | days (86 400 s) |
//! | `h` | hours |
//! | `m` | minutes |
//! | `s` | seconds |
//! | `ms` | milliseconds |
//!
//! Terms are written largest unit first, each unit at most once, without spaces: `"1d12h"`,
//! `"1h30m"`, `"2s500ms"`. Units are lowercase only (`"5M"` is rejected: it could be read as
//! months). Whitespace around the whole string is ignored. Signs, decimals (`"1.5h"`) and empty
//! strings are rejected. Zero (`"0"`, `"0s"`) is accepted: callers decide what it means. Values
//! too large for a [`Duration`] are an error, never a panic.

use std::fmt;
use std::time::Duration;

/// The units, largest first, with their length in milliseconds.
const UNITS: [(&str, u128); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// The longest input quoted in full by a [`DurationParseError`].
const QUOTED_MAX_CHARS: usize = 64;

/// Parses a duration: `"90s"`, `"5m"`, `"24h"`, `"1d"`, `"250ms"`, compound `"1h30m"`, or a bare
/// integer meaning seconds (`"3600"`). See the [module docs](self) for the exact syntax.
///
/// # Errors
///
/// [`DurationParseError`] when `s` does not follow the syntax or is too large for a
/// [`Duration`].
///
/// ```
/// use std::time::Duration;
/// use cache_core::ttl::parse_duration;
///
/// assert_eq!(parse_duration("1d")?, Duration::from_secs(86_400));
/// assert!(parse_duration("1.5h").is_err());
/// assert!(parse_duration("5M").is_err());
/// # Ok::<(), cache_core::ttl::DurationParseError>(())
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, DurationParseError> {
    let text = s.trim();
    if text.is_empty() {
        return Err(DurationParseError::new(s, Problem::Invalid));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| DurationParseError::new(s, Problem::TooLarge));
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut total_ms: u128 = 0;
    let mut next_unit = 0;
    while i < bytes.len() {
        let digits_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == digits_start {
            return Err(DurationParseError::new(s, Problem::Invalid));
        }
        let number: u64 = text[digits_start..i]
            .parse()
            .map_err(|_| DurationParseError::new(s, Problem::TooLarge))?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &text[unit_start..i];
        let Some(offset) = UNITS[next_unit..].iter().position(|(u, _)| *u == unit) else {
            // Unknown, missing, repeated or out-of-order unit.
            return Err(DurationParseError::new(s, Problem::Invalid));
        };
        let (_, unit_ms) = UNITS[next_unit + offset];
        next_unit += offset + 1;
        total_ms = total_ms
            .checked_add(u128::from(number) * unit_ms)
            .ok_or_else(|| DurationParseError::new(s, Problem::TooLarge))?;
    }
    duration_from_millis(total_ms).ok_or_else(|| DurationParseError::new(s, Problem::TooLarge))
}

/// Formats a duration in the syntax of [`parse_duration`], largest unit first and without zero
/// terms: `"1h30m"`, `"1m30s"`, `"250ms"`, `"1d"`; zero is `"0s"`.
///
/// Sub-millisecond precision is dropped (truncated), so
/// `parse_duration(&format_duration(d)) == d` for every whole-millisecond duration.
///
/// ```
/// use std::time::Duration;
/// use cache_core::ttl::format_duration;
///
/// assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
/// assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
/// assert_eq!(format_duration(Duration::ZERO), "0s");
/// ```
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, unit_ms) in UNITS {
        let n = ms / unit_ms;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(unit);
            ms %= unit_ms;
        }
    }
    out
}

/// Applies jitter to a TTL, so that entries written together do not all expire together.
///
/// Returns a duration drawn uniformly (to the millisecond) from `[ttl × (1 − fraction), ttl]`:
/// never longer than `ttl`, and never zero when `ttl` is at least 1 ms (the minimum is 1 ms).
/// `fraction` is clamped to `[0, 1]` (NaN counts as 0). With `fraction == 0`, or a `ttl` shorter
/// than 1 ms, `ttl` is returned unchanged; otherwise the result is a whole number of milliseconds.
/// Uses [`fastrand`].
///
/// ```
/// use std::time::Duration;
/// use cache_core::ttl::jitter;
///
/// let ttl = Duration::from_secs(100);
/// let j = jitter(ttl, 0.2);
/// assert!(j >= Duration::from_secs(80) && j <= ttl);
/// assert_eq!(jitter(ttl, 0.0), ttl);
/// ```
pub fn jitter(ttl: Duration, fraction: f64) -> Duration {
    let fraction = if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 1.0)
    };
    let ttl_ms = ttl.as_millis();
    if fraction <= 0.0 || ttl_ms == 0 {
        return ttl;
    }
    // Exact integer arithmetic: fraction as a multiple of 2^-32 (ttl_ms < 2^75, so no overflow).
    let scaled = (fraction * 4_294_967_296.0).round() as u128;
    let reduction = (ttl_ms * scaled) >> 32;
    let lowest = (ttl_ms - reduction).max(1);
    let ms = fastrand::u128(lowest..=ttl_ms);
    duration_from_millis(ms).unwrap_or(ttl)
}

/// A value that can be turned into a TTL: a [`Duration`], a number of seconds (`u64`, `u32`,
/// `i32`), or a string in the syntax of [`parse_duration`].
///
/// The `i32` implementation exists so that bare integer literals (`60`) work; negative values
/// are an error.
///
/// ```
/// use std::time::Duration;
/// use cache_core::ttl::IntoTtl;
///
/// fn ttl(t: impl IntoTtl) -> Duration {
///     t.into_ttl().unwrap()
/// }
/// assert_eq!(ttl(60), Duration::from_secs(60));
/// assert_eq!(ttl("1m"), Duration::from_secs(60));
/// assert_eq!(ttl(Duration::from_secs(60)), Duration::from_secs(60));
/// ```
pub trait IntoTtl {
    /// Converts `self` into a duration.
    ///
    /// # Errors
    ///
    /// [`DurationParseError`] for strings that [`parse_duration`] rejects and negative numbers.
    fn into_ttl(self) -> Result<Duration, DurationParseError>;
}

impl IntoTtl for Duration {
    fn into_ttl(self) -> Result<Duration, DurationParseError> {
        Ok(self)
    }
}

impl IntoTtl for u64 {
    fn into_ttl(self) -> Result<Duration, DurationParseError> {
        Ok(Duration::from_secs(self))
    }
}

impl IntoTtl for u32 {
    fn into_ttl(self) -> Result<Duration, DurationParseError> {
        Ok(Duration::from_secs(u64::from(self)))
    }
}

impl IntoTtl for i32 {
    fn into_ttl(self) -> Result<Duration, DurationParseError> {
        u64::try_from(self)
            .map(Duration::from_secs)
            .map_err(|_| DurationParseError::new(&self.to_string(), Problem::Negative))
    }
}

impl IntoTtl for &str {
    fn into_ttl(self) -> Result<Duration, DurationParseError> {
        parse_duration(self)
    }
}

impl IntoTtl for String {
    fn into_ttl(self) -> Result<Duration, DurationParseError> {
        parse_duration(&self)
    }
}

impl IntoTtl for &String {
    fn into_ttl(self) -> Result<Duration, DurationParseError> {
        parse_duration(self)
    }
}

/// A string that is not a valid duration (see [`parse_duration`]).
///
/// Its message quotes the input and gives the expected form, for example
/// `invalid duration "5x": expected a duration like "90s", "5m", "24h", "1h30m" or a number of
/// seconds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationParseError {
    input: String,
    problem: Problem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    Invalid,
    TooLarge,
    Negative,
}

impl DurationParseError {
    fn new(input: &str, problem: Problem) -> Self {
        let input = match input.char_indices().nth(QUOTED_MAX_CHARS) {
            Some((cut, _)) => format!("{}...", &input[..cut]),
            None => input.to_owned(),
        };
        DurationParseError { input, problem }
    }

    /// The rejected input (its first 64 characters followed by `...` if it was longer).
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl fmt::Display for DurationParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let detail = match self.problem {
            Problem::Invalid => "",
            Problem::TooLarge => " (too large)",
            Problem::Negative => " (negative)",
        };
        write!(
            f,
            "invalid duration {:?}{detail}: expected a duration like \"90s\", \"5m\", \"24h\", \
             \"1h30m\" or a number of seconds",
            self.input
        )
    }
}

impl std::error::Error for DurationParseError {}

fn duration_from_millis(ms: u128) -> Option<Duration> {
    let secs = u64::try_from(ms / 1000).ok()?;
    let nanos = u32::try_from(ms % 1000).ok()? * 1_000_000;
    Some(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn ok(s: &str) -> Duration {
        parse_duration(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn parses_each_unit() {
        assert_eq!(ok("90s"), secs(90));
        assert_eq!(ok("5m"), secs(300));
        assert_eq!(ok("24h"), secs(86_400));
        assert_eq!(ok("1d"), secs(86_400));
        assert_eq!(ok("250ms"), Duration::from_millis(250));
    }

    #[test]
    fn parses_compound_durations_largest_unit_first() {
        assert_eq!(ok("1h30m"), secs(5400));
        assert_eq!(ok("1d2h3m4s5ms"), Duration::from_millis(93_784_005));
        assert_eq!(ok("2s500ms"), Duration::from_millis(2500));
        assert_eq!(ok("1h1s"), secs(3601));
    }

    #[test]
    fn bare_integer_means_seconds() {
        assert_eq!(ok("3600"), secs(3600));
        assert_eq!(ok("007"), secs(7));
        assert_eq!(ok(&u64::MAX.to_string()), secs(u64::MAX));
    }

    #[test]
    fn surrounding_whitespace_is_trimmed() {
        assert_eq!(ok("  5m\n"), secs(300));
        assert_eq!(ok("\t60 "), secs(60));
    }

    #[test]
    fn zero_is_allowed() {
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("0h0ms"), Duration::ZERO);
    }

    #[test]
    fn rejects_malformed_durations() {
        for bad in [
            "", "   ", "s", "5x", "5M", "5S", "1H", "1.5h", "-5s", "+5s", "-5", "+5", "5 s",
            "1h 30m", "30m1h", "1m1m", "1s1ms1s", "ms", "5sec", "5mins", "1h30", "٣s", "5s!", "h1",
            "1_000s", "0x10",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        for big in [
            "18446744073709551616",
            "99999999999999999999999999999s",
            "18446744073709551615d",
            "213503982334602d",
            "18446744073709551615s1000ms",
        ] {
            let err = parse_duration(big).unwrap_err();
            assert!(err.to_string().contains("too large"), "{err}");
        }
        assert_eq!(
            ok("18446744073709551615s999ms"),
            Duration::new(u64::MAX, 999_000_000)
        );
    }

    #[test]
    fn error_message_quotes_input_and_expected_form() {
        let err = parse_duration("5x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid duration \"5x\": expected a duration like \"90s\", \"5m\", \"24h\", \
             \"1h30m\" or a number of seconds"
        );
        assert_eq!(err.input(), "5x");
        let long = parse_duration(&"x".repeat(1000)).unwrap_err();
        assert_eq!(long.input().len(), 67);
        let ctl = parse_duration("a\u{0}\"").unwrap_err().to_string();
        assert!(ctl.contains(r#""a\0\"""#), "{ctl}");
    }

    #[test]
    fn formats_largest_unit_first_without_zero_terms() {
        assert_eq!(format_duration(secs(90)), "1m30s");
        assert_eq!(format_duration(secs(5400)), "1h30m");
        assert_eq!(format_duration(secs(86_400)), "1d");
        assert_eq!(format_duration(secs(90_000)), "1d1h");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_millis(3_600_001)), "1h1ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn format_truncates_below_a_millisecond() {
        assert_eq!(format_duration(Duration::from_micros(1500)), "1ms");
        assert_eq!(format_duration(Duration::from_nanos(999_999)), "0s");
    }

    #[test]
    fn format_handles_the_largest_duration() {
        let max = Duration::MAX;
        let text = format_duration(max);
        assert_eq!(ok(&text), Duration::new(u64::MAX, 999_000_000));
    }

    #[test]
    fn jitter_with_zero_fraction_is_identity() {
        let ttl = Duration::from_micros(1_234_567);
        assert_eq!(jitter(ttl, 0.0), ttl);
        assert_eq!(jitter(ttl, -1.0), ttl);
        assert_eq!(jitter(ttl, f64::NAN), ttl);
    }

    #[test]
    fn jitter_of_zero_or_sub_millisecond_ttl_is_unchanged() {
        assert_eq!(jitter(Duration::ZERO, 0.5), Duration::ZERO);
        assert_eq!(
            jitter(Duration::from_micros(500), 1.0),
            Duration::from_micros(500)
        );
    }

    #[test]
    fn jitter_with_full_fraction_is_at_least_one_millisecond() {
        for _ in 0..1000 {
            let j = jitter(Duration::from_millis(3), 1.0);
            assert!(j >= Duration::from_millis(1) && j <= Duration::from_millis(3));
        }
        assert_eq!(
            jitter(Duration::from_millis(1), 5.0),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn jitter_spreads_values() {
        let ttl = secs(1000);
        let values: std::collections::HashSet<_> = (0..100).map(|_| jitter(ttl, 0.5)).collect();
        assert!(values.len() > 50);
        assert!(values
            .iter()
            .all(|&v| v >= secs(500) && v <= ttl && v.subsec_nanos() % 1_000_000 == 0));
    }

    #[test]
    fn jitter_handles_huge_ttls() {
        let j = jitter(Duration::MAX, 0.5);
        assert!(j <= Duration::MAX && j >= Duration::MAX / 2 - secs(1));
    }

    #[test]
    fn into_ttl_accepts_durations_numbers_and_strings() {
        assert_eq!(secs(5).into_ttl(), Ok(secs(5)));
        assert_eq!(5u64.into_ttl(), Ok(secs(5)));
        assert_eq!(5u32.into_ttl(), Ok(secs(5)));
        assert_eq!(5i32.into_ttl(), Ok(secs(5)));
        assert_eq!("5m".into_ttl(), Ok(secs(300)));
        assert_eq!(String::from("5m").into_ttl(), Ok(secs(300)));
        assert_eq!((&String::from("5m")).into_ttl(), Ok(secs(300)));
        assert!("nope".into_ttl().is_err());
        let neg = (-5i32).into_ttl().unwrap_err();
        assert!(neg.to_string().contains("\"-5\" (negative)"), "{neg}");
    }

    #[test]
    fn into_ttl_works_with_an_untyped_integer_literal() {
        fn ttl(t: impl IntoTtl) -> Duration {
            t.into_ttl().unwrap()
        }
        assert_eq!(ttl(60), secs(60));
    }

    proptest! {
        #[test]
        fn prop_format_then_parse_round_trips_whole_milliseconds(
            s in any::<u64>(),
            ms in 0u32..1000,
            small in 0u64..10_000_000,
            pick_small in any::<bool>(),
        ) {
            let d = Duration::new(if pick_small { small } else { s }, ms * 1_000_000);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn prop_format_then_parse_truncates_to_milliseconds(s in any::<u64>(), n in 0u32..1_000_000_000) {
            let d = Duration::new(s, n);
            let back = parse_duration(&format_duration(d)).unwrap();
            prop_assert_eq!(back, Duration::new(s, n / 1_000_000 * 1_000_000));
        }

        #[test]
        fn prop_parse_never_panics(s in any::<String>()) {
            let _ = parse_duration(&s);
        }

        #[test]
        fn prop_parse_never_panics_on_near_miss_syntax(s in "[ 0-9smhd.+-]{0,40}") {
            if let Ok(d) = parse_duration(&s) {
                // Whatever parses is normalised by format and parses back the same.
                prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
            }
        }

        #[test]
        fn prop_jitter_stays_within_bounds(ms in 1u64..u64::MAX / 2, fraction in -0.5f64..1.5) {
            let ttl = Duration::from_millis(ms);
            let j = jitter(ttl, fraction);
            let f = fraction.clamp(0.0, 1.0);
            prop_assert!(j <= ttl);
            prop_assert!(j >= Duration::from_millis(1));
            let ttl_ms = ms as f64;
            let lowest = ttl_ms * (1.0 - f) - 1.0 - ttl_ms * 1e-9;
            prop_assert!(j.as_millis() as f64 >= lowest, "{:?} < {}", j, lowest);
        }
    }
}
