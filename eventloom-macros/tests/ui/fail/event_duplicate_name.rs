use eventloom_core::prelude::*;

#[derive(Serialize, Deserialize, Event)]
enum TaskEvent {
    Created,
    Renamed,
    #[event(name = "Created", version = 2)]
    CreatedV2,
}

fn main() {}
