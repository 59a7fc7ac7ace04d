use eventloom_core::prelude::*;

#[derive(Serialize, Deserialize, Event)]
enum TaskEvent {
    Created { title: String },
    #[serde(skip_deserializing)]
    Legacy,
}

fn main() {}
