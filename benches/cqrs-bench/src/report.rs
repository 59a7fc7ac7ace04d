//! Results: latency statistics and the JSON line printed per scenario.

use std::time::Duration;

use serde::Serialize;

/// What a scenario's numbers measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Unit {
    /// Operations (commands or events) per second: higher is better.
    #[serde(rename = "per_s")]
    PerSecond,
    /// Milliseconds per operation: lower is better.
    #[serde(rename = "ms")]
    Millis,
    /// Reads of the event log per second: lower is better.
    #[serde(rename = "reads_per_s")]
    ReadsPerSecond,
    /// Allocations per operation (command or event): lower is better.
    #[serde(rename = "allocs")]
    Allocations,
    /// Megabytes (10^6 bytes) of memory: lower is better.
    #[serde(rename = "MB")]
    Megabytes,
}

impl Unit {
    /// How many times better `a` is than `b` (1.0 is parity, above 1 is `a` ahead).
    fn better(self, a: f64, b: f64) -> f64 {
        match self {
            Unit::PerSecond => a / b,
            Unit::Millis | Unit::ReadsPerSecond | Unit::Allocations | Unit::Megabytes => b / a,
        }
    }
}

/// One scenario's line on stdout.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// The scenario's name.
    pub scenario: &'static str,
    /// The unit of `ours`, `raw` and `cqrs_es`.
    pub unit: Unit,
    /// This framework.
    pub ours: f64,
    /// The baseline without a framework, where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<f64>,
    /// `ours` against `raw`, higher is better.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// cqrs-es with postgres-es, where compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cqrs_es: Option<f64>,
    /// `ours` against `cqrs_es`, higher is better.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_cqrs_es: Option<f64>,
    /// The 99th percentile of `ours`, in milliseconds (latency scenarios).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
    /// Server round-trips per command of `ours`, where counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round_trips: Option<f64>,
    /// `notify_cost`: the NOTIFYs the store sent per command under the eight-task load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notifies_per_command: Option<f64>,
    /// `notify_cost`: the median latency of one NOTIFY alone, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_ms: Option<f64>,
    /// `notify_cost`: the median latency of `SELECT 1` on the same connection, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub select_ms: Option<f64>,
    /// The projection scenarios: one group against separate runners, figure by figure.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub groups: Option<GroupFigures>,
    /// Figures of a scenario's own (the `scaling` scenarios), each a field of the line.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Record {
    /// A record of `ours` against `raw`.
    pub fn new(scenario: &'static str, unit: Unit, ours: f64, raw: f64) -> Self {
        Record {
            scenario,
            unit,
            ours: round(ours, unit),
            raw: Some(round(raw, unit)),
            ratio: Some(round3(unit.better(ours, raw))),
            cqrs_es: None,
            vs_cqrs_es: None,
            p99: None,
            round_trips: None,
            notifies_per_command: None,
            notify_ms: None,
            select_ms: None,
            groups: None,
            extra: None,
        }
    }

    /// A record of `ours` alone, for a scenario without a baseline.
    pub fn without_raw(scenario: &'static str, unit: Unit, ours: f64) -> Self {
        Record { raw: None, ratio: None, ..Record::new(scenario, unit, ours, ours) }
    }

    /// Adds the cqrs-es figure, when there is one.
    pub fn cqrs_es(mut self, cqrs_es: Option<f64>) -> Self {
        if let Some(theirs) = cqrs_es {
            self.cqrs_es = Some(round(theirs, self.unit));
            self.vs_cqrs_es = Some(round3(self.unit.better(self.ours, theirs)));
        }
        self
    }

    /// Adds the 99th percentile latency.
    pub fn p99(mut self, p99_ms: f64) -> Self {
        self.p99 = Some(round3(p99_ms));
        self
    }

    /// Adds the round-trips per command, when counted.
    pub fn round_trips(mut self, round_trips: Option<f64>) -> Self {
        self.round_trips = round_trips.map(round3);
        self
    }

    /// Adds the figures of `notify_cost`.
    pub fn notify(mut self, per_command: f64, notify_ms: f64, select_ms: f64) -> Self {
        self.notifies_per_command = Some((per_command * 10_000.0).round() / 10_000.0);
        self.notify_ms = Some(round3(notify_ms));
        self.select_ms = Some(round3(select_ms));
        self
    }

    /// Adds the figures of a projection scenario.
    pub fn groups(mut self, figures: GroupFigures) -> Self {
        self.groups = Some(figures);
        self
    }

    /// Adds a figure of the scenario's own as field `key` (a number rounded to 3 decimals, or
    /// any JSON value); these fields follow the others in the order of their names.
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        let value = match value.as_f64() {
            Some(n) if value.is_f64() => serde_json::Value::from(round3(n)),
            _ => value,
        };
        self.extra.get_or_insert_with(serde_json::Map::new).insert(key.to_owned(), value);
        self
    }

    /// Prints the record as one JSON line on stdout.
    pub fn print(&self) {
        println!("{}", serde_json::to_string(self).expect("a record always serializes"));
    }
}

/// One figure of a projection scenario measured both ways: the projections in one
/// `ProjectionGroup` ("after") and each on a `Projector::run` of its own ("before").
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Compared {
    /// In one group.
    pub group: f64,
    /// On separate runners.
    pub separate: f64,
    /// `group / separate` (below 1: the group needs less); absent when `separate` is 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_over_separate: Option<f64>,
}

impl Compared {
    /// The figure both ways, to 3 decimals.
    pub fn new(group: f64, separate: f64) -> Self {
        let ratio = (separate != 0.0).then(|| round3(group / separate));
        Compared { group: round3(group), separate: round3(separate), group_over_separate: ratio }
    }

