use eventloom_core::prelude::*;

#[derive(Serialize, Deserialize, Event)]
enum TaskEvent {
    #[serde(skip)]
    Draft,
    Created { title: String },
}

fn main() {}
