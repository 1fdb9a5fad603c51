//! What checking one join ticket costs, per algorithm: paid once per join
//! (the request that claims a name, a `/config` with TURN, a WHIP/WHEP
//! offer), never per poll. Keys are made with `openssl` at the start of the
//! run (none is committed); the tickets are signed with jsonwebtoken, and
//! checked by `TicketKeys::check` exactly as a request's are.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use signal_relay::ticket::{TicketClaims, TicketKeys, TicketSecret};

const SECRET: &str = "bench-secret-bench-secret-bench-secret";

/// A private key made by `openssl genpkey` with `args`, and its public PEM.
fn key_pair(dir: &Path, name: &str, args: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let made = Command::new("openssl")
        .arg("genpkey")
        .args(args)
        .arg("-out")
        .arg(&private)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(&public)
            .status()
            .is_ok_and(|s| s.success());
    assert!(made, "openssl genpkey {args:?} failed");
    (
        std::fs::read(&private).expect("private key"),
        std::fs::read(&public).expect("public key"),
    )
}

fn ticket_benches(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("ticket-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let claims = TicketClaims {
        exp: now + 3600,
        iat: Some(now),
        room: "demo".into(),
        peer: Some("alice".into()),
        grants: Some(vec!["join".into(), "turn".into()]),
        ..TicketClaims::default()
    };
    let ec = key_pair(
        &dir,
        "ec",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let rsa = key_pair(
        &dir,
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let ed = key_pair(&dir, "ed", &["-algorithm", "ED25519"]);
    let cases = [
        (
            "HS256",
            Algorithm::HS256,
            EncodingKey::from_secret(SECRET.as_bytes()),
            None,
        ),
        (
            "ES256",
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&ec.0),
            Some(&ec.1),
        ),
        (
            "RS256",
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&rsa.0),
            Some(&rsa.1),
        ),
        (
            "EdDSA",
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(&ed.0),
            Some(&ed.1),
        ),
    ];
    let mut group = c.benchmark_group("ticket/check");
    for (name, algorithm, signing, public) in cases {
        let signing = signing.expect("a signing key");
        let ticket = jsonwebtoken::encode(&Header::new(algorithm), &claims, &signing)
            .expect("a signed ticket");
        let mut keys = TicketKeys::new(None);
        match public {
            None => keys.add_secret(None, &TicketSecret::new(SECRET).expect("a long secret")),
            Some(pem) => keys.add_public_key_pem(None, pem),
        }
        .expect("a verifying key");
        assert!(keys.check(&ticket, SystemTime::now()).is_ok(), "{name}");
        group.bench_function(name, |b| {
            b.iter(|| keys.check(std::hint::black_box(&ticket), SystemTime::now()))
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, ticket_benches);
criterion_main!(benches);
