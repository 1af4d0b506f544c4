//! The access log's timestamps, in UTC, written straight into the line: RFC 3339 with
//! milliseconds (`2025-12-06T05:46:40.123Z`) and NGINX's `$time_local`
//! (`06/Dec/2025:05:46:40 +0000`). The calendar date comes from the days since the epoch by
//! Howard Hinnant's `civil_from_days`, a few dozen integer operations: no formatting machinery,
//! no time-zone lookup, no allocation; the RFC 3339 text up to the seconds is kept for the
//! lines of the same second.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// A point in time split into UTC calendar fields.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millis: u32,
}

impl Civil {
    /// `t` in UTC (a time before 1970 is taken as the epoch).
    fn of(t: SystemTime) -> Civil {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let days = i64::try_from(secs / 86_400).unwrap_or(0);
        let of_day = (secs % 86_400) as u32;
        // civil_from_days: the proleptic Gregorian date of a day count (days since 1970-01-01).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hour: of_day / 3600,
            minute: of_day / 60 % 60,
            second: of_day % 60,
            millis: since.subsec_millis(),
        }
    }

    fn push_year(&self, out: &mut Vec<u8>) {
        match u32::try_from(self.year) {
            Ok(y) if y <= 9999 => {
                push2(out, y / 100);
                push2(out, y % 100);
            }
            _ => out.extend_from_slice(itoa::Buffer::new().format(self.year).as_bytes()),
        }
    }
}

/// Two decimal digits of `n` (below 100).
#[inline]
fn push2(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
}

thread_local! {
    /// The last second written by this thread and its text up to the milliseconds
    /// (`2025-12-06T05:46:40.`): the lines of one second share it, as NGINX caches its time
    /// strings.
    static SECOND: Cell<(u64, [u8; 20])> = const { Cell::new((u64::MAX, [0; 20])) };
}

/// RFC 3339 with milliseconds, UTC: `2025-12-06T05:46:40.123Z`. The text up to the seconds is
/// computed once a second per thread.
pub(crate) fn write_rfc3339_ms(out: &mut Vec<u8>, t: SystemTime) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (cached, mut prefix) = SECOND.with(Cell::get);
    if cached != secs {
        let at = out.len();
        write_rfc3339_uncached(out, t);
        // Only years of four digits have a 20-byte prefix (the others are never cached).
        if let Some(p) = out.get(at..at + 20).filter(|_| out.len() - at == 24) {
            prefix.copy_from_slice(p);
            SECOND.with(|s| s.set((secs, prefix)));
        }
        return;
    }
    let ms = since.subsec_millis();
    out.extend_from_slice(&prefix);
    out.extend_from_slice(&[
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
        b'Z',
    ]);
}

/// [`write_rfc3339_ms`] computed from the calendar.
fn write_rfc3339_uncached(out: &mut Vec<u8>, t: SystemTime) {
    let c = Civil::of(t);
    c.push_year(out);
    out.push(b'-');
    push2(out, c.month);
    out.push(b'-');
    push2(out, c.day);
    out.push(b'T');
    push2(out, c.hour);
    out.push(b':');
    push2(out, c.minute);
    out.push(b':');
    push2(out, c.second);
    out.push(b'.');
    out.push(b'0' + (c.millis / 100) as u8);
    push2(out, c.millis % 100);
    out.push(b'Z');
}

/// NGINX's `$time_local`, in UTC: `06/Dec/2025:05:46:40 +0000`.
pub(crate) fn write_time_local(out: &mut Vec<u8>, t: SystemTime) {
    let c = Civil::of(t);
    push2(out, c.day);
    out.push(b'/');
    out.extend_from_slice(MONTHS[(c.month - 1) as usize % 12]);
    out.push(b'/');
    c.push_year(out);
    out.push(b':');
    push2(out, c.hour);
    out.push(b':');
    push2(out, c.minute);
    out.push(b':');
    push2(out, c.second);
    out.extend_from_slice(b" +0000");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use time::macros::format_description;
    use time::OffsetDateTime;

    /// Our timestamps against the `time` crate's, over 400 years of days (leap years, century
    /// rules, month ends) and random times of day.
    #[test]
    fn matches_the_time_crate() {
        let rfc = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        let local =
            format_description!("[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000");
        let mut day = 0u64;
        while day < 146_097 + 366 {
            let ms = day * 86_400_000 + rand::random::<u64>() % 86_400_000;
            let t = UNIX_EPOCH + Duration::from_millis(ms);
            let odt = OffsetDateTime::from(t);
            let mut ours = Vec::new();
            write_rfc3339_ms(&mut ours, t);
            let want = odt.format(rfc).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(String::from_utf8_lossy(&ours), want);
            ours.clear();
            write_time_local(&mut ours, t);
            let want = odt.format(local).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(String::from_utf8_lossy(&ours), want);
            day += 1 + day % 7;
        }
        // The same second twice (the cached text), then the next one.
        let t = UNIX_EPOCH + Duration::from_millis(1_765_000_000_123);
        for (t, want) in [
            (t, "2025-12-06T05:46:40.123Z"),
            (t + Duration::from_millis(800), "2025-12-06T05:46:40.923Z"),
            (t + Duration::from_millis(900), "2025-12-06T05:46:41.023Z"),
        ] {
            let mut ours = Vec::new();
            write_rfc3339_ms(&mut ours, t);
            assert_eq!(String::from_utf8_lossy(&ours), want);
        }
        let mut epoch = Vec::new();
        write_rfc3339_ms(&mut epoch, UNIX_EPOCH - Duration::from_secs(5));
        assert_eq!(epoch, b"1970-01-01T00:00:00.000Z");
    }
}
