use eventloom_core::prelude::*;

#[derive(Serialize, Deserialize, Event)]
enum TaskEvent {
    #[event(version = 2, version = 3)]
    Created,
}

fn main() {}
