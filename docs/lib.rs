//! Compiles and runs every Rust block of the guide and of README.md as doctests.
//!
//! Each Markdown file is attached to an item as its documentation; `cargo test -p cqrs-docs`
//! runs the blocks.

macro_rules! chapters {
    ($($name:ident => $path:literal),* $(,)?) => {
        $(
            #[cfg(doctest)]
            #[doc = include_str!($path)]
            pub struct $name;
        )*
    };
}

chapters! {
    Readme => "../README.md",
    Introduction => "src/introduction.md",
    GettingStarted => "src/getting-started.md",
    Application => "src/application.md",
    CommandsAndEvents => "src/commands-and-events.md",
    Engine => "src/engine.md",
    Projections => "src/projections.md",
    ProcessManagers => "src/process-managers.md",
    Postgres => "src/postgres.md",
    Redis => "src/redis.md",
    Bus => "src/bus.md",
    Testing => "src/testing.md",
    TaskManager => "src/task-manager.md",
    Production => "src/production.md",
    Operations => "src/operations.md",
    Architecture => "src/architecture.md",
    Benchmarks => "benchmarks.md",
}
