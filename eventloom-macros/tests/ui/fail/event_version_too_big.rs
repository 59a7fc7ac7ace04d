use eventloom_core::prelude::*;

#[derive(Serialize, Deserialize, Event)]
#[event(version = 4294967296)]
struct Created;

fn main() {}
