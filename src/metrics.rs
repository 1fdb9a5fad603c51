//! Prometheus metrics, served at `GET /metrics`.
//!
//! Counters and the latency histogram are updated where things happen
//! (atomics, no locks); the gauges are read from the store when scraped, so
//! they cost nothing between scrapes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::store::StoreStats;

/// Upper bounds of the POST-to-delivery latency buckets, in seconds: from
/// 50 µs (a relay over loopback) to 30 s (a peer that polls slowly).
const LATENCY_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    5.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TicketReasonLabel {
    pub reason: &'static str,
}

pub struct Metrics {
    registry: Registry,
    /// Messages stored into a mailbox or the backlog (a broadcast to five
    /// peers counts five).
    pub relayed: Counter,
    /// From a message being stored to its first return in a poll.
    pub delivery_latency: Histogram,
    /// Error replies, by status.
    pub rejected: Family<StatusLabel, Counter>,
    /// Requests refused for their ticket, by reason (`crate::ticket::Reason`).
    pub ticket_refusals: Family<TicketReasonLabel, Counter>,
    /// Mailbox notifications this instance received from Redis (shared
    /// store only): its own share of the cluster's traffic.
    pub wakeups_received: Counter,
    parked_polls: Gauge,
    mailboxes: Gauge,
    rooms: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("signal");
        let relayed = Counter::default();
        let delivery_latency = Histogram::new(LATENCY_BUCKETS);
        let rejected = Family::<StatusLabel, Counter>::default();
        let wakeups_received = Counter::default();
        let ticket_refusals = Family::<TicketReasonLabel, Counter>::default();
        let (parked_polls, mailboxes, rooms) =
            (Gauge::default(), Gauge::default(), Gauge::default());
        registry.register(
            "messages_relayed",
            "Messages stored for a recipient (a broadcast counts each recipient)",
            relayed.clone(),
        );
        registry.register(
            "delivery_latency_seconds",
            "Time from a message being stored to its first return in a poll",
            delivery_latency.clone(),
        );
        registry.register(
            "rejected_requests",
            "Requests answered with an error status",
            rejected.clone(),
        );
        registry.register(
            "ticket_refusals",
            "Requests refused for their join ticket, by reason",
            ticket_refusals.clone(),
        );
        registry.register(
            "wakeups_received",
            "Mailbox notifications received from Redis (for polls parked here)",
            wakeups_received.clone(),
        );
        registry.register("parked_polls", "Polls parked now", parked_polls.clone());
        registry.register("mailboxes", "Peers (mailboxes) now", mailboxes.clone());
        registry.register("rooms", "Rooms now", rooms.clone());
        Metrics {
            registry,
            relayed,
            delivery_latency,
            rejected,
            ticket_refusals,
            wakeups_received,
            parked_polls,
            mailboxes,
            rooms,
        }
    }

    /// Counts a request refused for its ticket.
    pub fn ticket_refused(&self, reason: crate::ticket::Reason) {
        self.ticket_refusals
            .get_or_create(&TicketReasonLabel {
                reason: reason.label(),
            })
            .inc();
    }

    /// The text exposition, with the gauges read from `stats`.
    pub fn encode(&self, stats: StoreStats) -> String {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.parked_polls.set(gauge(stats.parked_polls));
        self.mailboxes.set(gauge(stats.mailboxes));
        self.rooms.set(gauge(stats.rooms));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
