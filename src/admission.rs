//! Who gets served: the client's address, a per-address rate limit, and a
//! cap on the polls one address may hold open. Decided before a request
//! reaches the store, so a flood from one address cannot starve the rest.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hyper::HeaderMap;

/// Why a client was turned away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Over the rate limit; the client may retry after this long.
    TooFast { retry_after: Duration },
    /// Already holding its maximum of open polls.
    TooManyPolls { max: usize },
}

pub struct Admission {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    trusted_proxies: Vec<IpAddr>,
    polls: Arc<DashMap<IpAddr, usize>>,
    max_polls_per_client: usize,
}

impl Admission {
    /// `rate` requests per second per client address with bursts of
    /// `burst` (no limit if `rate` is 0); `max_polls_per_client` open polls
    /// per address (no cap if 0).
    pub fn new(
        rate: u32,
        burst: u32,
        trusted_proxies: Vec<IpAddr>,
        max_polls_per_client: usize,
    ) -> Admission {
        let limiter = NonZeroU32::new(rate).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Admission {
            limiter,
            trusted_proxies,
            polls: Arc::default(),
            max_polls_per_client,
        }
    }

    /// The client's address: the socket's peer, or, when that peer is a
    /// trusted proxy, the last address in `X-Forwarded-For` that is not one
    /// (the earlier entries are whatever the client chose to write).
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.ip().to_canonical();
        if !self.trusted_proxies.contains(&peer) {
            return peer;
        }
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical())
            .rev()
            .find(|ip| !self.trusted_proxies.contains(ip))
            .unwrap_or(peer)
    }

    /// Takes one request from the client's allowance.
    pub fn check_rate(&self, client: IpAddr) -> Result<(), Refusal> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&client)
            .map_err(|not_until| Refusal::TooFast {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            })
    }

    /// Counts an open poll for the client until the returned guard drops.
    pub fn open_poll(&self, client: IpAddr) -> Result<PollSlot, Refusal> {
        if self.max_polls_per_client > 0 {
            let mut open = self.polls.entry(client).or_insert(0);
            if *open >= self.max_polls_per_client {
                return Err(Refusal::TooManyPolls {
                    max: self.max_polls_per_client,
                });
            }
            *open += 1;
        }
        Ok(PollSlot {
            polls: (self.max_polls_per_client > 0).then(|| self.polls.clone()),
            client,
        })
    }

    /// Forgets rate-limit state of clients that have been quiet, so the
    /// limiter's memory follows the active clients, not every client ever.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// An open poll of one client; released however the poll ends.
pub struct PollSlot {
    polls: Option<Arc<DashMap<IpAddr, usize>>>,
    client: IpAddr,
}

impl Drop for PollSlot {
    fn drop(&mut self) {
        if let Some(polls) = &self.polls {
            // Remove the entry at zero so the map holds only active clients.
            polls.remove_if_mut(&self.client, |_, open| {
                *open = open.saturating_sub(1);
                *open == 0
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let admission = Admission::new(0, 0, vec![proxy], 0);
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.7".parse().unwrap());
        // From the proxy: the last untrusted hop, not the spoofable first.
        assert_eq!(
            admission.client_ip(addr("10.0.0.1:5000"), &headers),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        // From anyone else: the header is ignored.
        assert_eq!(
            admission.client_ip(addr("198.51.100.2:5000"), &headers),
            "198.51.100.2".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn the_rate_limit_is_per_client() {
        let admission = Admission::new(1, 3, vec![], 0);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(admission.check_rate(a), Ok(()));
        }
        assert!(matches!(
            admission.check_rate(a),
            Err(Refusal::TooFast { .. })
        ));
        assert_eq!(admission.check_rate(b), Ok(()));
    }

    #[test]
    fn poll_slots_are_counted_and_released() {
        let admission = Admission::new(0, 0, vec![], 2);
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let first = admission.open_poll(client).unwrap();
        let _second = admission.open_poll(client).unwrap();
        assert_eq!(
            admission.open_poll(client).err(),
            Some(Refusal::TooManyPolls { max: 2 })
        );
        drop(first);
        assert!(admission.open_poll(client).is_ok());
    }

    /// The per-address state is bounded by the active clients: a sweep
    /// forgets addresses whose bucket has refilled, and an address's poll
    /// count goes when its last poll does.
    #[test]
    fn state_of_idle_clients_is_forgotten() {
        // 1 000 a second, bursts of 1: a bucket refills in 1 ms.
        let admission = Admission::new(1000, 1, vec![], 2);
        let limiter = admission.limiter.as_ref().unwrap();
        let clients: Vec<IpAddr> = (0..500u32)
            .map(|n| IpAddr::from((0xc000_0200 + n).to_be_bytes()))
            .collect();
        for &client in &clients {
            assert_eq!(admission.check_rate(client), Ok(()));
            drop(admission.open_poll(client).unwrap());
        }
        assert!(admission.polls.is_empty(), "released slots leave no entry");
        assert_eq!(limiter.len(), 500);
        std::thread::sleep(Duration::from_millis(50));
        admission.forget_idle();
        assert_eq!(limiter.len(), 0);
    }
}
