use eventloom_core::prelude::*;

#[derive(Serialize, Deserialize, Event)]
#[event(name = "TaskEvent")]
enum TaskEvent {
    Created,
}

fn main() {}
