use eventloom_core::prelude::*;

#[derive(Serialize, Deserialize, Event)]
struct Created {
    title: std::cell::Cell<u32>,
}

fn main() {}
