//! The read side of the `scaling` scenarios: `view_query_*`, the latency of queries on the
//! Redis Cluster against one Redis node, whole and partitioned; and `replica_lag`, how far a
//! PostgreSQL streaming replica is behind under an append load.

use std::time::{Duration, Instant};

use eventloom_core::read::Projector;
use eventloom_core::store::{EventStore, IndexKey};
use eventloom_core::write::Cqrs;
use eventloom_core::{Position, ProjectionOptions, Reader};
use eventloom_postgres::{PgConfig, PgEventStore};
use eventloom_redis::RedisViewStore;
use redis::aio::ConnectionLike;
use tokio::sync::watch;
use tokio_postgres::Client;

use crate::Result;
use crate::domain::{Deposit, account_ids};
use crate::load::{self, Budget, Worker};
use crate::ours::Commands;
use crate::report::{Latency, Record, Unit};
use crate::scaling::{
    BATCH, Cards, CatchUps, IDS, PARTITIONS, SETUPS, STREAMS, card_key, cluster_connection, cluster_views,
};

/// Views per list page.
const LIST_PAGE: usize = 20;
/// Queries timed per series, in blocks that go round the series.
const QUERIES: usize = 5_000;
const QUERY_BLOCK: usize = 500;
/// How long a view build may take.
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

/// The query scenarios, by server (single, cluster), projection (whole, partitioned) and query.
const QUERY_SCENARIOS: [[[&str; 2]; 2]; 2] = [
    [
        ["view_get_single_whole", "view_list_single_whole"],
        ["view_get_single_partitioned", "view_list_single_partitioned"],
    ],
    [
        ["view_get_cluster_whole", "view_list_cluster_whole"],
        ["view_get_cluster_partitioned", "view_list_cluster_partitioned"],
    ],
];

/// One query series.
enum Series {
    /// `Reader::get` of card `i % STREAMS`.
    Get(Reader<Cards>),
    /// `Reader::list` of the first page of `status=open`.
    List(Reader<Cards>),
    /// A raw `GET` of card `i % STREAMS`'s key on one node.
    RawNode(redis::aio::ConnectionManager, String, u64),
    /// A raw `GET` of card `i % STREAMS`'s key on the cluster.
    RawCluster(redis::cluster_async::ClusterConnection, String, u64),
}

async fn raw_get(connection: &mut impl ConnectionLike, prefix: &str, generation: u64, i: usize) -> Result<()> {
    let key = card_key(prefix, generation, &format!("{IDS}{}", i % STREAMS));
    let value: Option<String> = redis::cmd("GET").arg(&key).query_async(connection).await?;
    value.ok_or_else(|| format!("key {key} is missing"))?;
    Ok(())
}

impl Worker for Series {
    async fn op(&mut self, i: usize) -> Result<()> {
        match self {
            Series::Get(reader) => {
                reader.get(&format!("{IDS}{}", i % STREAMS)).await?.ok_or("a card queried is missing")?;
            }
            Series::List(reader) => {
                let page = reader.list(&IndexKey::new("status", "open"), None, LIST_PAGE).await?;
                if page.views.len() != LIST_PAGE {
                    return Err(format!("a list page of {} cards, expected {LIST_PAGE}", page.views.len()).into());
                }
            }
            Series::RawNode(connection, prefix, generation) => raw_get(connection, prefix, *generation, i).await?,
            Series::RawCluster(connection, prefix, generation) => raw_get(connection, prefix, *generation, i).await?,
        }
        Ok(())
    }
}

