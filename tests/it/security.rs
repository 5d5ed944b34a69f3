//! Secrets stay secret at every verbosity, and TLS is the default for any registry that is
//! not on loopback.

use crate::support::env::Env;
use crate::support::proxy::Fault;
use base64::Engine as _;

const USER: &str = "release-bot";
const PASSWORD: &str = "pw-7f1e3c9a-never-print-me";

fn write_authfile(env: &Env, registry: &str) -> String {
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let path = env.dir().join("auth.json");
    let doc = serde_json::json!({ "auths": { registry: { "auth": pair } } });
    std::fs::write(&path, doc.to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

fn assert_no_secret(output: &str) {
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    for secret in [PASSWORD, pair.as_str()] {
        assert!(
            !output.contains(secret),
            "secret {secret:?} printed:\n{output}"
        );
    }
}

#[test]
fn credentials_never_appear_in_any_output_even_at_trace_level() {
    let env = Env::new();
    let authfile = write_authfile(&env, &env.proxy.host());
    let mut args = env.push_args(&["stable"], &["-vvv", "--authfile", &authfile]);
    args.extend(["--retry-delay".to_owned(), "0.01".to_owned()]);

    // A run that succeeds, with every log line the HTTP stack can produce...
    let out = env
        .command(&args)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.lines().count() > 50,
        "trace logging was on: {stderr}"
    );
    assert_no_secret(&stdout);
    assert_no_secret(&stderr);

    // ...and one the registry refuses, which goes through token refresh and error reporting.
    env.proxy
        .inject(Fault::status("HEAD", "/manifests/stable", 401));
    let out = env
        .command(&args)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("access denied"), "{stderr}");
    assert_no_secret(&String::from_utf8_lossy(&out.stdout));
    assert_no_secret(&stderr);
}

#[test]
fn a_registry_off_loopback_is_spoken_to_over_tls_unless_tls_verify_is_off() {
    let env = Env::new();
    // An IPv4-mapped IPv6 address reaches the proxy on 127.0.0.1 but is not a loopback
    // address as such, so reprise must treat it as any remote registry. The proxy speaks
    // plain HTTP only.
    let port = env.proxy.host().rsplit_once(':').unwrap().1.to_owned();
    let repo = format!("[::ffff:127.0.0.1]:{port}/fedora/fedora-coreos");
    let mut args = env.push_args(&["stable"], &["--retry-times", "0"]);
    let at = args.iter().position(|a| a == "--repo").unwrap();
    args[at + 1] = repo;

    let out = env.command(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("does not answer in TLS"),
        "tried HTTPS: {stderr}"
    );
    assert!(
        !stderr.contains("http://") && !stderr.contains("https://"),
        "no URL in errors: {stderr}"
    );
    assert!(
        env.proxy.requests().is_empty(),
        "no plain HTTP request was sent: {:?}",
        env.proxy.requests()
    );

    args.push("--tls-verify=false".to_owned());
    let out = env.command(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!env.proxy.requests().is_empty());
}

#[test]
fn credentials_are_never_sent_over_plain_http_to_a_registry_off_loopback() {
    let env = Env::new();
    let port = env.proxy.host().rsplit_once(':').unwrap().1.to_owned();
    let host = format!("[::ffff:127.0.0.1]:{port}");
    let authfile = write_authfile(&env, &host);
    let mut args = env.push_args(
        &["stable"],
        &[
            "--tls-verify=false",
            "--authfile",
            &authfile,
            "--retry-times",
            "0",
        ],
    );
    let at = args.iter().position(|a| a == "--repo").unwrap();
    args[at + 1] = format!("{host}/fedora/fedora-coreos");
    let out = env.command(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refusing to send credentials") && stderr.contains(&host),
        "{stderr}"
    );
    assert!(
        env.proxy.requests().is_empty(),
        "nothing was sent: {:?}",
        env.proxy.requests()
    );
    assert_no_secret(&stderr);
}
