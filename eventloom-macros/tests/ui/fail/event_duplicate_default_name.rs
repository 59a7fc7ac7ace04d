use eventloom_core::prelude::*;

#[derive(Serialize, Deserialize, Event)]
enum TaskEvent {
    #[event(name = "Done")]
    Finished,
    Done,
}

fn main() {}
