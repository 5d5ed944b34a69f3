use super::*;

fn open(url: &str) -> Result<BuildsUrl, Error> {
    BuildsUrl::open(
        url,
        &StoreOptions {
            tls_verify: true,
            ..StoreOptions::default()
        },
    )
}

#[test]
fn a_file_url_is_a_local_directory() {
    match open("file:///srv/builds/").unwrap() {
        BuildsUrl::Local(dir) => assert_eq!(dir, "/srv/builds"),
        BuildsUrl::Remote(s) => panic!("{s:?}"),
    }
    let e = open("file://builds").unwrap_err().to_string();
    assert!(e.contains("absolute path"), "{e}");
}

#[test]
fn plain_http_is_for_loopback_only_while_tls_is_verified() {
    let BuildsUrl::Remote(store) = open("http://127.0.0.1:8080/builds/").unwrap() else {
        panic!("not remote")
    };
    assert_eq!(store.url(), "http://127.0.0.1:8080/builds");
    assert!(!store.writable());
    assert_eq!(
        store.url_of("40.1/x86_64/meta.json"),
        "http://127.0.0.1:8080/builds/40.1/x86_64/meta.json"
    );
    let e = open("http://example.com/builds").unwrap_err().to_string();
    assert!(e.contains("--tls-verify=false"), "{e}");
    assert!(open("https://example.com/builds").is_ok());
}

#[test]
fn an_unknown_scheme_says_what_is_expected() {
    let e = open("ftp://example.com/builds").unwrap_err().to_string();
    assert!(
        e.starts_with("--builds-url \"ftp://example.com/builds\""),
        "{e}"
    );
    assert!(e.contains("s3://"), "{e}");
}

#[test]
fn loopback_hosts_are_recognised() {
    for (url, yes) in [
        ("http://127.0.0.1:9/x", true),
        ("http://localhost/x", true),
        ("http://[::1]:80/x", true),
        ("http://10.0.0.1/x", false),
        ("http://example.com:80/x", false),
    ] {
        assert_eq!(is_loopback(url), yes, "{url}");
    }
}
