#[path = "../account.rs"]
mod account;

use account::Account;
use eventloom_core::prelude::*;

struct AccountId(u64);

#[derive(Command)]
#[command(aggregate = Account)]
struct Open {
    #[command(id)]
    id: AccountId,
}

fn main() {}
