//! The generated code stays quiet under strict lints and without the prelude.
#![deny(warnings, missing_docs, unused_qualifications, unused_results, rust_2018_idioms)]
#![forbid(unsafe_code)]

/// Shadows of common names the generated code must not pick up.
pub mod shadows {
    #![no_implicit_prelude]

    extern crate eventloom_core;
    extern crate serde;
    extern crate std;

    /// Not `core::result::Result`.
    pub type Result = ();
    /// Not `std::string::String`.
    pub struct String;
    /// Not `std::borrow::Cow`.
    pub struct Cow;

    use self::serde::{Deserialize, Serialize};
    use eventloom_core::{Aggregate, Command, Event, EventSet};

    /// An event.
    #[derive(Serialize, Deserialize, Event)]
    pub enum Happened {
        /// A variant.
        One {
            /// A field.
            n: u32,
        },
        /// Another.
        Two,
    }

    /// A struct event.
    #[derive(Serialize, Deserialize, Event)]
    pub struct Single(pub u32);

    /// An aggregate.
    #[derive(Default)]
    pub struct Thing;

    impl Aggregate for Thing {
        const TYPE: &'static str = "thing";
        type Event = Happened;
        type Error = std::convert::Infallible;
        fn apply(&mut self, _: &Happened) {}
    }

    /// Another aggregate, of struct events.
    #[derive(Default)]
    pub struct Other;

    impl Aggregate for Other {
        const TYPE: &'static str = "other";
        type Event = Single;
        type Error = std::convert::Infallible;
        fn apply(&mut self, _: &Single) {}
    }

    /// An event set.
    #[derive(EventSet)]
    pub enum Both {
        /// A thing's.
        #[events(aggregate = Thing)]
        Thing(Happened),
        /// Another's.
        #[events(aggregate = Other)]
        Other {
            /// The event.
            event: Single,
        },
    }

    /// A command.
    #[derive(Command)]
    #[command(aggregate = Thing)]
    pub struct DoIt {
        /// Its id.
        #[command(id)]
        pub id: std::string::String,
    }

    /// A command with a number id.
    #[derive(Command)]
    #[command(aggregate = Thing)]
    pub struct DoThat(#[command(id)] pub u64);
}

fn main() {
    use eventloom_core::{Command, Event};
    assert_eq!(shadows::Happened::Two.event_type().name, "Two");
    assert_eq!(shadows::Single(1).encode().unwrap(), "1");
    assert_eq!(shadows::DoIt { id: "x".into() }.aggregate_id(), "x");
    assert_eq!(shadows::DoThat(1).aggregate_id(), "1");
    use eventloom_core::EventSet;
    assert_eq!(shadows::Both::CATEGORIES, ["thing", "other"]);
}
