#[path = "../account.rs"]
mod account;

use account::Account;
use eventloom_core::prelude::*;

#[derive(Command)]
#[command(aggregate = Account)]
struct Open {
    id: String,
    owner: String,
}

fn main() {}
