//! `migrate` and `schema`.

use crate::support::{fresh_schema, run};

#[tokio::test]
async fn migrate_creates_the_schema_and_schema_shows_its_version() {
    let schema = fresh_schema();
    let before = run(&schema, &["schema", "--json"]).await.json();
    assert_eq!(before["schema"], schema.as_str());
    assert_eq!(before["version"], serde_json::Value::Null, "{before}");
    let latest = before["latest"].as_u64().unwrap();
    assert!(latest >= 11, "{before}");
    assert_eq!(before["pending"].as_array().unwrap().len() as u64, latest);

    let migrated = run(&schema, &["migrate", "--json"]).await.json();
    assert_eq!(migrated["applied_now"].as_array().unwrap().len() as u64, latest, "{migrated}");
    let after = run(&schema, &["schema", "--json"]).await.json();
    assert_eq!(after["version"].as_u64(), Some(latest), "{after}");
    assert!(after["pending"].as_array().unwrap().is_empty());
    let first = &after["applied"][0];
    assert_eq!((first["version"].as_u64(), first["name"].as_str()), (Some(1), Some("event store")));
    assert!(first["applied_at"].as_str().unwrap().ends_with('Z'), "{first}");

    // Again: nothing to apply; the human forms say so.
    let again = run(&schema, &["migrate"]).await;
    assert!(again.ok().contains("is up to date"), "{again:#?}");
    let shown = run(&schema, &["schema"]).await;
    assert!(shown.ok().contains(&format!("version {latest} (current)")), "{shown:#?}");
    assert!(shown.stdout.contains("event store"), "{shown:#?}");
}
