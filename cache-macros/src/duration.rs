//! Compile-time duration parsing for `ttl`, `stale_while_revalidate` and `stale_if_error`.
//!
//! A copy of the syntax of `cache_core::ttl::parse_duration` (this crate cannot depend on
//! `cache-core`): a bare integer means seconds (`"3600"`), otherwise one or more
//! `<integer><unit>` terms, largest unit first, each unit at most once, units `d`, `h`, `m`, `s`,
//! `ms` (lowercase): `"90s"`, `"5m"`, `"24h"`, `"1h30m"`, `"2s500ms"`.

/// The units, largest first, with their length in milliseconds.
const UNITS: [(&str, u128); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses `s` into whole milliseconds (at most `u64::MAX`). The error explains the syntax.
pub(crate) fn parse_millis(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let syntax = "expected a duration such as \"90s\", \"5m\", \"24h\", \"1h30m\", \"250ms\" or \
                  bare seconds \"3600\" (units d, h, m, s, ms; largest first; lowercase)";
    let invalid = || format!("invalid duration {s:?}: {syntax}");
    let too_large = || format!("duration {s:?} is too large");
    if text.is_empty() {
        return Err(invalid());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u128 = text.parse().map_err(|_| too_large())?;
        return u64::try_from(secs * 1000).map_err(|_| too_large());
    }
    let bytes = text.as_bytes();
    let (mut i, mut total, mut next_unit) = (0, 0u128, 0);
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(invalid());
        }
        let number: u128 = text[start..i].parse().map_err(|_| too_large())?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &text[unit_start..i];
        let Some(offset) = UNITS[next_unit..].iter().position(|(u, _)| *u == unit) else {
            return Err(invalid());
        };
        total = number
            .checked_mul(UNITS[next_unit + offset].1)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(too_large)?;
        next_unit += offset + 1;
    }
    u64::try_from(total).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::parse_millis;

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!(parse_millis("90s"), Ok(90_000));
        assert_eq!(parse_millis("5m"), Ok(300_000));
        assert_eq!(parse_millis("24h"), Ok(86_400_000));
        assert_eq!(parse_millis("1h30m"), Ok(5_400_000));
        assert_eq!(parse_millis(" 3600 "), Ok(3_600_000));
        assert_eq!(parse_millis("1d"), Ok(86_400_000));
        assert_eq!(parse_millis("2s500ms"), Ok(2_500));
        assert_eq!(parse_millis("0"), Ok(0));
    }

    #[test]
    fn rejects_everything_else() {
        for bad in ["", "5M", "1.5h", "-1s", "30m1h", "1h1h", "h", "5 m", "1w"] {
            assert!(parse_millis(bad).is_err(), "{bad}");
        }
        assert!(parse_millis("99999999999999999999999d").is_err());
    }
}
