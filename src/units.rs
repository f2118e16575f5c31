//! Human units on the command line: sizes (`500M`, `10G`, bytes) and durations (`500ms`, `30s`, `5m`).

use std::time::Duration;

use jiff::fmt::friendly::SpanParser;

/// Parses `123`, `500K`, `500M`, `10G`, `1T`, `1.5G` (binary multiples up to `E`,
/// case-insensitive; an optional trailing `B` or `iB` is accepted).
pub fn parse_size(s: &str) -> Result<u64, String> {
    const SIZES: parse_size::Config = parse_size::Config::new().with_binary();
    SIZES.parse_size(s.trim()).map_err(|e| match e {
        parse_size::Error::PosOverflow => format!("'{s}' is too large"),
        _ => format!("'{s}' is not a size (examples: 500M, 10G, 1048576)"),
    })
}

/// Parses `500ms`, `30s`, `5m`, `1h`, `1h30m`, `2.5s`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let err = || format!("'{s}' is not a duration (examples: 500ms, 30s, 5m)");
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().map(Duration::from_secs).map_err(|_| err());
    }
    static DURATIONS: SpanParser = SpanParser::new();
    DURATIONS.parse_unsigned_duration(t).map_err(|_| err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("10g"), Ok(10 << 30));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_size("2mb"), Ok(2 << 20));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size(" 500 M "), Ok(500 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("10GB"), Ok(10 << 30));
        assert_eq!(parse_size("1_000_000"), Ok(1_000_000));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("-1M").is_err());
        assert!(parse_size("5X").is_err());
        assert_eq!(
            parse_size("99999999999T"),
            Err("'99999999999T' is too large".into())
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 5 m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        let ninety_min = Ok(Duration::from_secs(5400));
        assert_eq!(parse_duration("1 hour 30 mins"), ninety_min);
        assert_eq!(parse_duration("01:30:00"), ninety_min);
        assert!(parse_duration("5M").is_err());
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("99999999999999999999").is_err());
    }
}