/// Builds the views of [`Cards`] on the single Redis node too, whole (`Projector::catch_up`)
/// and in [`PARTITIONS`] partitions (a `ProjectionGroup` in this process), from the schemas of
/// the catch-up runs; then times `get` and a list page on both servers, whole and partitioned,
/// against a raw `GET` of a card's key on the same server.
pub async fn view_queries(catch_ups: &CatchUps<'_>, redis_url: &str) -> Result<Vec<Record>> {
    let (whole, partitioned) = (&SETUPS[0], &SETUPS[2]);
    let events = |setup| {
        let config = PgConfig::from_url(catch_ups.pg_url).and_then(|c| c.schema(catch_ups.schema_of(setup)));
        async move { Ok::<_, crate::BoxError>(PgEventStore::connect(config?).await?) }
    };
    let (whole_events, partitioned_events) = (events(whole).await?, events(partitioned).await?);
    let single_whole = RedisViewStore::connect(redis_url, &catch_ups.prefix_of(whole.label)).await?;
    let single_partitioned = RedisViewStore::connect(redis_url, &catch_ups.prefix_of(partitioned.label)).await?;
    let started = Instant::now();
    Projector::new(whole_events, single_whole.clone()).with_batch_size(BATCH).catch_up(&Cards).await?;
    let built_whole = started.elapsed();
    let started = Instant::now();
    build_partitioned(partitioned_events, single_partitioned.clone()).await?;
    eprintln!(
        "view_query: built the cards on the single Redis node too: whole in {:.1} s, in {PARTITIONS} partitions (one \
         process) in {:.1} s",
        built_whole.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let cluster_whole = cluster_views(catch_ups.cluster_urls, &catch_ups.prefix_of(whole.label)).await?;
    let cluster_partitioned = cluster_views(catch_ups.cluster_urls, &catch_ups.prefix_of(partitioned.label)).await?;
    let whole_prefix = catch_ups.prefix_of(whole.label);
    let generation = |views: RedisViewStore| async move {
        let status = Reader::<Cards>::new(views).status().await?;
        Ok::<_, crate::BoxError>(status.live.ok_or("the whole cards are not live")?.id)
    };
    let node = redis::aio::ConnectionManager::new(redis::Client::open(redis_url)?).await?;
    let raw_node = Series::RawNode(node, whole_prefix.clone(), generation(single_whole.clone()).await?);
    let cluster = cluster_connection(catch_ups.cluster_urls).await?;
    let raw_cluster = Series::RawCluster(cluster, whole_prefix, generation(cluster_whole.clone()).await?);
    let readers = [
        [whole.reader(single_whole), partitioned.reader(single_partitioned)],
        [whole.reader(cluster_whole), partitioned.reader(cluster_partitioned)],
    ];
    // Series 0..8: server, projection, query; 8: raw on the node; 9: raw on the cluster.
    let mut series: Vec<Series> = Vec::new();
    for server in &readers {
        for reader in server {
            series.push(Series::Get(reader.clone()));
            series.push(Series::List(reader.clone()));
        }
    }
    series.push(raw_node);
    series.push(raw_cluster);
    let block = Budget::new(QUERY_BLOCK, 30);
    for s in &mut series {
        // Also checks that each answers.
        load::latencies(s, 0, block).await?;
    }
    let mut samples: Vec<Vec<Duration>> = series.iter().map(|_| Vec::with_capacity(QUERIES)).collect();
    for round in 0..QUERIES / QUERY_BLOCK {
        for (s, samples) in series.iter_mut().zip(&mut samples) {
            samples.extend(load::latencies(s, round * QUERY_BLOCK, block).await?);
        }
    }
    let latencies: Vec<Latency> =
        samples.into_iter().map(|s| Latency::of(s).ok_or("no query timed")).collect::<Result<_, _>>()?;
    let mut records = Vec::new();
    for (server, names) in QUERY_SCENARIOS.iter().enumerate() {
        let raw = &latencies[8 + server];
        for (projection, names) in names.iter().enumerate() {
            for (query, name) in names.iter().enumerate() {
                let ours = &latencies[server * 4 + projection * 2 + query];
                eprintln!(
                    "{name}: median {:.3} ms, p99 {:.3} ms; raw GET on the same server median {:.3} ms, p99 {:.3} ms \
                     ({} queries each, blocks of {QUERY_BLOCK} going round the 10 series)",
                    ours.median_ms, ours.p99_ms, raw.median_ms, raw.p99_ms, ours.samples
                );
                records.push(
                    Record::new(name, Unit::Millis, ours.median_ms, raw.median_ms)
                        .p99(ours.p99_ms)
                        .with("raw_p99", raw.p99_ms),
                );
            }
        }
    }
    Ok(records)
}

/// Builds [`Cards`] in [`PARTITIONS`] partitions into `views` in this process, until its
/// partitions have reached the log's head.
async fn build_partitioned(events: PgEventStore, views: RedisViewStore) -> Result<()> {
    let head = events.head().await?.ok_or("no events")?;
    let projector = Projector::new(events, views.clone()).with_batch_size(BATCH);
    let mut group = projector.group();
    group.add_with(Cards, ProjectionOptions::new().partitions(PARTITIONS));
    let (stop, stopped) = watch::channel(false);
    let run = tokio::spawn(group.run(async move {
        let mut stopped = stopped;
        let _ = stopped.wait_for(|s| *s).await;
    }));
    let waited = Reader::<Cards>::new(views).partitioned().wait_for(head, BUILD_TIMEOUT).await;
    stop.send_replace(true);
    run.await??;
    waited?;
    Ok(())
}

/// Tasks of commands in the replica lag's load.
const LAG_TASKS: usize = 8;
/// How long the load runs.
const LAG_SECONDS: u64 = 10;
/// How often the lag is sampled.
const LAG_SAMPLE: Duration = Duration::from_millis(50);
/// The pause between two probes of `wait_readable`.
const PROBE_PAUSE: Duration = Duration::from_millis(10);

/// Lag samples, in milliseconds (or bytes).
#[derive(Debug, Default)]
struct Samples(Vec<f64>);

impl Samples {
    /// Median, 99th percentile (nearest rank) and maximum; zeros without samples.
    fn stats(&self) -> (f64, f64, f64) {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        if n == 0 {
            return (0.0, 0.0, 0.0);
        }
        let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
        let p99 = sorted[(n * 99).div_ceil(100).max(1) - 1];
        (median, p99, sorted[n - 1])
    }
}

/// What the sampler saw.
#[derive(Debug, Default)]
struct LagSamples {
    /// `PgEventStore::replica_lag().bytes`.
    bytes: Samples,
    /// `PgEventStore::replica_lag().last_replayed`, in milliseconds.
    replayed_ms: Samples,
    /// `pg_stat_replication.replay_lag` on the primary (when not NULL), in milliseconds.
    replay_lag_ms: Samples,
    /// `pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)` on the primary.
    replay_bytes: Samples,
}

/// `replica_lag`: under [`LAG_TASKS`] tasks of deposits for [`LAG_SECONDS`] s on a store that
/// reads from the replica, the time from a command's return until its position is readable on
/// the replica (`PgEventStore::wait_readable`, probed one command at a time), against the
/// replay lag PostgreSQL reports (`pg_stat_replication.replay_lag` on the primary); with
/// `PgEventStore::replica_lag()` sampled beside it.
pub async fn replica_lag(pg_url: &str, replica_url: &str, schema: &str, monitor: &Client) -> Result<Record> {
    let config = PgConfig::from_url(pg_url)?.schema(schema)?.read_replica(replica_url)?;
    let store = PgEventStore::connect(config).await?;
    store.migrate().await?;
    let engine = Cqrs::new(store.clone());
    let ids = account_ids();
    let commands = Commands::new(engine.clone(), ids);
    commands.warm().await?;
    let probe_outcome = engine.execute(Deposit { id: "probe".to_owned(), amount: 1 }).await?;
    store.wait_readable(Position::from(&probe_outcome), Duration::from_secs(30)).await?;
    let (stop, stopped) = watch::channel(false);
    let probe = {
        let (engine, store, stopped) = (engine.clone(), store.clone(), stopped.clone());
        tokio::spawn(async move {
            let mut samples = Samples::default();
            while !*stopped.borrow() {
                let outcome = engine.execute(Deposit { id: "probe".to_owned(), amount: 1 }).await?;
                let returned = Instant::now();
                store.wait_readable(Position::from(&outcome), Duration::from_secs(30)).await?;
                samples.0.push(returned.elapsed().as_secs_f64() * 1e3);
                tokio::time::sleep(PROBE_PAUSE).await;
            }
            Ok::<_, crate::BoxError>(samples)
        })
    };
    let sampler = {
        let (store, stopped) = (store.clone(), stopped.clone());
        let (primary, connection) = tokio_postgres::connect(pg_url, tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                eprintln!("replica_lag: sampling connection failed: {error}");
            }
        });
        tokio::spawn(async move {
            let mut seen = LagSamples::default();
            let statement = primary
                .prepare(
                    "SELECT (extract(epoch FROM replay_lag) * 1000)::float8, \
                     pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8 FROM pg_stat_replication",
                )
                .await?;
            while !*stopped.borrow() {
                let lag = store.replica_lag().await?.ok_or("the store has no read replica")?;
                seen.bytes.0.push(lag.bytes as f64);
                if let Some(replayed) = lag.last_replayed {
                    seen.replayed_ms.0.push(replayed.as_secs_f64() * 1e3);
                }
                for row in primary.query(&statement, &[]).await? {
                    if let Some(ms) = row.try_get::<_, Option<f64>>(0)? {
                        seen.replay_lag_ms.0.push(ms);
                    }
                    if let Some(bytes) = row.try_get::<_, Option<f64>>(1)? {
                        seen.replay_bytes.0.push(bytes);
                    }
                }
                tokio::time::sleep(LAG_SAMPLE).await;
            }
            Ok::<_, crate::BoxError>(seen)
        })
    };
    let workers = (0..LAG_TASKS).map(|_| commands.clone()).collect();
    let rate = load::throughput(workers, Budget::new(100_000_000, LAG_SECONDS)).await;
    stop.send_replace(true);
    let (probed, seen) = (probe.await??, sampler.await??);
    let rate = rate?;
    let replicas: i64 = monitor.query_one("SELECT count(*) FROM pg_stat_replication", &[]).await?.try_get(0)?;
    if replicas != 1 {
        return Err(format!("the primary streams to {replicas} replicas, expected 1").into());
    }
    let (readable, readable_p99, readable_max) = probed.stats();
    let (replay, replay_p99, replay_max) = seen.replay_lag_ms.stats();
    let (bytes, bytes_p99, bytes_max) = seen.bytes.stats();
    let (replayed, replayed_p99, replayed_max) = seen.replayed_ms.stats();
    let (raw_bytes, raw_bytes_p99, raw_bytes_max) = seen.replay_bytes.stats();
    eprintln!(
        "replica_lag: {} deposits in {:.1} s ({:.0}/s, {LAG_TASKS} tasks, stream loads on a cache miss from the \
         replica); a probe command's position readable on the replica after median {readable:.3} ms, p99 \
         {readable_p99:.3} ms, max {readable_max:.3} ms ({} probes); pg_stat_replication.replay_lag median \
         {replay:.3} ms, p99 {replay_p99:.3} ms, max {replay_max:.3} ms ({} samples not NULL); replica_lag() bytes \
         median {bytes:.0}, p99 {bytes_p99:.0}, max {bytes_max:.0}, last replayed commit median {replayed:.1} ms ago, \
         p99 {replayed_p99:.1}, max {replayed_max:.1} ({} samples); primary's WAL minus replay_lsn median \
         {raw_bytes:.0} bytes, p99 {raw_bytes_p99:.0}, max {raw_bytes_max:.0}",
        rate.ops,
        rate.elapsed.as_secs_f64(),
        rate.per_second(),
        probed.0.len(),
        seen.replay_lag_ms.0.len(),
        seen.bytes.0.len(),
    );
    Ok(Record::new("replica_lag", Unit::Millis, readable, replay)
        .p99(readable_p99)
        .with("max", readable_max)
        .with("raw_p99", replay_p99)
        .with("raw_max", replay_max)
        .with("probes", probed.0.len())
        .with("commands_per_s", rate.per_second())
        .with("lag_bytes", bytes)
        .with("lag_bytes_p99", bytes_p99)
        .with("lag_bytes_max", bytes_max)
        .with("last_replayed_ms", replayed)
        .with("last_replayed_p99_ms", replayed_p99)
        .with("raw_lag_bytes", raw_bytes)
        .with("raw_lag_bytes_max", raw_bytes_max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_statistics() {
        assert_eq!(Samples(vec![3.0, 1.0, 2.0]).stats(), (2.0, 3.0, 3.0));
        assert_eq!(Samples(vec![]).stats(), (0.0, 0.0, 0.0));
        let many = Samples((1..=200).map(f64::from).collect());
        assert_eq!(many.stats(), (100.5, 198.0, 200.0));
    }
}
