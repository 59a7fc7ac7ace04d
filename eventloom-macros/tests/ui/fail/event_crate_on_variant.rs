use eventloom_core::prelude::*;

#[derive(Serialize, Deserialize, Event)]
enum TaskEvent {
    #[event(crate = "eventloom_core")]
    Created,
}

fn main() {}
