//! The write side: task events, the task aggregate, its commands and the rules they follow.
//!
//! Input limits are checked here too ([`CreateTask::new`], [`AssignTask::new`]), so that a command
//! that exists is a valid one; the HTTP layer turns an [`InvalidInput`] into a 400.

use eventloom::prelude::*;

/// The longest title, in bytes of UTF-8.
pub const MAX_TITLE_BYTES: usize = 200;
/// The longest description, in bytes of UTF-8.
pub const MAX_DESCRIPTION_BYTES: usize = 2_000;
/// The longest assignee name, in bytes of UTF-8. Bytes, not characters, because what a store
/// can index is bounded in bytes (the framework keeps longer values as digests, but a bound the
/// client can check is clearer).
pub const MAX_ASSIGNEE_BYTES: usize = 200;

/// Everything that can happen to a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub enum TaskEvent {
    /// The task was created.
    #[event(name = "TaskCreated")]
    Created {
        /// Its title.
        title: String,
        /// Its description (`""` when none was given).
        description: String,
    },
    /// The task was given to someone.
    #[event(name = "TaskAssigned")]
    Assigned {
        /// Who does it now.
        assignee: String,
    },
    /// The task was done.
    #[event(name = "TaskCompleted")]
    Completed,
    /// A completed task was opened again.
    #[event(name = "TaskReopened")]
    Reopened,
}

/// A task as the write side needs it: only what decisions depend on.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Task {
    created: bool,
    completed: bool,
}

/// Why a task refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// The command names a task that was never created.
    #[error("no such task")]
    NotFound,
    /// Creating a task whose id is taken.
    #[error("the task already exists")]
    AlreadyExists,
    /// Assigning or completing a completed task.
    #[error("the task is completed")]
    AlreadyCompleted,
    /// Reopening a task that is open.
    #[error("the task is not completed")]
    NotCompleted,
}

impl Aggregate for Task {
    const TYPE: &'static str = "task";
    type Event = TaskEvent;
    type Error = TaskError;

    fn apply(&mut self, event: &TaskEvent) {
        match event {
            TaskEvent::Created { .. } => self.created = true,
            TaskEvent::Assigned { .. } => {}
            TaskEvent::Completed => self.completed = true,
            TaskEvent::Reopened => self.completed = false,
        }
    }
}

impl Task {
    fn existing(&self) -> Result<(), TaskError> {
        if self.created { Ok(()) } else { Err(TaskError::NotFound) }
    }
}

/// A value from outside that breaks a limit; the message says which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

/// Checks that `value` has `min..=max` bytes of UTF-8 and no control characters (or, with
/// `allow_newlines`, none but tab, line feed and carriage return).
fn check_text(field: &str, value: &str, min: usize, max: usize, allow_newlines: bool) -> Result<(), InvalidInput> {
    let bytes = value.len();
    if bytes < min || bytes > max {
        return Err(InvalidInput(if min > 0 {
            format!("`{field}` must have {min} to {max} bytes of UTF-8, not {bytes}")
        } else {
            format!("`{field}` must have at most {max} bytes of UTF-8, not {bytes}")
        }));
    }
    let allowed = |c: char| allow_newlines && matches!(c, '\t' | '\n' | '\r');
    if value.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(InvalidInput(format!("`{field}` must not contain control characters")));
    }
    Ok(())
}

/// Creates a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Command)]
#[command(aggregate = Task)]
pub struct CreateTask {
    /// The new task's id, made by the server ([`new_task_id`]).
    #[command(id)]
    pub task_id: String,
    /// Its title: 1 to 200 characters.
    pub title: String,
    /// Its description: at most 2,000 characters.
    pub description: String,
}

impl CreateTask {
    /// A valid command, or why not.
    pub fn new(task_id: String, title: String, description: String) -> Result<Self, InvalidInput> {
        check_text("title", &title, 1, MAX_TITLE_BYTES, false)?;
        check_text("description", &description, 0, MAX_DESCRIPTION_BYTES, true)?;
        Ok(CreateTask { task_id, title, description })
    }
}

/// Gives a task to someone (again, or to someone else).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Command)]
#[command(aggregate = Task)]
pub struct AssignTask {
    /// The task.
    #[command(id)]
    pub task_id: String,
    /// Who does it: 1 to 200 characters.
    pub assignee: String,
}

impl AssignTask {
    /// A valid command, or why not.
    pub fn new(task_id: String, assignee: String) -> Result<Self, InvalidInput> {
        check_assignee(&assignee)?;
        Ok(AssignTask { task_id, assignee })
    }
}

/// Checks a name a task can be assigned to: 1 to 200 bytes of UTF-8, no control characters.
pub fn check_assignee(name: &str) -> Result<(), InvalidInput> {
    check_text("assignee", name, 1, MAX_ASSIGNEE_BYTES, false)
}

/// Marks a task done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Command)]
#[command(aggregate = Task)]
pub struct CompleteTask {
    /// The task.
    #[command(id)]
    pub task_id: String,
}

/// Opens a completed task again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Command)]
#[command(aggregate = Task)]
pub struct ReopenTask {
    /// The task.
    #[command(id)]
    pub task_id: String,
}

impl Handle<CreateTask> for Task {
    fn handle(&self, cmd: &CreateTask) -> Result<Vec<TaskEvent>, TaskError> {
        if self.created {
            return Err(TaskError::AlreadyExists);
        }
        Ok(vec![TaskEvent::Created { title: cmd.title.clone(), description: cmd.description.clone() }])
    }
}