    /// Both ways when both were measured.
    pub fn of(group: Option<f64>, separate: Option<f64>) -> Option<Self> {
        Some(Compared::new(group?, separate?))
    }
}

/// The figures of a projection scenario, each in one group against on separate runners.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GroupFigures {
    /// How many projections.
    pub projections: usize,
    /// Reads of the log (`read_all`/`read_all_bounded` calls, one statement each).
    pub reads: Compared,
    /// Events those reads returned.
    pub rows: Compared,
    /// Wall time of the measurement, in milliseconds.
    pub wall_ms: Compared,
    /// This process's CPU time (user + system) per event of the log caught up or appended, in
    /// microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_us_per_event: Option<Compared>,
    /// The PostgreSQL server's CPU time per event, in microseconds, when it runs on this machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_event: Option<Compared>,
    /// This process's CPU time per second of wall time, in milliseconds (the idle measurement).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_ms_per_s: Option<Compared>,
    /// The server's CPU time per second of wall time, in milliseconds (the idle measurement).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_ms_per_s: Option<Compared>,
}

fn round(value: f64, unit: Unit) -> f64 {
    match unit {
        Unit::PerSecond | Unit::ReadsPerSecond => (value * 10.0).round() / 10.0,
        Unit::Millis | Unit::Allocations | Unit::Megabytes => round3(value),
    }
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// The median and 99th percentile of a set of latencies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// The median, in milliseconds.
    pub median_ms: f64,
    /// The 99th percentile (nearest rank), in milliseconds.
    pub p99_ms: f64,
    /// How many samples.
    pub samples: usize,
}

impl Latency {
    /// The statistics of `samples`; `None` when there are none.
    pub fn of(mut samples: Vec<Duration>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1_000.0;
        let n = samples.len();
        let median = if n % 2 == 1 { ms(samples[n / 2]) } else { (ms(samples[n / 2 - 1]) + ms(samples[n / 2])) / 2.0 };
        // Nearest rank: the smallest sample with at least 99% of the samples at or below it.
        let rank = (n * 99).div_ceil(100).max(1);
        Some(Latency { median_ms: median, p99_ms: ms(samples[rank - 1]), samples: n })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn median_and_p99() {
        let l = Latency::of(millis(&[5, 1, 3])).unwrap();
        assert_eq!((l.median_ms, l.p99_ms, l.samples), (3.0, 5.0, 3));
        let l = Latency::of(millis(&[4, 1, 3, 2])).unwrap();
        assert_eq!(l.median_ms, 2.5);
        let l = Latency::of((1..=200).map(Duration::from_millis).collect()).unwrap();
        assert_eq!(l.p99_ms, 198.0);
        assert!(Latency::of(Vec::new()).is_none());
    }

    #[test]
    fn ratios_are_higher_when_better() {
        let r = Record::new("t", Unit::PerSecond, 50.0, 100.0).cqrs_es(Some(25.0));
        assert_eq!((r.ratio, r.vs_cqrs_es), (Some(0.5), Some(2.0)));
        let r = Record::new("t", Unit::Millis, 2.0, 1.0).cqrs_es(Some(8.0));
        assert_eq!((r.ratio, r.vs_cqrs_es), (Some(0.5), Some(4.0)));
        let line = serde_json::to_string(&Record::new("t", Unit::Millis, 1.0, 1.0).p99(2.0)).unwrap();
        assert_eq!(line, r#"{"scenario":"t","unit":"ms","ours":1.0,"raw":1.0,"ratio":1.0,"p99":2.0}"#);
        let line = serde_json::to_string(&Record::without_raw("t", Unit::Millis, 1.5).p99(3.0)).unwrap();
        assert_eq!(line, r#"{"scenario":"t","unit":"ms","ours":1.5,"p99":3.0}"#);
        let r = Record::without_raw("t", Unit::Millis, 1.0).with("max", 2.123_456).with("finish_ms", [1.0, 2.5]);
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(line, r#"{"scenario":"t","unit":"ms","ours":1.0,"finish_ms":[1.0,2.5],"max":2.123}"#);
    }

    #[test]
    fn notify_figures_are_on_the_line() {
        let r = Record::new("notify_cost", Unit::PerSecond, 90.0, 100.0).notify(0.012_34, 1.234_56, 0.1);
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(
            line,
            r#"{"scenario":"notify_cost","unit":"per_s","ours":90.0,"raw":100.0,"ratio":0.9,"notifies_per_command":0.0123,"notify_ms":1.235,"select_ms":0.1}"#
        );
    }

    #[test]
    fn group_figures_are_on_the_line() {
        let both = Compared::new(1.0, 8.0);
        let figures = GroupFigures {
            projections: 8,
            reads: both,
            rows: Compared::new(0.0, 0.0),
            wall_ms: Compared::new(2.0, 4.0),
            cpu_us_per_event: Compared::of(Some(3.0), Some(6.0)),
            server_cpu_us_per_event: Compared::of(None, Some(1.0)),
            cpu_ms_per_s: None,
            server_cpu_ms_per_s: None,
        };
        let r = Record::new("projections_8_idle", Unit::ReadsPerSecond, 4.0, 32.0).groups(figures);
        assert_eq!(r.ratio, Some(8.0), "fewer reads is better");
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(
            line,
            r#"{"scenario":"projections_8_idle","unit":"reads_per_s","ours":4.0,"raw":32.0,"ratio":8.0,"projections":8,"reads":{"group":1.0,"separate":8.0,"group_over_separate":0.125},"rows":{"group":0.0,"separate":0.0},"wall_ms":{"group":2.0,"separate":4.0,"group_over_separate":0.5},"cpu_us_per_event":{"group":3.0,"separate":6.0,"group_over_separate":0.5}}"#
        );
    }
}
