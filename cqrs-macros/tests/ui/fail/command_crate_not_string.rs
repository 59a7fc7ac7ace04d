#[path = "../account.rs"]
mod account;

use account::Account;
use cqrs_core::prelude::*;

#[derive(Command)]
#[command(aggregate = Account, crate = cqrs_core)]
struct Open {
    #[command(id)]
    id: String,
}

fn main() {}
