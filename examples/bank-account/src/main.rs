//! A bank account on the in-memory default: commands, events, a projection and a query, wired
//! by one `App`.
//!
//! Run with `cargo run -p bank-account`.

use std::time::Duration;

use eventloom::prelude::*;
use eventloom::{BoxError, CommandError, ExecuteOptions, Projection};

// ---- The write side: events, the aggregate, commands and their handlers. ----

/// Everything that can happen to an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub enum AccountEvent {
    /// The account was opened.
    #[event(name = "AccountOpened")]
    Opened {
        /// Who owns it.
        owner: String,
    },
    /// Money came in.
    #[event(name = "MoneyDeposited")]
    Deposited {
        /// How much, in cents.
        amount: u64,
    },
    /// Money went out.
    #[event(name = "MoneyWithdrawn")]
    Withdrawn {
        /// How much, in cents.
        amount: u64,
    },
}

/// The account as the write side needs it: only what decisions depend on.
#[derive(Debug, Default)]
pub struct Account {
    open: bool,
    balance: u64,
}

/// Why an account refuses a command.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum AccountError {
    /// Opening an account twice.
    #[error("the account is already open")]
    AlreadyOpen,
    /// Using an account that was never opened.
    #[error("the account is not open")]
    NotOpen,
    /// Withdrawing more than the balance.
    #[error("insufficient funds: balance {balance}, requested {requested}")]
    InsufficientFunds {
        /// The balance.
        balance: u64,
        /// The amount asked for.
        requested: u64,
    },
}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Event = AccountEvent;
    type Error = AccountError;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { .. } => self.open = true,
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrawn { amount } => self.balance -= amount,
        }
    }
}

/// Opens an account.
#[derive(Debug, Serialize, Command)]
#[command(aggregate = Account)]
pub struct OpenAccount {
    /// The account's id.
    #[command(id)]
    pub account_id: String,
    /// Its owner.
    pub owner: String,
}

/// Puts money in.
#[derive(Debug, Serialize, Command)]
#[command(aggregate = Account)]
pub struct DepositMoney {
    /// The account's id.
    #[command(id)]
    pub account_id: String,
    /// How much, in cents.
    pub amount: u64,
}

/// Takes money out.
#[derive(Debug, Serialize, Command)]
#[command(aggregate = Account)]
pub struct WithdrawMoney {
    /// The account's id.
    #[command(id)]
    pub account_id: String,
    /// How much, in cents.
    pub amount: u64,
}

impl Handle<OpenAccount> for Account {
    fn handle(&self, cmd: &OpenAccount) -> Result<Vec<AccountEvent>, AccountError> {
        if self.open {
            return Err(AccountError::AlreadyOpen);
        }
        Ok(vec![AccountEvent::Opened { owner: cmd.owner.clone() }])
    }
}

impl Handle<DepositMoney> for Account {
    fn handle(&self, cmd: &DepositMoney) -> Result<Vec<AccountEvent>, AccountError> {
        if !self.open {
            return Err(AccountError::NotOpen);
        }
        Ok(vec![AccountEvent::Deposited { amount: cmd.amount }])
    }
}

impl Handle<WithdrawMoney> for Account {
    fn handle(&self, cmd: &WithdrawMoney) -> Result<Vec<AccountEvent>, AccountError> {
        if !self.open {
            return Err(AccountError::NotOpen);
        }
        if cmd.amount > self.balance {
            return Err(AccountError::InsufficientFunds { balance: self.balance, requested: cmd.amount });
        }
        Ok(vec![AccountEvent::Withdrawn { amount: cmd.amount }])
    }
}

// ---- The read side: a projection into a view, and a query over it. ----

/// What the read side shows of an account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountSummary {
    /// The owner.
    pub owner: String,
    /// The balance, in cents.
    pub balance: u64,
    /// Every movement, newest last.
    pub history: Vec<String>,
}

/// Folds account events into [`AccountSummary`] views.
pub struct AccountSummaries;

impl Projection for AccountSummaries {
    const NAME: &'static str = "account_summaries";
    type Events = Account;
    type View = AccountSummary;

