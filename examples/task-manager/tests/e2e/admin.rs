//! `task-manager admin <command>`: the admin commands mounted in the app's binary, with its
//! projection, on the schema and key prefix of its roles.

use std::time::Duration;

use serde_json::Value;

use crate::scenarios::{Api, unique};
use crate::server::{Env, Server, run_to_end};

fn env() -> Env {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(database), Some(redis)) = (var("DATABASE_URL"), var("REDIS_URL")) else {
        panic!("DATABASE_URL and REDIS_URL must be set: run `bash scripts/test.sh` (it starts throwaway servers)");
    };
    let name = unique("tma").replace('-', "_");
    Env {
        set: vec![
            ("DATABASE_URL".into(), database),
            ("REDIS_URL".into(), redis),
            ("TASK_MANAGER_SCHEMA".into(), name.clone()),
            ("TASK_MANAGER_PREFIX".into(), format!("{name}:")),
        ],
        remove: vec!["EVENTLOOM_SCHEMA".into(), "EVENTLOOM_REDIS_PREFIX".into()],
    }
}

/// `task-manager admin args --json`, which must succeed: its JSON.
async fn admin_json(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["admin"];
    all.extend_from_slice(args);
    all.push("--json");
    let (status, stdout, stderr) = run_to_end(&all, env).await;
    assert!(status.success(), "{all:?}: {status}\n{stdout}\n{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{all:?} printed no JSON ({e}):\n{stdout}\n{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mounted_admin_commands_see_the_apps_stores_and_projection() {
    let env = env();
    let server = Server::start("all", "all", true, &env).await;
    let client = server.client();
    let api = Api { cmd: client, cmd2: client, query: client };
    let first = api.create("write docs").await;
    let last = api.create("review").await;
    api.complete(&first.id).await;
    api.stats(&last.position).await;

    // On the app's schema without being told: its events.
    let schema = admin_json(&env, &["schema"]).await;
    assert!(schema["schema"].as_str().is_some_and(|s| s.starts_with("tma_")), "{schema}");
    let streams = admin_json(&env, &["streams", "task"]).await;
    assert_eq!(streams.as_array().map(Vec::len), Some(2), "{streams}");
    let events = admin_json(&env, &["events", &format!("task/{}", first.id)]).await;
    assert_eq!(events[0]["payload"]["title"], "write docs", "{events}");

    // Time travel: the task's state as the app's code folds it, now and after its first event.
    let stream = format!("task/{}", first.id);
    let now = admin_json(&env, &["state", &stream]).await;
    assert_eq!((now["version"].as_u64(), &now["state"]["completed"]), (Some(2), &Value::Bool(true)), "{now}");
    let then = admin_json(&env, &["state", &stream, "--as-of-version", "1"]).await;
    assert_eq!((then["version"].as_u64(), &then["state"]["completed"]), (Some(1), &Value::Bool(false)), "{then}");
    assert_eq!(then["state"]["created"], true, "{then}");
    let (status, _, stderr) = run_to_end(&["admin", "state", "task/nope"], &env).await;
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("no stream task/nope"), "{stderr}");

    // The projection, on the app's Redis prefix, led by the running process.
    let mut shown = admin_json(&env, &["projection", "tasks"]).await;
    for _ in 0..100 {
        if shown["lag_events"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        shown = admin_json(&env, &["projection", "tasks"]).await;
    }
    assert_eq!((shown["status"].as_str(), shown["lag_events"].as_u64()), (Some("live"), Some(0)), "{shown}");
    assert_eq!(shown["leader"]["pid"], server.pid(), "{shown}");
    assert_eq!(shown["leader"]["role"], "all", "{shown}");
    assert_eq!(shown["leader"]["held"], true, "{shown}");

    // A name the app does not have.
    let (status, _, stderr) = run_to_end(&["admin", "projection", "nope"], &env).await;
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("no projection nope"), "{stderr}");
    // The app's own command line still works.
    let (status, _, stderr) = run_to_end(&["--role", "all", "admin"], &env).await;
    assert_eq!(status.code(), Some(2), "{stderr}");

    let listed = admin_json(&env, &["projections"]).await;
    let names: Vec<&str> =
        listed["projections"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["tasks"], "{listed}");

    assert!(server.stop(Duration::from_secs(30)).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_switches_the_views_to_a_new_generation_while_queries_go_on() {
    let env = env();
    // Views built by a process of every role, which then stops (its projector lets the lease go).
    let all = Server::start("all", "all", true, &env).await;
    let client = all.client();
    let api = Api { cmd: client, cmd2: client, query: client };
    let task = api.create("write docs").await;
    let second = api.create("review").await;
    let last = api.create("ship").await;
    assert_eq!(api.stats(&last.position).await, (3, 0, 3));
    assert!(all.stop(Duration::from_secs(30)).await.success());
    let before = admin_json(&env, &["projection", "tasks"]).await;
    let old = before["live"]["id"].as_u64().expect("a live generation");

    // A query process serves the old views while the rebuild runs.
    let query = Server::start("query", "query", true, &env).await;
    let (status, stdout, stderr) = run_to_end(&["admin", "rebuild", "tasks", "--json"], &env).await;
    assert!(status.success(), "{status}\n{stdout}\n{stderr}");
    let steps: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let last_step = steps.last().expect("at least the end");
    assert_eq!(last_step["phase"], "live", "{stdout}");
    assert_eq!(last_step["done"], 3, "every event folded: {stdout}");
    assert!(steps.iter().any(|s| s["phase"] == "building" && s["total"] == 3), "{stdout}");

    let after = admin_json(&env, &["projection", "tasks"]).await;
    let new = after["live"]["id"].as_u64().expect("a live generation");
    assert!(new > old, "a new generation went live: {before} -> {after}");
    assert_eq!((after["building"].is_null(), after["lag_events"].as_u64()), (true, Some(0)), "{after}");
    // Served from the new generation: the same answers.
    let shown = query.client().get(&format!("/tasks/{}", task.id)).await.ok(200);
    assert_eq!(shown["title"], "write docs", "{shown}");
    let stats = query.client().get("/stats").await.ok(200);
    assert_eq!(stats["total"], 3, "{stats}");

    // The human form ends with one line.
    let (status, stdout, stderr) = run_to_end(&["admin", "rebuild", "tasks"], &env).await;
    assert!(status.success() && stdout.contains("tasks: rebuilt and live at"), "{status}\n{stdout}\n{stderr}");
    // Reset after the second task's creation: only the third is in the new views.
    let (status, stdout, stderr) = run_to_end(&["admin", "reset", "tasks", "--to", &second.position], &env).await;
    assert!(status.success(), "{status}\n{stdout}\n{stderr}");
    let stats = query.client().get("/stats").await.ok(200);
    assert_eq!(stats["total"], 1, "{stats}");
    query.client().get(&format!("/tasks/{}", task.id)).await.error(404);
    let (status, _, stderr) = run_to_end(&["admin", "rebuild", "nope"], &env).await;
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(query.stop(Duration::from_secs(30)).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_waits_for_the_running_projector_and_names_it() {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader};

    let env = env();
    let all = Server::start("all", "all", true, &env).await;
    let client = all.client();
    let api = Api { cmd: client, cmd2: client, query: client };
    let last = api.create("write docs").await;
    api.stats(&last.position).await;

    let mut command = tokio::process::Command::new(crate::server::BIN);
    command.args(["admin", "rebuild", "tasks", "--json"]);
    env.apply(&mut command);
    let mut rebuild =
        command.stdin(Stdio::null()).stdout(Stdio::piped()).kill_on_drop(true).spawn().expect("start the rebuild");
    let mut lines = BufReader::new(rebuild.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
    let first: Value = serde_json::from_str(&first.expect("a first step in 30 s").unwrap().unwrap()).unwrap();
    assert_eq!(first["phase"], "waiting", "{first}");
    let holder = first["holder"].as_str().unwrap_or_default();
    assert!(holder.contains(&format!("pid {}", all.pid())) && holder.starts_with("all on "), "{first}");

    // The projector lets go when its process stops: the rebuild goes on and goes live.
    assert!(all.stop(Duration::from_secs(30)).await.success());
    let status = tokio::time::timeout(Duration::from_secs(60), rebuild.wait()).await.expect("done in 60 s").unwrap();
    assert!(status.success(), "{status}");
    let mut steps = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        steps.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    assert_eq!(steps.last().map(|s| s["phase"].clone()), Some(Value::from("live")), "{steps:?}");
    let shown = admin_json(&env, &["projection", "tasks"]).await;
    assert_eq!(shown["leader"]["role"], "admin", "the rebuild took the lease last: {shown}");
}

/// `env()` with the task views in `partitions`.
fn partitioned_env(partitions: u32) -> Env {
    let mut env = env();
    env.set.push(("TASK_MANAGER_VIEW_PARTITIONS".into(), partitions.to_string()));
    env
}

/// Runs `task-manager admin args --json` in the background: its stdout line by line.
fn spawn_admin(
    env: &Env,
    args: &[&str],
) -> (tokio::process::Child, tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>) {
    use std::process::Stdio;
    use tokio::io::AsyncBufReadExt;

    let mut command = tokio::process::Command::new(crate::server::BIN);
    command.arg("admin").args(args).arg("--json");
    env.apply(&mut command);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the admin command");
    let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_projection_is_retried_after_its_leases_and_rebuilt_whole_with_one_switch() {
    use tokio::io::AsyncReadExt;

    const PARTITIONS: u32 = 3;
    let env = partitioned_env(PARTITIONS);
    let all = Server::start("all", "all", true, &env).await;
    let client = all.client();
    let api = Api { cmd: client, cmd2: client, query: client };
    let task = api.create("write docs").await;
    api.create("review").await;
    let last = api.create("ship").await;
    assert_eq!(api.stats(&last.position).await, (3, 0, 3));

    // The running process leads every partition: a retry waits for the first, naming it.
    let (mut retry, mut lines) = spawn_admin(&env, &["dead-letters", "retry", "tasks"]);
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
    let first: Value = serde_json::from_str(&first.expect("a first step in 30 s").unwrap().unwrap()).unwrap();
    assert_eq!((first["phase"].as_str(), first["lease"].as_str()), (Some("waiting"), Some("tasks~0of3")), "{first}");
    let holder = first["holder"].as_str().unwrap_or_default();
    assert!(holder.starts_with("all on ") && holder.contains(&format!("pid {}", all.pid())), "{first}");
    assert!(all.stop(Duration::from_secs(30)).await.success());
    let status = tokio::time::timeout(Duration::from_secs(60), retry.wait()).await.expect("done in 60 s").unwrap();
    let mut stderr = String::new();
    retry.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
    assert!(status.success(), "{status}\n{stderr}");
    assert!(stderr.contains("waiting for the lease of tasks~0of3 (held by all on "), "{stderr}");
    let mut rest = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        rest.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    let outcome = rest.last().expect("the outcome");
    assert_eq!((outcome["projection"].as_str(), outcome["retried"].as_u64()), (Some("tasks"), Some(0)), "{rest:?}");

    // Rebuilt whole while a query process serves the live set.
    let member = |i: u32| format!("tasks~{i}of{PARTITIONS}");
    let mut before = Vec::new();
    for i in 0..PARTITIONS {
        let shown = admin_json(&env, &["projection", &member(i)]).await;
        before.push(shown["live"]["id"].as_u64().unwrap_or(0));
    }
    let query = Server::start("query", "query", true, &env).await;
    let (status, stdout, stderr) = run_to_end(&["admin", "rebuild", "tasks", "--json"], &env).await;
    assert!(status.success(), "{status}\n{stdout}\n{stderr}");
    let steps: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(steps.iter().any(|s| s["phase"] == "building" && s["total"] == 3), "{stdout}");
    let switched: Vec<&Value> = steps.iter().filter(|s| s["phase"] == "switched").collect();
    assert_eq!(switched.len(), 1, "one switch: {stdout}");
    assert_eq!(switched[0]["partitions"], PARTITIONS, "{stdout}");
    let end = steps.last().expect("the end");
    assert_eq!((end["phase"].as_str(), end["done"].as_u64()), (Some("live"), Some(3)), "the whole log: {stdout}");
    for i in 0..PARTITIONS {
        let shown = admin_json(&env, &["projection", &member(i)]).await;
        let live = shown["live"]["id"].as_u64().expect("a live generation");
        assert!(live > before[i as usize], "partition {i}: {} -> {shown}", before[i as usize]);
        assert!(shown["building"].is_null(), "partition {i} made live after the grace: {shown}");
        assert_eq!(shown["lag_events"], 0, "{shown}");
    }
    let shown = query.client().get(&format!("/tasks/{}", task.id)).await.ok(200);
    assert_eq!(shown["title"], "write docs", "{shown}");
    let stats = query.client().get("/stats").await.ok(200);
    assert_eq!(stats["total"], 3, "{stats}");
    assert!(query.stop(Duration::from_secs(30)).await.success());
}
