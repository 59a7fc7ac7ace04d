use eventloom_core::prelude::*;

#[derive(Serialize, Deserialize, Event)]
enum TaskEvent {
    #[event(name = "TaskCreated", schema = 2)]
    Created,
}

fn main() {}
