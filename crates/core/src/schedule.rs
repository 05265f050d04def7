//! When signing keys are fetched again, and when cached keys are too old (pure, no pgrx).
//! Times are Unix seconds; durations are seconds.

/// Retry delays after failed fetches double from this ...
pub const FIRST_BACKOFF: i64 = 1;
/// ... up to this (or `refresh_interval`, when shorter).
pub const MAX_BACKOFF: i64 = 30;

#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub refresh_interval: i64,
    pub min_refresh_interval: i64,
    pub max_stale: i64,
}

/// `max-age` of a Cache-Control header, if it has one; `no-cache`/`no-store` count as 0.
pub fn parse_max_age(cache_control: &str) -> Option<i64> {
    let mut age = None;
    for directive in cache_control.split(',') {
        let d = directive.trim().to_ascii_lowercase();
        if let Some(v) = d.strip_prefix("max-age=") {
            age = v.trim_matches('"').parse::<i64>().ok().or(age);
        } else if d == "no-cache" || d == "no-store" {
            return Some(0);
        }
    }
    age
}

/// Seconds until the next periodic fetch after a success: the provider's `max-age` when it
/// gave one, kept between `min_refresh_interval` and `refresh_interval`.
pub fn after_success(max_age: Option<i64>, t: &Timing) -> i64 {
    let ceiling = t.refresh_interval.max(1);
    let floor = t.min_refresh_interval.clamp(1, ceiling);
    max_age.unwrap_or(ceiling).clamp(floor, ceiling)
}

/// Seconds until the next try after `consecutive` failures in a row (1 for the first).
pub fn after_failure(consecutive: u32, t: &Timing) -> i64 {
    let doubled = FIRST_BACKOFF << consecutive.saturating_sub(1).min(20);
    doubled.min(MAX_BACKOFF).min(t.refresh_interval.max(1))
}

/// Whether a refresh asked for by an unknown `kid` may start now.
pub fn forced_refresh_allowed(last_forced: i64, now: i64, t: &Timing) -> bool {
    last_forced == 0 || now - last_forced >= t.min_refresh_interval
}

/// Keys whose refreshes have been failing since `failing_since` (0: not failing) are no longer
/// served once that lasted longer than `max_stale`.
pub fn is_expired(failing_since: i64, now: i64, t: &Timing) -> bool {
    failing_since > 0 && now - failing_since > t.max_stale
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        refresh_interval: 3600,
        min_refresh_interval: 60,
        max_stale: 86400,
    };

    #[test]
    fn cache_control() {
        assert_eq!(parse_max_age("public, max-age=86400"), Some(86400));
        assert_eq!(parse_max_age("Max-Age=\"30\""), Some(30));
        assert_eq!(parse_max_age("no-cache"), Some(0));
        assert_eq!(parse_max_age("public"), None);
        assert_eq!(parse_max_age("max-age=soon"), None);
    }

    #[test]
    fn max_age_is_honoured_within_bounds() {
        assert_eq!(after_success(None, &T), 3600);
        assert_eq!(after_success(Some(600), &T), 600);
        assert_eq!(
            after_success(Some(5), &T),
            60,
            "not below min_refresh_interval"
        );
        assert_eq!(after_success(Some(0), &T), 60);
        assert_eq!(
            after_success(Some(86400), &T),
            3600,
            "not above refresh_interval"
        );
        let odd = Timing {
            refresh_interval: 10,
            min_refresh_interval: 60,
            max_stale: 100,
        };
        assert_eq!(
            after_success(Some(30), &odd),
            10,
            "a floor above the ceiling is capped"
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let waits: Vec<i64> = (1..=8).map(|n| after_failure(n, &T)).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(after_failure(1000, &T), 30);
        let fast = Timing {
            refresh_interval: 5,
            ..T
        };
        assert_eq!(after_failure(10, &fast), 5);
    }

    #[test]
    fn forced_refreshes_are_rate_limited() {
        assert!(forced_refresh_allowed(0, 1000, &T));
        assert!(!forced_refresh_allowed(1000, 1059, &T));
        assert!(forced_refresh_allowed(1000, 1060, &T));
    }

    #[test]
    fn keys_expire_max_stale_after_refreshes_started_failing() {
        assert!(!is_expired(0, 1_000_000, &T), "not failing: never expired");
        assert!(!is_expired(1000, 87400, &T));
        assert!(is_expired(1000, 87401, &T));
    }
}
