use eventloom_core::prelude::*;

#[derive(Command)]
#[command(name = "open")]
struct Open {
    #[command(id)]
    id: String,
}

fn main() {}
