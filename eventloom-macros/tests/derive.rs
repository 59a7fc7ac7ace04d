//! Run-time behaviour of the code the derives generate.

// A test that unwraps fails loudly with the error, which is what a test should do.
#![allow(clippy::unwrap_used)]

use std::borrow::Cow;
use std::fmt;

use eventloom_core::model::DecodeError;
use eventloom_core::model::EventType;
use eventloom_core::prelude::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
enum AccountEvent {
    Opened {
        owner: String,
        #[serde(default)]
        nickname: Option<String>,
    },
    #[event(name = "MoneyDeposited", version = 2)]
    Deposited(u64),
    #[event(version = 3)]
    Moved(String, u32),
    #[serde(rename = "renamed_in_serde")]
    Tagged(Label),
    Closed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Label {
    text: String,
}

#[derive(Debug, Default)]
struct Account;

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Event = AccountEvent;
    type Error = std::convert::Infallible;
    fn apply(&mut self, _: &AccountEvent) {}
}

#[test]
fn enum_types_are_in_declaration_order() {
    assert_eq!(
        AccountEvent::TYPES,
        [
            EventType::new("Opened", 1),
            EventType::new("MoneyDeposited", 2),
            EventType::new("Moved", 3),
            EventType::new("Tagged", 1),
            EventType::new("Closed", 1),
        ]
    );
    assert!(AccountEvent::knows("MoneyDeposited"));
    assert!(!AccountEvent::knows("Deposited"));
}

