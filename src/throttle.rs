//! Guessing tokens is slowed (contract section 13): a peer address that presented
//! `AUTH_FAILURE_LIMIT` wrong tokens within a minute is refused (429) every request that
//! presents a token until a minute has passed since the failure that reached the limit.
//! Per instance, in memory; requests without a token are never counted or refused here.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window the limit counts failures in, and how long a peer that reached it waits.
const WINDOW: Duration = Duration::from_secs(60);
/// Peers remembered at most: past it, those whose failures are oldest are forgotten first.
const MOST_PEERS: usize = 100_000;

#[derive(Default)]
struct Peer {
    /// Failures within the window, oldest first.
    failures: VecDeque<Instant>,
    /// Refused until then.
    blocked_until: Option<Instant>,
}

pub struct AuthThrottle {
    /// `None`: `AUTH_FAILURE_LIMIT=off`.
    limit: Option<u32>,
    peers: Mutex<HashMap<IpAddr, Peer>>,
}

impl AuthThrottle {
    pub fn new(limit: Option<u32>) -> AuthThrottle {
        AuthThrottle {
            limit,
            peers: Mutex::default(),
        }
    }

    /// How long `peer` must still wait, if it is refused now.
    pub fn refused_for(&self, peer: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let until = peers.get(&peer?)?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// Counts a wrong token from `peer`.
    pub fn failed(&self, peer: Option<IpAddr>, now: Instant) {
        let (Some(limit), Some(peer)) = (self.limit, peer) else {
            return;
        };
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if peers.len() >= MOST_PEERS && !peers.contains_key(&peer) {
            peers.retain(|_, p| p.failures.back().is_some_and(|at| now - *at < WINDOW));
            if peers.len() >= MOST_PEERS {
                return;
            }
        }
        let entry = peers.entry(peer).or_default();
        while entry
            .failures
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= WINDOW)
        {
            entry.failures.pop_front();
        }
        entry.failures.push_back(now);
        if entry.failures.len() >= limit as usize {
            entry.blocked_until = Some(now + WINDOW);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_refused_a_minute_after_the_failure_that_reached_the_limit() {
        let throttle = AuthThrottle::new(Some(3));
        let (peer, other) = (
            Some("10.0.0.1".parse().unwrap()),
            Some("10.0.0.2".parse().unwrap()),
        );
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);

        throttle.failed(peer, at(0));
        throttle.failed(peer, at(10));
        assert_eq!(throttle.refused_for(peer, at(11)), None);
        throttle.failed(peer, at(20));

        assert_eq!(
            throttle.refused_for(peer, at(21)),
            Some(Duration::from_secs(59))
        );
        assert_eq!(throttle.refused_for(other, at(21)), None);
        assert_eq!(throttle.refused_for(peer, at(80)), None);
    }

    #[test]
    fn failures_older_than_a_minute_do_not_count_and_off_counts_nothing() {
        let throttle = AuthThrottle::new(Some(2));
        let peer = Some("10.0.0.1".parse().unwrap());
        let start = Instant::now();
        throttle.failed(peer, start);
        throttle.failed(peer, start + Duration::from_secs(61));
        assert_eq!(
            throttle.refused_for(peer, start + Duration::from_secs(62)),
            None
        );

        let off = AuthThrottle::new(None);
        for _ in 0..100 {
            off.failed(peer, start);
        }
        assert_eq!(off.refused_for(peer, start), None);
    }
}
