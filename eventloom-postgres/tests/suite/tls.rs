//! TLS to PostgreSQL with rustls, against a private server that accepts TLS connections only.

use std::path::Path;
use std::process::Command;

use eventloom_core::testing::test_event;
use eventloom_core::{StreamId, model::ExpectedVersion, store::EventStore};
use eventloom_postgres::{Error, PgConfig, PgEventStore};

use crate::support::{PrivateServer, fresh_schema};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): install Debian's openssl package"));
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, and a server certificate it signed for 127.0.0.1: (CA PEM, certificate PEM, key PEM).
fn certificates() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let dir = std::env::temp_dir().join(format!("cqrs-tls-{}", fresh_schema()));
    std::fs::create_dir_all(&dir).unwrap();
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=cqrs test CA",
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
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
        .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "server.crt",
            "-extfile",
            "ext.cnf",
        ],
    );
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let out = (read("ca.crt"), read("server.crt"), read("server.key"));
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[tokio::test]
async fn connects_with_tls_to_a_server_that_refuses_plain_connections() {
    let (ca, cert, key) = certificates();
    let server = PrivateServer::init();
    server.write_private_file("server.crt", &cert);
    server.write_private_file("server.key", &key);
    // TLS connections only.
    server.write_private_file("pg_hba.conf", b"local all all trust\nhostssl all all 127.0.0.1/32 trust\n");
    let server = server.with_options("-c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key").start_now();
    let url = server.url();

    let config = PgConfig::from_url(&format!("{url}?sslmode=require")).unwrap().schema(fresh_schema()).unwrap();
    let store = PgEventStore::connect(config.clone().tls_root_certificates(ca)).await.expect("a TLS connection");
    store.migrate().await.unwrap();
    let stream = StreamId::new("tls", "1").unwrap();
    store.append(&stream, ExpectedVersion::NoStream, vec![test_event(1)]).await.unwrap();
    assert_eq!(store.read_stream(&stream, 1, 10).await.unwrap().len(), 1);

    // Without TLS the server refuses; without the CA the certificate is not trusted.
    let plain = PgConfig::from_url(&url).unwrap();
    assert!(matches!(PgEventStore::connect(plain).await, Err(Error::Connect(_))));
    let untrusted = PgEventStore::connect(config).await;
    assert!(matches!(untrusted, Err(Error::Connect(_))), "{untrusted:?}");
}

#[test]
fn credentials_stay_out_of_debug_output_and_errors() {
    let config = PgConfig::from_url("postgres://ada:hunter2@127.0.0.1:1/db?sslmode=require").unwrap();
    assert!(!format!("{config:?}").contains("hunter2"));
    let err = PgConfig::from_url("postgres://ada:hunter2@127.0.0.1:notaport/db").unwrap_err();
    assert!(!err.to_string().contains("hunter2"));
    assert!(!format!("{err:?}").contains("hunter2"));
}
