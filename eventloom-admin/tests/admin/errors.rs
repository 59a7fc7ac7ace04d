//! What goes wrong gets one line and an exit status by its kind.

use crate::support::{database_url, fresh_schema, run, run_with};

#[tokio::test]
async fn bad_urls_unreachable_servers_and_unmigrated_schemas_fail_clearly() {
    run_with(&[], &["categories"]).await.failed(2, "--database-url");
    run_with(&[("DATABASE_URL", "not a url")], &["categories"]).await.failed(2, "does not parse");
    run_with(&[], &["--database-url", "postgres://admin:s3cret@127.0.0.1:1/app", "categories"])
        .await
        .failed(5, "cannot connect");
    let secret = run_with(&[("DATABASE_URL", "postgres://admin:s3cret@127.0.0.1:1/app")], &["schema"]).await;
    assert!(!secret.stderr.contains("s3cret"), "{secret:#?}");
    let url = database_url();
    run_with(&[("DATABASE_URL", &url)], &["--schema", "Not A Schema", "schema"]).await.failed(2, "schema");
    // The views' Redis, for the commands that read views.
    run_with(&[("DATABASE_URL", &url), ("REDIS_URL", "not a url")], &["projections"]).await.failed(2, "Redis");
    run_with(&[("DATABASE_URL", &url), ("REDIS_URL", "redis://127.0.0.1:1/")], &["projections"])
        .await
        .failed(5, "Redis");
    let schema = fresh_schema();
    run(&schema, &["categories"]).await.failed(4, &format!("schema {schema} is not migrated"));
    run(&schema, &["projection", "tasks"]).await.failed(4, "eventloom-admin migrate");
    let usage = run(&schema, &["no-such-command"]).await;
    assert_eq!(usage.code, Some(2), "{usage:#?}");
    run(&schema, &["rebuild", "tasks"]).await.failed(2, "application's binary");
    run(&schema, &["state", "task/t-1"]).await.failed(2, "application's binary");
    let help = run_with(&[], &["--help"]).await;
    assert!(help.ok().contains("dead-letters"), "{help:#?}");
    assert!(!help.stdout.contains(&url), "no URL shown in the help: {help:#?}");
}
