//! The names the derives read inside their attributes, as constants.

use std::fmt::{self, Display};

use syn::{Ident, Path};

/// One attribute name or key.
#[derive(Copy, Clone, Debug)]
pub struct Symbol(&'static str);

/// `#[command(...)]`.
pub const COMMAND: Symbol = Symbol("command");
/// `#[event(...)]`.
pub const EVENT: Symbol = Symbol("event");
/// `#[events(...)]`, of `#[derive(EventSet)]`.
pub const EVENTS: Symbol = Symbol("events");
/// `#[serde(...)]`, read to refuse settings the event encoding cannot follow.
pub const SERDE: Symbol = Symbol("serde");

/// `#[command(aggregate = Path)]`, `#[events(aggregate = Path)]`.
pub const AGGREGATE: Symbol = Symbol("aggregate");
/// `#[command(id)]` on a field.
pub const ID: Symbol = Symbol("id");
/// `#[command(name = "...")]`, `#[event(name = "...")]`.
pub const NAME: Symbol = Symbol("name");
/// `#[event(version = N)]`.
pub const VERSION: Symbol = Symbol("version");
/// `#[command(crate = "...")]`, `#[event(crate = "...")]`, `#[events(crate = "...")]`.
pub const CRATE: Symbol = Symbol("crate");

/// `#[serde(tag = "...")]`.
pub const TAG: Symbol = Symbol("tag");
/// `#[serde(content = "...")]`.
pub const CONTENT: Symbol = Symbol("content");
/// `#[serde(untagged)]`.
pub const UNTAGGED: Symbol = Symbol("untagged");
/// `#[serde(skip)]`.
pub const SKIP: Symbol = Symbol("skip");
/// `#[serde(skip_serializing)]`.
pub const SKIP_SERIALIZING: Symbol = Symbol("skip_serializing");
/// `#[serde(skip_deserializing)]`.
pub const SKIP_DESERIALIZING: Symbol = Symbol("skip_deserializing");

impl PartialEq<Symbol> for Ident {
    fn eq(&self, word: &Symbol) -> bool {
        self == word.0
    }
}

impl PartialEq<Symbol> for &Ident {
    fn eq(&self, word: &Symbol) -> bool {
        *self == word.0
    }
}

impl PartialEq<Symbol> for Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

impl PartialEq<Symbol> for &Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

impl Display for Symbol {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.0)
    }
}
