// An aggregate for the command cases: `#[path = "../account.rs"] mod account;`.

use eventloom_core::prelude::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub enum AccountEvent {
    Opened,
}

#[derive(Debug, Default)]
pub struct Account;

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Event = AccountEvent;
    type Error = std::convert::Infallible;
    fn apply(&mut self, _: &AccountEvent) {}
}
