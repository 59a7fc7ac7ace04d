//! The two services as separate processes, on PostgreSQL (a database each) and NATS, each
//! SIGKILLed once while orders flow: afterwards every order is shipped or cancelled within 30 s
//! of the last kill, none is both, the stock reserved is the sum over open orders (none are
//! left open), and every item is either available or dispatched for a shipped order.
//!
//! Needs `DATABASE_URL` (a server where the test may create databases) and `NATS_URL` (a
//! nats-server with JetStream): `bash scripts/test.sh` starts both.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

fn env(name: &str, what: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: {what} (bash scripts/test.sh starts one)"))
}

/// One HTTP/1.1 request on a connection of its own; `None` when the service does not answer.
async fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Option<(u16, Value)> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.ok()?;
        stream.write_all(body.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange).await.ok().flatten()
}

/// A request sent until the service answers (it may be down, killed by the test); the answer.
async fn until_answered(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(answer) = request(addr, method, path, body).await {
            if answer.0 != 503 {
                return answer;
            }
        }
        assert!(Instant::now() < deadline, "{method} {path} unanswered for 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// One service's process and how to start it again.
struct Service {
    name: &'static str,
    addr: SocketAddr,
    database_url: String,
    bus: String,
    child: Option<Child>,
}

impl Service {
    fn start(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_order-fulfilment"))
            .args([self.name, "--addr", &self.addr.to_string(), "--payment-deadline", "2"])
            .env("DATABASE_URL", &self.database_url)
            .env_remove("REDIS_URL")
            .env("ORDER_FULFILMENT_BUS", &self.bus)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    async fn healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while request(self.addr, "GET", "/health", None).await.is_none_or(|(s, _)| s != 200) {
            assert!(Instant::now() < deadline, "the {} service did not come up in 60 s", self.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A database of its own on the shared server, dropped at the end.
async fn create_database(admin: &tokio_postgres::Client, url: &str, name: &str) -> String {
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_reach_an_end_through_kills_of_each_service() {
    let url = env("DATABASE_URL", "a PostgreSQL server where the test may create databases");
    let _ = env("NATS_URL", "a nats-server with JetStream");
    let mut rng = eventloom::testing::TestRng::from_env("ORDER_FULFILMENT_SEED");
    let run = format!("{}_{}", std::process::id(), rng.seed() % 100_000);
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let bus = format!("of{run}");
    let mut orders = Service {
        name: "orders",
        addr: free_addr(),
        database_url: create_database(&admin, &url, &format!("of_orders_{run}")).await,
        bus: bus.clone(),
        child: None,
    };
    let mut inventory = Service {
        name: "inventory",
        addr: free_addr(),
        database_url: create_database(&admin, &url, &format!("of_inventory_{run}")).await,
        bus: bus.clone(),
        child: None,
    };
    orders.start();
    inventory.start();
    orders.healthy().await;
    inventory.healthy().await;

    let added: BTreeMap<&str, u64> = [("apple", 30), ("pear", 8)].into();
    for (sku, qty) in &added {
        let (status, body) =
            until_answered(inventory.addr, "POST", &format!("/stock/{sku}"), Some(&json!({ "qty": qty, "id": sku })))
                .await;
        assert_eq!(status, 200, "{body}");
    }
    let total = 30;
    let mut placed: Vec<(String, &str, u64)> = Vec::new();
    // What each order's customer did: paid (and the payment was taken), failed to pay, or nothing.
    let mut paid: BTreeMap<String, &str> = BTreeMap::new();
    let mut last_kill = Instant::now();
    for n in 0..total {
        let id = format!("o-{n:02}");
        let sku = if rng.below(3) == 0 { "pear" } else { "apple" };
        let qty = 1 + rng.below(3);
        let (status, body) =
            until_answered(orders.addr, "POST", "/orders", Some(&json!({ "id": id, "sku": sku, "qty": qty }))).await;
        assert!(status == 201 || status == 200, "{status} {body}");
        placed.push((id.clone(), sku, qty));
        // Pay for most; let some fail, and some wait past the deadline.
        let choice = match rng.below(10) {
            0..=5 => Some(true),
            6 | 7 => Some(false),
            _ => None,
        };
        let did = match choice {
            None => "nothing",
            Some(ok) => {
                let path = format!("/orders/{id}/payment");
                let (status, body) = until_answered(orders.addr, "POST", &path, Some(&json!({ "ok": ok }))).await;
                match (status, ok) {
                    (200, true) => "paid",
                    (200, false) => "failed",
                    // Cancelled before the payment came (out of stock).
                    (409, _) => "too late",
                    _ => panic!("payment of {id}: {status} {body}"),
                }
            }
        };
        paid.insert(id.clone(), did);
        if n == 9 {
            inventory.kill().await;
            last_kill = Instant::now();
            tokio::time::sleep(Duration::from_millis(200 + rng.below(500))).await;
            inventory.start();
        }
        if n == 19 {
            orders.kill().await;
            last_kill = Instant::now();
            tokio::time::sleep(Duration::from_millis(200 + rng.below(500))).await;
            orders.start();
        }
    }

    // Every order reaches an end within 30 s of the last kill.
    let deadline = last_kill + Duration::from_secs(30);
    let mut reasons: BTreeMap<String, String> = BTreeMap::new();
    let finals = loop {
        let mut finals = BTreeMap::new();
        for (id, _, _) in &placed {
            if let Some((200, view)) = request(orders.addr, "GET", &format!("/orders/{id}"), None).await {
                let status = view["status"].as_str().unwrap_or_default().to_owned();
                if status == "shipped" || status == "cancelled" {
                    finals.insert(id.clone(), status);
                    reasons.insert(id.clone(), view["reason"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
        if finals.len() == placed.len() {
            break finals;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} orders reached an end within 30 s of the last kill: {finals:?}",
            finals.len(),
            placed.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let shipped = finals.values().filter(|s| *s == "shipped").count();
    assert!(shipped > 0, "some orders ship: {finals:?}");
    // Each order ended as what its customer did allows.
    for (id, _, _) in &placed {
        let end = (finals[id].as_str(), reasons[id].as_str());
        let allowed: &[(&str, &str)] = match paid[id] {
            "paid" => &[("shipped", ""), ("cancelled", "out of stock")],
            "failed" => &[("cancelled", "the payment failed"), ("cancelled", "out of stock")],
            "too late" => &[("cancelled", "out of stock")],
            _ => &[("cancelled", "no payment in time"), ("cancelled", "out of stock")],
        };
        assert!(allowed.contains(&end), "order {id} ({}) ended {end:?}", paid[id]);
    }
    println!(
        "{shipped} shipped, {} cancelled, in {:?} after the last kill",
        finals.len() - shipped,
        last_kill.elapsed()
    );

    // The stock settles: nothing reserved for orders that are closed, every item available or
    // dispatched for a shipped order.
    let settle = Instant::now() + Duration::from_secs(30);
    loop {
        let mut settled = true;
        let mut report = Vec::new();
        for (sku, qty) in &added {
            let shipped_qty: u64 =
                placed.iter().filter(|(id, s, _)| s == sku && finals[id] == "shipped").map(|(_, _, q)| q).sum();
            let (status, view) = until_answered(inventory.addr, "GET", &format!("/stock/{sku}"), None).await;
            assert_eq!(status, 200, "{view}");
            let (available, reserved, dispatched) = (
                view["available"].as_u64().unwrap(),
                view["reserved"].as_u64().unwrap(),
                view["dispatched"].as_u64().unwrap(),
            );
            report.push(format!("{sku}: {view} (shipped {shipped_qty} of {qty})"));
            if reserved != 0 || dispatched != shipped_qty || available + dispatched != *qty {
                settled = false;
            }
        }
        if settled {
            break;
        }
        assert!(Instant::now() < settle, "the stock did not settle: {report:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // No order both cancelled and shipped, none closed twice: read from the orders database.
    let (orders_db, connection) = tokio_postgres::connect(&orders.database_url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let rows = orders_db
        .query(
            "SELECT stream_id, event_type FROM cqrs.events WHERE category = 'order' ORDER BY stream_id, version",
            &[],
        )
        .await
        .unwrap();
    let mut ends: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in rows {
        let (id, event_type): (String, String) = (row.get(0), row.get(1));
        if event_type == "Shipped" || event_type == "Cancelled" {
            ends.entry(id).or_default().push(event_type);
        }
    }
    for (id, _, _) in &placed {
        assert_eq!(ends.get(id).map(Vec::len), Some(1), "order {id} ended once: {:?}", ends.get(id));
    }

    // Each service's events reached the other once each: the relayed copies are as many as the
    // originals, and no source sequence was relayed twice.
    let (inventory_db, connection) =
        tokio_postgres::connect(&inventory.database_url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let count = |category: &'static str| format!("SELECT count(*) FROM cqrs.events WHERE category = '{category}'");
    let distinct = |category: &'static str| {
        format!(
            "SELECT count(DISTINCT metadata->'headers'->>'eventloom-source-sequence') FROM cqrs.events \
             WHERE category = '{category}'"
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let one = |rows: Vec<tokio_postgres::Row>| rows[0].get::<_, i64>(0);
        let orders_here = one(orders_db.query(&count("order"), &[]).await.unwrap());
        let orders_there = one(inventory_db.query(&count("order"), &[]).await.unwrap());
        let orders_distinct = one(inventory_db.query(&distinct("order"), &[]).await.unwrap());
        let stock_here = one(inventory_db.query(&count("stock"), &[]).await.unwrap());
        let stock_there = one(orders_db.query(&count("stock"), &[]).await.unwrap());
        let stock_distinct = one(orders_db.query(&distinct("stock"), &[]).await.unwrap());
        assert_eq!(orders_there, orders_distinct, "an order event relayed twice");
        assert_eq!(stock_there, stock_distinct, "a stock event relayed twice");
        if orders_here == orders_there && stock_here == stock_there {
            println!("relayed: {orders_there} order events, {stock_there} stock events, each once");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "relayed {orders_there} of {orders_here} order events and {stock_there} of {stock_here} stock events"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(inventory_db);

    // Both services are healthy at the end: their projection, process manager and relay run.
    for service in [&orders, &inventory] {
        let (status, body) = until_answered(service.addr, "GET", "/health", None).await;
        assert_eq!(status, 200, "{} health: {body}", service.name);
    }
    orders.kill().await;
    inventory.kill().await;
    drop(orders_db);
    for name in [format!("of_orders_{run}"), format!("of_inventory_{run}")] {
        admin.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)")).await.unwrap();
    }
    delete_streams(&bus).await;
}

/// Deletes the run's two streams.
async fn delete_streams(bus: &str) {
    let client = eventloom::nats::NatsConfig::from_env().unwrap().connect().await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    for name in ["orders", "inventory"] {
        let _ = jetstream.delete_stream(format!("{bus}-{name}")).await;
    }
}
