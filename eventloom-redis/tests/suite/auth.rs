//! AUTH with an ACL user, and TLS (feature `tls`) to a server with a private CA that accepts
//! TLS connections only.

#[cfg(feature = "tls")]
use std::path::Path;
#[cfg(feature = "tls")]
use std::process::Command;

use eventloom_core::{
    Position,
    store::{ViewCommit, ViewStore, ViewWrite},
};
use eventloom_redis::{Error, RedisConfig, RedisViewStore};

use crate::private::PrivateRedis;

const PASSWORD: &str = "s3cr3t-Pa55word";

/// An ACL user `projector` with [`PASSWORD`] that may do everything; the default user is off, so
/// a connection without credentials can do nothing.
const ACL: &[&str] =
    &["--user", "projector", "on", ">s3cr3t-Pa55word", "~*", "&*", "+@all", "--user", "default", "off"];

/// Commits one view, makes it live and reads it back.
async fn round_trip(store: &RedisViewStore) {
    let g = store.begin_generation("p", 1, 0).await.unwrap().unwrap();
    let commit = ViewCommit {
        generation: g.id,
        expected: None,
        checkpoint: Position::new(1, 1),
        fencing_token: 0,
        views: vec![ViewWrite::set("a", r#"{"ok":true}"#)],
        dead_letters: Vec::new(),
    };
    store.commit("p", commit).await.unwrap().unwrap();
    store.go_live("p", g.id, 0).await.unwrap().unwrap();
    assert_eq!(store.read_views("p", &["a".into()]).await.unwrap(), vec![Some(r#"{"ok":true}"#.into())]);
}

fn assert_hidden(text: &str) {
    assert!(!text.contains(PASSWORD), "the password leaked: {text}");
    assert!(!text.contains("wrong-Pa55"), "the password leaked: {text}");
}

#[tokio::test]
async fn an_acl_user_with_a_password_connects_and_a_wrong_password_fails_clearly() {
    let redis = PrivateRedis::start(ACL, false);
    let port = redis.port();
    let store =
        RedisViewStore::connect(&format!("redis://projector:{PASSWORD}@127.0.0.1:{port}/"), "t:").await.unwrap();
    assert_hidden(&format!("{store:?}"));
    round_trip(&store).await;

    let started = std::time::Instant::now();
    let wrong = RedisViewStore::connect(&format!("redis://projector:wrong-Pa55@127.0.0.1:{port}/"), "t:").await;
    let err = wrong.unwrap_err();
    assert!(matches!(err, Error::Connect(_)), "{err:?}");
    let message = err.to_string();
    println!("wrong password: {message}");
    assert!(message.to_lowercase().contains("auth") || message.contains("WRONGPASS"), "not clear: {message}");
    assert_hidden(&message);
    assert_hidden(&format!("{err:?}"));
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "a wrong password is not retried");

    // Without credentials the server refuses every command: that fails at connect too.
    let anonymous = RedisViewStore::connect(&format!("redis://127.0.0.1:{port}/"), "t:").await.unwrap_err();
    println!("anonymous: {anonymous}");
    assert!(matches!(anonymous, Error::Connect(_)), "{anonymous:?}");
    let config = RedisConfig::from_url(&format!("redis://projector:{PASSWORD}@127.0.0.1:{port}/")).unwrap();
    assert_hidden(&format!("{config:?}"));
}

#[cfg(feature = "tls")]
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): install Debian's openssl package"));
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[cfg(feature = "tls")]
/// A CA, and a certificate it signed for 127.0.0.1 and localhost, in `dir`: `ca.crt`,
/// `server.crt`, `server.key`. Returns the CA's PEM.
fn certificates(dir: &Path) -> Vec<u8> {
    #[rustfmt::skip]
    openssl(dir, &[
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=cqrs redis test CA",
        "-keyout", "ca.key", "-out", "ca.crt",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    #[rustfmt::skip]
    openssl(dir, &[
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
        .unwrap();
    #[rustfmt::skip]
    openssl(dir, &[
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-out", "server.crt", "-extfile", "ext.cnf",
    ]);
    std::fs::read(dir.join("ca.crt")).unwrap()
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn connects_with_tls_and_an_acl_user_to_a_server_that_refuses_plain_connections() {
    let (dir, port) = PrivateRedis::prepare();
    let ca = certificates(&dir);
    let mut args = vec![
        "--tls-cert-file",
        "server.crt",
        "--tls-key-file",
        "server.key",
        "--tls-ca-cert-file",
        "ca.crt",
        "--tls-auth-clients",
        "no",
    ];
    args.extend_from_slice(ACL);
    let _redis = PrivateRedis::start_in(dir, port, &args, true);

    for host in ["127.0.0.1", "localhost"] {
        let url = format!("rediss://projector:{PASSWORD}@{host}:{port}/");
        let config = RedisConfig::from_url(&url)
            .unwrap()
            .prefix(format!("t:{host}:"))
            .unwrap()
            .tls_root_certificates(ca.clone());
        assert!(config.is_tls());
        assert_hidden(&format!("{config:?}"));
        let store = RedisViewStore::connect_with(config).await.unwrap_or_else(|e| panic!("TLS to {host}: {e}"));
        assert_hidden(&format!("{store:?}"));
        round_trip(&store).await;
    }

    // Without the CA the certificate is not trusted; with it, a wrong password still fails.
    let untrusted = RedisViewStore::connect(&format!("rediss://projector:{PASSWORD}@127.0.0.1:{port}/"), "t:").await;
    let err = untrusted.unwrap_err();
    println!("untrusted: {err}");
    assert!(matches!(err, Error::Connect(_)), "{err:?}");
    assert_hidden(&err.to_string());
    let wrong = RedisConfig::from_url(&format!("rediss://projector:wrong-Pa55@127.0.0.1:{port}/"))
        .unwrap()
        .tls_root_certificates(ca.clone());
    let err = RedisViewStore::connect_with(wrong).await.unwrap_err();
    assert!(matches!(err, Error::Connect(_)), "{err:?}");
    assert_hidden(&err.to_string());
    // Certificates for a redis:// URL are a mistake, said before connecting.
    let plain = RedisConfig::from_url(&format!("redis://127.0.0.1:{port}/")).unwrap().tls_root_certificates(ca);
    assert!(matches!(RedisViewStore::connect_with(plain).await, Err(Error::Config(_))));
}

#[cfg(not(feature = "tls"))]
#[test]
fn without_the_tls_feature_rediss_urls_are_refused_clearly() {
    let err = RedisConfig::from_url("rediss://projector:s3cr3t-Pa55word@127.0.0.1:6380/").unwrap_err();
    assert!(err.to_string().contains("`tls` feature"), "{err}");
    assert_hidden(&err.to_string());
}
