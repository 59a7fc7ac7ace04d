//! A bank account: the domain the tests drive.

use eventloom_core::prelude::*;
use eventloom_core::{BoxError, Projection};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub enum AccountEvent {
    Opened {
        owner: String,
    },
    #[event(name = "MoneyDeposited", version = 2)]
    Deposited {
        amount: u64,
    },
    Withdrawn {
        amount: u64,
    },
    Closed,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Account {
    pub open: bool,
    pub closed: bool,
    pub owner: String,
    pub balance: u64,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum AccountError {
    #[error("the account is not open")]
    NotOpen,
    #[error("the account is already open")]
    AlreadyOpen,
    #[error("insufficient funds: balance {balance}, requested {requested}")]
    Insufficient { balance: u64, requested: u64 },
}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Event = AccountEvent;
    type Error = AccountError;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => {
                self.open = true;
                self.owner.clone_from(owner);
            }
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrawn { amount } => self.balance -= amount,
            AccountEvent::Closed => self.closed = true,
        }
    }
}

impl Account {
    fn ensure_open(&self) -> Result<(), AccountError> {
        if self.open && !self.closed { Ok(()) } else { Err(AccountError::NotOpen) }
    }
}

#[derive(Debug, Clone, Serialize, Command)]
#[command(aggregate = Account)]
pub struct Open {
    #[command(id)]
    pub id: String,
    pub owner: String,
}

#[derive(Debug, Clone, Serialize, Command)]
#[command(aggregate = Account)]
pub struct Deposit {
    #[command(id)]
    pub id: String,
    pub amount: u64,
}

#[derive(Debug, Clone, Serialize, Command)]
#[command(aggregate = Account)]
pub struct Withdraw {
    #[command(id)]
    pub id: String,
    pub amount: u64,
}

/// Decides nothing: a no-op.
#[derive(Debug, Clone, Serialize, Command)]
#[command(aggregate = Account)]
pub struct Touch {
    #[command(id)]
    pub id: String,
}

impl Handle<Open> for Account {
    fn handle(&self, cmd: &Open) -> Result<Vec<AccountEvent>, AccountError> {
        if self.open {
            return Err(AccountError::AlreadyOpen);
        }
        Ok(vec![AccountEvent::Opened { owner: cmd.owner.clone() }])
    }
}

impl Handle<Deposit> for Account {
    fn handle(&self, cmd: &Deposit) -> Result<Vec<AccountEvent>, AccountError> {
        self.ensure_open()?;
        Ok(vec![AccountEvent::Deposited { amount: cmd.amount }])
    }
}

impl Handle<Withdraw> for Account {
    fn handle(&self, cmd: &Withdraw) -> Result<Vec<AccountEvent>, AccountError> {
        self.ensure_open()?;
        if cmd.amount > self.balance {
            return Err(AccountError::Insufficient { balance: self.balance, requested: cmd.amount });
        }
        Ok(vec![AccountEvent::Withdrawn { amount: cmd.amount }])
    }
}

impl Handle<Touch> for Account {
    fn handle(&self, _: &Touch) -> Result<Vec<AccountEvent>, AccountError> {
        Ok(Vec::new())
    }
}

/// One view per account, counting the events applied to it: `applied` equals `version` exactly
/// when no event was applied twice or skipped.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Balance {
    pub owner: String,
    pub balance: u64,
    pub applied: u64,
    pub version: u64,
}

pub struct Balances;

impl Projection for Balances {
    const NAME: &'static str = "balances";
    type Events = Account;
    type View = Balance;

    fn apply(&self, view: &mut Option<Balance>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        let view = view.get_or_insert_with(Balance::default);
        match &e.event {
            AccountEvent::Opened { owner } => view.owner.clone_from(owner),
            AccountEvent::Deposited { amount } => view.balance += amount,
            AccountEvent::Withdrawn { amount } => {
                view.balance = view.balance.checked_sub(*amount).ok_or("balance below zero")?;
            }
            AccountEvent::Closed => {}
        }
        view.applied += 1;
        view.version = e.version;
        Ok(())
    }
}

pub fn open(id: &str) -> Open {
    Open { id: id.into(), owner: format!("owner of {id}") }
}

pub fn deposit(id: &str, amount: u64) -> Deposit {
    Deposit { id: id.into(), amount }
}
