//! Go-style durations (`24h`, `90m`, `1h30m`, `1.5h`, `300ms`), the format of
//! `spec.token.gracePeriod` (the CRD validates it with CEL's `duration()`, which uses Go's
//! grammar) and of the operator's duration flags. jiff parses and prints them; this module only
//! keeps out what jiff would accept but Go (and therefore the CRD) would not, such as `1d`,
//! `5 s` or `1 hour`, so a flag and a spec value mean the same thing.

use std::time::Duration;

use jiff::SignedDuration;

/// Go's units, longest first so that `ms` is not read as `m`.
const GO_UNITS: [&str; 8] = ["ns", "us", "µs", "μs", "ms", "s", "m", "h"];

/// Whether `s` is a sequence of `<number><Go unit>` with nothing else in between.
fn is_go_grammar(s: &str) -> bool {
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..digits];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[digits..];
        let Some(unit) = GO_UNITS.iter().find(|u| rest.starts_with(*u)) else {
            return false;
        };
        rest = &rest[unit.len()..];
    }
    true
}

/// Parses a non-negative Go duration string. `"0"` is accepted without a unit, as in Go.
pub fn parse(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err(format!("{input:?} is negative"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if !is_go_grammar(s) {
        return Err(format!(
            "{input:?} is not a duration such as 24h, 90m or 1h30m (units: ns, us, ms, s, m, h)"
        ));
    }
    // Go allows a number without a leading digit (`.5s`); jiff wants one. Go's `us`
    // spellings with a Greek mu are jiff's `µs`.
    let normalized = leading_zeros(s).replace('μ', "µ");
    let d: SignedDuration = normalized
        .parse()
        .map_err(|e| format!("{input:?} is not a valid duration: {e}"))?;
    Duration::try_from(d).map_err(|_| format!("{input:?} is out of range"))
}

fn leading_zeros(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    let mut prev_digit = false;
    for c in s.chars() {
        if c == '.' && !prev_digit {
            out.push('0');
        }
        prev_digit = c.is_ascii_digit();
        out.push(c);
    }
    out
}

/// Formats a duration the way Go prints it for whole seconds (`24h0m0s` becomes `24h`): used in
/// messages only.
pub fn format(d: Duration) -> String {
    use jiff::fmt::friendly::{FractionalUnit, Spacing, SpanPrinter};
    match SignedDuration::try_from(d) {
        Ok(d) if !d.is_zero() => SpanPrinter::new()
            .spacing(Spacing::None)
            .fractional(Some(FractionalUnit::Second))
            .duration_to_string(&d),
        _ => format!("{d:?}"),
    }
}

/// Clap value parser for duration flags.
pub fn parse_flag(input: &str) -> Result<Duration, String> {
    parse(input)
}

/// Clap value parser for duration flags that used to take whole seconds (`--*-secs`): a bare
/// number still means seconds, anything else is a duration.
pub fn parse_flag_or_seconds(input: &str) -> Result<Duration, String> {
    match input.trim().parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => parse(input),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse("90m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(parse("1.5h").unwrap(), Duration::from_secs(5_400));
        assert_eq!(parse("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse("1m0.5s").unwrap(), Duration::from_millis(60_500));
        assert_eq!(
            parse("2h45m30s").unwrap(),
            Duration::from_secs(2 * 3600 + 45 * 60 + 30)
        );
        assert_eq!(parse("10us").unwrap(), Duration::from_micros(10));
        assert_eq!(parse("7ns").unwrap(), Duration::from_nanos(7));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse(".5s").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("2160h").unwrap(), Duration::from_secs(2160 * 3600));
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in [
            "", "forever", "24", "1d", "-1h", "h", "1.2.3s", "1h-5m", ".s", "5 s",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn former_seconds_flags_take_numbers_and_durations() {
        assert_eq!(
            parse_flag_or_seconds("30").unwrap(),
            Duration::from_secs(30)
        );
        assert_eq!(
            parse_flag_or_seconds("1m").unwrap(),
            Duration::from_secs(60)
        );
        assert!(parse_flag_or_seconds("-3").is_err());
    }

    #[test]
    fn formats_whole_durations_like_go() {
        assert_eq!(format(Duration::from_secs(86_400)), "24h");
        assert_eq!(format(Duration::from_secs(5_400)), "1h30m");
        assert_eq!(format(Duration::from_secs(5)), "5s");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
    }
}