#[test]
fn enum_round_trips_every_variant_shape() {
    let cases = [
        (
            AccountEvent::Opened { owner: "ada".into(), nickname: None },
            EventType::new("Opened", 1),
            r#"{"owner":"ada","nickname":null}"#,
        ),
        (AccountEvent::Deposited(5), EventType::new("MoneyDeposited", 2), "5"),
        (AccountEvent::Moved("x\"}".into(), 7), EventType::new("Moved", 3), r#"["x\"}",7]"#),
        (AccountEvent::Tagged(Label { text: "t".into() }), EventType::new("Tagged", 1), r#"{"text":"t"}"#),
        (AccountEvent::Closed, EventType::new("Closed", 1), "null"),
    ];
    for (event, ty, payload) in cases {
        assert_eq!(event.event_type(), ty);
        assert_eq!(event.encode().unwrap(), payload);
        assert_eq!(AccountEvent::decode(ty.name, payload).unwrap(), event);
    }
}

#[test]
fn enum_decodes_with_serde_defaults() {
    let event = AccountEvent::decode("Opened", r#"{"owner":"ada"}"#).unwrap();
    assert_eq!(event, AccountEvent::Opened { owner: "ada".into(), nickname: None });
}

#[test]
fn enum_refuses_unknown_type_names() {
    // The Rust name of a renamed variant is not its type name, nor is serde's name.
    for name in ["Deposited", "renamed_in_serde", "", "opened"] {
        assert!(matches!(AccountEvent::decode(name, "5"), Err(DecodeError::UnknownType)), "{name}");
    }
}

#[test]
fn enum_refuses_malformed_payloads() {
    for (name, payload) in [
        ("MoneyDeposited", r#""five""#),
        ("MoneyDeposited", "5 6"),
        ("Opened", r#"{"owner":1}"#),
        ("Moved", r#"["x"]"#),
        ("Closed", "nul"),
        ("Tagged", "not json"),
    ] {
        let result = AccountEvent::decode(name, payload);
        assert!(matches!(result, Err(DecodeError::Payload(_))), "{name} {payload}: {result:?}");
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "user.renamed", version = 4)]
struct UserRenamed {
    name: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
struct Pinged;

#[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
struct Scored(u32, String);

#[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
struct Measured {
    celsius: Option<f64>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
enum Gauge {
    Read { celsius: f64 },
}

#[test]
fn derived_events_refuse_non_finite_floats() {
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(Measured { celsius: Some(bad) }.encode().is_err(), "struct, inside an Option");
        assert!(Gauge::Read { celsius: bad }.encode().is_err(), "enum variant");
    }
    assert_eq!(Measured { celsius: Some(1.5) }.encode().unwrap(), r#"{"celsius":1.5}"#);
    assert_eq!(Gauge::Read { celsius: -2.0 }.encode().unwrap(), r#"{"celsius":-2.0}"#);
}

#[test]
fn struct_events() {
    assert_eq!(UserRenamed::TYPES, [EventType::new("user.renamed", 4)]);
    let event = UserRenamed { name: "ada".into() };
    assert_eq!(event.event_type(), EventType::new("user.renamed", 4));
    assert_eq!(event.encode().unwrap(), r#"{"name":"ada"}"#);
    assert_eq!(UserRenamed::decode("user.renamed", r#"{"name":"ada"}"#).unwrap(), event);
    assert!(matches!(UserRenamed::decode("UserRenamed", r#"{"name":"ada"}"#), Err(DecodeError::UnknownType)));
    assert!(matches!(UserRenamed::decode("user.renamed", r#"{"name":1}"#), Err(DecodeError::Payload(_))));

    assert_eq!(Pinged.event_type(), EventType::new("Pinged", 1));
    assert_eq!(Pinged.encode().unwrap(), "null");
    assert_eq!(Pinged::decode("Pinged", "null").unwrap(), Pinged);

    let scored = Scored(3, "x".into());
    assert_eq!(scored.event_type(), EventType::new("Scored", 1));
    assert_eq!(scored.encode().unwrap(), r#"[3,"x"]"#);
    assert_eq!(Scored::decode("Scored", r#"[3,"x"]"#).unwrap(), scored);
    assert!(matches!(Scored::decode("Scored", "[3]"), Err(DecodeError::Payload(_))));
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
enum Wrapped<T> {
    Value(T),
    #[event(name = "Nothing")]
    Empty,
}

#[test]
fn generic_events() {
    let event = Wrapped::Value(vec![1_u8, 2]);
    assert_eq!(event.event_type(), EventType::new("Value", 1));
    assert_eq!(event.encode().unwrap(), "[1,2]");
    assert_eq!(Wrapped::<Vec<u8>>::decode("Value", "[1,2]").unwrap(), event);
    assert_eq!(Wrapped::<Vec<u8>>::decode("Nothing", "null").unwrap(), Wrapped::Empty);
}

#[derive(Debug, Command)]
#[command(aggregate = Account)]
struct OpenAccount {
    owner: String,
    #[command(id)]
    account: String,
}

#[derive(Debug, Command)]
#[command(aggregate = Account, name = "account.close")]
struct CloseAccount {
    #[command(id)]
    number: u64,
}

#[derive(Debug, PartialEq)]
struct AccountNumber(u32);

impl fmt::Display for AccountNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "acc-{:04}", self.0)
    }
}

#[derive(Debug, Command)]
#[command(aggregate = Account)]
struct Freeze(String, #[command(id)] AccountNumber);

#[derive(Debug, Command)]
#[command(aggregate = Account)]
struct Audit(#[command(id)] &'static str);

#[test]
fn string_ids_are_borrowed() {
    let cmd = OpenAccount { owner: "ada".into(), account: "acc-1".into() };
    assert!(matches!(cmd.aggregate_id(), Cow::Borrowed("acc-1")));
    assert_eq!(cmd.owner, "ada");
    assert!(matches!(Audit("acc-2").aggregate_id(), Cow::Borrowed("acc-2")));
}

#[test]
fn other_ids_are_formatted() {
    let id = CloseAccount { number: 42 }.aggregate_id();
    assert!(matches!(id, Cow::Owned(_)));
    assert_eq!(id, "42");
    let freeze = Freeze("why".into(), AccountNumber(7));
    assert_eq!(freeze.aggregate_id(), "acc-0007");
    assert_eq!(freeze.0, "why");
}

#[test]
fn command_names() {
    assert_eq!(OpenAccount::NAME, "OpenAccount");
    assert_eq!(CloseAccount::NAME, "account.close");
    assert_eq!(Freeze::NAME, "Freeze");
}

fn aggregate_type<C: Command>() -> &'static str {
    <C::Aggregate as Aggregate>::TYPE
}

#[test]
fn command_aggregate() {
    assert_eq!(aggregate_type::<OpenAccount>(), "account");
    assert_eq!(aggregate_type::<Freeze>(), "account");
}
