#[path = "../account.rs"]
mod account;

use account::Account;
use cqrs_core::prelude::*;

#[derive(Command)]
#[command(aggregate = Account)]
struct Open;

fn main() {}
