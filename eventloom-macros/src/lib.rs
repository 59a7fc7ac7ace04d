//! Derive macros for [`eventloom-core`](https://docs.rs/eventloom-core): `#[derive(Command)]`,
//! `#[derive(Event)]` and `#[derive(EventSet)]`.
//!
//! Use them through `eventloom-core`, which re-exports them behind its default `derive` feature:
//! `use eventloom_core::prelude::*;`. The generated code names `::eventloom_core`; a crate that re-exports
//! `eventloom-core` under another path says so with `#[command(crate = "...")]`,
//! `#[event(crate = "...")]` or `#[events(crate = "...")]`.

mod ast;
mod attr;
mod command;
mod ctxt;
mod dummy;
mod event;
mod event_set;
mod fallback;
mod symbol;
mod valid;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `eventloom_core::Command` for a struct.
///
/// # Attributes
///
/// On the struct:
///
/// - `#[command(aggregate = Path)]` (required): the aggregate this command targets, which
///   becomes `Command::Aggregate`.
/// - `#[command(name = "...")]`: `Command::NAME`, a stable name for logs and traces. Defaults
///   to the struct's name; must not be empty.
/// - `#[command(crate = "path")]`: the path to `eventloom_core` in the generated code, for crates
///   that re-export it. Defaults to `::eventloom_core`.
///
/// On exactly one field, named or positional:
///
/// - `#[command(id)]`: the field that holds the id of the aggregate instance, returned by
///   `aggregate_id()`. An id that is `AsRef<str>` (`String`, `&'static str`, ...) is borrowed;
///   any other id is formatted with `Display` (`u64`, a UUID, your own newtype).
///
/// # Examples
///
/// ```
/// use std::borrow::Cow;
/// use eventloom_core::prelude::*;
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
/// # enum AccountEvent { Opened }
/// # #[derive(Debug, Default)]
/// # struct Account;
/// # impl Aggregate for Account {
/// #     const TYPE: &'static str = "account";
/// #     type Event = AccountEvent;
/// #     type Error = std::convert::Infallible;
/// #     fn apply(&mut self, _: &AccountEvent) {}
/// # }
///
/// #[derive(Debug, Command)]
/// #[command(aggregate = Account)]
/// struct OpenAccount {
///     #[command(id)]
///     account: String,
///     owner: String,
/// }
///
/// #[derive(Debug, Command)]
/// #[command(aggregate = Account, name = "account.close")]
/// struct CloseAccount(#[command(id)] u64);
///
/// let open = OpenAccount { account: "acc-1".into(), owner: "ada".into() };
/// assert_eq!(open.aggregate_id(), Cow::Borrowed("acc-1"));
/// assert_eq!(OpenAccount::NAME, "OpenAccount");
///
/// assert_eq!(CloseAccount(7).aggregate_id(), "7");
/// assert_eq!(CloseAccount::NAME, "account.close");
/// ```
///
/// A crate that re-exports `eventloom-core` names the path to it:
///
/// ```
/// # use eventloom_core::prelude::*;
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
/// # enum AccountEvent { Opened }
/// # #[derive(Debug, Default)]
/// # struct Account;
/// # impl Aggregate for Account {
/// #     const TYPE: &'static str = "account";
/// #     type Event = AccountEvent;
/// #     type Error = std::convert::Infallible;
/// #     fn apply(&mut self, _: &AccountEvent) {}
/// # }
/// mod framework {
///     pub use eventloom_core as cqrs;
/// }
///
/// #[derive(Debug, Command)]
/// #[command(aggregate = Account, crate = "framework::cqrs")]
/// struct OpenAccount {
///     #[command(id)]
///     account: String,
/// }
/// # assert_eq!(OpenAccount { account: "a".into() }.aggregate_id(), "a");
/// ```
#[proc_macro_derive(Command, attributes(command))]
pub fn derive_command(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    command::derive(&input).into()
}

