//! A throwaway certificate authority for TLS tests against private servers, made with the
//! `openssl` command (installed by `scripts/ensure-tools.sh`).

use std::path::Path;
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Writes, in `dir`, a CA (`<name>-ca.pem`, `<name>-ca.key`) and a server certificate for
/// `127.0.0.1` signed by it (`<name>-srv.pem`, `<name>-srv.key`), valid for two days. Two
/// names give two unrelated CAs: a client trusting one refuses the other's server.
pub fn make_pki(dir: &Path, name: &str) {
    let (ca, ca_key) = (format!("{name}-ca.pem"), format!("{name}-ca.key"));
    let (srv, srv_key, csr) = (format!("{name}-srv.pem"), format!("{name}-srv.key"), format!("{name}-srv.csr"));
    let subject = format!("/CN=sessiond test CA {name}");
    let ca_args = [
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &ca_key, "-out", &ca, "-days", "2", "-subj",
        &subject,
    ];
    openssl(dir, &ca_args);
    openssl(
        dir,
        &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &srv_key, "-out", &csr, "-subj", "/CN=127.0.0.1"],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext.cnf");
    let sign = [
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &srv,
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ];
    openssl(dir, &sign);
}
