use eventloom_core::prelude::*;

#[derive(Serialize, Event)]
enum TaskEvent {
    Created,
}

fn main() {}
