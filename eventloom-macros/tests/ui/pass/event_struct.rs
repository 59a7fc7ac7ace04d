use eventloom_core::prelude::*;
use eventloom_core::model::EventType;

#[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "user.registered", version = 2)]
struct UserRegistered {
    email: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
#[event(version = 5)]
struct PointAdded(i64, i64);

#[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "tick")]
struct Tick;

fn main() {
    assert_eq!(UserRegistered::TYPES, [EventType::new("user.registered", 2)]);
    assert_eq!(PointAdded(1, 2).event_type(), EventType::new("PointAdded", 5));
    assert_eq!(Tick.event_type(), EventType::new("tick", 1));
    assert_eq!(Tick::decode("tick", &Tick.encode().unwrap()).unwrap(), Tick);
}
