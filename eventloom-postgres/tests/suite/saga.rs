//! A process manager on PostgreSQL (events, views and leases), its runner SIGKILLed again and
//! again while tickets are opened: afterwards every ticket is granted, expired or refused exactly
//! once, no seat is held twice or freed twice, and nothing the saga issued ran twice.
//!
//! The saga runs in a separate process: this test binary itself, started with
//! `--ignored --exact saga::child_box_office` and its schema in the environment.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eventloom_core::app::ProcessOptions;
use eventloom_core::prelude::*;
use eventloom_core::process::{CommandSet, Decision, Dispatched, Dispatcher, Refused, Timer};
use eventloom_core::store::EventStore;
use eventloom_core::testing::TestRng;
use eventloom_postgres::{PgConfig, PgStores};

use crate::support::{database_url, fresh_schema};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub enum TicketEvent {
    Opened { seats: u64 },
    Granted,
    Expired,
    Refused { reason: String },
}

#[derive(Debug, Default)]
pub struct Ticket {
    open: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct No(String);

impl Aggregate for Ticket {
    const TYPE: &'static str = "ticket";
    type Event = TicketEvent;
    type Error = No;
    fn apply(&mut self, e: &TicketEvent) {
        self.open = matches!(e, TicketEvent::Opened { .. });
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)]
#[command(aggregate = Ticket)]
pub struct Open {
    #[command(id)]
    pub id: String,
    pub seats: u64,
}

/// Closes a ticket one way: refused when it is closed already, so a second close shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)]
#[command(aggregate = Ticket)]
pub struct Close {
    #[command(id)]
    pub id: String,
    pub how: TicketEvent,
}

impl Handle<Open> for Ticket {
    fn handle(&self, c: &Open) -> Result<Vec<TicketEvent>, No> {
        Ok(vec![TicketEvent::Opened { seats: c.seats }])
    }
}

impl Handle<Close> for Ticket {
    fn handle(&self, c: &Close) -> Result<Vec<TicketEvent>, No> {
        if !self.open {
            return Err(No(format!("ticket {} is closed already", c.id)));
        }
        Ok(vec![c.how.clone()])
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub enum HallEvent {
    Held { ticket: String, seats: u64 },
    Freed { ticket: String, seats: u64 },
}

#[derive(Debug, Default)]
pub struct Hall {
    taken: u64,
    held: BTreeMap<String, u64>,
}

pub const SEATS: u64 = 40;

impl Aggregate for Hall {
    const TYPE: &'static str = "hall";
    type Event = HallEvent;
    type Error = No;
    fn apply(&mut self, e: &HallEvent) {
        match e {
            HallEvent::Held { ticket, seats } => {
                self.taken += seats;
                self.held.insert(ticket.clone(), *seats);
            }
            HallEvent::Freed { ticket, seats } => {
                self.taken -= seats;
                self.held.remove(ticket);
            }
        }
    }
}

/// Holds seats for a ticket: refused when full, and when the ticket holds seats already (so a
/// hold issued twice would show as a refusal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)]
#[command(aggregate = Hall)]
pub struct Hold {
    #[command(id)]
    pub hall: String,
    pub ticket: String,
    pub seats: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)]
#[command(aggregate = Hall)]
pub struct Free {
    #[command(id)]
    pub hall: String,
    pub ticket: String,
}

impl Handle<Hold> for Hall {
    fn handle(&self, c: &Hold) -> Result<Vec<HallEvent>, No> {
        if self.held.contains_key(&c.ticket) {
            return Err(No(format!("ticket {} holds seats already", c.ticket)));
        }
        if self.taken + c.seats > SEATS {
            return Err(No("the hall is full".into()));
        }
        Ok(vec![HallEvent::Held { ticket: c.ticket.clone(), seats: c.seats }])
    }
}

impl Handle<Free> for Hall {
    fn handle(&self, c: &Free) -> Result<Vec<HallEvent>, No> {
        match self.held.get(&c.ticket) {
            Some(seats) => Ok(vec![HallEvent::Freed { ticket: c.ticket.clone(), seats: *seats }]),
            None => Err(No(format!("ticket {} holds no seats", c.ticket))),
        }
    }
}

#[derive(Debug, EventSet)]
pub enum Office {
    #[events(aggregate = Ticket)]
    Ticket(TicketEvent),
    #[events(aggregate = Hall)]
    Hall(HallEvent),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OfficeCommand {
    Hold(Hold),
    Free(Free),
    Close(Close),
}

impl CommandSet for OfficeCommand {
    async fn dispatch(self, to: &Dispatcher, options: ExecuteOptions) -> Dispatched {
        match self {
            OfficeCommand::Hold(c) => to.execute(c, options).await,
            OfficeCommand::Free(c) => to.execute(c, options).await,
            OfficeCommand::Close(c) => to.execute(c, options).await,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Box {
    seats: u64,
    held: bool,
    expired: bool,
}

/// Opened: hold the seats, then grant a ticket of an even number of seats at once; an odd one
/// waits for its payment timer and expires, freeing its seats. A hold refused (a full hall)
/// refuses the ticket.
pub struct BoxOffice;

const PAY_WITHIN: Duration = Duration::from_millis(300);

impl ProcessManager for BoxOffice {
    const NAME: &'static str = "box_office";
    type Events = Office;
    type State = Box;
    type Commands = OfficeCommand;

    fn correlate(&self, e: &EventEnvelope<Office>) -> Option<String> {
        match &e.event {
            Office::Ticket(_) => Some(e.stream.id().to_owned()),
            Office::Hall(HallEvent::Held { ticket, .. } | HallEvent::Freed { ticket, .. }) => Some(ticket.clone()),
        }
    }

    fn on_event(
        &self,
        s: &mut Box,
        e: &EventEnvelope<Office>,
        d: &mut Decision<OfficeCommand>,
    ) -> Result<(), BoxError> {
        let hall = || "main".to_owned();
        match &e.event {
            Office::Ticket(TicketEvent::Opened { seats }) => {
                s.seats = *seats;
                d.issue(OfficeCommand::Hold(Hold { hall: hall(), ticket: e.stream.id().to_owned(), seats: *seats }));
                if seats % 2 == 1 {
                    d.schedule("pay", PAY_WITHIN);
                }
            }
            Office::Hall(HallEvent::Held { ticket, .. }) => {
                s.held = true;
                if s.expired {
                    // Expired before the hold came through.
                    d.issue(OfficeCommand::Free(Free { hall: hall(), ticket: ticket.clone() }));
                } else if s.seats % 2 == 0 {
                    d.issue(OfficeCommand::Close(Close { id: ticket.clone(), how: TicketEvent::Granted }));
                }
            }
            Office::Ticket(TicketEvent::Expired) => {
                s.expired = true;
                if s.held {
                    d.issue(OfficeCommand::Free(Free { hall: hall(), ticket: e.stream.id().to_owned() }));
                }
            }
            Office::Ticket(TicketEvent::Granted | TicketEvent::Refused { .. })
            | Office::Hall(HallEvent::Freed { .. }) => {
                d.complete();
            }
        }
        Ok(())
    }

    fn on_timer(&self, _: &mut Box, t: &Timer, d: &mut Decision<OfficeCommand>) -> Result<(), BoxError> {
        d.issue(OfficeCommand::Close(Close { id: t.key.clone(), how: TicketEvent::Expired }));
        Ok(())
    }

    fn on_refused(
        &self,
        _: &mut Box,
        r: &Refused<OfficeCommand>,
        d: &mut Decision<OfficeCommand>,
    ) -> Result<(), BoxError> {
        if let OfficeCommand::Hold(_) = r.command {
            d.cancel("pay");
            d.issue(OfficeCommand::Close(Close {
                id: r.key.clone(),
                how: TicketEvent::Refused { reason: r.reason.clone() },
            }));
        }
        Ok(())
    }
}

async fn stores(schema: &str) -> PgStores {
    let config = PgConfig::from_url(&database_url()).unwrap().schema(schema).unwrap().pool_size(8);
    PgStores::connect_with(config).await.unwrap_or_else(|e| panic!("cannot connect to PostgreSQL: {e}"))
}

fn app(stores: PgStores) -> eventloom_core::app::AppBuilder {
    App::builder(stores).aggregate::<Ticket>().aggregate::<Hall>()
}

/// The saga's runner, in a process of its own (started by the parent test below).
#[tokio::test]
#[ignore = "started by saga::a_killed_saga_runner_issues_each_command_once"]
async fn child_box_office() {
    let Ok(schema) = std::env::var("CQRS_SAGA_SCHEMA") else { return };
    let options = ProcessOptions::new().tick(Duration::from_millis(20));
    let app = app(stores(&schema).await)
        .role(Role::Projector)
        .process_manager_with(BoxOffice, options)
        .start()
        .await
        .unwrap();
    // Runs until killed.
    app.stopped().await;
}

fn spawn_child(schema: &str) -> Child {
    let exe = std::env::current_exe().unwrap();
    Command::new(exe)
        .args(["--ignored", "--exact", "saga::child_box_office", "--nocapture"])
        .env("CQRS_SAGA_SCHEMA", schema)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Every ticket's and the hall's events, by stream id.
async fn streams(stores: &PgStores) -> BTreeMap<String, Vec<String>> {
    let mut all: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut after = Position::ZERO;
    loop {
        let batch = stores.events.read_all(after, 1000).await.unwrap();
        let Some(last) = batch.last() else { break };
        after = last.position;
        for e in &batch {
            all.entry(e.stream.to_string()).or_default().push(format!("{}:{}", e.event_type, e.payload));
        }
    }
    all
}

#[tokio::test]
async fn a_killed_saga_runner_issues_each_command_once() {
    let mut rng = TestRng::from_env("CQRS_SAGA_SEED");
    let mut next = move |n: u64| rng.below(n);
    let schema = fresh_schema();
    let pg = stores(&schema).await;
    let commands = app(pg.clone()).role(Role::Command).start().await.unwrap();
    let tickets = 30;
    let mut child = spawn_child(&schema);
    let mut kills = 0;
    for i in 0..tickets {
        commands.execute(Open { id: format!("t-{i:02}"), seats: 1 + next(4) }).await.unwrap();
        tokio::time::sleep(Duration::from_millis(next(40))).await;
        if i % 6 == 5 {
            child.kill().unwrap();
            child.wait().unwrap();
            kills += 1;
            tokio::time::sleep(Duration::from_millis(next(300))).await;
            child = spawn_child(&schema);
        }
    }
    // Every ticket closes within 30 s of the last kill.
    let deadline = Instant::now() + Duration::from_secs(30);
    let all = loop {
        let all = streams(&pg).await;
        let closed = (0..tickets)
            .filter(|i| all.get(&format!("ticket/t-{i:02}")).is_some_and(|events| events.len() >= 2))
            .count();
        let freeing = all
            .get("hall/main")
            .map_or(0, |h| h.iter().filter(|e| e.starts_with("Held")).count())
            .saturating_sub(all.values().flatten().filter(|e| e.starts_with("Granted")).count());
        let freed = all.get("hall/main").map_or(0, |h| h.iter().filter(|e| e.starts_with("Freed")).count());
        if closed == tickets && freed == freeing {
            break all;
        }
        assert!(Instant::now() < deadline, "after {kills} kills, {closed} of {tickets} tickets closed: {all:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    println!("{kills} kills; {tickets} tickets closed");
    let hall = all.get("hall/main").cloned().unwrap_or_default();
    for i in 0..tickets {
        let id = format!("t-{i:02}");
        let events = &all[&format!("ticket/{id}")];
        assert_eq!(events.len(), 2, "ticket {id} closed once: {events:?}");
        let held = hall.iter().filter(|e| e.starts_with("Held") && e.contains(&format!("\"{id}\""))).count();
        let freed = hall.iter().filter(|e| e.starts_with("Freed") && e.contains(&format!("\"{id}\""))).count();
        assert!(held <= 1 && freed <= held, "ticket {id}: held {held}, freed {freed} times");
        if events[1].starts_with("Expired") {
            assert_eq!(freed, held, "an expired ticket's seats are freed: {id}");
        }
        if events[1].starts_with("Granted") {
            assert_eq!((held, freed), (1, 0), "a granted ticket holds its seats: {id}");
        }
        if events[1].starts_with("Refused") {
            assert!(events[1].contains("full"), "only a full hall refuses: {id} {events:?}");
        }
    }
    // Nothing the saga issued ran twice: a hold or a free issued again would have been refused.
    for (stream, events) in all.iter().filter(|(s, _)| s.starts_with("eventloom.process/")) {
        for e in events {
            assert!(!e.contains("holds seats already") && !e.contains("holds no seats"), "{stream}: {e}");
        }
    }
    commands.shutdown().await.unwrap();
}
