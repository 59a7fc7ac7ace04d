//! `PgLeases` when the leader's connection stops answering: a hung proxy (the check's timeout)
//! and dropped packets (`tcp_user_timeout` and the server-side timeouts of the lease session).

use std::time::{Duration, Instant};

use eventloom_core::store::LeaseManager;
use eventloom_postgres::{PgConfig, PgEventStore, PgLeases};

use crate::support::{Blackhole, FreezingProxy, PrivateServer, database_url, raw, store, store_at, tcp_socket_exists};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_behind_a_hung_proxy_reports_its_lease_lost_within_the_check_interval_plus_timeout() {
    // The proxy's kernel acknowledges both sides: no TCP timeout can fire, only the check's.
    let direct = store().await;
    let url: tokio_postgres::Config = database_url().parse().unwrap();
    let port = *url.get_ports().first().expect("DATABASE_URL names a port");
    let proxy = FreezingProxy::start(port).await;
    let config = PgConfig::from_url(&proxy.url()).unwrap().schema(direct.config().schema_name()).unwrap();
    let through_proxy = PgEventStore::connect(config).await.unwrap();
    let leases = PgLeases::new(&through_proxy);
    let bound = leases.loss_detected_within();
    let lease = leases.acquire("hung").await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!lease.is_lost(), "held while the proxy forwards");

    proxy.freeze();
    let frozen = Instant::now();
    let noticed = tokio::time::timeout(3 * bound, lease.lost()).await;
    let took = frozen.elapsed();
    println!("hung proxy: the lease was reported lost after {took:?} (documented: within {bound:?})");
    assert!(noticed.is_ok(), "the lease was not reported lost within 3 x {bound:?}");
    assert!(lease.is_lost());
}

/// The advisory lock holders of a server: (backend pid, client port).
async fn lock_holders(admin: &tokio_postgres::Client) -> Vec<(i32, i32)> {
    admin
        .query(
            "SELECT a.pid, a.client_port FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
             WHERE l.locktype = 'advisory' AND l.granted AND a.pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_whose_packets_are_dropped_knows_it_lost_the_lease_before_a_standby_takes_it() {
    // iptables rules on this server's port: a server of its own.
    let server = PrivateServer::start();
    let events = store_at(&server.url()).await;
    let leases = PgLeases::new(&events);
    let (noticed, released) = (leases.loss_detected_within(), leases.session_ends_after());
    let takeover = released + Duration::from_millis(500);
    let leader = leases.acquire("cut").await.unwrap();
    let admin = raw(&server.url()).await;
    let holders = lock_holders(&admin).await;
    assert_eq!(holders.len(), 1, "one lease session: {holders:?}");
    let (pid, client_port) = holders[0];
    let client_port = u16::try_from(client_port).unwrap();
    let standby = {
        let leases = leases.clone();
        tokio::spawn(async move {
            let lease = leases.acquire("cut").await.unwrap();
            (Instant::now(), lease)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!standby.is_finished() && !leader.is_lost(), "the leader leads, the standby waits");
    assert!(tcp_socket_exists(client_port, server.port), "the lease connection is seen in /proc/net/tcp");

    let cut = Blackhole::cut(client_port, server.port);
    let start = Instant::now();
    let lost = tokio::spawn(async move {
        leader.lost().await;
        (Instant::now(), leader)
    });
    let (lost_at, leader) = tokio::time::timeout(3 * noticed, lost)
        .await
        .unwrap_or_else(|_| panic!("the leader did not notice within 3 x {noticed:?}"))
        .unwrap();
    println!(
        "dropped packets: the leader reported the lease lost after {:?} (documented: within {noticed:?})",
        lost_at - start
    );

    // The client side: tcp_user_timeout ends the socket, which would otherwise retransmit for
    // minutes (the connection was closed with data unacknowledged).
    let socket_bound = lost_at + 3 * Duration::from_secs(2);
    while tcp_socket_exists(client_port, server.port) {
        assert!(Instant::now() < socket_bound, "the leader's socket outlived 3 x its tcp_user_timeout (2 s)");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("dropped packets: the leader's socket was gone after {:?}", start.elapsed());

    let (acquired_at, next) = tokio::time::timeout((3 * takeover).saturating_sub(start.elapsed()), standby)
        .await
        .unwrap_or_else(|_| panic!("no standby took over within 3 x {takeover:?}"))
        .unwrap();
    println!(
        "dropped packets: the standby took over after {:?} (documented: about {takeover:?}), {:?} after the leader knew",
        acquired_at - start,
        acquired_at - lost_at
    );
    assert!(lost_at < acquired_at, "the old leader knew it lost the lease before the standby took it");
    assert!(next.token() > leader.token(), "tokens grow: {} then {}", leader.token(), next.token());
    // The server ended the old session on its own (the rules still drop its packets).
    let alive: i64 =
        admin.query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", &[&pid]).await.unwrap().get(0);
    assert_eq!(alive, 0, "the server ended the silent session");
    drop(cut);
}
