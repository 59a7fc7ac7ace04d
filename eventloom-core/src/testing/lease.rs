//! The conformance suite every [`LeaseManager`] runs.
//!
//! Besides a way to make a fresh manager, the suite takes `lose`: a hook that makes the current
//! holder of a lease lose it the way this manager's leases are lost in production (a revoked
//! slot, a killed connection), so that the suite can check the loss is signalled. A manager
//! whose leases cannot be lost from outside runs the other cases one by one.
//!
//! Every wait is bounded by [`PROMPTLY`], so a case that hangs fails instead.
//!
//! ```
//! use eventloom_core::memory::MemoryLeases;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! eventloom_core::testing::lease::run(
//!     || async { MemoryLeases::default() },
//!     |leases: MemoryLeases, name: String| async move { leases.revoke(&name) },
//! )
//! .await;
//! # });
//! ```

use std::future::Future;
use std::time::Duration;

use crate::store::{LeaseHolder, LeaseInfo};
use crate::{Error, Lease, LeaseManager};

/// How long the suite lets a manager take to hand a released lease over, or to signal a loss.
pub const PROMPTLY: Duration = Duration::from_secs(10);

/// How long the suite watches a waiting acquirer to check it keeps waiting.
const WAITS: Duration = Duration::from_millis(500);

/// Runs every case, each on a fresh manager from `make`; `lose(manager, name)` makes the
/// holder of `name` lose its lease.
pub async fn run<L, F, Fut, B, BFut>(make: F, lose: B)
where
    L: LeaseManager + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = L>,
    B: Fn(L, String) -> BFut,
    BFut: Future<Output = ()>,
{
    one_holder_at_a_time(make().await).await;
    a_dropped_lease_is_released_promptly(make().await).await;
    tokens_grow_and_names_are_independent(make().await).await;
    try_acquire_takes_only_a_free_lease(make().await).await;
    a_lost_lease_is_signalled_and_taken_over(make().await, &lose).await;
    a_try_acquired_lease_signals_its_loss(make().await, &lose).await;
    holders_are_recorded_and_listed(make().await).await;
    bad_names_are_refused(make().await).await;
}

/// How long a `try_acquire` may take: a connection and one attempt, never a wait for the holder.
const AT_ONCE: Duration = Duration::from_secs(3);

/// One `try_acquire`, which must answer within [`AT_ONCE`].
async fn try_acquire<L: LeaseManager>(leases: &L, name: &str) -> Option<Lease> {
    match tokio::time::timeout(AT_ONCE, leases.try_acquire(name)).await {
        Ok(lease) => lease.expect("try_acquire"),
        Err(_) => panic!("try_acquire({name:?}) waited more than {AT_ONCE:?}: it must answer at once"),
    }
}

