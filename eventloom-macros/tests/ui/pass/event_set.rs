// An event set over two aggregates whose event types share a name, with a named field, and
// under a re-exported crate path.
#[path = "../events.rs"]
mod events;

use eventloom_core::EventSet;
use events::*;

#[derive(Debug, Clone, PartialEq, EventSet)]
enum Board {
    #[events(aggregate = Task)]
    Task(TaskEvent),
    #[events(aggregate = User)]
    User { event: UserEvent },
}

mod framework {
    pub use eventloom_core as cqrs;
}

#[derive(Debug, EventSet)]
#[events(crate = "framework::cqrs")]
enum Tasks {
    #[events(aggregate = Task)]
    Task(TaskEvent),
}

fn main() {
    assert_eq!(Board::CATEGORIES, ["task", "user"]);
    assert!(Board::knows("task", "Created") && Board::knows("user", "Created"));
    assert!(!Board::knows("board", "Created"));
    let user = Board::from(UserEvent::Created { name: "ada".into() });
    assert_eq!(Board::category(&user), "user");
    assert_eq!(Tasks::CATEGORIES, ["task"]);
}
