//! Calendar and time-zone helpers shared by the encoders: days since the epoch of a civil
//! date, the ranges of ClickHouse's date types, and a time zone resolved once per column.

use jiff::Timestamp;
use jiff::civil;
use jiff::tz::TimeZone;

/// `Date`: days 0 ..= 65535 (1970-01-01 .. 2149-06-06).
pub(crate) const DATE_MIN_DAYS: i64 = 0;
pub(crate) const DATE_MAX_DAYS: i64 = 65535;
/// `Date32`: 1900-01-01 ..= 2299-12-31.
pub(crate) const DATE32_MIN_DAYS: i64 = -25567;
pub(crate) const DATE32_MAX_DAYS: i64 = 120529;
/// `DateTime64`: 1900-01-01 00:00:00 ..= 2299-12-31 23:59:59 UTC.
pub(crate) const DT64_MIN_SECS: i64 = -2208988800;
pub(crate) const DT64_MAX_SECS: i64 = 10413791999;

/// `10^p` for the precisions of `DateTime64` (0 ..= 9): ticks per second.
pub(crate) const POW10: [i64; 10] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
];

/// Days since 1970-01-01 of a proleptic Gregorian date.
#[inline]
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Days since 1970-01-01 of a [`civil::Date`].
#[inline]
pub(crate) fn days_of(d: civil::Date) -> i64 {
    days_from_civil(
        i64::from(d.year()),
        i64::from(d.month()),
        i64::from(d.day()),
    )
}

/// Names of time zones that are UTC at all times.
const UTC_NAMES: &[&str] = &[
    "UTC",
    "Etc/UTC",
    "UCT",
    "Etc/UCT",
    "GMT",
    "Etc/GMT",
    "GMT0",
    "Etc/GMT0",
    "GMT+0",
    "Etc/GMT+0",
    "GMT-0",
    "Etc/GMT-0",
    "Greenwich",
    "Etc/Greenwich",
    "Universal",
    "Etc/Universal",
    "Zulu",
    "Etc/Zulu",
];

/// A time zone resolved once per column: the zone, and its offset when it never changes
/// (UTC, its aliases and fixed offsets), which reads local times without a look-up.
#[derive(Debug, Clone)]
pub(crate) struct Zone {
    tz: TimeZone,
    /// Seconds east of UTC (local = UTC + offset) when the zone has one offset at all times.
    fixed: Option<i64>,
}

impl Zone {
    /// UTC.
    pub(crate) const UTC: Zone = Zone {
        tz: TimeZone::UTC,
        fixed: Some(0),
    };

    /// The zone of an IANA name (a UTC alias is UTC without a look-up).
    pub(crate) fn named(name: &str) -> Result<Zone, String> {
        if UTC_NAMES.contains(&name) {
            return Ok(Zone::UTC);
        }
        let tz = TimeZone::get(name).map_err(|e| format!("unknown time zone `{name}`: {e}"))?;
        let fixed = tz.to_fixed_offset().ok().map(|o| i64::from(o.seconds()));
        Ok(Zone { tz, fixed })
    }

    /// The zone of a column: its own time zone if it names one, else the server's (or why
    /// the server's is not known).
    pub(crate) fn of_column(
        name: Option<&str>,
        server: &Result<Zone, String>,
    ) -> Result<Zone, String> {
        match name {
            Some(n) => Zone::named(n),
            None => server.clone(),
        }
    }

    /// The zone itself, for conversions of any kind.
    #[inline]
    pub(crate) fn tz(&self) -> &TimeZone {
        &self.tz
    }

    /// Whether the zone is UTC at all times.
    #[inline]
    pub(crate) fn is_utc(&self) -> bool {
        self.fixed == Some(0)
    }

