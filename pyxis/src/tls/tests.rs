use super::*;

/// A CA and node certificate written by `pyxis tls gen` into a fresh directory.
fn generated() -> (tempfile::TempDir, TlsFiles) {
    let dir = tempfile::tempdir().unwrap();
    crate::cli::tls::generate(dir.path(), &[]).unwrap();
    let files = TlsFiles {
        cert: dir.path().join("node.pem"),
        key: dir.path().join("node-key.pem"),
        ca: dir.path().join("ca.pem"),
    };
    (dir, files)
}

fn load_err(files: &TlsFiles) -> String {
    NodeTls::load(files).unwrap_err().to_string()
}

#[test]
fn generated_files_load_and_peers_use_https() {
    let (_dir, files) = generated();
    let tls = NodeTls::load(&files).unwrap();
    assert_eq!(tls.files(), &files);
    assert_eq!(tls.peers().scheme(), "https");
    assert_eq!(
        tls.peers().url("h:1", "/raft/vote"),
        "https://h:1/raft/vote"
    );
    assert!(tls.peers().client_builder().build().is_ok());
}

#[test]
fn a_missing_certificate_file_is_named() {
    let (dir, mut files) = generated();
    files.cert = dir.path().join("nope.pem");
    let text = load_err(&files);
    assert!(text.contains("nope.pem: cannot read"), "{text}");
}

#[test]
fn a_bad_pem_key_is_named() {
    let (dir, mut files) = generated();
    let bad = dir.path().join("bad-key.pem");
    std::fs::write(
        &bad,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    files.key = bad;
    let text = load_err(&files);
    assert!(text.contains("bad-key.pem"), "{text}");
}

#[test]
fn a_certificate_file_given_as_key_is_refused() {
    let (_dir, mut files) = generated();
    files.key = files.cert.clone();
    let text = load_err(&files);
    assert!(
        text.contains("node.pem") && text.contains("private key"),
        "{text}"
    );
}

#[test]
fn a_key_of_another_certificate_is_refused_naming_both_flags() {
    let (_a, mut files) = generated();
    let (_b, other) = generated();
    files.key = other.key;
    let text = load_err(&files);
    assert!(
        text.contains("--tls-cert") && text.contains("--tls-key"),
        "{text}"
    );
    assert!(
        text.contains("does not belong to the certificate"),
        "{text}"
    );
}

#[test]
fn the_three_flags_go_together() {
    let p = Path::new("x.pem");
    assert_eq!(files_from_flags(None, None, None), Ok(None));
    assert!(
        files_from_flags(Some(p), Some(p), Some(p))
            .unwrap()
            .is_some()
    );
    let err = files_from_flags(Some(p), Some(p), None).unwrap_err();
    assert!(err.contains("--tls-ca"), "{err}");
}

#[test]
fn member_addresses_lose_their_scheme_and_must_match_the_transport() {
    let plain = PeerTransport::plain();
    assert_eq!(plain.bare_addr("h:1"), Ok("h:1"));
    assert_eq!(plain.bare_addr("http://h:1/"), Ok("h:1"));
    let err = plain.bare_addr("https://h:1").unwrap_err();
    assert!(err.contains("TLS is off"), "{err}");
    let (_dir, files) = generated();
    let tls = NodeTls::load(&files).unwrap().peers();
    assert_eq!(tls.bare_addr("https://h:1"), Ok("h:1"));
    assert!(
        tls.bare_addr("http://h:1")
            .unwrap_err()
            .contains("TLS is on")
    );
    assert!(tls.bare_addr("https://h:1/x").is_err());
}

/// A client trusting another CA is refused in the handshake, and the error is recognised as
/// an untrusted certificate (the client turns it into a clear, non-retried error).
#[tokio::test]
async fn a_server_signed_by_another_ca_is_untrusted() {
    let (_a, files) = generated();
    let (_b, other) = generated();
    let tls = NodeTls::load(&files).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.acceptor();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = acceptor.accept(stream).await;
        }
    });
    let config = client_config(&other.ca, None).unwrap();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .unwrap();
    let err = client
        .get(format!("https://{addr}/"))
        .send()
        .await
        .unwrap_err();
    let reason = pyxis_client::tls::untrusted_certificate(&err);
    assert_eq!(reason.as_deref(), Some("BadSignature"), "{err:?}");
}
