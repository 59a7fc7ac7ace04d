use eventloom_core::prelude::*;

#[derive(Event)]
union TaskEvent {
    id: u64,
}

fn main() {}
