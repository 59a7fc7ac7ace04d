use eventloom_core::prelude::*;
use eventloom_core::model::EventType;

#[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
enum Changed<T, U = u8>
where
    T: Clone,
{
    Value { value: T },
    Many(Vec<U>),
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
struct Snapshotted<T>(T);

fn main() {
    let event: Changed<String> = Changed::Value { value: "x".into() };
    assert_eq!(Changed::<String>::decode("Value", &event.encode().unwrap()).unwrap(), event);
    assert_eq!(Changed::<String, u16>::decode("Many", "[1,2]").unwrap(), Changed::Many(vec![1, 2]));
    assert_eq!(Snapshotted(3_u8).event_type(), EventType::new("Snapshotted", 1));
}
