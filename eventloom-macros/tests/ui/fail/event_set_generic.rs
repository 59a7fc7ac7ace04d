#[path = "../events.rs"]
mod events;

use eventloom_core::EventSet;
use events::*;

#[derive(EventSet)]
enum Board<T> {
    #[events(aggregate = Task)]
    Task(TaskEvent, std::marker::PhantomData<T>),
}

fn main() {}
