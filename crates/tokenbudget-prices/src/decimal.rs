//! Exact decimal text to integers: a JSON number, scaled by a power of ten, with no float in
//! between.

use std::fmt::Write;

/// Why a decimal text is not an exact scaled integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecimalError {
    /// Not a JSON number.
    Malformed,
    /// Below zero.
    Negative,
    /// Has digits below the unit (would need rounding).
    TooPrecise,
    /// Does not fit in a `u64` of the unit.
    TooLarge,
}

impl DecimalError {
    pub(crate) fn reason(self, unit: &str) -> String {
        match self {
            DecimalError::Malformed => "is not a number".to_owned(),
            DecimalError::Negative => "is negative".to_owned(),
            DecimalError::TooPrecise => format!("is not a whole number of {unit}"),
            DecimalError::TooLarge => "is too large".to_owned(),
        }
    }
}

/// `text` (JSON number grammar: `-?int(.frac)?([eE][+-]?exp)?`) times `10^scale`, exactly.
pub(crate) fn parse_scaled(text: &str, scale: u32) -> Result<u64, DecimalError> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let negative = bytes.first() == Some(&b'-');
    if negative {
        i += 1;
    }
    let int_start = i;
    while bytes.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let int_digits = &text[int_start..i];
    if int_digits.is_empty() || (int_digits.len() > 1 && int_digits.starts_with('0')) {
        return Err(DecimalError::Malformed);
    }
    let mut frac_digits = "";
    if bytes.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        frac_digits = &text[start..i];
        if frac_digits.is_empty() {
            return Err(DecimalError::Malformed);
        }
    }
    let mut exponent: i64 = 0;
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        let exp_negative = match bytes.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        while let Some(d) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
            // Saturate: an exponent this large is out of range either way.
            exponent = exponent
                .saturating_mul(10)
                .saturating_add(i64::from(d - b'0'));
            i += 1;
        }
        if i == start {
            return Err(DecimalError::Malformed);
        }
        if exp_negative {
            exponent = -exponent;
        }
    }
    if i != bytes.len() {
        return Err(DecimalError::Malformed);
    }

    // value = digits * 10^(exponent - frac_len), scaled by 10^scale.
    let digits = format!("{int_digits}{frac_digits}");
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(0); // zero, whatever its sign or exponent
    }
    if negative {
        return Err(DecimalError::Negative);
    }
    let frac_len = i64::try_from(frac_digits.len()).map_err(|_| DecimalError::TooPrecise)?;
    let shift = exponent
        .saturating_sub(frac_len)
        .saturating_add(i64::from(scale));
    let significant = digits.trim_end_matches('0');
    let trailing_zeros = i64::try_from(digits.len() - significant.len()).unwrap_or(i64::MAX);
    // Fold the significant digits' trailing zeros into the shift.
    let shift = shift.saturating_add(trailing_zeros);
    if shift < 0 {
        return Err(DecimalError::TooPrecise);
    }
    if significant.len() > 20 || shift > 20 {
        return Err(DecimalError::TooLarge);
    }
    let mut value: u64 = significant.parse().map_err(|_| DecimalError::TooLarge)?;
    for _ in 0..shift {
        value = value.checked_mul(10).ok_or(DecimalError::TooLarge)?;
    }
    Ok(value)
}

/// `value / 10^scale` as a decimal: at least `min_decimals` decimals, trailing zeros beyond
/// them dropped. Exact, never rounded.
pub(crate) fn format_scaled(value: u128, scale: u32, min_decimals: u32) -> String {
    let unit = 10u128.pow(scale);
    let whole = value / unit;
    let frac = value % unit;
    let mut out = String::new();
    let _ = write!(out, "{whole}");
    let frac = format!("{frac:0width$}", width = scale as usize);
    let keep = frac.trim_end_matches('0').len().max(min_decimals as usize);
    if keep > 0 {
        out.push('.');
        out.push_str(&frac[..keep.min(frac.len())]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_json_number_text_exactly() {
        let cases: &[(&str, Result<u64, DecimalError>)] = &[
            ("3e-06", Ok(3_000_000)),
            ("3E-06", Ok(3_000_000)),
            ("0.000003", Ok(3_000_000)),
            ("1.875e-05", Ok(18_750_000)),
            ("5.46875e-07", Ok(546_875)),
            ("1e-12", Ok(1)),
            ("0", Ok(0)),
            ("0.0", Ok(0)),
            ("-0.0", Ok(0)),
            ("0e5", Ok(0)),
            ("2", Ok(2_000_000_000_000)),
            ("1.5e+1", Ok(15_000_000_000_000)),
            ("30e-7", Ok(3_000_000)),
            ("1e-13", Err(DecimalError::TooPrecise)),
            ("2.0000000000000002E-7", Err(DecimalError::TooPrecise)),
            ("1.41953125E-7", Err(DecimalError::TooPrecise)),
            ("-3e-06", Err(DecimalError::Negative)),
            ("1e7", Ok(10_000_000_000_000_000_000)),
            ("1e8", Err(DecimalError::TooLarge)),
            ("1e999999999999999999999", Err(DecimalError::TooLarge)),
            ("1e-999999999999999999999", Err(DecimalError::TooPrecise)),
            ("", Err(DecimalError::Malformed)),
            ("01", Err(DecimalError::Malformed)),
            (".5", Err(DecimalError::Malformed)),
            ("5.", Err(DecimalError::Malformed)),
            ("1e", Err(DecimalError::Malformed)),
            ("\"1\"", Err(DecimalError::Malformed)),
            ("1 ", Err(DecimalError::Malformed)),
            ("null", Err(DecimalError::Malformed)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_scaled(text, 12), *want, "{text}");
        }
    }

    #[test]
    fn formats_with_a_minimum_of_decimals() {
        assert_eq!(format_scaled(20_000_000, 6, 2), "20.00");
        assert_eq!(format_scaled(123, 6, 2), "0.000123");
        assert_eq!(format_scaled(1_500_000, 6, 2), "1.50");
        assert_eq!(format_scaled(10_500, 6, 2), "0.0105");
        assert_eq!(format_scaled(0, 6, 2), "0.00");
        assert_eq!(format_scaled(3_000_000, 12, 2), "0.000003");
        assert_eq!(format_scaled(7, 0, 0), "7");
    }
}
