//! When to try a delivery again: the policy both senders share, the `send` subcommand and the
//! dispatcher of outbound events. The seed's schedule: 1 s, doubling, capped at 60 s, at most
//! five retries; retried on connection errors, timeouts, 5xx, 408 and 429 (after `Retry-After`
//! when that is longer), given up at once on any other 4xx.

use std::time::{Duration, SystemTime};

/// When to try again. The defaults give the seed's schedule: 1, 2, 4, 8, 16 s.
#[derive(Debug, Clone, clap::Args)]
pub struct RetryPolicy {
    /// Delay before the first retry.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub initial_delay: Duration,
    /// Each delay is the previous one times this.
    #[arg(long, default_value_t = 2.0)]
    pub factor: f64,
    /// Retries after the first attempt.
    #[arg(long, default_value_t = 5)]
    pub max_retries: u32,
    /// Upper bound of any delay, `Retry-After` included.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub max_delay: Duration,
    /// Wait a random 50–100 % of each delay, so that many senders do not retry in step.
    #[arg(long)]
    pub jitter: bool,
}

/// What an attempt's answer means for the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Worth another attempt: no answer, a timeout, 5xx, 408 or 429.
    Retry,
    /// Any other 4xx: the receiver will not take it, however often it is sent.
    GiveUp,
}

impl Verdict {
    /// The verdict on an HTTP status; `None` is no answer at all (connection error, timeout).
    pub fn of(status: Option<u16>) -> Verdict {
        match status {
            None => Verdict::Retry,
            Some(200..=299) => Verdict::Delivered,
            Some(408 | 429 | 500..) => Verdict::Retry,
            Some(_) => Verdict::GiveUp,
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            initial_delay: Duration::from_secs(1),
            factor: 2.0,
            max_retries: 5,
            max_delay: Duration::from_secs(60),
            jitter: false,
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1-based), before any `Retry-After`.
    pub fn delay(&self, retry: u32) -> Duration {
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let seconds = self.initial_delay.as_secs_f64() * self.factor.powi(exponent);
        let capped = Duration::try_from_secs_f64(seconds)
            .unwrap_or(self.max_delay)
            .min(self.max_delay);
        if self.jitter {
            capped.mul_f64(rand::random::<f64>().mul_add(0.5, 0.5))
        } else {
            capped
        }
    }

    /// How long to wait before retry number `retry` (1-based) when the receiver asked for
    /// `retry_after`: the longer of the two, capped; `None` once the retries are used up.
    pub fn wait_before(&self, retry: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if retry > self.max_retries {
            return None;
        }
        let computed = self.delay(retry);
        Some(
            retry_after
                .map_or(computed, |asked| asked.max(computed))
                .min(self.max_delay),
        )
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    match value.trim().parse::<u64>() {
        Ok(seconds) => Some(Duration::from_secs(seconds)),
        Err(_) => {
            let at = httpdate::parse_http_date(value.trim()).ok()?;
            Some(at.duration_since(now).unwrap_or_default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_give_the_seed_schedule() {
        let policy = RetryPolicy::default();
        let delays: Vec<u64> = (1..=5).map(|retry| policy.delay(retry).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16]);
        assert_eq!(
            policy.wait_before(6, None),
            None,
            "five retries, then give up"
        );
    }

    #[test]
    fn delays_are_capped_and_jitter_stays_below_the_delay() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(10), Duration::from_secs(60));
        assert_eq!(policy.delay(u32::MAX), Duration::from_secs(60));
        let jittered = RetryPolicy {
            jitter: true,
            ..RetryPolicy::default()
        }
        .delay(3);
        assert!(jittered >= Duration::from_secs(2) && jittered <= Duration::from_secs(4));
    }

    #[test]
    fn retry_after_is_honoured_when_longer_and_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let seconds = |s| Some(Duration::from_secs(s));
        assert_eq!(policy.wait_before(1, seconds(7)), seconds(7));
        assert_eq!(policy.wait_before(3, seconds(1)), seconds(4));
        assert_eq!(policy.wait_before(1, seconds(3600)), seconds(60));
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn only_transient_answers_are_retried() {
        for (status, verdict) in [
            (None, Verdict::Retry),
            (Some(200), Verdict::Delivered),
            (Some(204), Verdict::Delivered),
            (Some(408), Verdict::Retry),
            (Some(429), Verdict::Retry),
            (Some(503), Verdict::Retry),
            (Some(400), Verdict::GiveUp),
            (Some(410), Verdict::GiveUp),
            (Some(301), Verdict::GiveUp),
        ] {
            assert_eq!(Verdict::of(status), verdict, "{status:?}");
        }
    }
}
