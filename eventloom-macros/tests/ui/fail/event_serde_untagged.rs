use eventloom_core::prelude::*;

#[derive(Serialize, Deserialize, Event)]
#[serde(untagged)]
enum TaskEvent {
    Created { title: String },
}

fn main() {}
