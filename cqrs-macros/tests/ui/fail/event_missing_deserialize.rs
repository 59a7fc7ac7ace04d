use cqrs_core::prelude::*;

#[derive(Serialize, Event)]
enum TaskEvent {
    Created,
}

fn main() {}
