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
        resolved: Vec::new(),
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

/// [`ACL`], and the same user for replication (a replica authenticates to its master).
fn cluster_acl() -> Vec<&'static str> {
    let mut args = ACL.to_vec();
    args.extend_from_slice(&["--masteruser", "projector", "--masterauth", PASSWORD]);
    args
}

/// What redis-cli needs to log in as the ACL user.
const CLI_AUTH: &[&str] = &["--user", "projector", "--pass", PASSWORD, "--no-auth-warning"];

#[tokio::test]
async fn a_cluster_takes_the_acl_user_of_its_node_urls_and_a_wrong_password_fails_clearly() {
    use crate::private_cluster::PrivateCluster;
    let cluster = PrivateCluster::start(2_000, &cluster_acl(), CLI_AUTH, false);
    let config = RedisConfig::from_cluster_urls(&cluster.urls_with(&format!("projector:{PASSWORD}@"))).unwrap();
    assert_hidden(&format!("{config:?}"));
    let store = RedisViewStore::connect_with(config.prefix("t:").unwrap()).await.unwrap();
    assert_hidden(&format!("{store:?}"));
    round_trip(&store).await;

    let wrong = RedisConfig::from_cluster_urls(&cluster.urls_with("projector:wrong-Pa55@")).unwrap();
    let err = RedisViewStore::connect_with(wrong).await.unwrap_err();
    println!("cluster, wrong password: {err}");
    assert!(matches!(err, Error::Connect(_)), "{err:?}");
    assert_hidden(&err.to_string());
    assert_hidden(&format!("{err:?}"));
    let anonymous = RedisConfig::from_cluster_urls(&cluster.urls()).unwrap();
    assert!(matches!(RedisViewStore::connect_with(anonymous).await, Err(Error::Connect(_))));
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn a_cluster_over_tls_with_an_acl_user() {
    use crate::private_cluster::PrivateCluster;
    let dir =
        std::env::temp_dir().join(format!("cqrs-cluster-certs-{}-{}", std::process::id(), crate::private::free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = certificates(&dir);
    let file = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let (cert, key, ca_file) = (file("server.crt"), file("server.key"), file("ca.crt"));
    let mut args: Vec<&str> = vec![
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca_file,
        "--tls-auth-clients",
        "no",
    ];
    args.extend(cluster_acl());
    let mut cli: Vec<&str> = vec!["--tls", "--cacert", &ca_file];
    cli.extend_from_slice(CLI_AUTH);
    let cluster = PrivateCluster::start(2_000, &args, &cli, true);
    let urls = cluster.urls_with(&format!("projector:{PASSWORD}@")).replace("redis://", "rediss://");
    let config = RedisConfig::from_cluster_urls(&urls).unwrap().prefix("t:").unwrap().tls_root_certificates(ca);
    assert!(config.is_tls() && config.is_cluster());
    let store = RedisViewStore::connect_with(config).await.unwrap_or_else(|e| panic!("TLS to the cluster: {e}"));
    round_trip(&store).await;

    // Without the CA the certificate is not trusted.
    let untrusted = RedisConfig::from_cluster_urls(&urls).unwrap();
    let err = RedisViewStore::connect_with(untrusted).await.unwrap_err();
    println!("cluster, untrusted: {err}");
    assert!(matches!(err, Error::Connect(_)), "{err:?}");
    assert_hidden(&err.to_string());
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
