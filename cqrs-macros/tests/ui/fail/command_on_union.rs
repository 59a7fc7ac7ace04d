#[path = "../account.rs"]
mod account;

use account::Account;
use cqrs_core::prelude::*;

#[derive(Command)]
#[command(aggregate = Account)]
union Open {
    id: u64,
}

fn main() {}
