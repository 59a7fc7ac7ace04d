#[path = "../account.rs"]
mod account;

use account::Account;
use eventloom_core::prelude::*;

#[derive(Command)]
#[command(aggregate = Account, id)]
struct Open {
    id: String,
}

fn main() {}