    /// Seconds since the epoch of the local time `at`, read exactly: in a zone with offset
    /// changes only local times more than a day away from a change (a skipped or repeated
    /// time, or one near a change, is refused with the reason).
    #[inline]
    pub(crate) fn local_to_utc(&self, at: &LocalTime) -> Result<i64, &'static str> {
        match self.fixed {
            Some(off) => Ok(at.seconds() - off),
            None => self.named_local_to_utc(at),
        }
    }

    fn named_local_to_utc(&self, at: &LocalTime) -> Result<i64, &'static str> {
        const BAD: &str = "not a YYYY-MM-DD hh:mm:ss date-time";
        if !(0..=u32::MAX as i64).contains(&at.seconds()) {
            return Err("a date-time in a named time zone outside 1970..2106");
        }
        let tz = &self.tz;
        let dt = civil::DateTime::new(
            at.year as i16,
            at.month as i8,
            at.day as i8,
            at.hour as i8,
            at.minute as i8,
            at.second as i8,
            0,
        )
        .map_err(|_| BAD)?;
        let ts = tz
            .to_ambiguous_timestamp(dt)
            .unambiguous()
            .map_err(|_| "a local time skipped or repeated by a time zone change")?;
        let utc = ts.as_second();
        let off = |t: i64| Timestamp::from_second(t).map(|t| tz.to_offset(t).seconds());
        let here = off(utc).map_err(|_| BAD)?;
        if off(utc - 86400).ok() != Some(here) || off(utc + 86400).ok() != Some(here) {
            return Err("a local time near a time zone change");
        }
        Ok(utc)
    }
}

/// A local date and time of day as read from text: a valid calendar date, `hh:mm:ss` in
/// range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalTime {
    pub(crate) year: i64,
    pub(crate) month: i64,
    pub(crate) day: i64,
    pub(crate) hour: i64,
    pub(crate) minute: i64,
    pub(crate) second: i64,
}

impl LocalTime {
    /// Seconds since 1970-01-01 00:00:00 on the same clock.
    #[inline]
    pub(crate) fn seconds(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86400
            + self.hour * 3600
            + self.minute * 60
            + self.second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The arithmetic agrees with jiff's calendar over both date types' ranges and beyond.
    #[test]
    fn days_from_civil_agrees_with_the_calendar() {
        let epoch = civil::date(1970, 1, 1);
        let mut d = civil::date(1850, 1, 1);
        let end = civil::date(2350, 1, 1);
        while d < end {
            let want = i64::from(epoch.until(d).unwrap().get_days());
            assert_eq!(days_of(d), want, "{d}");
            d = d.tomorrow().unwrap();
        }
        assert_eq!(days_from_civil(1900, 1, 1), DATE32_MIN_DAYS);
        assert_eq!(days_from_civil(2299, 12, 31), DATE32_MAX_DAYS);
        assert_eq!(days_from_civil(2149, 6, 6), DATE_MAX_DAYS);
        assert_eq!(days_from_civil(1900, 1, 1) * 86400, DT64_MIN_SECS);
        assert_eq!(days_from_civil(2300, 1, 1) * 86400 - 1, DT64_MAX_SECS);
    }

    #[test]
    fn zones_resolve_once() {
        for name in UTC_NAMES {
            assert!(Zone::named(name).unwrap().is_utc(), "{name}");
        }
        let tokyo = Zone::named("Asia/Tokyo").unwrap();
        assert!(!tokyo.is_utc());
        assert_eq!(tokyo.fixed, None);
        assert!(!Zone::named("Etc/GMT-3").unwrap().is_utc());
        assert!(
            Zone::named("Mars/Olympus")
                .unwrap_err()
                .starts_with("unknown time zone `Mars/Olympus`")
        );
        let server = Zone::named("Asia/Tokyo");
        assert!(!Zone::of_column(None, &server).unwrap().is_utc());
        assert!(Zone::of_column(Some("UTC"), &server).unwrap().is_utc());
    }

    #[test]
    fn local_times_read_exactly() {
        let at = |year, month, day, hour| LocalTime {
            year,
            month,
            day,
            hour,
            minute: 30,
            second: 0,
        };
        let ny = Zone::named("America/New_York").unwrap();
        let summer = at(2024, 7, 1, 12);
        assert_eq!(ny.local_to_utc(&summer), Ok(1719851400));
        // Skipped, and within a day of the change.
        for t in [at(2024, 3, 10, 2), at(2024, 3, 11, 2)] {
            assert!(ny.local_to_utc(&t).is_err(), "{t:?}");
        }
        let fixed = Zone::named("Etc/GMT-3").unwrap();
        assert_eq!(fixed.local_to_utc(&summer), Ok(summer.seconds() - 3 * 3600));
    }
}
