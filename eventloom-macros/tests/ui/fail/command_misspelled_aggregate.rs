use eventloom_core::prelude::*;

#[derive(Command)]
#[command(agregate = Account)]
struct Open {
    #[command(id)]
    id: String,
}

fn main() {}
