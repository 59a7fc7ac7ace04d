//! The domain every scenario runs: bank accounts that take deposits (the same as the memory
//! benchmark in `eventloom-core/benches/engine.rs`).

use eventloom_core::model::{IdGenerator, RandomIds};
use eventloom_core::model::{NewEvent, Timestamp};
use eventloom_core::prelude::*;

/// How many accounts the command scenarios cycle through.
pub const AGGREGATES: usize = 1_000;

/// The one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub enum AccountEvent {
    /// Money came in.
    Deposited {
        /// How much.
        amount: u64,
    },
}

/// An account: its balance, and how many events were folded into this value since it was
/// loaded (not part of a snapshot), which tells whether a load started from a snapshot.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Account {
    /// The sum of all deposits.
    pub balance: u64,
    /// Events folded since this value was made (a snapshot restores it as 0).
    #[serde(skip)]
    pub folded: u64,
}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Event = AccountEvent;
    type Error = std::convert::Infallible;

    fn apply(&mut self, AccountEvent::Deposited { amount }: &AccountEvent) {
        self.balance += amount;
        self.folded += 1;
    }
}

/// Deposits `amount` into account `id`.
#[derive(Debug, Serialize, Command)]
#[command(aggregate = Account)]
pub struct Deposit {
    /// The account.
    #[command(id)]
    pub id: String,
    /// How much.
    pub amount: u64,
}

impl Handle<Deposit> for Account {
    fn handle(&self, cmd: &Deposit) -> Result<Vec<AccountEvent>, std::convert::Infallible> {
        Ok(vec![AccountEvent::Deposited { amount: cmd.amount }])
    }
}

/// The account ids `acc-0` .. `acc-999`.
pub fn account_ids() -> std::sync::Arc<[String]> {
    (0..AGGREGATES).map(|i| format!("acc-{i}")).collect()
}

/// Makes deposit events and their metadata the way the engine does (a fresh event id and the
/// current time), so that every system stores the same sizes.
#[derive(Debug, Default)]
pub struct EventMaker {
    ids: RandomIds,
}

impl EventMaker {
    /// The metadata of one new event.
    pub fn metadata(&self) -> Metadata {
        Metadata::new(self.ids.next_id(), Timestamp::now())
    }

    /// The metadata of one new event as the JSON text the engine stores.
    pub fn metadata_json(&self) -> String {
        serde_json::to_string(&self.metadata()).expect("metadata always serializes")
    }

    /// One deposit of 1, ready to append.
    pub fn deposit(&self) -> NewEvent {
        NewEvent::encode(&AccountEvent::Deposited { amount: 1 }, self.metadata()).expect("a deposit always encodes")
    }
}

/// The payload JSON of a deposit of 1, as the engine stores it.
pub fn deposit_payload() -> String {
    AccountEvent::Deposited { amount: 1 }.encode().expect("a deposit always encodes")
}
