//! TLS and credentials, against private servers: user and password, token, nkey, TLS with a
//! CA of the test's own and a client certificate the server verifies.

use std::path::{Path, PathBuf};
use std::process::Command;

use eventloom_core::memory::MemoryEventStore;
use eventloom_nats::{Error, NatsConfig, Publisher, PublisherConfig};

use crate::*;

/// Publishes a few events through `config` and checks they are stored.
async fn publishes_through(config: &NatsConfig) {
    let client = config.connect().await.unwrap_or_else(|e| panic!("{config:?} connects: {e}"));
    let names = names("auth");
    let log = MemoryEventStore::new();
    fill(&log, 1, 3).await;
    let publisher =
        Publisher::new(client.clone(), PublisherConfig::new(&names.stream, &names.prefix).category("tally"));
    publisher.unwrap().catch_up(&log).await.unwrap();
    assert_eq!(stored_positions(&client, &names.stream).await.len(), 3);
    delete_stream(&client, &names.stream).await;
}

/// A connection the server refused for good: not an outage to retry, and a message that says
/// what to fix.
#[track_caller]
fn refused(result: eventloom_nats::Result<async_nats::Client>, what: &str) {
    match result {
        Err(error @ Error::ConnectRefused(_)) => {
            assert!(!error.is_transient(), "{error}");
            assert_eq!(error.kind(), eventloom_core::ErrorKind::InvalidInput, "{error}");
            assert!(error.to_string().contains(what), "{error}");
        }
        other => panic!("expected a refusal ({what}), got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_there_is_an_outage_to_retry() {
    let url = format!("nats://127.0.0.1:{}", free_port());
    let error = NatsConfig::new(&url).unwrap().connect().await.unwrap_err();
    assert!(matches!(error, Error::Connect(_)), "{error:?}");
    assert!(error.is_transient(), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password_in_the_url_or_given() {
    let server = PrivateNats::start("authorization { user: ada, password: \"s3cret pw\" }");
    let url = format!("nats://127.0.0.1:{}", server.port);
    publishes_through(&NatsConfig::new(&url).unwrap().user_password("ada", "s3cret pw")).await;
    publishes_through(&NatsConfig::new(format!("nats://ada:s3cret%20pw@127.0.0.1:{}", server.port)).unwrap()).await;
    let wrong = NatsConfig::new(&url).unwrap().user_password("ada", "wrong").connect().await;
    assert!(!format!("{wrong:?}").contains("wrong"), "the password stays out of errors");
    refused(wrong, "credentials");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token() {
    let server = PrivateNats::start("authorization { token: \"t0ken\" }");
    publishes_through(&NatsConfig::new(server.url()).unwrap().token("t0ken")).await;
    refused(NatsConfig::new(server.url()).unwrap().token("nope").connect().await, "credentials");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_nkey() {
    let user = nkeys::KeyPair::new_user();
    let server = PrivateNats::start(&format!("authorization {{ users: [ {{ nkey: {} }} ] }}", user.public_key()));
    publishes_through(&NatsConfig::new(server.url()).unwrap().nkey_seed(user.seed().unwrap())).await;
    let stranger = nkeys::KeyPair::new_user();
    let refused = NatsConfig::new(server.url()).unwrap().nkey_seed(stranger.seed().unwrap()).connect().await;
    self::refused(refused, "credentials");
    let garbage = NatsConfig::new(server.url()).unwrap().nkey_seed("SUNOTASEED").connect().await;
    assert!(matches!(garbage, Err(Error::Config(_))), "{garbage:?}");
    let missing = NatsConfig::new(server.url()).unwrap().creds_file("/nonexistent/user.creds").connect().await;
    assert!(matches!(missing, Err(Error::Config(_))), "{missing:?}");
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): install Debian's openssl package"));
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, and a server and a client certificate it signed, in `dir`.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=eventloom test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    for (name, cn, ext) in [
        (
            "server",
            "127.0.0.1",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "eventloom client", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"),
    ] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        std::fs::write(dir.join(format!("{name}.cnf")), ext).unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &format!("{name}.crt"),
                "-extfile",
                &format!("{name}.cnf"),
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_ca_of_its_own_and_a_client_certificate() {
    let dir: PathBuf = std::env::temp_dir().join(unique("eventloom-nats-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir);
    let file = |name: &str| dir.join(name).display().to_string();
    let server = PrivateNats::start(&format!(
        "tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, verify: true }}",
        file("server.crt"),
        file("server.key"),
        file("ca.crt")
    ));
    let url = format!("tls://127.0.0.1:{}", server.port);
    let trusted = NatsConfig::new(&url).unwrap().ca_file(file("ca.crt"));
    publishes_through(&trusted.clone().client_certificate(file("client.crt"), file("client.key"))).await;
    // A nats:// URL with require_tls does the same.
    let required = NatsConfig::new(server.url()).unwrap().require_tls(true).ca_file(file("ca.crt"));
    publishes_through(&required.client_certificate(file("client.crt"), file("client.key"))).await;
    // Without the client certificate the server refuses; without the CA the client does.
    refused(trusted.connect().await, "TLS");
    let untrusted = NatsConfig::new(&url).unwrap().client_certificate(file("client.crt"), file("client.key"));
    refused(untrusted.connect().await, "TLS");
    let missing = NatsConfig::new(&url).unwrap().ca_file(dir.join("absent.crt")).connect().await;
    assert!(matches!(missing, Err(Error::Config(_))), "{missing:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Base64url without padding, as JWTs are written.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// A JWT of `claims` (the `nats` object) for `subject`, signed by `issuer`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    let header = base64url(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let iat = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = serde_json::json!({
        "jti": unique("jti").to_uppercase(), "iat": iat, "iss": issuer.public_key(), "name": name, "sub": subject, "nats": nats,
    });
    let body = format!("{header}.{}", base64url(claims.to_string().as_bytes()));
    let signature = issuer.sign(body.as_bytes()).unwrap();
    format!("{body}.{}", base64url(&signature))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creds_file_of_a_user_jwt_and_its_seed() {
    let (operator, account, user) =
        (nkeys::KeyPair::new_operator(), nkeys::KeyPair::new_account(), nkeys::KeyPair::new_user());
    let operator_jwt =
        jwt(&operator, &operator.public_key(), "op", serde_json::json!({ "type": "operator", "version": 2 }));
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true, "conn": -1, "leaf": -1,
        "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
    });
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        "orders",
        serde_json::json!({ "limits": unlimited, "default_permissions": { "pub": {}, "sub": {} }, "type": "account", "version": 2 }),
    );
    let user_jwt = jwt(
        &account,
        &user.public_key(),
        "publisher",
        serde_json::json!({ "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2 }),
    );
    // Trusted operators need a system account (without JetStream) for JetStream to start.
    let system = nkeys::KeyPair::new_account();
    let system_jwt = jwt(
        &operator,
        &system.public_key(),
        "SYS",
        serde_json::json!({ "limits": { "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1 }, "type": "account", "version": 2 }),
    );
    let server = PrivateNats::start(&format!(
        "operator: {operator_jwt}\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{ {}: {account_jwt}, {}: {system_jwt} }}\n",
        system.public_key(),
        account.public_key(),
        system.public_key()
    ));
    let creds = server.dir.join("user.creds");
    std::fs::write(
        &creds,
        format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            user.seed().unwrap()
        ),
    )
    .unwrap();
    publishes_through(&NatsConfig::new(server.url()).unwrap().creds_file(&creds)).await;
    // Without credentials the server refuses.
    refused(NatsConfig::new(server.url()).unwrap().connect().await, "credentials");
}
