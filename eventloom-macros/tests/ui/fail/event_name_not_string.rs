use eventloom_core::prelude::*;

#[derive(Serialize, Deserialize, Event)]
enum TaskEvent {
    #[event(name = TaskCreated)]
    Created,
}

fn main() {}
