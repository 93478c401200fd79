//! Money as people read it: `minor` units in a currency, formatted with the currency's
//! number of decimals.

/// Decimals of a currency's minor unit (ISO 4217; 2 for the rest).
pub fn exponent(currency: &str) -> u32 {
    match currency {
        "JPY" | "KRW" | "ISK" | "CLP" | "VND" | "HUF" => 0,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" => 3,
        _ => 2,
    }
}

/// `12345 EUR` → `€123.45`; symbols for EUR, USD and GBP, the code before the amount
/// otherwise (`CHF 10.00`, `JPY 500`).
pub fn format_money(minor: i64, currency: &str) -> String {
    let exp = exponent(currency);
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let amount = if exp == 0 {
        abs.to_string()
    } else {
        let unit = 10u64.pow(exp);
        format!(
            "{}.{:0width$}",
            abs / unit,
            abs % unit,
            width = exp as usize
        )
    };
    match currency {
        "EUR" => format!("{sign}€{amount}"),
        "USD" => format!("{sign}${amount}"),
        "GBP" => format!("{sign}£{amount}"),
        other => format!("{sign}{other} {amount}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_units_are_formatted_per_currency() {
        assert_eq!(format_money(12_345, "EUR"), "€123.45");
        assert_eq!(format_money(5, "EUR"), "€0.05");
        assert_eq!(format_money(0, "USD"), "$0.00");
        assert_eq!(format_money(-250, "GBP"), "-£2.50");
        assert_eq!(format_money(1_000, "CHF"), "CHF 10.00");
        assert_eq!(format_money(500, "JPY"), "JPY 500");
        assert_eq!(format_money(1_234, "KWD"), "KWD 1.234");
    }
}
