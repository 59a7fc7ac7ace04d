use eventloom_core::prelude::*;

#[derive(Serialize, Deserialize, Event)]
enum TaskEvent {
    Created { title: String },
    #[serde(untagged)]
    Other(String),
}

fn main() {}
