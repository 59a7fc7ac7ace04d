//! A [`metrics`] recorder for tests: it keeps every counter and gauge as a number and every
//! histogram's samples, so that a test asserts what the framework (or the application) recorded.
//!
//! The recorder is global to a process and the framework takes its handles when engines,
//! projectors, publishers and feeds are built: install it first, once per test binary
//! ([`TestRecorder::install`]), and give each test names of its own (an aggregate type, a
//! projection, a JetStream stream) so that its counts stay exact while other tests run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

use crate::memory::lock;

/// A metric's name and its labels, sorted.
type Series = (String, BTreeMap<String, String>);

/// Keeps what was recorded, by series (a name and its labels).
///
/// # Examples
///
/// ```
/// use eventloom_core::testing::metrics::TestRecorder;
///
/// let recorder = TestRecorder::install();
/// metrics::counter!("doc_example_total", "kind" => "a").increment(2);
/// metrics::gauge!("doc_example_level").set(0.5);
/// assert_eq!(recorder.counter("doc_example_total", &[("kind", "a")]), 2);
/// assert_eq!(recorder.gauge("doc_example_level", &[]), Some(0.5));
/// assert_eq!(recorder.counter("doc_example_total", &[("kind", "b")]), 0);
/// ```
#[derive(Default)]
pub struct TestRecorder {
    counters: Mutex<BTreeMap<Series, Arc<AtomicU64>>>,
    gauges: Mutex<BTreeMap<Series, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<Series, Arc<Samples>>>,
    described: Mutex<Vec<(String, Option<Unit>)>>,
}

/// A histogram's samples.
#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl metrics::HistogramFn for Samples {
    fn record(&self, value: f64) {
        lock(&self.0).push(value);
    }
}

/// The series of `key`.
fn series(key: &Key) -> Series {
    let labels = key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
    (key.name().to_owned(), labels)
}

/// The series of `name` with `labels`.
fn wanted(name: &str, labels: &[(&str, &str)]) -> Series {
    (name.to_owned(), labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
}

impl Recorder for &'static TestRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        lock(&self.described).push((key.as_str().to_owned(), unit));
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        lock(&self.described).push((key.as_str().to_owned(), unit));
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        lock(&self.described).push((key.as_str().to_owned(), unit));
    }
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(lock(&self.counters).entry(series(key)).or_default().clone())
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(lock(&self.gauges).entry(series(key)).or_default().clone())
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(lock(&self.histograms).entry(series(key)).or_default().clone())
    }
}

impl TestRecorder {
    /// The process's test recorder, installed as the global recorder on the first call.
    ///
    /// # Panics
    ///
    /// When another recorder was installed before the first call: a test binary has one.
    pub fn install() -> &'static TestRecorder {
        static INSTALLED: OnceLock<&'static TestRecorder> = OnceLock::new();
        INSTALLED.get_or_init(|| {
            let recorder: &'static TestRecorder = Box::leak(Box::default());
            #[allow(clippy::expect_used)]
            metrics::set_global_recorder(recorder).expect("no other recorder is installed in this test binary");
            recorder
        })
    }

    /// The counter `name` with exactly `labels` (in any order); 0 when never recorded.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        lock(&self.counters).get(&wanted(name, labels)).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The gauge `name` with exactly `labels`; `None` when never registered.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        lock(&self.gauges).get(&wanted(name, labels)).map(|g| f64::from_bits(g.load(Ordering::Relaxed)))
    }

    /// The samples the histogram `name` with exactly `labels` recorded, in order.
    pub fn samples(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        lock(&self.histograms).get(&wanted(name, labels)).map_or(Vec::new(), |h| lock(&h.0).clone())
    }

    /// The names described (help text and unit) so far, with their units.
    pub fn described(&self) -> Vec<(String, Option<Unit>)> {
        lock(&self.described).clone()
    }

    /// Every label of every series registered so far, as (metric, label, value).
    pub fn label_values(&self) -> Vec<(String, String, String)> {
        let counters: Vec<Series> = lock(&self.counters).keys().cloned().collect();
        let gauges: Vec<Series> = lock(&self.gauges).keys().cloned().collect();
        let histograms: Vec<Series> = lock(&self.histograms).keys().cloned().collect();
        let mut all = Vec::new();
        for (name, labels) in counters.into_iter().chain(gauges).chain(histograms) {
            all.extend(labels.into_iter().map(|(k, v)| (name.clone(), k, v)));
        }
        all
    }
}
