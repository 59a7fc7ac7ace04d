//! A small account domain for engine-level tests.

use eventloom_core::prelude::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub enum AccountEvent {
    Opened,
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Account {
    pub open: bool,
    pub balance: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("not open")]
    NotOpen,
    #[error("insufficient funds: balance {balance}, requested {requested}")]
    Insufficient { balance: u64, requested: u64 },
}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Event = AccountEvent;
    type Error = AccountError;
    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened => self.open = true,
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrawn { amount } => self.balance -= amount,
        }
    }
}

#[derive(Debug, Serialize, Command)]
#[command(aggregate = Account)]
pub struct Open {
    #[command(id)]
    pub id: String,
}

#[derive(Debug, Serialize, Command)]
#[command(aggregate = Account)]
pub struct Deposit {
    #[command(id)]
    pub id: String,
    pub amount: u64,
}

impl Handle<Open> for Account {
    fn handle(&self, _: &Open) -> Result<Vec<AccountEvent>, AccountError> {
        Ok(if self.open { vec![] } else { vec![AccountEvent::Opened] })
    }
}

impl Handle<Deposit> for Account {
    fn handle(&self, cmd: &Deposit) -> Result<Vec<AccountEvent>, AccountError> {
        if !self.open {
            return Err(AccountError::NotOpen);
        }
        Ok(vec![AccountEvent::Deposited { amount: cmd.amount }])
    }
}

#[derive(Debug, Serialize, Command)]
#[command(aggregate = Account)]
pub struct Withdraw {
    #[command(id)]
    pub id: String,
    pub amount: u64,
}

impl Handle<Withdraw> for Account {
    fn handle(&self, cmd: &Withdraw) -> Result<Vec<AccountEvent>, AccountError> {
        if cmd.amount > self.balance {
            return Err(AccountError::Insufficient { balance: self.balance, requested: cmd.amount });
        }
        Ok(vec![AccountEvent::Withdrawn { amount: cmd.amount }])
    }
}
