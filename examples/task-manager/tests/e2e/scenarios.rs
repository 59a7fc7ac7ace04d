//! The API's behaviour, written once and driven against one process on memory stores and
//! against separate command and query processes on PostgreSQL and Redis.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{Client, Response};

/// Where commands and queries go: two command endpoints (the same one on memory) and one for
/// queries.
#[derive(Debug, Clone, Copy)]
pub struct Api {
    pub cmd: Client,
    pub cmd2: Client,
    pub query: Client,
}

/// What a command answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub id: String,
    pub version: u64,
    pub position: String,
}

impl Done {
    #[track_caller]
    fn from(response: &Response, status: u16) -> Done {
        let body = response.ok(status);
        let done = Done {
            id: body["id"].as_str().expect("id is a string").to_owned(),
            version: body["version"].as_u64().expect("version is a number"),
            position: body["position"].as_str().expect("position is a string").to_owned(),
        };
        assert_eq!(response.header("etag"), Some(format!("\"{}\"", done.version).as_str()));
        done
    }
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{prefix}-{}-{nanos}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A task id of the server's shape that names no task.
pub fn unknown_id() -> String {
    format!("{:032x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos()))
}

impl Api {
    pub async fn create(&self, title: &str) -> Done {
        let response = self.cmd.post("/tasks", &json!({ "title": title }).to_string()).await;
        Done::from(&response, 201)
    }

    pub async fn assign(&self, id: &str, assignee: &str) -> Done {
        let response =
            self.cmd.post(&format!("/tasks/{id}/assign"), &json!({ "assignee": assignee }).to_string()).await;
        Done::from(&response, 200)
    }

    pub async fn complete(&self, id: &str) -> Done {
        Done::from(&self.cmd.post(&format!("/tasks/{id}/complete"), "").await, 200)
    }

    /// The task as the query side shows it once it includes `position`.
    pub async fn read(&self, id: &str, position: &str) -> Value {
        let response = self.query.get(&format!("/tasks/{id}?min_position={position}")).await;
        let body = response.ok(200);
        assert_eq!(response.header("etag"), Some(format!("\"{}\"", body["version"]).as_str()));
        body
    }

    /// `/stats` once it includes `position`: (open, completed, total).
    pub async fn stats(&self, position: &str) -> (u64, u64, u64) {
        let body = self.query.get(&format!("/stats?min_position={position}")).await.ok(200);
        let n = |k: &str| body[k].as_u64().unwrap_or_else(|| panic!("{k} in {body}"));
        (n("open"), n("completed"), n("total"))
    }

    /// Every page of a listing (`query` holds the filters), with the number of pages.
    pub async fn list_all(&self, query: &str, limit: usize, position: &str) -> (Vec<Value>, usize) {
        let mut tasks = Vec::new();
        let mut pages = 0;
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/tasks?{query}&limit={limit}&min_position={position}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let body = self.query.get(&path).await.ok(200);
            pages += 1;
            let page = body["tasks"].as_array().expect("tasks is an array").clone();
            assert!(page.len() <= limit);
            tasks.extend(page);
            match &body["next"] {
                Value::Null => return (tasks, pages),
                Value::String(next) => cursor = Some(next.clone()),
                other => panic!("next is {other}"),
            }
            assert!(pages < 100, "paging does not end");
        }
    }
}

/// Create, read back (read-your-writes), assign, complete, reopen, list and count.
pub async fn happy_path(api: &Api) {
    let first = api.create("warm up").await;
    let (open0, completed0, total0) = api.stats(&first.position).await;

    let response =
        api.cmd.post("/tasks", &json!({ "title": "write the docs", "description": "all of them" }).to_string()).await;
    let created = Done::from(&response, 201);
    assert_eq!(created.version, 1);
    assert_eq!(response.header("location"), Some(format!("/tasks/{}", created.id).as_str()));
    assert!(!created.id.is_empty());
    let task = api.read(&created.id, &created.position).await;
    assert_eq!(
        task,
        json!({ "id": created.id, "title": "write the docs", "description": "all of them",
                "status": "open", "assignee": null, "version": 1 })
    );

    let other = api.create("no description").await;
    assert_ne!(other.id, created.id);
    assert_eq!(api.read(&other.id, &other.position).await["description"], "");

    let ann = unique("ann");
    let assigned = api.assign(&created.id, &ann).await;
    assert_eq!(assigned.version, 2);
    let task = api.read(&created.id, &assigned.position).await;
    assert_eq!((task["assignee"].as_str(), task["version"].as_u64()), (Some(ann.as_str()), Some(2)));

    let completed = api.complete(&created.id).await;
    assert_eq!(completed.version, 3);
    assert_eq!(api.read(&created.id, &completed.position).await["status"], "completed");
    assert_eq!(api.stats(&completed.position).await, (open0 + 1, completed0 + 1, total0 + 2));

    let reopened = Done::from(&api.cmd.post(&format!("/tasks/{}/reopen", created.id), "{}").await, 200);
    assert_eq!(reopened.version, 4);
    let task = api.read(&created.id, &reopened.position).await;
    assert_eq!((task["status"].as_str(), task["version"].as_u64()), (Some("open"), Some(4)));
    assert_eq!(api.stats(&reopened.position).await, (open0 + 2, completed0, total0 + 2));

    let (mine, _) = api.list_all(&format!("assignee={ann}"), 10, &reopened.position).await;
    assert_eq!(mine, vec![task.clone()]);
    let (all, _) = api.list_all("", 1000, &reopened.position).await;
    let ours: Vec<&str> = all
        .iter()
        .filter_map(|t| t["id"].as_str())
        .filter(|id| [first.id.as_str(), created.id.as_str(), other.id.as_str()].contains(id))
        .collect();
    assert_eq!(ours, [first.id.as_str(), created.id.as_str(), other.id.as_str()], "creation order");
}

/// Paging and filters: creation order, `next` cursors, `status`, `assignee` and both.
pub async fn paging(api: &Api) {
    let bob = unique("bob");
    let mut ids = Vec::new();
    let mut last = String::new();
    for i in 0..7 {
        let task = api.create(&format!("page {i}")).await;
        last = api.assign(&task.id, &bob).await.position;
        ids.push(task.id);
    }
    for id in &ids[..3] {
        last = api.complete(id).await.position;
    }
    let listed = |tasks: &[Value]| tasks.iter().map(|t| t["id"].as_str().unwrap_or("").to_owned()).collect::<Vec<_>>();

    let (tasks, pages) = api.list_all(&format!("assignee={bob}"), 3, &last).await;
    assert_eq!((listed(&tasks), pages), (ids.clone(), 3));
    let (tasks, pages) = api.list_all(&format!("assignee={bob}"), 7, &last).await;
    assert_eq!((listed(&tasks), pages), (ids.clone(), 1), "a full last page has no next");
    let (tasks, _) = api.list_all(&format!("status=completed&assignee={bob}"), 2, &last).await;
    assert_eq!(listed(&tasks), ids[..3]);
    assert!(tasks.iter().all(|t| t["status"] == "completed"));
    let (tasks, _) = api.list_all(&format!("assignee={bob}&status=open"), 2, &last).await;
    assert_eq!(listed(&tasks), ids[3..]);

    let (open, _) = api.list_all("status=open", 1000, &last).await;
    assert!(open.iter().all(|t| t["status"] == "open"));
    let open = listed(&open);
    assert_eq!(open.iter().filter(|id| ids.contains(id)).cloned().collect::<Vec<_>>(), ids[3..]);

    // The default page size is 100 and the largest 1000.
    let body = api.query.get(&format!("/tasks?min_position={last}")).await.ok(200);
    assert!(body["tasks"].as_array().map_or(0, Vec::len) <= 100);
    api.query.get("/tasks?limit=1000").await.ok(200);
    // A page of an unknown assignee is empty.
    let body = api.query.get(&format!("/tasks?assignee={}", unique("nobody"))).await.ok(200);
    assert_eq!(body, json!({ "tasks": [], "next": null }));
}

/// 400 for malformed input, 404 for unknown or hostile ids, 409 for business rules, 413 for a
/// large body: and none of them changes anything.
pub async fn errors(api: &Api) {
    let task = api.create("to be bothered").await;
    let path = |action: &str| format!("/tasks/{}/{action}", task.id);

    // 400: the body.
    for body in [
        "{",
        "",
        "[]",
        "null",
        r#"{"title": 5}"#,
        r#"{}"#,
        r#"{"description": "no title"}"#,
        r#"{"title": "x", "extra": 1}"#,
        r#"{"title": ""}"#,
        r#"{"title": "x", "description": 3}"#,
        r#"{"title": "nul\u0000"}"#,
    ] {
        api.cmd.post("/tasks", body).await.error(400);
    }
    // Bounds are in bytes of UTF-8: "é" takes two.
    let long = |n: usize| "é".repeat(n);
    api.cmd.post("/tasks", &json!({ "title": long(101) }).to_string()).await.error(400);
    api.cmd.post("/tasks", &json!({ "title": "x", "description": long(1001) }).to_string()).await.error(400);
    let max = Done::from(
        &api.cmd.post("/tasks", &json!({ "title": long(100), "description": long(1000) }).to_string()).await,
        201,
    );
    let edge = api.cmd.post("/tasks", &json!({ "title": "null description", "description": null }).to_string()).await;
    let edge = Done::from(&edge, 201);
    assert_eq!(api.read(&edge.id, &edge.position).await["description"], "");
    assert_eq!(api.read(&max.id, &max.position).await["title"].as_str().map(str::len), Some(200));
    for body in ["", "{}", r#"{"assignee": ""}"#, r#"{"assignee": 3}"#, r#"{"assignee": "a", "x": 1}"#, "nope"] {
        api.cmd.post(&path("assign"), body).await.error(400);
    }
    api.cmd.post(&path("assign"), &json!({ "assignee": "x".repeat(201) }).to_string()).await.error(400);
    // 51 crabs are 204 bytes (the 130 of the hardening issue were accepted and froze the views).
    api.cmd.post(&path("assign"), &json!({ "assignee": "🦀".repeat(51) }).to_string()).await.error(400);
    for body in [r#"{"x": 1}"#, "[]", "{"] {
        api.cmd.post(&path("complete"), body).await.error(400);
        api.cmd.post(&path("reopen"), body).await.error(400);
    }

    // 400: headers.
    for if_match in ["abc", "W/\"1\"", "\"1", "-1", "1.0", "*"] {
        let response = api.cmd.post_with(&path("complete"), &[("If-Match", if_match)], "").await;
        response.error(400);
    }
    api.cmd.post_with("/tasks", &[("If-Match", "0")], r#"{"title": "x"}"#).await.error(400);
    let long_key = "k".repeat(257);
    api.cmd.post_with(&path("complete"), &[("Idempotency-Key", &long_key)], "").await.error(400);
    api.cmd.post_with(&path("complete"), &[("Idempotency-Key", "")], "").await.error(400);

    // 400: query parameters.
    for query in [
        "limit=0",
        "limit=1001",
        "limit=abc",
        "limit=-1",
        "limit=1&limit=2",
        "status=done",
        "status=",
        "assignee=",
        "cursor=zz",
        "cursor=3030-2e2e",
        "min_position=abc",
        "min_position=1",
        "min_position=1.2&timeout_ms=60001",
        "min_position=1.2&timeout_ms=-5",
        "unknown=1",
    ] {
        api.query.get(&format!("/tasks?{query}")).await.error(400);
    }
    api.query.get("/stats?extra=1").await.error(400);
    api.query.get("/stats?min_position=x").await.error(400);
    api.query.get(&format!("/tasks/{}?min_position=x", task.id)).await.error(400);
    api.query.get(&format!("/tasks/{}?limit=1", task.id)).await.error(400);

    // 413.
    let big = json!({ "title": "x", "description": "d".repeat(70 * 1024) }).to_string();
    api.cmd.post("/tasks", &big).await.error(413);
    api.cmd.post(&path("assign"), &big).await.error(413);

    // 404: unknown and hostile ids, for queries and commands alike.
    let unknown = unknown_id();
    let long_id = "a".repeat(5000);
    let hostile = [
        unknown.as_str(),
        "nope",
        "%00",
        "..%2F..%2Fetc%2Fpasswd",
        "%FF%FE",
        "%F0%9F%92%A9",
        "x'%20OR%201=1--",
        "%0d%0aX-Injected:%201",
        long_id.as_str(),
        &task.id.to_uppercase(),
    ];
    for id in hostile {
        api.query.get(&format!("/tasks/{id}")).await.error(404);
        api.query.get(&format!("/tasks/{id}?min_position={}", task.position)).await.error(404);
        api.cmd.post(&format!("/tasks/{id}/assign"), r#"{"assignee": "ann"}"#).await.error(404);
        api.cmd.post(&format!("/tasks/{id}/complete"), "").await.error(404);
        api.cmd.post(&format!("/tasks/{id}/reopen"), "").await.error(404);
        api.cmd.post_with(&format!("/tasks/{id}/complete"), &[("If-Match", "1")], "").await.error(404);
    }
    api.query.get("/nowhere").await.error(404);
    api.cmd.post(&format!("/tasks/{}/archive", task.id), "").await.error(404);

    // 409: business rules.
    let done = api.complete(&task.id).await;
    assert!(api.cmd.post(&path("complete"), "").await.error(409).contains("completed"));
    api.cmd.post(&path("assign"), r#"{"assignee": "ann"}"#).await.error(409);
    let open = api.create("open").await;
    api.cmd.post(&format!("/tasks/{}/reopen", open.id), "").await.error(409);

    // Nothing above changed the task.
    let seen = api.read(&task.id, &done.position).await;
    assert_eq!((seen["version"].as_u64(), seen["status"].as_str()), (Some(2), Some("completed")));
    assert_eq!(seen["assignee"], Value::Null);
}

/// `If-Match`: only against that version, else 412 and nothing appended.
pub async fn if_match(api: &Api) {
    let task = api.create("guarded").await;
    let path = |action: &str| format!("/tasks/{}/{action}", task.id);
    let stale = api.cmd.post_with(&path("assign"), &[("If-Match", "2")], r#"{"assignee": "ann"}"#).await;
    assert!(stale.error(412).contains("version 1"));
    let fresh =
        Done::from(&api.cmd.post_with(&path("assign"), &[("If-Match", "\"1\"")], r#"{"assignee": "ann"}"#).await, 200);
    assert_eq!(fresh.version, 2);
    // The version the client read is now stale: refused, even on the other command process.
    api.cmd2.post_with(&path("assign"), &[("If-Match", "1")], r#"{"assignee": "bob"}"#).await.error(412);
    api.cmd2.post_with(&path("complete"), &[("If-Match", "\"1\"")], "").await.error(412);
    // The ETag of a read is what If-Match takes.
    let etag = api.query.get(&format!("/tasks/{}?min_position={}", task.id, fresh.position)).await;
    let etag = etag.header("etag").expect("an ETag").to_owned();
    let completed = Done::from(&api.cmd2.post_with(&path("complete"), &[("If-Match", &etag)], "").await, 200);
    assert_eq!(completed.version, 3);
    let seen = api.read(&task.id, &completed.position).await;
    assert_eq!((seen["assignee"].as_str(), seen["version"].as_u64()), (Some("ann"), Some(3)));
}

/// `Idempotency-Key`: the same answer and nothing appended when sent again (to either command
/// endpoint), 422 for a different request, a refused request may be retried, and requests at
/// once append at most once.
pub async fn idempotency(api: &Api) {
    let key = unique("create");
    let headers = [("Idempotency-Key", key.as_str())];
    let body = r#"{"title": "once"}"#;
    let first = api.cmd.post_with("/tasks", &headers, body).await;
    let done = Done::from(&first, 201);
    let (open0, completed0, total0) = api.stats(&done.position).await;
    let again = api.cmd2.post_with("/tasks", &headers, body).await;
    assert_eq!((again.status, again.json()), (201, first.json()), "the same answer from the other process");
    let again = api.cmd.post_with("/tasks", &headers, body).await;
    assert_eq!((again.status, again.json()), (201, first.json()));
    // A different request under the same key: 422, nothing executed.
    let msg = api.cmd2.post_with("/tasks", &headers, r#"{"title": "twice"}"#).await.error(422);
    assert!(msg.contains("Idempotency-Key"), "{msg}");
    api.cmd.post_with(&format!("/tasks/{}/complete", done.id), &headers, "").await.error(422);
    let probe = api.create("probe").await;
    assert_eq!(api.stats(&probe.position).await, (open0 + 1, completed0, total0 + 1), "one task per key");
    let seen = api.read(&done.id, &probe.position).await;
    assert_eq!((seen["title"].as_str(), seen["version"].as_u64()), (Some("once"), Some(1)));

    // On an existing task: executed once.
    let key = unique("assign");
    let headers = [("Idempotency-Key", key.as_str())];
    let path = format!("/tasks/{}/assign", done.id);
    let first = Done::from(&api.cmd.post_with(&path, &headers, r#"{"assignee": "ann"}"#).await, 200);
    let again = Done::from(&api.cmd2.post_with(&path, &headers, r#"{"assignee": "ann"}"#).await, 200);
    assert_eq!(first, again);
    api.cmd2.post_with(&path, &headers, r#"{"assignee": "bob"}"#).await.error(422);
    api.cmd.post_with(&format!("/tasks/{}/assign", probe.id), &headers, r#"{"assignee": "ann"}"#).await.error(422);
    assert_eq!(api.read(&done.id, &first.position).await["version"], 2);

    // A refused request records nothing: retried once the rule allows it, it runs.
    let key = unique("reopen");
    let headers = [("Idempotency-Key", key.as_str())];
    let reopen = format!("/tasks/{}/reopen", done.id);
    api.cmd.post_with(&reopen, &headers, "").await.error(409);
    api.complete(&done.id).await;
    let reopened = Done::from(&api.cmd2.post_with(&reopen, &headers, "").await, 200);
    assert_eq!(reopened.version, 4);
    // ... and sent again after that, it answers the same though the task is open now.
    let again = Done::from(&api.cmd.post_with(&reopen, &headers, "").await, 200);
    assert_eq!(again, reopened);

    // Sent at once, to both command endpoints: one task.
    let key = unique("race");
    let before = api.create("before the race").await;
    let (_, _, total_before) = api.stats(&before.position).await;
    let sends = (0..8).map(|i| {
        let client = if i % 2 == 0 { api.cmd } else { api.cmd2 };
        let key = key.clone();
        tokio::spawn(
            async move { client.post_with("/tasks", &[("Idempotency-Key", &key)], r#"{"title": "race"}"#).await },
        )
    });
    let mut answers = Vec::new();
    for send in sends.collect::<Vec<_>>() {
        answers.push(send.await.expect("the request task"));
    }
    let ids: Vec<Done> = answers.iter().map(|r| Done::from(r, 201)).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "every racer got the same answer: {ids:?}");
    let after = api.create("after the race").await;
    assert_eq!(api.stats(&after.position).await.2, total_before + 2, "the race appended one task");
}

/// `min_position` that the views never reach: 504 after `timeout_ms`.
pub async fn read_timeout(api: &Api) {
    let started = Instant::now();
    let response = api.query.get("/stats?min_position=18446744073709551615.1&timeout_ms=300").await;
    assert!(response.error(504).contains("position"));
    assert!(started.elapsed() >= Duration::from_millis(300));
    let task = api.create("t").await;
    api.query.get(&format!("/tasks/{}?min_position=18446744073709551615.1&timeout_ms=0", task.id)).await.error(504);
    api.query.get("/tasks?min_position=18446744073709551615.1&timeout_ms=50").await.error(504);
}
