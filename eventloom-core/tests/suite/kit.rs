use eventloom_core::testing::{AggregateTest, ProjectionTest};

use crate::domain::*;

#[test]
fn given_when_then_events() {
    AggregateTest::<Account>::given([AccountEvent::Opened { owner: "ada".into() }])
        .when(deposit("a", 5))
        .then_expect_events([AccountEvent::Deposited { amount: 5 }]);
}

#[test]
fn given_when_then_error() {
    AggregateTest::<Account>::given([
        AccountEvent::Opened { owner: "ada".into() },
        AccountEvent::Deposited { amount: 5 },
    ])
    .when(Withdraw { id: "a".into(), amount: 6 })
    .then_expect_error(AccountError::Insufficient { balance: 5, requested: 6 });
    AggregateTest::<Account>::given_no_events()
        .when(deposit("a", 1))
        .then_expect_error_message("the account is not open");
}

#[test]
#[should_panic(expected = "the command produced other events than expected")]
fn given_when_then_fails_on_other_events() {
    AggregateTest::<Account>::given([AccountEvent::Opened { owner: "ada".into() }])
        .when(deposit("a", 5))
        .then_expect_events([AccountEvent::Deposited { amount: 6 }]);
}

#[test]
#[should_panic(expected = "but the command was rejected")]
fn given_when_then_fails_on_an_unexpected_rejection() {
    AggregateTest::<Account>::given_no_events().when(deposit("a", 5)).then_expect_events([]);
}

#[test]
fn projection_given_then_view() {
    ProjectionTest::new(Balances)
        .given("a", [AccountEvent::Opened { owner: "ada".into() }, AccountEvent::Deposited { amount: 7 }])
        .given("b", [AccountEvent::Opened { owner: "bob".into() }])
        .given("a", [AccountEvent::Withdrawn { amount: 2 }])
        .then_view("a", Some(&Balance { owner: "ada".into(), balance: 5, applied: 3, version: 3 }))
        .then_view("b", Some(&Balance { owner: "bob".into(), balance: 0, applied: 1, version: 1 }))
        .then_view("c", None);
}

#[test]
#[should_panic(expected = "view \"a\"")]
fn projection_test_fails_on_another_view() {
    ProjectionTest::new(Balances).given("a", [AccountEvent::Opened { owner: "ada".into() }]).then_view("a", None);
}