    fn apply(&self, view: &mut Option<AccountSummary>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        let summary = view.get_or_insert_with(AccountSummary::default);
        match &e.event {
            AccountEvent::Opened { owner } => {
                summary.owner.clone_from(owner);
                summary.history.push("opened".into());
            }
            AccountEvent::Deposited { amount } => {
                summary.balance += amount;
                summary.history.push(format!("+{amount}"));
            }
            AccountEvent::Withdrawn { amount } => {
                summary.balance -= amount;
                summary.history.push(format!("-{amount}"));
            }
        }
        Ok(())
    }
}

/// "What does this account look like, including everything up to `after`?" A query is a plain
/// function over the projection's typed reader; `after` takes a command's outcome (read your
/// writes).
pub async fn get_account(
    accounts: &Reader<AccountSummaries>,
    account_id: &str,
    after: impl Into<Position>,
) -> eventloom::Result<Option<AccountSummary>> {
    accounts.wait_for(after, Duration::from_secs(5)).await?;
    accounts.get(account_id).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The in-memory default: nothing to install. The projector runs on a task of the App's.
    let stores = MemoryStores::new();
    let app = App::builder(stores.clone()).aggregate::<Account>().projection(AccountSummaries).start().await?;

    let id = "acc-1".to_owned();
    let done = app.execute(OpenAccount { account_id: id.clone(), owner: "Ada".into() }).await?;
    println!("opened {} at version {} (position {})", done.stream, done.version, done.position);
    let done = app.execute(DepositMoney { account_id: id.clone(), amount: 10_000 }).await?;
    println!("deposited 100.00: version {}", done.version);
    let done = app.execute(WithdrawMoney { account_id: id.clone(), amount: 3_000 }).await?;
    println!("withdrew 30.00: version {}", done.version);

    match app.execute(WithdrawMoney { account_id: id.clone(), amount: 50_000 }).await {
        Err(CommandError::Rejected(reason)) => println!("withdrawing 500.00 was refused: {reason}"),
        other => println!("unexpected: {other:?}"),
    }

    // Sent twice with the same id (a client retrying after a timeout): executed once.
    let key = ExecuteOptions::default().command_id("deposit-42");
    let first = app.execute_with(DepositMoney { account_id: id.clone(), amount: 500 }, key.clone()).await?;
    let again = app.execute_with(DepositMoney { account_id: id.clone(), amount: 500 }, key).await?;
    println!(
        "deposited 5.00 twice with one command id: versions {} and {} (executed once)",
        first.version, again.version
    );

    // Read your writes: the query waits until the view includes the last command.
    let accounts = app.reader::<AccountSummaries>()?;
    match get_account(&accounts, &id, &again).await? {
        Some(s) => println!(
            "query: {} owns {} with {}.{:02}; history {:?}",
            s.owner,
            id,
            s.balance / 100,
            s.balance % 100,
            s.history
        ),
        None => println!("query: no account {id}"),
    }

    app.shutdown().await?;
    println!("{} events stored; projector stopped", stores.events.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventloom::testing::{AggregateTest, ProjectionTest};

    #[test]
    fn withdrawing_more_than_the_balance_is_refused() {
        AggregateTest::<Account>::given([
            AccountEvent::Opened { owner: "Ada".into() },
            AccountEvent::Deposited { amount: 10 },
        ])
        .when(WithdrawMoney { account_id: "a".into(), amount: 11 })
        .then_expect_error(AccountError::InsufficientFunds { balance: 10, requested: 11 });
    }

    #[tokio::test]
    async fn a_query_reads_the_app_s_writes() {
        let app = App::builder(MemoryStores::new())
            .aggregate::<Account>()
            .projection(AccountSummaries)
            .start()
            .await
            .unwrap();
        app.execute(OpenAccount { account_id: "a".into(), owner: "Ada".into() }).await.unwrap();
        let done = app.execute(DepositMoney { account_id: "a".into(), amount: 10 }).await.unwrap();
        let accounts = app.reader::<AccountSummaries>().unwrap();
        let summary = get_account(&accounts, "a", &done).await.unwrap();
        assert_eq!(summary.map(|s| s.balance), Some(10));
        app.shutdown().await.unwrap();
    }

    #[test]
    fn the_summary_follows_the_movements() {
        ProjectionTest::new(AccountSummaries)
            .given("a", [AccountEvent::Opened { owner: "Ada".into() }, AccountEvent::Deposited { amount: 10 }])
            .then_view(
                "a",
                Some(&AccountSummary {
                    owner: "Ada".into(),
                    balance: 10,
                    history: vec!["opened".into(), "+10".into()],
                }),
            );
    }
}
