//! The newcomer's program of issue 10: two aggregates, a projection of each and one across
//! both, and read-your-writes queries, on the memory default and, changing only how the stores are built,
//! on PostgreSQL with Redis views (features `postgres` and `redis`, `DATABASE_URL` and
//! `REDIS_URL`).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use eventloom::prelude::*;
use eventloom::{BoxError, CommandError, Projection, StoresConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
enum CustomerEvent {
    Registered { name: String },
}

#[derive(Debug, Default)]
struct Customer {
    registered: bool,
}

#[derive(Debug, thiserror::Error)]
enum CustomerError {
    #[error("already registered")]
    AlreadyRegistered,
}

impl Aggregate for Customer {
    const TYPE: &'static str = "customer";
    type Event = CustomerEvent;
    type Error = CustomerError;
    fn apply(&mut self, CustomerEvent::Registered { .. }: &CustomerEvent) {
        self.registered = true;
    }
}

#[derive(Debug, Serialize, Command)]
#[command(aggregate = Customer)]
struct Register {
    #[command(id)]
    id: String,
    name: String,
}

impl Handle<Register> for Customer {
    fn handle(&self, cmd: &Register) -> Result<Vec<CustomerEvent>, CustomerError> {
        if self.registered {
            return Err(CustomerError::AlreadyRegistered);
        }
        Ok(vec![CustomerEvent::Registered { name: cmd.name.clone() }])
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
enum OrderEvent {
    LinePlaced { customer: String, cents: u64 },
}

#[derive(Debug, Default)]
struct Order;

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Event = OrderEvent;
    type Error = std::convert::Infallible;
    fn apply(&mut self, _: &OrderEvent) {}
}

#[derive(Debug, Serialize, Command)]
#[command(aggregate = Order)]
struct PlaceLine {
    #[command(id)]
    order: String,
    customer: String,
    cents: u64,
}

impl Handle<PlaceLine> for Order {
    fn handle(&self, cmd: &PlaceLine) -> Result<Vec<OrderEvent>, std::convert::Infallible> {
        Ok(vec![OrderEvent::LinePlaced { customer: cmd.customer.clone(), cents: cmd.cents }])
    }
}

struct CustomerNames;

impl Projection for CustomerNames {
    const NAME: &'static str = "customer_names";
    type Events = Customer;
    type View = String;
    fn apply(&self, view: &mut Option<String>, e: &EventEnvelope<CustomerEvent>) -> Result<(), BoxError> {
        let CustomerEvent::Registered { name } = &e.event;
        *view = Some(name.clone());
        Ok(())
    }
}

struct OrderTotals;

impl Projection for OrderTotals {
    const NAME: &'static str = "order_totals";
    type Events = Order;
    type View = u64;
    fn apply(&self, total: &mut Option<u64>, e: &EventEnvelope<OrderEvent>) -> Result<(), BoxError> {
        let OrderEvent::LinePlaced { cents, .. } = &e.event;
        *total.get_or_insert(0) += cents;
        Ok(())
    }
}

/// The events of both aggregates, for a projection that joins them.
#[derive(Debug, EventSet)]
enum Shop {
    #[events(aggregate = Customer)]
    Customer(CustomerEvent),
    #[events(aggregate = Order)]
    Order(OrderEvent),
}

/// What each customer is called and has spent: a view per customer, fed by both aggregates.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Spending {
    name: String,
    cents: u64,
}

struct CustomerSpending;

impl Projection for CustomerSpending {
    const NAME: &'static str = "customer_spending";
    type Events = Shop;
    type View = Spending;
    fn view_id(&self, e: &EventEnvelope<Shop>) -> Option<String> {
        match &e.event {
            Shop::Customer(_) => Some(e.stream.id().to_owned()),
            Shop::Order(OrderEvent::LinePlaced { customer, .. }) => Some(customer.clone()),
        }
    }
    fn apply(&self, view: &mut Option<Spending>, e: &EventEnvelope<Shop>) -> Result<(), BoxError> {
        let spending = view.get_or_insert_with(Spending::default);
        match &e.event {
            Shop::Customer(CustomerEvent::Registered { name }) => spending.name = name.clone(),
            Shop::Order(OrderEvent::LinePlaced { cents, .. }) => spending.cents += cents,
        }
        Ok(())
    }
}

/// The newcomer's wiring: the same for every bundle of stores.
fn builder(stores: Stores) -> eventloom::app::AppBuilder {
    App::builder(stores)
        .aggregate::<Customer>()
        .aggregate::<Order>()
        .projection(CustomerNames)
        .projection(OrderTotals)
        .projection(CustomerSpending)
}

/// Commands on both aggregates, then a read-your-writes query of each projection.
async fn newcomer(commands: &App, queries: &App) {
    let registered = commands.execute(Register { id: "c-1".into(), name: "Ada".into() }).await.unwrap();
    let again = commands.execute(Register { id: "c-1".into(), name: "Ada".into() }).await;
    assert!(matches!(again, Err(CommandError::Rejected(CustomerError::AlreadyRegistered))));
    commands.execute(PlaceLine { order: "o-1".into(), customer: "c-1".into(), cents: 250 }).await.unwrap();
    let placed = commands.execute(PlaceLine { order: "o-1".into(), customer: "c-1".into(), cents: 100 }).await.unwrap();

    let names = queries.reader::<CustomerNames>().unwrap();
    names.wait_for(&registered, Duration::from_secs(10)).await.unwrap();
    assert_eq!(names.get("c-1").await.unwrap().as_deref(), Some("Ada"));
    let totals = queries.reader::<OrderTotals>().unwrap();
    totals.wait_for(&placed, Duration::from_secs(10)).await.unwrap();
    assert_eq!(totals.get("o-1").await.unwrap(), Some(350));
    // Across both aggregates: the customer's name from one, what they spent from the other.
    let spending = queries.reader::<CustomerSpending>().unwrap();
    spending.wait_for(&placed, Duration::from_secs(10)).await.unwrap();
    assert_eq!(spending.get("c-1").await.unwrap(), Some(Spending { name: "Ada".into(), cents: 350 }));
}

#[tokio::test]
async fn the_newcomers_program_runs_on_memory() {
    let stores = StoresConfig::memory().connect().await.unwrap();
    assert_eq!(stores.description(), "memory");
    let app = builder(stores).start().await.unwrap();
    newcomer(&app, &app).await;
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_url_without_its_feature_or_redis_without_postgres_is_refused() {
    let refused = StoresConfig::memory().redis_url("redis://127.0.0.1:1/").connect().await;
    assert!(matches!(refused, Err(eventloom::StoresError::RedisWithoutPostgres)), "{refused:?}");
    #[cfg(not(feature = "postgres"))]
    {
        let refused = StoresConfig::memory().database_url("postgres://127.0.0.1:1/x").connect().await;
        assert!(
            matches!(refused, Err(eventloom::StoresError::FeatureDisabled { feature: "postgres", .. })),
            "{refused:?}"
        );
    }
}

#[tokio::test]
async fn a_url_without_its_feature_is_ignored_when_asked_and_only_then() {
    let redis = StoresConfig::memory().redis_url("redis://127.0.0.1:1/").ignore_missing_features(true).connect().await;
    if cfg!(feature = "redis") {
        // Built with Redis, the URL counts: Redis views still need their events in PostgreSQL.
        assert!(matches!(redis, Err(eventloom::StoresError::RedisWithoutPostgres)), "{redis:?}");
    } else {
        assert_eq!(redis.unwrap().description(), "memory");
    }
    #[cfg(not(feature = "postgres"))]
    {
        let config = StoresConfig::memory().database_url("postgres://127.0.0.1:1/x").redis_url("redis://127.0.0.1:1/");
        let stores = config.ignore_missing_features(true).connect().await;
        if cfg!(feature = "redis") {
            // PostgreSQL ignored, Redis would hold views of events in memory: refused as ever.
            assert!(matches!(stores, Err(eventloom::StoresError::RedisWithoutPostgres)), "{stores:?}");
        } else {
            assert_eq!(stores.unwrap().description(), "memory");
        }
    }
}

/// Stores from the environment (the team's shared servers), in a schema and a key prefix of
/// this run's own.
#[cfg(all(feature = "postgres", feature = "redis"))]
async fn postgres_and_redis() -> Stores {
    let (Ok(_), Ok(_)) = (std::env::var("DATABASE_URL"), std::env::var("REDIS_URL")) else {
        panic!("set DATABASE_URL and REDIS_URL (scripts/test.sh starts servers) to test the adapters");
    };
    let run = uuid::Uuid::new_v4().simple().to_string();
    let stores = StoresConfig::from_env()
        .schema(format!("facade_{run}"))
        .prefix(format!("facade-{run}:"))
        .connect()
        .await
        .unwrap();
    assert_eq!(stores.description(), "postgres+redis");
    assert!(stores.is_shared());
    stores
}

#[cfg(all(feature = "postgres", feature = "redis"))]
#[tokio::test]
async fn the_newcomers_program_runs_on_postgres_and_redis() {
    let app = builder(postgres_and_redis().await).start().await.unwrap();
    newcomer(&app, &app).await;
    app.shutdown().await.unwrap();
}

#[cfg(all(feature = "postgres", feature = "redis"))]
#[tokio::test]
async fn the_newcomers_program_runs_one_role_per_process_on_postgres_and_redis() {
    let stores = postgres_and_redis().await;
    let command = builder(stores.clone()).role(Role::Command).start().await.unwrap();
    let projector = builder(stores.clone()).role(Role::Projector).start().await.unwrap();
    let query = builder(stores).role(Role::Query).start().await.unwrap();
    newcomer(&command, &query).await;
    for app in [command, projector, query] {
        app.shutdown().await.unwrap();
    }
}

/// The same program with its log read from a streaming replica and its views on a Redis
/// Cluster, one role per process, configured as `stores_from_env` reads them (`REDIS_URL` a
/// comma-separated node list, `EVENTLOOM_READ_REPLICA_URL`).
#[cfg(all(feature = "postgres", feature = "redis"))]
#[tokio::test]
async fn the_newcomers_program_runs_on_a_read_replica_and_a_redis_cluster() {
    let var = |name: &str| {
        std::env::var(name)
            .unwrap_or_else(|_| panic!("set {name} (scripts/test.sh starts the servers) to test the adapters"))
    };
    let run = uuid::Uuid::new_v4().simple().to_string();
    let stores = StoresConfig::memory()
        .database_url(var("DATABASE_URL"))
        .read_replica_url(var("DATABASE_REPLICA_URL"))
        .redis_url(var("REDIS_CLUSTER_URLS"))
        .schema(format!("facade_{run}"))
        .prefix(format!("facade-{run}:"))
        .connect()
        .await
        .unwrap();
    assert_eq!(stores.description(), "postgres+replica+redis-cluster");
    let command = builder(stores.clone()).role(Role::Command).start().await.unwrap();
    let projector = builder(stores.clone()).role(Role::Projector).start().await.unwrap();
    let query = builder(stores).role(Role::Query).start().await.unwrap();
    newcomer(&command, &query).await;
    let health = projector.health(100).await;
    assert!(health.replica.is_some_and(|lag| lag.is_ok()), "the replica's lag is reported");
    for app in [command, projector, query] {
        app.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn a_read_replica_without_its_primary_is_refused() {
    let refused = StoresConfig::memory().read_replica_url("postgres://127.0.0.1:1/app").connect().await;
    assert!(matches!(refused, Err(eventloom::StoresError::ReplicaWithoutPostgres)), "{refused:?}");
}
