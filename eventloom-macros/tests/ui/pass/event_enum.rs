use eventloom_core::prelude::*;
use eventloom_core::model::EventType;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[serde(rename_all = "snake_case")]
enum TaskEvent {
    Created { title: String, tags: Vec<String> },
    #[event(name = "TaskRenamed", version = 2)]
    Renamed(String),
    #[event(version = 3u32)]
    Moved(u32, u32),
    #[event(name = "TaskDone")]
    Done,
    #[serde(rename = "r")]
    r#Reopened {},
}

fn main() {
    assert_eq!(
        TaskEvent::TYPES,
        [
            EventType::new("Created", 1),
            EventType::new("TaskRenamed", 2),
            EventType::new("Moved", 3),
            EventType::new("TaskDone", 1),
            EventType::new("Reopened", 1),
        ]
    );
    let events = [
        TaskEvent::Created { title: "t".into(), tags: vec!["a".into()] },
        TaskEvent::Renamed("u".into()),
        TaskEvent::Moved(1, 2),
        TaskEvent::Done,
        TaskEvent::Reopened {},
    ];
    for event in events {
        let payload = event.encode().unwrap();
        assert_eq!(TaskEvent::decode(event.event_type().name, &payload).unwrap(), event);
    }
}