impl Handle<AssignTask> for Task {
    fn handle(&self, cmd: &AssignTask) -> Result<Vec<TaskEvent>, TaskError> {
        self.existing()?;
        if self.completed {
            return Err(TaskError::AlreadyCompleted);
        }
        // Assigning to the same person again is recorded too: every accepted command appends,
        // which keeps an idempotent retry's answer checkable (see `api::commands`).
        Ok(vec![TaskEvent::Assigned { assignee: cmd.assignee.clone() }])
    }
}

impl Handle<CompleteTask> for Task {
    fn handle(&self, _: &CompleteTask) -> Result<Vec<TaskEvent>, TaskError> {
        self.existing()?;
        if self.completed {
            return Err(TaskError::AlreadyCompleted);
        }
        Ok(vec![TaskEvent::Completed])
    }
}

impl Handle<ReopenTask> for Task {
    fn handle(&self, _: &ReopenTask) -> Result<Vec<TaskEvent>, TaskError> {
        self.existing()?;
        if !self.completed {
            return Err(TaskError::NotCompleted);
        }
        Ok(vec![TaskEvent::Reopened])
    }
}

/// The length of a task id: 32 lowercase hexadecimal digits (a random UUID).
const TASK_ID_LEN: usize = 32;

/// A new, random task id. Clients treat it as opaque.
pub fn new_task_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The id of the task a `POST /tasks` under the `Idempotency-Key` `key` creates: the first 128
/// bits of a SHA-256 of the key, in the shape of [`new_task_id`]'s. Sent again, the request is
/// the same command on the same task, and the engine answers it with the first outcome.
pub fn task_id_for_key(key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("task-manager create\n{key}").as_bytes());
    digest[..TASK_ID_LEN / 2].iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `id` has the shape of an id [`new_task_id`] makes. Anything else names no task, and
/// is answered without asking a store.
pub fn is_task_id(id: &str) -> bool {
    id.len() == TASK_ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventloom::testing::AggregateTest;

    fn created() -> TaskEvent {
        TaskEvent::Created { title: "t".into(), description: String::new() }
    }

    #[test]
    fn a_task_is_created_once() {
        AggregateTest::<Task>::given_no_events()
            .when(CreateTask::new("a".into(), "write".into(), String::new()).unwrap())
            .then_expect_events([TaskEvent::Created { title: "write".into(), description: String::new() }]);
        AggregateTest::<Task>::given([created()])
            .when(CreateTask::new("a".into(), "again".into(), String::new()).unwrap())
            .then_expect_error(TaskError::AlreadyExists);
    }

    #[test]
    fn commands_on_a_missing_task_are_refused() {
        AggregateTest::<Task>::given_no_events()
            .when(AssignTask::new("a".into(), "ann".into()).unwrap())
            .then_expect_error(TaskError::NotFound);
        AggregateTest::<Task>::given_no_events()
            .when(CompleteTask { task_id: "a".into() })
            .then_expect_error(TaskError::NotFound);
        AggregateTest::<Task>::given_no_events()
            .when(ReopenTask { task_id: "a".into() })
            .then_expect_error(TaskError::NotFound);
    }

    #[test]
    fn completion_rules() {
        AggregateTest::<Task>::given([created(), TaskEvent::Completed])
            .when(CompleteTask { task_id: "a".into() })
            .then_expect_error(TaskError::AlreadyCompleted);
        AggregateTest::<Task>::given([created(), TaskEvent::Completed])
            .when(AssignTask::new("a".into(), "ann".into()).unwrap())
            .then_expect_error(TaskError::AlreadyCompleted);
        AggregateTest::<Task>::given([created()])
            .when(ReopenTask { task_id: "a".into() })
            .then_expect_error(TaskError::NotCompleted);
        AggregateTest::<Task>::given([created(), TaskEvent::Completed])
            .when(ReopenTask { task_id: "a".into() })
            .then_expect_events([TaskEvent::Reopened]);
        AggregateTest::<Task>::given([created(), TaskEvent::Completed, TaskEvent::Reopened])
            .when(AssignTask::new("a".into(), "bob".into()).unwrap())
            .then_expect_events([TaskEvent::Assigned { assignee: "bob".into() }]);
    }

    #[test]
    fn input_limits() {
        let create = |title: &str, description: &str| CreateTask::new("a".into(), title.into(), description.into());
        assert!(create("", "").is_err());
        assert!(create(&"é".repeat(100), &"x".repeat(2_000)).is_ok());
        assert!(create(&"é".repeat(101), "").is_err(), "202 bytes");
        assert!(AssignTask::new("a".into(), "🦀".repeat(50)).is_ok());
        assert!(AssignTask::new("a".into(), "🦀".repeat(51)).is_err(), "204 bytes");
        assert!(create("t", &"x".repeat(2_001)).is_err());
        assert!(create("a\0b", "").is_err());
        assert!(create("t", "two\nlines\twith tabs").is_ok());
        assert!(create("t", "nul\0").is_err());
        assert!(AssignTask::new("a".into(), String::new()).is_err());
        assert!(AssignTask::new("a".into(), "x".repeat(201)).is_err());
        assert!(AssignTask::new("a".into(), "a\nb".into()).is_err());
    }

    #[test]
    fn task_ids() {
        let id = new_task_id();
        assert!(is_task_id(&id), "{id}");
        let keyed = task_id_for_key("k");
        assert!(is_task_id(&keyed) && keyed == task_id_for_key("k") && keyed != task_id_for_key("k2"), "{keyed}");
        // Pinned: a key sent again after an upgrade must name the same task.
        assert_eq!(keyed, "fc5ca5aeeb1a58bce01d152845518045");
        assert_ne!(id, new_task_id());
        for bad in
            ["", "x", &id.to_uppercase(), &format!("{id}0"), "../../etc/passwd", "0000000000000000000000000000000\0"]
        {
            assert!(!is_task_id(bad), "{bad:?}");
        }
    }
}
