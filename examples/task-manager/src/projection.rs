//! The read side's model: one view per task, and the index lists that listing, filtering and
//! counting read.

use eventloom::prelude::*;
use eventloom::{BoxError, IndexEntry, Projection, store::IndexKey};

use crate::domain::{Task, TaskEvent};

/// Whether a task is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not done.
    Open,
    /// Done.
    Completed,
}

impl Status {
    /// The name used in JSON, query strings and index lists.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Completed => "completed",
        }
    }

    /// The status named `text`, if any.
    pub fn parse(text: &str) -> Option<Status> {
        match text {
            "open" => Some(Status::Open),
            "completed" => Some(Status::Completed),
            _ => None,
        }
    }
}

/// What queries show of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    /// The title.
    pub title: String,
    /// The description (`""` when none was given).
    pub description: String,
    /// Open or completed.
    pub status: Status,
    /// Who does it; `None` until assigned.
    pub assignee: Option<String>,
    /// The task's stream version this view includes (counts from 1).
    pub version: u64,
    /// Where the task was created: lists are in this order.
    pub created: Position,
}

/// Folds task events into [`TaskView`]s and lists each task in its index lists.
#[derive(Debug, Clone, Copy, Default)]
pub struct TaskViews;

/// The index list of every task.
const ALL: &str = "all";
/// The index lists by status.
const STATUS: &str = "status";
/// The index lists by assignee.
const ASSIGNEE: &str = "assignee";
/// The index lists by status and assignee together: value `"<status>/<assignee>"` (a status
/// never holds `/`, so the pair is unambiguous).
const STATUS_ASSIGNEE: &str = "status+assignee";

impl Projection for TaskViews {
    const NAME: &'static str = "tasks";
    const VERSION: u32 = 1;
    type Events = Task;
    type View = TaskView;

    // Each event of a task once and in order: an event whose version does not follow the
    // view's (one lost, or one applied twice) is an error, which stops the projection before the
    // view shows a wrong task. The view is left as it was.
    fn apply(&self, view: &mut Option<TaskView>, e: &EventEnvelope<TaskEvent>) -> Result<(), BoxError> {
        if let TaskEvent::Created { title, description } = &e.event {
            if let Some(task) = view {
                return Err(format!(
                    "{} created again at version {} (its view is at {})",
                    e.stream, e.version, task.version
                )
                .into());
            }
            *view = Some(TaskView {
                title: title.clone(),
                description: description.clone(),
                status: Status::Open,
                assignee: None,
                version: e.version,
                created: e.position,
            });
            return Ok(());
        }
        let task = view.as_mut().ok_or_else(|| format!("{} at version {} before its creation", e.stream, e.version))?;
        if e.version != task.version + 1 {
            return Err(format!(
                "{} at version {} onto its view at version {}: an event lost or applied twice",
                e.stream, e.version, task.version
            )
            .into());
        }
        match &e.event {
            TaskEvent::Created { .. } => {}
            TaskEvent::Assigned { assignee } => task.assignee = Some(assignee.clone()),
            TaskEvent::Completed => task.status = Status::Completed,
            TaskEvent::Reopened => task.status = Status::Open,
        }
        task.version = e.version;
        Ok(())
    }

    // Every task is in "all" and in its status's list; an assigned one also in its assignee's
    // list and in the list of both. All in creation order.
    fn index(&self, _id: &str, view: &TaskView) -> Vec<IndexEntry> {
        let order = view.created.sort_key();
        let status = view.status.as_str();
        let mut entries = vec![
            IndexEntry::new(ALL, "").ordered_by(order.clone()),
            IndexEntry::new(STATUS, status).ordered_by(order.clone()),
        ];
        if let Some(assignee) = &view.assignee {
            entries.push(IndexEntry::new(ASSIGNEE, assignee.clone()).ordered_by(order.clone()));
            entries.push(IndexEntry::new(STATUS_ASSIGNEE, format!("{status}/{assignee}")).ordered_by(order));
        }
        entries
    }
}

/// The index list of the tasks with this status and assignee (each optional).
pub fn list_key(status: Option<Status>, assignee: Option<&str>) -> IndexKey {
    match (status, assignee) {
        (None, None) => IndexKey::new(ALL, ""),
        (Some(s), None) => IndexKey::new(STATUS, s.as_str()),
        (None, Some(a)) => IndexKey::new(ASSIGNEE, a),
        (Some(s), Some(a)) => IndexKey::new(STATUS_ASSIGNEE, format!("{}/{a}", s.as_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventloom::testing::ProjectionTest;

    #[test]
    fn a_view_follows_its_task() {
        let test = ProjectionTest::new(TaskViews).given(
            "t",
            [
                TaskEvent::Created { title: "write".into(), description: "docs".into() },
                TaskEvent::Assigned { assignee: "ann".into() },
                TaskEvent::Completed,
            ],
        );
        let view = test.view("t").unwrap();
        assert_eq!(view.title, "write");
        assert_eq!(view.description, "docs");
        assert_eq!(view.status, Status::Completed);
        assert_eq!(view.assignee.as_deref(), Some("ann"));
        assert_eq!(view.version, 3);
    }

    #[test]
    fn an_event_out_of_order_or_twice_is_an_error_and_leaves_the_view() {
        let envelope = |version: u64, event: TaskEvent| EventEnvelope {
            stream: StreamId::new("task", "t").unwrap(),
            version,
            position: Position::new(version, version),
            event,
            metadata: Default::default(),
        };
        let created = TaskEvent::Created { title: "t".into(), description: String::new() };
        let mut view = None;
        TaskViews.apply(&mut view, &envelope(1, created.clone())).unwrap();
        TaskViews.apply(&mut view, &envelope(2, TaskEvent::Completed)).unwrap();
        let before = view.clone();
        for (version, event) in [(2, TaskEvent::Reopened), (4, TaskEvent::Reopened), (3, created)] {
            let error = TaskViews.apply(&mut view, &envelope(version, event)).unwrap_err().to_string();
            assert!(error.contains("version"), "{error}");
            assert_eq!(view, before, "left as it was");
        }
    }

    #[test]
    fn index_lists() {
        let mut view = TaskView {
            title: "t".into(),
            description: String::new(),
            status: Status::Open,
            assignee: None,
            version: 1,
            created: Position::new(4, 2),
        };
        let keys = |v: &TaskView| TaskViews.index("t", v).into_iter().map(|e| e.key).collect::<Vec<_>>();
        assert_eq!(keys(&view), [list_key(None, None), list_key(Some(Status::Open), None)]);
        view.assignee = Some("a/b".into());
        view.status = Status::Completed;
        assert_eq!(
            keys(&view),
            [
                list_key(None, None),
                list_key(Some(Status::Completed), None),
                list_key(None, Some("a/b")),
                list_key(Some(Status::Completed), Some("a/b")),
            ]
        );
        assert!(TaskViews.index("t", &view).iter().all(|e| e.order == Position::new(4, 2).sort_key()));
    }
}
