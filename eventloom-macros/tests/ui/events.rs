// Two aggregates for the event set cases: `#[path = "../events.rs"] mod events;`.

use eventloom_core::prelude::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub enum TaskEvent {
    Created { title: String },
}

#[derive(Debug, Default)]
pub struct Task;

impl Aggregate for Task {
    const TYPE: &'static str = "task";
    type Event = TaskEvent;
    type Error = std::convert::Infallible;
    fn apply(&mut self, _: &TaskEvent) {}
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub enum UserEvent {
    Created { name: String },
}

#[derive(Debug, Default)]
pub struct User;

impl Aggregate for User {
    const TYPE: &'static str = "user";
    type Event = UserEvent;
    type Error = std::convert::Infallible;
    fn apply(&mut self, _: &UserEvent) {}
}
