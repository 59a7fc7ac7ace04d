use eventloom_core::prelude::*;

#[derive(Serialize, Deserialize, Event)]
enum TaskEvent {
    Created {
        #[event(name = "title")]
        title: String,
    },
}

fn main() {}
