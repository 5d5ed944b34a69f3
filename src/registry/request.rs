//! Sending one request: the credentials or token it needs (asking for a token with every
//! scope it needs), learning the registry's challenge from a 401, and never sending
//! credentials over plain HTTP off loopback.

use super::*;

/// How many times one request gets a replacement for a refused token.
const MAX_TOKEN_REFRESHES: u32 = 8;

impl Client {
    /// The `Authorization` header for a request needing `scopes` on `repo`'s registry: the
    /// cached one, or a fresh one when the registry refused `refused` (what was last sent).
    /// Nothing is sent until the registry has said how it wants to be authenticated.
    pub(super) async fn authorization(
        &self,
        repo: &Repository,
        scopes: &Scopes,
        refused: Option<Option<&HeaderValue>>,
        target: &str,
    ) -> Result<Option<HeaderValue>, Error> {
        let usable = |cached: Option<&Option<HeaderValue>>| match (cached, refused) {
            (Some(value), None) => Some(value.clone()),
            // Someone else already replaced the refused one.
            (Some(value), Some(refused)) if value.as_ref() != refused => Some(value.clone()),
            _ => None,
        };
        if let Some(value) = usable(self.tokens.lock().await.get(scopes)) {
            return Ok(value);
        }
        // Parallel requests that need the same token wait for one fetch; the cache itself
        // stays free for requests that have theirs.
        let _one_fetch = self.fetching.lock().await;
        if let Some(value) = usable(self.tokens.lock().await.get(scopes)) {
            return Ok(value);
        }
        let challenge = self.challenge(repo, target).await?;
        let value = match &challenge {
            // Not cached: the first 401 says what to send, for every scope.
            Challenge::Unknown => return Ok(None),
            Challenge::Open => None,
            Challenge::Basic => match &self.credentials {
                Credentials::Anonymous => None,
                Credentials::Basic { user, password } => {
                    self.refuse_plain_http(repo)?;
                    Some(basic_authorization(user, password, target, repo)?)
                }
            },
            Challenge::Bearer(realm) => {
                if !self.credentials.is_anonymous() {
                    self.refuse_plain_http(repo)?;
                }
                let token =
                    token::fetch(&self.http, realm, scopes, &self.credentials, target, repo)
                        .await?;
                Some(token)
            }
        };
        self.tokens
            .lock()
            .await
            .insert(scopes.clone(), value.clone());
        Ok(value)
    }

    /// How the registry asks to be authenticated. A client with credentials asks `/v2/`
    /// once, so they are used from the first request on; an anonymous one learns it from
    /// its first 401 instead. Credentials for a registry beyond this machine reached over
    /// plain HTTP stop the run before anything is sent.
    pub(super) async fn challenge(
        &self,
        repo: &Repository,
        target: &str,
    ) -> Result<Challenge, Error> {
        let mut known = self.challenge.lock().await;
        if *known != Challenge::Unknown || self.credentials.is_anonymous() {
            return Ok(known.clone());
        }
        self.refuse_plain_http(repo)?;
        let response = self
            .http
            .get(format!("{}/v2/", self.base))
            .send()
            .await
            .map_err(|e| transport(target, &e))?;
        // Anything but a challenge: send nothing until a request's own 401 says what to send
        // (and leave any other failure for the request itself to run into and report).
        *known = match response.status() {
            StatusCode::UNAUTHORIZED => {
                token::challenge(response.headers()).unwrap_or(Challenge::Open)
            }
            _ => Challenge::Open,
        };
        Ok(known.clone())
    }

    /// Credentials, or tokens got with them, never go over plain HTTP beyond this machine.
    pub(super) fn refuse_plain_http(&self, repo: &Repository) -> Result<(), Error> {
        if self.base.starts_with("http://") && !repo.is_loopback() {
            return Err(Error::PlainHttpCredentials {
                target: repo.to_string(),
                registry: repo.registry().to_owned(),
            });
        }
        Ok(())
    }

    /// Sends one request built by `build`; on a 401 learns the registry's challenge, gets a
    /// fresh token and sends it once more. Returns whatever the registry answered, success or
    /// not; only the network failing, or a registry that speaks only HTTPS, is an error here.
    pub(super) async fn send(
        &self,
        repo: &Repository,
        scopes: &Scopes,
        target: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        let mut refused: Option<Option<HeaderValue>> = None;
        let mut refreshes = 0;
        loop {
            let mut request = build(&self.http);
            let sent = self
                .authorization(repo, scopes, refused.as_ref().map(Option::as_ref), target)
                .await?;
            if let Some(value) = &sent {
                request = request.header(header::AUTHORIZATION, value.clone());
            }
            let response = request.send().await.map_err(|e| transport(target, &e))?;
            // A refused token is replaced and the request sent again. Requests running at
            // once share a token, so the one this request got may run out under it too: each
            // further refusal of a token other than the last one refused earns another
            // replacement, a bounded number of times.
            let new_refusal = refused.as_ref().is_none_or(|last| *last != sent);
            if response.status() == StatusCode::UNAUTHORIZED
                && new_refusal
                && refreshes < MAX_TOKEN_REFRESHES
            {
                if let Some(learned) = token::challenge(response.headers()) {
                    *self.challenge.lock().await = learned;
                }
                refused = Some(sent);
                refreshes += 1;
                continue;
            }
            if response.status() == StatusCode::BAD_REQUEST && self.speaks_https().await {
                return Err(Error::SpeaksHttps {
                    target: target.to_owned(),
                    registry: repo.registry().to_owned(),
                    advice: if self.tls_verify {
                        "pass --tls-verify=true, or --cert-dir DIR for a private CA".to_owned()
                    } else {
                        "reprise speaks HTTPS only with certificates verified: leave out \
                         --tls-verify=false (and pass --cert-dir DIR for a private CA)"
                            .to_owned()
                    },
                });
            }
            return Ok(response);
        }
    }

    /// Whether a registry spoken to in plain HTTP answered a 400 because it speaks only
    /// HTTPS. A HEAD's 400 has no body, so the server's own words are read from a GET of
    /// `/v2/`: Go's HTTP server says "Client sent an HTTP request to an HTTPS server.",
    /// nginx "The plain HTTP request was sent to HTTPS port".
    pub(super) async fn speaks_https(&self) -> bool {
        if !self.base.starts_with("http://") {
            return false;
        }
        let Ok(mut response) = self.http.get(format!("{}/v2/", self.base)).send().await else {
            return false;
        };
        let mut body = Vec::new();
        while body.len() < 4096 {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        let text = String::from_utf8_lossy(&body);
        text.contains("HTTP request to an HTTPS server")
            || text.contains("plain HTTP request was sent to HTTPS port")
    }
}

/// `Basic` credentials for a registry that asks for them, marked sensitive.
pub(super) fn basic_authorization(
    user: &str,
    password: &str,
    target: &str,
    repo: &Repository,
) -> Result<HeaderValue, Error> {
    use base64::Engine as _;
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {pair}")).map_err(|_| Error::Denied {
        target: target.to_owned(),
        registry: repo.registry().to_owned(),
        detail: "the credentials do not fit in an HTTP header".to_owned(),
        auth: check_credentials(repo),
    })?;
    value.set_sensitive(true);
    Ok(value)
}