/// `try_acquire` until it takes the lease: a released lease may take a moment to be free (a
/// session that ends).
async fn try_until_taken<L: LeaseManager>(leases: &L, name: &str) -> Lease {
    let deadline = tokio::time::Instant::now() + PROMPTLY;
    loop {
        if let Some(lease) = try_acquire(leases, name).await {
            return lease;
        }
        assert!(tokio::time::Instant::now() < deadline, "the released lease {name:?} was not free within {PROMPTLY:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn acquire<L: LeaseManager>(leases: &L, name: &str) -> Lease {
    match tokio::time::timeout(PROMPTLY, leases.acquire(name)).await {
        Ok(lease) => lease.expect("acquire"),
        Err(_) => panic!("acquiring the free lease {name:?} took more than {PROMPTLY:?}"),
    }
}

/// A second acquirer waits while the first holds the lease, and takes it over, with a higher
/// token, once the first is dropped.
pub async fn one_holder_at_a_time<L: LeaseManager + Clone>(leases: L) {
    let first = acquire(&leases, "conformance").await;
    assert!(!first.is_lost(), "a new lease is held");
    let standby = {
        let leases = leases.clone();
        tokio::spawn(async move { leases.acquire("conformance").await })
    };
    tokio::time::sleep(WAITS).await;
    assert!(!standby.is_finished(), "a second acquire waits while the first lease is held");
    assert!(!first.is_lost(), "a waiting acquirer takes nothing from the holder");
    let token = first.token();
    drop(first);
    let second = tokio::time::timeout(PROMPTLY, standby)
        .await
        .unwrap_or_else(|_| panic!("the waiting acquirer did not take over within {PROMPTLY:?} of the release"))
        .expect("task")
        .expect("acquire");
    assert!(second.token() > token, "tokens grow: {token} then {}", second.token());
    assert!(!second.is_lost());
}

/// Dropping a lease frees it for the next acquire at once (within [`PROMPTLY`]), with no
/// acquirer waiting beforehand.
pub async fn a_dropped_lease_is_released_promptly<L: LeaseManager>(leases: L) {
    let mut token = 0;
    for _ in 0..3 {
        let lease = acquire(&leases, "released").await;
        assert!(lease.token() > token, "tokens grow: {token} then {}", lease.token());
        token = lease.token();
        drop(lease);
    }
}

/// Fencing tokens strictly grow across acquisitions of a name, and holding one name never
/// blocks another.
pub async fn tokens_grow_and_names_are_independent<L: LeaseManager>(leases: L) {
    let a = acquire(&leases, "a").await;
    let mut b_tokens = Vec::new();
    for _ in 0..4 {
        // Taken at once although `a` is held: names are independent.
        let b = acquire(&leases, "b").await;
        b_tokens.push(b.token());
    }
    assert!(b_tokens.windows(2).all(|w| w[0] < w[1]), "tokens of b grow: {b_tokens:?}");
    assert!(!a.is_lost(), "acquiring another name takes nothing from a's holder");
    let mut a_tokens = vec![a.token()];
    drop(a);
    let c = acquire(&leases, "a/c").await;
    for _ in 0..3 {
        a_tokens.push(acquire(&leases, "a").await.token());
    }
    assert!(a_tokens.windows(2).all(|w| w[0] < w[1]), "tokens of a grow: {a_tokens:?}");
    assert!(!c.is_lost());
}

/// A lease taken away (by `lose`) reports it: [`Lease::lost`] resolves and [`Lease::is_lost`]
/// turns true; the next acquire gets the lease with a higher token, and the lost lease does not
/// come back.
pub async fn a_lost_lease_is_signalled_and_taken_over<L, B, BFut>(leases: L, lose: B)
where
    L: LeaseManager + Clone,
    B: Fn(L, String) -> BFut,
    BFut: Future<Output = ()>,
{
    let held = acquire(&leases, "lost").await;
    let other = acquire(&leases, "kept").await;
    assert!(!held.is_lost());
    // `lost()` stays pending while the lease is held.
    assert!(tokio::time::timeout(Duration::from_millis(100), held.lost()).await.is_err(), "held, not lost");
    lose(leases.clone(), "lost".to_owned()).await;
    if tokio::time::timeout(PROMPTLY, held.lost()).await.is_err() {
        panic!("a lost lease was not signalled within {PROMPTLY:?}");
    }
    assert!(held.is_lost(), "is_lost() agrees with lost()");
    let next = acquire(&leases, "lost").await;
    assert!(next.token() > held.token(), "tokens grow: {} then {}", held.token(), next.token());
    assert!(held.is_lost(), "a lost lease stays lost");
    assert!(!next.is_lost());
    assert!(!other.is_lost(), "losing one name takes nothing from another");
    // Dropping the lost lease must not release its successor.
    drop(held);
    let standby = {
        let leases = leases.clone();
        tokio::spawn(async move { leases.acquire("lost").await })
    };
    tokio::time::sleep(WAITS).await;
    assert!(!standby.is_finished(), "dropping a lost lease releases nothing of the next holder's");
    standby.abort();
    drop(next);
    drop(other);
}

/// `try_acquire` takes a free lease at once, and answers `None` at once while another holds it
/// (taking nothing from the holder); once the holder drops its lease a try takes it, with a
/// higher token. A try-acquired lease is held like any: a try gets `None`, an acquire waits
/// until it is dropped. Tokens grow across acquires and tries.
pub async fn try_acquire_takes_only_a_free_lease<L: LeaseManager + Clone>(leases: L) {
    let free = try_acquire(&leases, "try/free").await.expect("a lease nobody holds is taken at once");
    assert!(!free.is_lost(), "a new lease is held");
    assert!(try_acquire(&leases, "try/free").await.is_none(), "held by the first try");
    drop(free);

    let held = acquire(&leases, "try").await;
    for _ in 0..3 {
        assert!(try_acquire(&leases, "try").await.is_none(), "None while another holds the lease");
    }
    assert!(!held.is_lost(), "a try takes nothing from the holder");
    let mut tokens = vec![held.token()];
    drop(held);
    let taken = try_until_taken(&leases, "try").await;
    tokens.push(taken.token());
    assert!(try_acquire(&leases, "try").await.is_none(), "a try-acquired lease is held");
    let standby = {
        let leases = leases.clone();
        tokio::spawn(async move { leases.acquire("try").await })
    };
    tokio::time::sleep(WAITS).await;
    assert!(!standby.is_finished(), "an acquire waits while a try-acquired lease is held");
    assert!(!taken.is_lost(), "a waiting acquirer takes nothing from a try-acquired lease");
    drop(taken);
    let next = tokio::time::timeout(PROMPTLY, standby)
        .await
        .unwrap_or_else(|_| panic!("the waiting acquirer did not take over within {PROMPTLY:?} of the release"))
        .expect("task")
        .expect("acquire");
    tokens.push(next.token());
    drop(next);
    for _ in 0..2 {
        let lease = try_until_taken(&leases, "try").await;
        tokens.push(lease.token());
        drop(lease);
        tokens.push(acquire(&leases, "try").await.token());
    }
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "tokens grow across acquires and tries: {tokens:?}");
}

/// A try-acquired lease taken away (by `lose`) reports it like an acquired one, and the next
/// holder gets a higher token.
pub async fn a_try_acquired_lease_signals_its_loss<L, B, BFut>(leases: L, lose: B)
where
    L: LeaseManager + Clone,
    B: Fn(L, String) -> BFut,
    BFut: Future<Output = ()>,
{
    let held = try_acquire(&leases, "try/lost").await.expect("a lease nobody holds is taken at once");
    assert!(tokio::time::timeout(Duration::from_millis(100), held.lost()).await.is_err(), "held, not lost");
    lose(leases.clone(), "try/lost".to_owned()).await;
    if tokio::time::timeout(PROMPTLY, held.lost()).await.is_err() {
        panic!("a lost try-acquired lease was not signalled within {PROMPTLY:?}");
    }
    assert!(held.is_lost(), "is_lost() agrees with lost()");
    let next = try_until_taken(&leases, "try/lost").await;
    assert!(next.token() > held.token(), "tokens grow: {} then {}", held.token(), next.token());
    assert!(!next.is_lost());
}

/// The leases under `prefix`, listed within [`PROMPTLY`].
async fn listed<L: LeaseManager>(leases: &L, prefix: &str) -> Vec<LeaseInfo> {
    match tokio::time::timeout(PROMPTLY, leases.leases(prefix)).await {
        Ok(listed) => listed.expect("leases"),
        Err(_) => panic!("listing the leases under {prefix:?} took more than {PROMPTLY:?}"),
    }
}

/// Checks that `info` records this process as the holder of `token`.
fn taken_here(info: &LeaseInfo, name: &str, token: u64) {
    let me = LeaseHolder::this_process();
    assert_eq!(info.name, name);
    assert_eq!(info.token, token, "the last token of {name:?}");
    let holder = info.holder.as_ref().unwrap_or_else(|| panic!("the holder of {name:?} is recorded: {info:?}"));
    assert_eq!((&holder.host, holder.pid), (&me.host, me.pid), "{name:?} is held by this process");
    // The role is process-wide: another test of this process may set it meanwhile.
    assert!(!holder.role.is_empty(), "a role is recorded: {holder:?}");
    assert!(info.acquired_at.is_some(), "the time {name:?} was taken is recorded");
}

/// A lease taken by [`acquire`](LeaseManager::acquire) or
/// [`try_acquire`](LeaseManager::try_acquire) is listed by [`leases`](LeaseManager::leases)
/// under its prefix, sorted by name, with its token, this process as its holder (host, pid,
/// role), when it was taken, and `held` true; once dropped it is listed not held (within
/// [`PROMPTLY`]), keeping its last holder, and taken again with a higher token.
pub async fn holders_are_recorded_and_listed<L: LeaseManager>(leases: L) {
    assert!(listed(&leases, "holders/").await.is_empty(), "nothing taken yet under holders/");
    let before = crate::Timestamp::now();
    let b = acquire(&leases, "holders/b").await;
    let a = try_acquire(&leases, "holders/a").await.expect("a lease nobody holds is taken at once");
    let other = acquire(&leases, "holdersX").await;
    let infos = listed(&leases, "holders/").await;
    assert_eq!(infos.len(), 2, "only the leases under the prefix, by name: {infos:?}");
    taken_here(&infos[0], "holders/a", a.token());
    taken_here(&infos[1], "holders/b", b.token());
    assert!(infos.iter().all(|info| info.held), "both held: {infos:?}");
    let at = infos[1].acquired_at.expect("acquired_at");
    // Clocks of two machines (this one and a database server's) may differ by a little.
    assert!(at.as_micros() > before.as_micros() - 60_000_000, "taken about now: {at:?}, {before:?}");
    assert!(listed(&leases, "").await.iter().any(|info| info.name == "holdersX"), "\"\" lists every lease");
    assert_eq!(listed(&leases, "holders/a").await.len(), 1);

    let token = b.token();
    drop(b);
    let deadline = tokio::time::Instant::now() + PROMPTLY;
    loop {
        let infos = listed(&leases, "holders/b").await;
        assert_eq!(infos.len(), 1, "a released lease is still listed: {infos:?}");
        if !infos[0].held {
            taken_here(&infos[0], "holders/b", token);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "a dropped lease was still listed held after {PROMPTLY:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = acquire(&leases, "holders/b").await;
    assert!(again.token() > token, "tokens grow: {token} then {}", again.token());
    let infos = listed(&leases, "holders/b").await;
    taken_here(&infos[0], "holders/b", again.token());
    assert!(infos[0].held);
    assert!(listed(&leases, "holders/a").await[0].held, "a is still held");
    drop((a, other));
}

/// A lease name (or listing prefix) with a NUL byte, or longer than
/// [`MAX_LEASE_NAME_LEN`](crate::store::MAX_LEASE_NAME_LEN) bytes, is refused with
/// [`Error::InvalidId`] by every method, at once.
pub async fn bad_names_are_refused<L: LeaseManager>(leases: L) {
    let long = "l".repeat(crate::store::MAX_LEASE_NAME_LEN + 1);
    for name in ["nul\0name", long.as_str()] {
        let refused = |what: &str, result: Result<(), Error>| match result {
            Err(Error::InvalidId { what: "lease name", .. }) => {}
            other => panic!("{what}({:?}…): expected InvalidId, got {other:?}", &name[..8]),
        };
        let acquired = tokio::time::timeout(AT_ONCE, leases.acquire(name)).await.expect("acquire answers at once");
        refused("acquire", acquired.map(drop));
        let tried = tokio::time::timeout(AT_ONCE, leases.try_acquire(name)).await.expect("try_acquire answers at once");
        refused("try_acquire", tried.map(drop));
        let listing = tokio::time::timeout(AT_ONCE, leases.leases(name)).await.expect("leases answers at once");
        refused("leases", listing.map(drop));
    }
    let longest = "l".repeat(crate::store::MAX_LEASE_NAME_LEN);
    let lease = acquire(&leases, &longest).await;
    assert_eq!(listed(&leases, &longest).await.len(), 1, "the longest name is taken and listed");
    drop(lease);
}
