//! The token exchange of the distribution spec: how a registry asks to be authenticated (its
//! `WWW-Authenticate` challenge), what a request needs a token for (its scopes), and getting
//! that token from the registry's token service. Keeping and sending tokens is the client's.
//!
//! reprise asks for tokens itself rather than through oci-client, because a blob mounted
//! from another repository needs one token for both: `repository:TARGET:pull,push` and
//! `repository:SOURCE:pull`, as containerd and go-containerregistry ask for it. A token that
//! carries only the target's scope makes the registry refuse the mount.

use http_auth::parser::ChallengeParser;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderValue};

use super::{Error, read_capped, transport};
use crate::auth::Credentials;
use crate::reference::Repository;

/// A token response is a few kilobytes; anything far larger is not one.
const MAX_TOKEN_RESPONSE: usize = 1 << 20;

/// How a registry asks to be authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Challenge {
    /// Not asked yet, nor learnt from a 401.
    Unknown,
    /// Asked, and not challenged: send nothing until a 401 says otherwise.
    Open,
    Basic,
    Bearer(Realm),
}

/// Where a registry's tokens come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Realm {
    pub url: String,
    pub service: Option<String>,
}

/// A bearer challenge's parameters, including the `error` and `scope` a registry adds when a
/// token falls short (`error="insufficient_scope"`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Bearer {
    pub realm: Option<String>,
    pub service: Option<String>,
    pub scope: Option<String>,
    pub error: Option<String>,
}

/// The challenge in a response's `WWW-Authenticate` headers: a bearer one if any, else
/// basic, else `None`.
pub(super) fn challenge(headers: &HeaderMap) -> Option<Challenge> {
    if let Some(bearer) = bearer(headers)
        && let Some(url) = bearer.realm
    {
        return Some(Challenge::Bearer(Realm {
            url,
            service: bearer.service,
        }));
    }
    let basic = headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(ChallengeParser::new)
        .filter_map(Result::ok)
        .any(|c| c.scheme.eq_ignore_ascii_case("basic"));
    basic.then_some(Challenge::Basic)
}

/// The parameters of the first bearer challenge in `headers`.
pub(super) fn bearer(headers: &HeaderMap) -> Option<Bearer> {
    let parsed = headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(ChallengeParser::new)
        .filter_map(Result::ok)
        .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))?;
    let mut out = Bearer::default();
    for (key, value) in &parsed.params {
        let slot = match key.to_ascii_lowercase().as_str() {
            "realm" => &mut out.realm,
            "service" => &mut out.service,
            "scope" => &mut out.scope,
            "error" => &mut out.error,
            _ => continue,
        };
        *slot = Some(value.to_unescaped());
    }
    Some(out)
}

/// Pull or push: registries scope tokens by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Access {
    Pull,
    Push,
    /// Deleting a manifest or tag. Docker Distribution checks a `delete` action; other
    /// registries check `push`, so the token asks for both (a registry grants what it may).
    Delete,
}

/// What one token must allow: pull or push on one repository, and, for a mount, pull on the
/// repository the blob comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Scopes {
    repo: String,
    access: Access,
    mount_from: Option<String>,
}

impl Scopes {
    pub fn new(repo: &Repository, access: Access) -> Scopes {
        Scopes {
            repo: repo.path().to_owned(),
            access,
            mount_from: None,
        }
    }

    /// Push on `repo` and pull on `from`, which the registry checks before it links a blob
    /// of `from` into `repo`.
    pub fn mount(repo: &Repository, from: &Repository) -> Scopes {
        Scopes {
            mount_from: Some(from.path().to_owned()),
            ..Scopes::new(repo, Access::Push)
        }
    }

    /// As the `scope` parameters of a token request.
    pub fn params(&self) -> Vec<String> {
        let actions = match self.access {
            Access::Pull => "pull",
            Access::Push => "pull,push",
            Access::Delete => "pull,push,delete",
        };
        let mut out = vec![format!("repository:{}:{actions}", self.repo)];
        if let Some(from) = &self.mount_from {
            out.push(format!("repository:{from}:pull"));
        }
        out
    }
}

