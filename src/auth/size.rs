//! Human-readable byte sizes, as written in `users.toml` quotas and shown to people.
//!
//! `parse_size` reads `"500MiB"`, `"1.5 GiB"`, `"10 MB"` or a bare byte count;
//! `format_size` writes binary units with at most one decimal (`"1.5 GiB"`).

/// Units accepted by [`parse_size`], lower-cased, with their size in bytes.
const UNITS: [(&str, u64); 9] = [
    ("b", 1),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
];

/// Why a size could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SizeError {
    #[error("empty size")]
    Empty,
    #[error("size cannot be negative")]
    Negative,
    #[error("{0:?} is not a number (expected something like \"500MiB\" or \"1.5 GiB\")")]
    NotANumber(String),
    #[error("unknown unit {0:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)")]
    UnknownUnit(String),
    #[error("a byte count must be a whole number")]
    FractionalBytes,
    #[error("size is too large (the limit is {} bytes)", u64::MAX)]
    Overflow,
}

/// Parses a size such as `"500MiB"`, `"1.5 GiB"`, `"10 MB"` or `"1048576"` into bytes.
///
/// Units are case-insensitive and may be separated from the number by spaces. KiB, MiB,
/// GiB and TiB are powers of 1024; KB, MB, GB and TB are powers of 1000. A fraction of a
/// larger unit is rounded down to whole bytes (`"0.3 KiB"` is 307 bytes).
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(SizeError::Empty);
    }
    if text.starts_with('-') {
        return Err(SizeError::Negative);
    }
    let number_len = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_len);
    let unit = unit.trim_start();

    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(SizeError::NotANumber(text.to_owned()));
    }
    let multiplier = if unit.is_empty() {
        1
    } else {
        UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            .map(|&(_, bytes)| bytes)
            .ok_or_else(|| SizeError::UnknownUnit(unit.to_owned()))?
    };
    if multiplier == 1 && !fraction.trim_end_matches('0').is_empty() {
        return Err(SizeError::FractionalBytes);
    }

    // Exact integer arithmetic: "1.5" is 15 / 10. u128 holds any u64 size times 10^19,
    // and the checked operations turn absurdly long inputs into `Overflow`.
    let mut scaled: u128 = 0;
    let mut divisor: u128 = 1;
    for (i, digit) in whole.bytes().chain(fraction.bytes()).enumerate() {
        scaled = scaled
            .checked_mul(10)
            .and_then(|n| n.checked_add(u128::from(digit - b'0')))
            .ok_or(SizeError::Overflow)?;
        if i >= whole.len() {
            divisor = divisor.checked_mul(10).ok_or(SizeError::Overflow)?;
        }
    }
    let bytes = scaled
        .checked_mul(u128::from(multiplier))
        .ok_or(SizeError::Overflow)?
        / divisor;
    u64::try_from(bytes).map_err(|_| SizeError::Overflow)
}

/// Formats a byte count for people: `"0 B"`, `"512 B"`, `"1.5 GiB"`, `"3 TiB"`.
///
/// Uses the largest binary unit that keeps the number at least 1, rounded to one decimal.
pub fn format_size(bytes: u64) -> String {
    const NAMES: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    // Tenths of 1024^unit bytes, rounded to nearest; u128 so that `* 10` cannot overflow.
    let tenths_of =
        |unit: usize| (u128::from(bytes) * 10 + (1u128 << (10 * unit) >> 1)) >> (10 * unit);
    let mut unit = 0;
    while unit + 1 < NAMES.len() && bytes >> (10 * (unit + 1)) > 0 {
        unit += 1;
    }
    let mut tenths = tenths_of(unit);
    // 1048575 bytes would round to "1024 KiB"; say "1 MiB" instead.
    if tenths >= 10240 && unit + 1 < NAMES.len() {
        unit += 1;
        tenths = tenths_of(unit);
    }
    let name = NAMES[unit];
    if tenths % 10 == 0 {
        format!("{} {name}", tenths / 10)
    } else {
        format!("{}.{} {name}", tenths / 10, tenths % 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_binary_and_decimal_sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size("500MiB"), Ok(500 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1.5 GiB"), Ok(3 << 29));
        assert_eq!(parse_size("10 MB"), Ok(10_000_000));
        assert_eq!(parse_size("7 b"), Ok(7));
        assert_eq!(parse_size("1tib"), Ok(1 << 40));
        assert_eq!(parse_size("3 KB"), Ok(3000));
        assert_eq!(parse_size("  4  kIb "), Ok(4096));
        assert_eq!(parse_size(".5KiB"), Ok(512));
        assert_eq!(parse_size("2."), Ok(2));
    }

    #[test]
    fn rounds_fractions_of_a_unit_down_to_bytes() {
        assert_eq!(parse_size("0.3 KiB"), Ok(307));
        assert_eq!(parse_size("1.0 B"), Ok(1));
    }

    #[test]
    fn rejects_unknown_units() {
        let err = parse_size("12 parsecs").unwrap_err();
        assert_eq!(err, SizeError::UnknownUnit("parsecs".into()));
        assert!(
            err.to_string().contains("unknown unit \"parsecs\""),
            "{err}"
        );
        assert_eq!(
            parse_size("5 GiBs"),
            Err(SizeError::UnknownUnit("GiBs".into()))
        );
        assert_eq!(parse_size("1 G"), Err(SizeError::UnknownUnit("G".into())));
    }

    #[test]
    fn rejects_negative_empty_and_non_numbers() {
        assert_eq!(parse_size("-1"), Err(SizeError::Negative));
        assert_eq!(parse_size(" -5 MiB"), Err(SizeError::Negative));
        assert_eq!(parse_size(""), Err(SizeError::Empty));
        assert_eq!(parse_size("   "), Err(SizeError::Empty));
        assert!(matches!(parse_size("GiB"), Err(SizeError::NotANumber(_))));
        assert!(matches!(parse_size("."), Err(SizeError::NotANumber(_))));
        assert!(matches!(
            parse_size("1.2.3 MB"),
            Err(SizeError::NotANumber(_))
        ));
        assert!(matches!(parse_size("+5"), Err(SizeError::NotANumber(_))));
        assert_eq!(parse_size("1.5"), Err(SizeError::FractionalBytes));
        assert_eq!(parse_size("1.5 B"), Err(SizeError::FractionalBytes));
    }

    #[test]
    fn rejects_overflow() {
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_size("18446744073709551616"), Err(SizeError::Overflow));
        assert_eq!(parse_size("16777216 TiB"), Err(SizeError::Overflow));
        let long = "9".repeat(200);
        assert_eq!(parse_size(&long), Err(SizeError::Overflow));
        assert_eq!(
            parse_size(&format!("1.{long} KiB")),
            Err(SizeError::Overflow)
        );
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1024), "1 KiB");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        assert_eq!(format_size(5 << 40), "5 TiB");
        assert_eq!(format_size(5000 << 40), "5000 TiB");
        assert_eq!(format_size(u64::MAX), "16777216 TiB");
        // Just under 1 MiB rounds up into the next unit rather than showing "1024 KiB".
        assert_eq!(format_size((1 << 20) - 1), "1 MiB");
    }

    #[test]
    fn formatted_exact_sizes_parse_back() {
        for bytes in [0, 512, 1024, 3 << 29, 1 << 40] {
            assert_eq!(parse_size(&format_size(bytes)), Ok(bytes));
        }
    }
}
