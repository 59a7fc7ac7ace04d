use eventloom_core::prelude::*;

#[derive(Serialize, Deserialize, Event)]
#[event(name = "")]
struct Created;

fn main() {}
