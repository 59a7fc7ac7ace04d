#[path = "../account.rs"]
mod account;

use account::Account;
use eventloom_core::prelude::*;

#[derive(Command)]
#[command(aggregate = Account)]
struct Transfer {
    #[command(id)]
    from: String,
    #[command(id)]
    to: String,
}

fn main() {
    // The stub impl keeps this line from adding an error of its own.
    let _ = Transfer { from: "a".into(), to: "b".into() }.aggregate_id();
}
