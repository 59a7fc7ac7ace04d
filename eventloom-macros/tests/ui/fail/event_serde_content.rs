use eventloom_core::prelude::*;

#[derive(Serialize, Deserialize, Event)]
#[serde(content = "data", tag = "type")]
enum TaskEvent {
    Created { title: String },
}

fn main() {}
