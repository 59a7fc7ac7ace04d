#[path = "../account.rs"]
mod account;

use account::Account;
use eventloom_core::prelude::*;

#[derive(Command)]
#[command(aggregate = Account, name = "open")]
#[command(name = "open-account")]
struct Open {
    #[command(id)]
    id: String,
}

fn main() {}