/// Derives `eventloom_core::Event` for an enum or a struct that also derives serde's `Serialize`
/// and `Deserialize`.
///
/// Each variant of an enum is one event type; a struct is one event type. A stored event is
/// its type name, its schema version and its payload: the variant's fields as JSON (`null` for
/// a unit variant), or the struct as JSON.
///
/// # Attributes
///
/// On each variant of an enum, or on a struct:
///
/// - `#[event(name = "...")]`: the stored type name. Defaults to the variant's or the struct's
///   name. Must be a non-empty string literal, unique within the enum. Keep it once events are
///   stored: it, not the Rust name, identifies them.
/// - `#[event(version = N)]`: the schema version written with new events of this type, an
///   integer from 1 (the default) that fits a `u32`. Bump it when the payload's shape changes.
///
/// On the enum or the struct:
///
/// - `#[event(crate = "path")]`: the path to `eventloom_core` in the generated code, for crates that
///   re-export it. Defaults to `::eventloom_core`.
///
/// An event enum keeps serde's default, externally tagged representation: `#[serde(tag)]`,
/// `#[serde(content)]` and `#[serde(untagged)]` are refused, on the enum or a variant, and so
/// are `#[serde(skip)]`, `#[serde(skip_serializing)]` and `#[serde(skip_deserializing)]` on a
/// variant (decoding finds a variant by its position). Renaming variants and fields with serde
/// is fine: the stored type name comes from `#[event(name)]`, never from serde.
///
/// Generic events are supported: the impl requires `Self: Serialize + DeserializeOwned`.
///
/// # Examples
///
/// ```
/// use eventloom_core::prelude::*;
/// use eventloom_core::model::DecodeError;
/// use eventloom_core::model::EventType;
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
/// enum AccountEvent {
///     Opened { owner: String },
///     #[event(name = "MoneyDeposited", version = 2)]
///     Deposited(u64),
///     Closed,
/// }
///
/// assert_eq!(
///     AccountEvent::TYPES,
///     [
///         EventType::new("Opened", 1),
///         EventType::new("MoneyDeposited", 2),
///         EventType::new("Closed", 1),
///     ]
/// );
///
/// let deposited = AccountEvent::Deposited(5);
/// assert_eq!(deposited.event_type(), EventType::new("MoneyDeposited", 2));
/// assert_eq!(deposited.encode().unwrap(), "5");
/// assert_eq!(AccountEvent::decode("MoneyDeposited", "5").unwrap(), deposited);
/// assert!(matches!(AccountEvent::decode("Deposited", "5"), Err(DecodeError::UnknownType)));
/// ```
///
/// A struct is a single event type:
///
/// ```
/// use eventloom_core::prelude::*;
/// use eventloom_core::model::EventType;
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
/// #[event(name = "user.renamed", version = 3)]
/// struct UserRenamed {
///     name: String,
/// }
///
/// let event = UserRenamed { name: "ada".into() };
/// assert_eq!(event.event_type(), EventType::new("user.renamed", 3));
/// assert_eq!(event.encode().unwrap(), r#"{"name":"ada"}"#);
/// assert_eq!(UserRenamed::decode("user.renamed", r#"{"name":"ada"}"#).unwrap(), event);
/// ```
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    event::derive(&input).into()
}

/// Derives `eventloom_core::EventSet` for an enum whose variants each wrap one aggregate's event
/// type: what a projection or an event handler reading several aggregates names as its
/// `type Events`.
///
/// Events are routed by (category, type name): each variant reads the streams of its
/// aggregate's `TYPE`, so two aggregates may both have an event type called `Created`. For each
/// variant the derive also writes `From<TheEvent> for TheEnum`.
///
/// # Attributes
///
/// On each variant, which holds exactly one field (positional or named) of the aggregate's
/// event type:
///
/// - `#[events(aggregate = Path)]` (required): the aggregate whose events the variant holds.
///   Each aggregate is named once.
///
/// On the enum:
///
/// - `#[events(crate = "path")]`: the path to `eventloom_core` in the generated code, for crates
///   that re-export it. Defaults to `::eventloom_core`.
///
/// # Examples
///
/// ```
/// use eventloom_core::prelude::*;
/// use eventloom_core::EventSet;
/// use eventloom_core::model::EventType;
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum TaskEvent { Created { title: String }, Assigned { user: String } }
/// # #[derive(Debug, Default)] struct Task;
/// # impl Aggregate for Task { const TYPE: &'static str = "task"; type Event = TaskEvent;
/// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &TaskEvent) {} }
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum UserEvent { Created { name: String } }
/// # #[derive(Debug, Default)] struct User;
/// # impl Aggregate for User { const TYPE: &'static str = "user"; type Event = UserEvent;
/// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &UserEvent) {} }
///
/// #[derive(Debug, Clone, PartialEq, EventSet)]
/// enum BoardEvent {
///     #[events(aggregate = Task)]
///     Task(TaskEvent),
///     #[events(aggregate = User)]
///     User { event: UserEvent },
/// }
///
/// assert_eq!(BoardEvent::CATEGORIES, ["task", "user"]);
/// assert!(BoardEvent::knows("task", "Assigned"));
/// assert!(!BoardEvent::knows("user", "Assigned"));
/// let created = BoardEvent::from(UserEvent::Created { name: "ada".into() });
/// assert_eq!(BoardEvent::category(&created), "user");
/// assert_eq!(BoardEvent::event_type(&created), EventType::new("Created", 1));
/// assert_eq!(BoardEvent::encode(&created).unwrap(), r#"{"name":"ada"}"#);
/// ```
#[proc_macro_derive(EventSet, attributes(events))]
pub fn derive_event_set(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    event_set::derive(&input).into()
}

/// `#[derive(Command)]` as the `eventloom` facade re-exports it: the generated code names
/// `::eventloom`. Use it through the facade (`eventloom::Command`), not by this name.
#[doc(hidden)]
#[proc_macro_derive(FacadeCommand, attributes(command))]
pub fn derive_facade_command(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    dummy::via_facade(|| command::derive(&input)).into()
}

/// `#[derive(Event)]` as the `eventloom` facade re-exports it (see [`derive_facade_command`]).
#[doc(hidden)]
#[proc_macro_derive(FacadeEvent, attributes(event))]
pub fn derive_facade_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    dummy::via_facade(|| event::derive(&input)).into()
}

/// `#[derive(EventSet)]` as the `eventloom` facade re-exports it (see [`derive_facade_command`]).
#[doc(hidden)]
#[proc_macro_derive(FacadeEventSet, attributes(events))]
pub fn derive_facade_event_set(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    dummy::via_facade(|| event_set::derive(&input)).into()
}
