use super::*;

fn repo() -> Repository {
    Repository::parse("quay.io/a/b").unwrap()
}

fn status(code: u16, body: &str) -> Error {
    classify_status("t", &repo(), code, None, body.as_bytes())
}

#[test]
fn only_network_timeouts_throttling_and_5xx_are_transient() {
    for code in [408, 429, 500, 502, 503, 504] {
        assert!(status(code, "").is_transient(), "{code}");
    }
    for code in [400, 401, 403, 404, 405, 409, 501] {
        assert!(!status(code, "").is_transient(), "{code}");
    }
    let transport = Error::Transport {
        target: "t".into(),
        message: "connection reset".into(),
        kind: TransportKind::Connection,
    };
    assert!(transport.is_transient());
    let invalid = r#"{"errors":[{"code":"MANIFEST_INVALID","message":"bad"}]}"#;
    assert!(!status(400, invalid).is_transient());
}

#[test]
fn throttling_with_an_oci_error_body_is_still_retried() {
    let body = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#;
    let e = status(429, body);
    assert!(e.is_transient(), "{e:?}");
    assert!(e.to_string().contains("TOOMANYREQUESTS: slow down"), "{e}");
}

#[test]
fn retry_after_sets_the_floor_of_the_pause_up_to_a_cap() {
    let backoff = Duration::from_millis(50);
    assert_eq!(pause_before_retry(backoff, None), backoff);
    assert_eq!(
        pause_before_retry(backoff, Some(Duration::from_secs(1))),
        Duration::from_secs(1)
    );
    assert_eq!(
        pause_before_retry(Duration::from_secs(8), Some(Duration::from_secs(1))),
        Duration::from_secs(8)
    );
    assert_eq!(
        pause_before_retry(backoff, Some(Duration::from_secs(86400))),
        MAX_RETRY_AFTER
    );
}

#[test]
fn retry_after_is_read_in_seconds() {
    let mut h = HeaderMap::new();
    assert_eq!(parse_retry_after(&h), None);
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
    assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(3)));
    h.insert(
        header::RETRY_AFTER,
        HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
    );
    assert_eq!(parse_retry_after(&h), None);
}

#[test]
fn jitter_stays_within_half_to_one_and_a_half() {
    let d = Duration::from_millis(1000);
    let j = jitter(d);
    assert!(j >= d / 2 && j < d * 3 / 2, "{j:?}");
}

#[test]
fn denied_is_its_own_error() {
    assert!(matches!(status(403, ""), Error::Denied { .. }));
    assert!(matches!(status(401, ""), Error::Denied { .. }));
    let body = r#"{"errors":[{"code":"DENIED","message":"no"}]}"#;
    assert!(matches!(status(400, body), Error::Denied { .. }));
    assert!(matches!(status(503, ""), Error::Status { status: 503, .. }));
}

#[test]
fn https_unless_loopback_or_tls_verify_is_off() {
    let base = |repo: &str, tls_verify: bool| {
        let opts = ConnectOptions {
            tls_verify,
            ..ConnectOptions::default()
        };
        let repo = Repository::parse(repo).unwrap();
        Client::new(&repo, &opts).unwrap().base
    };
    assert_eq!(base("quay.io/a/b", true), "https://quay.io");
    assert_eq!(base("quay.io/a/b", false), "http://quay.io");
    assert_eq!(base("127.0.0.1:5000/a", true), "http://127.0.0.1:5000");
    assert_eq!(base("localhost:5000/a", true), "http://localhost:5000");
    assert_eq!(base("[::1]:5000/a", true), "http://[::1]:5000");
    assert_eq!(base("fedora/fedora", true), "https://index.docker.io");
}

#[test]
fn a_digest_reference_must_come_back_as_that_digest() {
    let d = Digest::of(b"a");
    let other = Digest::of(b"b");
    let r = repo().digested(&d);
    assert!(check_reference_digest("t", &r, &d).is_ok());
    assert!(check_reference_digest("t", &r, &other).is_err());
}

/// A copy reads from one registry and writes to another: a denial from the source must
/// name the source's registry and the credentials sent there, not the destination's.
#[test]
fn a_denial_from_a_copys_source_names_the_sources_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let authfile = |name: &str, host: &str| {
        let path = camino::Utf8PathBuf::from_path_buf(dir.path().join(name)).unwrap();
        let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "u:p");
        let json = serde_json::json!({ "auths": { host: { "auth": auth } } });
        std::fs::write(&path, json.to_string()).unwrap();
        path
    };
    let client = |repo: &str, file: camino::Utf8PathBuf| {
        let opts = ConnectOptions {
            authfile: Some(file),
            ..ConnectOptions::default()
        };
        Client::new(&Repository::parse(repo).unwrap(), &opts).unwrap()
    };
    let destination = client("dest.example/a", authfile("dest.json", "dest.example"));
    let source = client("src.example/b", authfile("src.json", "src.example"));
    let refused = Error::Denied {
        target: "src.example/b@sha256:00".into(),
        registry: "src.example".into(),
        detail: "HTTP 403".into(),
        auth: check_credentials_for("src.example"),
    };

    // What the copy path does: the source attributes its own denial, then the destination's
    // retry loop sees it.
    let seen = destination.attribute(source.attribute(refused));
    let Error::Denied { registry, auth, .. } = seen else {
        panic!("still a denial: {seen:?}");
    };
    assert_eq!(registry, "src.example");
    assert!(auth.contains("src.json"), "{auth}");
    assert!(!auth.contains("dest.json"), "{auth}");

    // A denial of the destination's own is still attributed to the destination.
    let own = destination.attribute(Error::Denied {
        target: "dest.example/a:stable".into(),
        registry: "dest.example".into(),
        detail: "HTTP 401".into(),
        auth: check_credentials_for("dest.example"),
    });
    assert!(
        matches!(&own, Error::Denied { auth, .. } if auth.contains("dest.json")),
        "{own:?}"
    );
}
