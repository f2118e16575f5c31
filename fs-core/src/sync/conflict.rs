//! What happens when both sides changed the same file since the version they last agreed
//! on: the policy, and the name the local version takes when both are kept.

use std::time::SystemTime;

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
    let (y, mo, d, h, mi, s) = local_time(at);
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
    let tag = format!(" (conflict {host} {y:04}-{mo:02}-{d:02} {h:02}{mi:02}{s:02}{nth})");
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
    let (y, mo, d, ..) = local_time(t);
    format!("{y:04}-{mo:02}-{d:02}")
}

/// This machine's name, for conflict copies.
pub fn host_name() -> String {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success
        // or truncates, and the length is bounded by the buffer either way.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            let name = String::from_utf8_lossy(&buf[..end]).into_owned();
            if !name.is_empty() {
                return name;
            }
        }
        "here".into()
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME").unwrap_or_else(|_| "here".into())
    }
}

/// (year, month, day, hour, minute, second) of `t` in local time (UTC where the platform
/// has no `localtime_r`).
fn local_time(t: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    #[cfg(unix)]
    {
        // SAFETY: `tm` is plain data; localtime_r only writes into it.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        let tt = secs as libc::time_t;
        // SAFETY: both pointers are valid for the call.
        if !unsafe { libc::localtime_r(&tt, &mut tm) }.is_null() {
            return (
                tm.tm_year as i64 + 1900,
                (tm.tm_mon + 1) as u32,
                tm.tm_mday as u32,
                tm.tm_hour as u32,
                tm.tm_min as u32,
                tm.tm_sec as u32,
            );
        }
    }
    utc(secs)
}

/// Civil date and time of `secs` since the epoch, in UTC.
fn utc(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(utc(1_795_000_000), (2026, 11, 18, 11, 6, 40));
        assert_eq!(utc(951_782_400), (2000, 2, 29, 0, 0, 0));
    }

    #[test]
    fn names_keep_the_extension() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let n = conflict_name("report.final.docx", "lap/top", t, 1);
        assert!(
            n.starts_with("report.final (conflict laptop 2026-11-"),
            "{n}"
        );
        assert!(n.ends_with(").docx"), "{n}");
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