/// Asks the token service at `realm` for a token carrying `scopes`, with `credentials` if
/// there are any. Returns the `Authorization` value, marked sensitive.
pub(super) async fn fetch(
    http: &reqwest::Client,
    realm: &Realm,
    scopes: &Scopes,
    credentials: &Credentials,
    target: &str,
    repo: &Repository,
) -> Result<HeaderValue, Error> {
    let url = token_url(realm, scopes, credentials, target)?;
    let host = super::url_host(&url);
    let mut request = http.get(url);
    if let Credentials::Basic { user, password } = credentials {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.map_err(|e| transport(target, &e))?;
    check_token_status(response.status(), credentials, &host, target, repo)?;
    let body = read_capped(target, "token response", response, MAX_TOKEN_RESPONSE).await?;
    bearer_from(&body, &host, target)
}

/// The token service's URL with the service and every scope asked for. Credentials never go
/// to a token service over plain HTTP off loopback.
fn token_url(
    realm: &Realm,
    scopes: &Scopes,
    credentials: &Credentials,
    target: &str,
) -> Result<reqwest::Url, Error> {
    let mut url = reqwest::Url::parse(&realm.url).map_err(|_| Error::Protocol {
        target: target.to_owned(),
        message: format!(
            "the registry named a token service that is not a URL: {:?}",
            realm.url
        ),
    })?;
    if url.scheme() != "https" && !credentials.is_anonymous() && !is_loopback_host(&url) {
        return Err(Error::PlainHttpRealm {
            target: target.to_owned(),
            realm: super::url_host(&url),
        });
    }
    {
        let mut query = url.query_pairs_mut();
        if let Some(service) = &realm.service {
            query.append_pair("service", service);
        }
        for scope in scopes.params() {
            query.append_pair("scope", &scope);
        }
    }
    Ok(url)
}

/// A token service's answer other than 200: refused credentials, an outage worth a retry,
/// or something else.
fn check_token_status(
    status: StatusCode,
    credentials: &Credentials,
    host: &str,
    target: &str,
    repo: &Repository,
) -> Result<(), Error> {
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        let who = if credentials.is_anonymous() {
            "anonymous access"
        } else {
            "the credentials"
        };
        return Err(Error::Denied {
            target: target.to_owned(),
            registry: repo.registry().to_owned(),
            detail: format!("the token service at {host} refused {who} (HTTP {status})"),
            auth: super::check_credentials(repo),
        });
    }
    if super::transient::status_is_transient(status.as_u16()) {
        return Err(Error::Token {
            target: target.to_owned(),
            registry: repo.registry().to_owned(),
        });
    }
    if status != StatusCode::OK {
        return Err(Error::Protocol {
            target: target.to_owned(),
            message: format!("the token service at {host} answered HTTP {status}"),
        });
    }
    Ok(())
}

/// The `Authorization` value from a token response (`token`, or OAuth2's `access_token`),
/// marked sensitive. Never quotes the body: it holds the token.
fn bearer_from(body: &[u8], host: &str, target: &str) -> Result<HeaderValue, Error> {
    #[derive(serde::Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
    }
    let protocol = |message: String| Error::Protocol {
        target: target.to_owned(),
        message,
    };
    let answer: Answer = serde_json::from_slice(body).map_err(|_| {
        protocol(format!(
            "the token service at {host} answered with something not JSON"
        ))
    })?;
    let token = answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            protocol(format!(
                "the token service at {host} answered without a token"
            ))
        })?;
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        protocol(format!(
            "the token service at {host} issued a token unfit for a header"
        ))
    })?;
    value.set_sensitive(true);
    Ok(value)
}

fn is_loopback_host(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::WWW_AUTHENTICATE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn repo(s: &str) -> Repository {
        Repository::parse(s).unwrap()
    }

    #[test]
    fn a_bearer_challenge_names_the_realm_and_service() {
        let h = headers(&[
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push",error="insufficient_scope""#,
        ]);
        assert_eq!(
            challenge(&h),
            Some(Challenge::Bearer(Realm {
                url: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
            }))
        );
        let b = bearer(&h).unwrap();
        assert_eq!(b.scope.as_deref(), Some("repository:a/b:pull,push"));
        assert_eq!(b.error.as_deref(), Some("insufficient_scope"));
    }

    #[test]
    fn bearer_wins_over_basic_and_basic_alone_is_basic() {
        let both = headers(&[r#"Basic realm="x""#, r#"Bearer realm="https://a/t""#]);
        assert!(matches!(challenge(&both), Some(Challenge::Bearer(_))));
        assert_eq!(
            challenge(&headers(&[r#"Basic realm="Registry Realm""#])),
            Some(Challenge::Basic)
        );
        assert_eq!(challenge(&headers(&[])), None);
        assert_eq!(challenge(&headers(&["Bearer service=\"s\""])), None);
    }

    #[test]
    fn a_mount_asks_for_push_on_the_target_and_pull_on_the_source() {
        let target = repo("quay.io/org/target");
        assert_eq!(
            Scopes::new(&target, Access::Pull).params(),
            ["repository:org/target:pull"]
        );
        assert_eq!(
            Scopes::new(&target, Access::Push).params(),
            ["repository:org/target:pull,push"]
        );
        assert_eq!(
            Scopes::mount(&target, &repo("quay.io/org/source")).params(),
            [
                "repository:org/target:pull,push",
                "repository:org/source:pull"
            ]
        );
    }

    #[tokio::test]
    async fn credentials_are_not_sent_to_a_token_service_over_plain_http_off_loopback() {
        let realm = Realm {
            url: "http://auth.example/token".into(),
            service: None,
        };
        let target = repo("quay.io/org/target");
        let scopes = Scopes::new(&target, Access::Push);
        // Refused before anything is sent: auth.example is never asked.
        let e = fetch(
            &reqwest::Client::new(),
            &realm,
            &scopes,
            &Credentials::basic("u", "secret"),
            "t",
            &target,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, Error::PlainHttpRealm { .. }), "{e:?}");
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn only_loopback_realms_may_take_credentials_over_plain_http() {
        let host = |u: &str| is_loopback_host(&reqwest::Url::parse(u).unwrap());
        assert!(host("http://127.0.0.1:5001/token"));
        assert!(host("http://[::1]:5001/token"));
        assert!(host("http://localhost/token"));
        assert!(!host("http://auth.example/token"));
    }
}
