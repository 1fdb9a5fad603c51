//! Managed Redis: TLS (`rediss://`, certificates verified, a private CA
//! with `--redis-ca-file`) and a Redis 6 ACL user with a password. A real
//! redis-server with `--tls-port`, a CA and a certificate the test makes;
//! a wrong CA or a wrong password is a clear start-up error, at once. And
//! the same for a 3-master Redis Cluster over TLS (`rediss+cluster://`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestServer, data};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::json;
use signal_relay::settings::StoreChoice;
use signal_relay::{Server, Settings};

const PASSWORD: &str = "acl-password-7f3e";

/// A CA, and a certificate for 127.0.0.1 and localhost signed by it.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn make_pki(name: &str) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, name);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: leaf.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// redis-server with TLS only (no plain port) and the ACL user `relay`.
struct TlsRedis {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl TlsRedis {
    fn start(pki: &Pki) -> TlsRedis {
        TlsRedis::start_with(pki, "single", "")
    }

    /// One with `extra` lines of configuration, in a folder named by `name`.
    fn start_with(pki: &Pki, name: &str, extra: &str) -> TlsRedis {
        common::apt_install_missing(&[
            (common::REDIS_SERVER, "redis-server"),
            ("/usr/bin/redis-cli", "redis-tools"),
        ])
        .expect("redis-server is installed");
        let dir =
            std::env::temp_dir().join(format!("signal-redis-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in [
            ("ca.pem", &pki.ca_pem),
            ("cert.pem", &pki.cert_pem),
            ("key.pem", &pki.key_pem),
        ] {
            std::fs::write(dir.join(file), text).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "port 0\nbind 127.0.0.1\ntls-port {port}\ntls-cert-file {d}/cert.pem\ntls-key-file {d}/key.pem\ntls-ca-cert-file {d}/ca.pem\ntls-auth-clients no\nsave \"\"\nappendonly no\ndir {d}\nuser default off\nuser relay on >{PASSWORD} ~* &* +@all\n{extra}",
            d = dir.display()
        );
        std::fs::write(dir.join("redis.conf"), config).unwrap();
        let child = Command::new(common::REDIS_SERVER)
            .arg(dir.join("redis.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "no TLS port");
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsRedis { port, dir, child }
    }

    fn url(&self, password: &str) -> String {
        format!("rediss://relay:{password}@127.0.0.1:{}/0", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn settings(url: String, ca: &Path) -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        store: StoreChoice::Redis(url),
        redis_ca_file: Some(ca.to_owned()),
        ..Settings::default()
    }
}

#[tokio::test]
async fn rediss_with_an_acl_user_relays_and_refuses_what_it_should() {
    let pki = make_pki("signal-relay test CA");
    let redis = TlsRedis::start(&pki);
    let ca = redis.dir.join("ca.pem");

    // Right CA, right user: a parked poll is woken through the TLS
    // subscription, on two instances.
    let a = TestServer::from_settings(settings(redis.url(PASSWORD), &ca)).await;
    let b = TestServer::from_settings(settings(redis.url(PASSWORD), &ca)).await;
    let mut alice = a.peer("tls", "alice");
    let mut bob = b.peer("tls", "bob");
    alice.join().await;
    bob.join().await;
    alice.poll(0.0).await;
    let parked = tokio::spawn(async move { alice.poll(5.0).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    bob.send_ok(Some("alice"), &json!({"over": "tls"})).await;
    assert_eq!(data(&parked.await.unwrap()), [json!({"over": "tls"})]);

    // Another CA: refused at start, saying why, without waiting for Redis.
    let stranger = make_pki("someone else's CA");
    let other_ca = redis.dir.join("other-ca.pem");
    std::fs::write(&other_ca, &stranger.ca_pem).unwrap();
    let started = Instant::now();
    let error = Server::bind(settings(redis.url(PASSWORD), &other_ca))
        .await
        .err()
        .expect("a certificate from another CA is refused");
    let text = error.to_string();
    println!("wrong CA: {text} (after {:?})", started.elapsed());
    assert!(text.contains("TLS to Redis failed"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A wrong password: refused at start, and the password is not in it.
    let started = Instant::now();
    let wrong = "not-the-password";
    let error = Server::bind(settings(redis.url(wrong), &ca))
        .await
        .err()
        .expect("a wrong password is refused");
    let text = error.to_string();
    println!("wrong password: {text} (after {:?})", started.elapsed());
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(!text.contains(wrong) && !text.contains(PASSWORD), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // Plain redis:// to a TLS-only port is not a TLS connection either.
    a.shutdown().await;
    b.shutdown().await;
}

/// Three TLS-only cluster nodes (the cluster bus over TLS too), made a
/// cluster by `redis-cli --tls --cluster create` as the ACL user.
fn start_tls_cluster(pki: &Pki) -> Vec<TlsRedis> {
    let nodes: Vec<TlsRedis> = (0..3)
        .map(|i| {
            let bus = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let extra = format!(
                "cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-port {bus}\ntls-cluster yes\ncluster-node-timeout 2000\n"
            );
            TlsRedis::start_with(pki, &format!("cluster-{i}"), &extra)
        })
        .collect();
    let ca = nodes[0].dir.join("ca.pem");
    let created = Command::new("/usr/bin/redis-cli")
        .arg("--tls")
        .arg("--cacert")
        .arg(&ca)
        .args(["--user", "relay", "--pass", PASSWORD, "--no-auth-warning"])
        .args(["--cluster", "create"])
        .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("redis-cli runs");
    assert!(created.success(), "redis-cli --tls --cluster create failed");
    let started = Instant::now();
    loop {
        let info = Command::new("/usr/bin/redis-cli")
            .arg("--tls")
            .arg("--cacert")
            .arg(&ca)
            .args(["--user", "relay", "--pass", PASSWORD, "--no-auth-warning"])
            .args(["-p", &nodes[2].port.to_string(), "CLUSTER", "INFO"])
            .output()
            .expect("redis-cli runs");
        if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the TLS cluster never reported cluster_state:ok"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    nodes
}

fn cluster_url(nodes: &[TlsRedis], password: &str) -> String {
    let seeds: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    format!("rediss+cluster://relay:{password}@{}", seeds.join(","))
}

#[tokio::test]
async fn rediss_cluster_with_an_acl_user_relays_and_refuses_what_it_should() {
    let pki = make_pki("signal-relay test CA");
    let nodes = start_tls_cluster(&pki);
    let ca = nodes[0].dir.join("ca.pem");

    let a = TestServer::from_settings(settings(cluster_url(&nodes, PASSWORD), &ca)).await;
    let b = TestServer::from_settings(settings(cluster_url(&nodes, PASSWORD), &ca)).await;
    // Rooms in different slots, so more than one node serves them.
    for room in ["tls-a", "tls-b", "tls-c", "tls-d"] {
        let mut alice = a.peer(room, "alice");
        let mut bob = b.peer(room, "bob");
        alice.join().await;
        bob.join().await;
        alice.poll(0.0).await;
        let parked = tokio::spawn(async move { alice.poll(5.0).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        bob.send_ok(Some("alice"), &json!({"over": "tls", "room": room}))
            .await;
        assert_eq!(
            data(&parked.await.unwrap()),
            [json!({"over": "tls", "room": room})]
        );
    }

    let stranger = make_pki("someone else's CA");
    let other_ca = nodes[0].dir.join("other-ca.pem");
    std::fs::write(&other_ca, &stranger.ca_pem).unwrap();
    let started = Instant::now();
    let error = Server::bind(settings(cluster_url(&nodes, PASSWORD), &other_ca))
        .await
        .err()
        .expect("a certificate from another CA is refused");
    let text = error.to_string();
    println!("cluster, wrong CA: {text} (after {:?})", started.elapsed());
    assert!(text.contains("TLS to Redis failed"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let started = Instant::now();
    let wrong = "not-the-password";
    let error = Server::bind(settings(cluster_url(&nodes, wrong), &ca))
        .await
        .err()
        .expect("a wrong password is refused");
    let text = error.to_string();
    println!(
        "cluster, wrong password: {text} (after {:?})",
        started.elapsed()
    );
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(!text.contains(wrong) && !text.contains(PASSWORD), "{text}");
    a.shutdown().await;
    b.shutdown().await;
}
