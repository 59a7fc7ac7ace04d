//! The bus's metrics, through the [`metrics`](https://docs.rs/metrics) facade (no exporter is
//! installed here; see `eventloom_core::metrics` for how an application installs one, before
//! it builds its publishers and feeds: they take their handles then). Labelled by the JetStream
//! stream's name (`jetstream`), which the configuration names: never a subject, stream id or
//! event id. The relay that consumes a feed into the log counts what it consumed in
//! `eventloom_bus_consumed_total` (eventloom-core).
//!
//! | metric | type | labels | answers |
//! |---|---|---|---|
//! | `eventloom_bus_published_total` | counter | `jetstream` | how many events the publisher stored in the stream |
//! | `eventloom_bus_publish_duplicates_total` | counter | `jetstream` | how many publishes JetStream answered as duplicates (stored by an abandoned pass) |
//! | `eventloom_bus_publish_duration_seconds` | histogram | `jetstream` | how long from sending a publish to seeing its ack |
//! | `eventloom_bus_read_total` | counter | `jetstream` | how many messages feeds read from the stream (once each) |
//! | `eventloom_bus_redeliveries_total` | counter | `jetstream` | how many messages were delivered again: redelivered by JetStream, or at or before the reader's place (skipped: never folded twice) |

use metrics::{Counter, Histogram, Unit, counter, describe_counter, describe_histogram, histogram};

const PUBLISHED: &str = "eventloom_bus_published_total";
const PUBLISH_DUPLICATES: &str = "eventloom_bus_publish_duplicates_total";
const PUBLISH_DURATION: &str = "eventloom_bus_publish_duration_seconds";
const READ: &str = "eventloom_bus_read_total";
const REDELIVERIES: &str = "eventloom_bus_redeliveries_total";

/// Registers the help text and unit of every metric of this crate with the installed recorder
/// (after installing one; without one it does nothing). See the [module docs](self).
///
/// # Examples
///
/// ```
/// eventloom_nats::metrics::describe();
/// ```
pub fn describe() {
    describe_counter!(PUBLISHED, Unit::Count, "Events the publisher stored in the JetStream stream.");
    describe_counter!(PUBLISH_DUPLICATES, Unit::Count, "Publishes JetStream answered as duplicates.");
    describe_histogram!(PUBLISH_DURATION, Unit::Seconds, "Time from sending a publish to seeing its ack.");
    describe_counter!(READ, Unit::Count, "Messages feeds read from the JetStream stream.");
    describe_counter!(REDELIVERIES, Unit::Count, "Messages delivered again to a feed.");
}

/// A publisher's handles.
pub(crate) struct PublisherMetrics {
    pub(crate) published: Counter,
    pub(crate) duplicates: Counter,
    pub(crate) latency: Histogram,
}

impl PublisherMetrics {
    pub(crate) fn new(stream: &str) -> Self {
        let stream = stream.to_owned();
        PublisherMetrics {
            published: counter!(PUBLISHED, "jetstream" => stream.clone()),
            duplicates: counter!(PUBLISH_DUPLICATES, "jetstream" => stream.clone()),
            latency: histogram!(PUBLISH_DURATION, "jetstream" => stream),
        }
    }
}

/// A feed's handles, shared by its readers.
pub(crate) struct FeedMetrics {
    pub(crate) read: Counter,
    pub(crate) redeliveries: Counter,
}

impl FeedMetrics {
    pub(crate) fn new(stream: &str) -> Self {
        let stream = stream.to_owned();
        FeedMetrics {
            read: counter!(READ, "jetstream" => stream.clone()),
            redeliveries: counter!(REDELIVERIES, "jetstream" => stream),
        }
    }
}
