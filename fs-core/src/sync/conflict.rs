//! What happens when both sides changed the same file since the version they last agreed
//! on: the policy, and the name the local version takes when both are kept.

use std::time::SystemTime;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// How a conflict is settled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConflictPolicy {
    /// The server's version takes the name; the local one is kept next to it as
    /// `NAME (conflict HOST DATE TIME).EXT` and uploaded.
    #[default]
    KeepBoth,
    /// The local version stays, is not uploaded, and waits for `edrive resolve`.
    Ask,
}

impl ConflictPolicy {
    /// The policy's name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictPolicy::KeepBoth => "keep-both",
            ConflictPolicy::Ask => "ask",
        }
    }
}

impl std::str::FromStr for ConflictPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keep-both" => Ok(ConflictPolicy::KeepBoth),
            "ask" => Ok(ConflictPolicy::Ask),
            other => Err(format!(
                "unknown conflict policy {other:?} (keep-both or ask)"
            )),
        }
    }
}

/// `name` with ` (conflict HOST YYYY-MM-DD HHMMSS)` before its extension (local time),
/// and ` N` after the time when `n` > 1 (for a name already taken).
pub fn conflict_name(name: &str, host: &str, at: SystemTime, n: u32) -> String {
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => name.split_at(i),
        _ => (name, ""),
    };
    let at = local_time(at).strftime("%Y-%m-%d %H%M%S");
    let nth = if n > 1 {
        format!(" {n}")
    } else {
        String::new()
    };
    let host: String = host
        .chars()
        .filter(|c| !c.is_control() && *c != '/' && *c != '\\')
        .take(64)
        .collect();
    let host = if host.is_empty() { "here".into() } else { host };
    let tag = format!(" (conflict {host} {at}{nth})");
    // A name has at most 255 bytes: the stem (then the extension) gives way.
    let mut ext = ext;
    if tag.len() + ext.len() > MAX_NAME / 2 {
        ext = "";
    }
    let room = MAX_NAME.saturating_sub(tag.len() + ext.len());
    let mut cut = stem.len().min(room);
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{tag}{ext}", &stem[..cut])
}

/// The longest name servers and file systems take, in bytes.
const MAX_NAME: usize = 255;

/// `YYYY-MM-DD` of `t` in local time.
pub fn local_date(t: SystemTime) -> String {
    local_time(t).date().to_string()
}

/// This machine's name, for conflict copies.
pub fn host_name() -> String {
    #[cfg(unix)]
    {
        let uname = rustix::system::uname();
        let name = uname.nodename().to_string_lossy().into_owned();
        if name.is_empty() {
            "here".into()
        } else {
            name
        }
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME").unwrap_or_else(|_| "here".into())
    }
}

/// `t` in the system's time zone (`TZ`, else the system setting), or in UTC if that cannot
/// be determined.
fn local_time(t: SystemTime) -> DateTime {
    civil(t, &TimeZone::try_system().unwrap_or(TimeZone::UTC))
}

/// `t` as a date and time in `tz` (the epoch for a time out of range).
fn civil(t: SystemTime, tz: &TimeZone) -> DateTime {
    tz.to_datetime(Timestamp::try_from(t).unwrap_or(Timestamp::UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn civil_dates_and_times() {
        let utc = |secs| civil(at(secs), &TimeZone::UTC).to_string();
        assert_eq!(utc(0), "1970-01-01T00:00:00");
        assert_eq!(utc(1_795_000_000), "2026-11-18T11:06:40");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00");
        // Central Europe by its POSIX rule (no time zone database needed): +1 in
        // winter, +2 in summer.
        let cet = TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").ok();
        let local = |secs| cet.as_ref().map(|tz| civil(at(secs), tz).to_string());
        assert_eq!(local(1_795_000_000).as_deref(), Some("2026-11-18T12:06:40"));
        assert_eq!(local(1_780_000_000).as_deref(), Some("2026-05-28T22:26:40"));
        let before_1970 = SystemTime::UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(
            civil(before_1970, &TimeZone::UTC).to_string(),
            "1969-12-31T00:00:00"
        );
    }

    #[test]
    fn local_dates_have_the_iso_form() {
        let d = local_date(at(1_795_000_000));
        assert!(d.starts_with("2026-11-1") && d.len() == 10, "{d}");
    }

    #[test]
    fn names_keep_the_extension() {
        let t = at(1_795_000_000);
        let n = conflict_name("report.final.docx", "lap/top", t, 1);
        assert!(
            n.starts_with("report.final (conflict laptop 2026-11-"),
            "{n}"
        );
        assert!(n.ends_with(").docx"), "{n}");
        let stamp = &n["report.final (conflict laptop ".len()..n.len() - ").docx".len()];
        let shape: String = stamp
            .chars()
            .map(|c| if c.is_ascii_digit() { 'D' } else { c })
            .collect();
        assert_eq!(shape, "DDDD-DD-DD DDDDDD", "{n}");
        let dot = conflict_name(".bashrc", "h", t, 2);
        assert!(dot.starts_with(".bashrc (conflict h "), "{dot}");
        assert!(dot.ends_with(" 2)"), "{dot}");
        assert!(crate::remote::validate_name(&n).is_ok());
        let long = format!("{}.txt", "é".repeat(200));
        let n = conflict_name(&long, "host", t, 1);
        assert!(n.len() <= 255 && n.ends_with(").txt"), "{} bytes", n.len());
    }

    #[test]
    fn policies_parse() {
        assert_eq!("ask".parse(), Ok(ConflictPolicy::Ask));
        assert_eq!("keep-both".parse(), Ok(ConflictPolicy::KeepBoth));
        assert!("x".parse::<ConflictPolicy>().is_err());
    }
}
