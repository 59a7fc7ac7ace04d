use eventloom_core::prelude::*;

#[derive(Serialize, Deserialize, Event)]
enum TaskEvent {
    #[event(version = 0)]
    Created,
}

fn main() {
    // The stub impl keeps this line from adding an error of its own.
    let _ = TaskEvent::Created.event_type();
}
