#[path = "../account.rs"]
mod account;

use std::borrow::Cow;
use std::fmt;

use account::Account;
use eventloom_core::prelude::*;

#[derive(Command)]
#[command(aggregate = Account)]
struct ByString {
    #[command(id)]
    id: String,
}

#[derive(Command)]
#[command(aggregate = account::Account, name = "by-number")]
struct ByNumber {
    note: String,
    #[command(id)]
    number: u64,
}

struct AccountId(u32);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "account-{}", self.0)
    }
}

#[derive(Command)]
#[command(aggregate = Account)]
struct ByNewtype {
    #[command(id)]
    account: AccountId,
}

#[derive(Command)]
#[command(aggregate = Account)]
struct Tuple(u8, #[command(id)] Cow<'static, str>);

#[derive(Command)]
#[command(aggregate = Account)]
struct Generic<T: Send + Sync + 'static>
where
    T: fmt::Display,
{
    #[command(id)]
    id: T,
}

fn main() {
    assert!(matches!(ByString { id: "a".into() }.aggregate_id(), Cow::Borrowed("a")));
    let by_number = ByNumber { note: String::new(), number: 9 };
    assert_eq!(by_number.aggregate_id(), "9");
    assert_eq!(ByNumber::NAME, "by-number");
    assert_eq!(ByNewtype { account: AccountId(3) }.aggregate_id(), "account-3");
    assert!(matches!(Tuple(1, Cow::Borrowed("t")).aggregate_id(), Cow::Borrowed("t")));
    assert_eq!(Tuple::NAME, "Tuple");
    assert_eq!(Generic { id: 5_i32 }.aggregate_id(), "5");
}
