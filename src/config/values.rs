//! How a variable's text becomes a value: each parser says, in its error, what it expects.

use std::fmt;
use std::time::Duration;

/// A whole number of at least `min`.
pub(super) fn at_least<T: std::str::FromStr + PartialOrd + fmt::Display>(
    min: T,
) -> impl FnOnce(&str) -> Result<T, String> {
    move |text| match text.parse::<T>() {
        Ok(value) if value >= min => Ok(value),
        _ => Err(format!("must be a whole number of at least {min}")),
    }
}

/// A size in bytes: a whole number, or one with `KiB`, `MiB` or `GiB`.
pub(super) fn bytes(text: &str) -> Result<u64, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit: u64 = match &text[digits.len()..] {
        "" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err("must be a size such as 1048576, 512MiB or 1GiB".into()),
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|number| number.checked_mul(unit))
        .ok_or_else(|| "must be a size such as 1048576, 512MiB or 1GiB".into())
}

/// A duration such as `10s`, `500ms` or `30d`.
pub(super) fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|_| "must be a duration such as 10s, 5m or 30d".to_owned())
}

pub(super) fn positive_duration(text: &str) -> Result<Duration, String> {
    match duration(text)? {
        duration if duration.is_zero() => Err("must be longer than zero".into()),
        duration => Ok(duration),
    }
}

/// A network such as `10.0.0.0/8`, or one address.
pub(super) fn network(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{text:?} is not a network such as 127.0.0.0/8"))
}

pub(super) fn switch(text: &str) -> Result<bool, String> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err("must be on or off".into()),
    }
}
