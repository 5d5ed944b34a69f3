//! Opening an `s3://BUCKET/PATH` store: credentials from the standard sources (the AWS
//! environment variables, or the profile of an AWS config file named with
//! `--aws-config-file` or `AWS_CONFIG_FILE`, as coreos-assembler passes it to boto3), and
//! `--s3-endpoint`/`--s3-region` for S3-compatible stores, which are addressed path-style.

use std::sync::Arc;

use camino::Utf8PathBuf;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

use super::{Error, Store, StoreOptions};

/// The keys of one profile of an AWS config file that reprise reads.
#[derive(Debug, Default, PartialEq, Eq)]
struct Profile {
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
    region: Option<String>,
}

pub(super) fn s3_store(base: &str, rest: &str, options: &StoreOptions) -> Result<Store, Error> {
    let bad = |why: String| Error::Url {
        url: base.to_owned(),
        why,
    };
    let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad("no bucket (expected s3://BUCKET/PATH)".into()));
    }
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    let mut credentials = "the AWS_* environment variables".to_owned();
    let config_file = options
        .aws_config_file
        .clone()
        .or_else(|| std::env::var("AWS_CONFIG_FILE").ok().map(Utf8PathBuf::from));
    if let Some(file) = config_file {
        let profile_name = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
        let text = std::fs::read_to_string(&file).map_err(|e| Error::AwsConfig {
            path: file.clone(),
            why: e.to_string(),
        })?;
        let profile = read_profile(&text, &profile_name);
        if profile.access_key_id.is_some() {
            credentials = format!("profile {profile_name:?} of {file}");
        }
        for (key, value) in [
            (AmazonS3ConfigKey::AccessKeyId, profile.access_key_id),
            (
                AmazonS3ConfigKey::SecretAccessKey,
                profile.secret_access_key,
            ),
            (AmazonS3ConfigKey::Token, profile.session_token),
            (AmazonS3ConfigKey::Region, profile.region),
        ] {
            if let Some(value) = value {
                builder = builder.with_config(key, value);
            }
        }
    }
    if let Some(region) = &options.region {
        builder = builder.with_region(region);
    }
    if let Some(endpoint) = &options.endpoint {
        let plain = endpoint.starts_with("http://");
        if plain && options.tls_verify && !super::is_loopback(endpoint) {
            return Err(bad(format!(
                "endpoint {endpoint}: plain http:// is only used for loopback or with --tls-verify=false"
            )));
        }
        builder = builder
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(plain);
    }
    let client = object_store::ClientOptions::new()
        .with_allow_http(
            options
                .endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://")),
        )
        .with_allow_invalid_certificates(!options.tls_verify);
    let inner = builder
        .with_client_options(client)
        .with_retry(super::retry_config(options))
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let prefix = match path.trim_matches('/') {
        "" => String::new(),
        p => format!("{p}/"),
    };
    Ok(Store {
        inner: Arc::new(inner),
        base: base.to_owned(),
        prefix,
        writable: true,
        credentials,
        bytes_read: Default::default(),
    })
}

/// The keys of `[default]` (or `[profile NAME]` / `[NAME]`) in an AWS config or credentials
/// file; other keys and sections are ignored.
fn read_profile(text: &str, name: &str) -> Profile {
    let mut profile = Profile::default();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let section = section.trim();
            let section = section.strip_prefix("profile ").unwrap_or(section).trim();
            inside = section == name;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if !inside {
            continue;
        }
        let value = Some(value.trim().to_owned());
        match key.trim() {
            "aws_access_key_id" => profile.access_key_id = value,
            "aws_secret_access_key" => profile.secret_access_key = value,
            "aws_session_token" => profile.session_token = value,
            "region" => profile.region = value,
            _ => {}
        }
    }
    profile
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_is_read_from_its_own_section_only() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key=S\nregion = r1\n\
                    [profile ci]\naws_access_key_id = B\n# comment\naws_session_token = T\n";
        let default = read_profile(text, "default");
        assert_eq!(default.access_key_id.as_deref(), Some("A"));
        assert_eq!(default.secret_access_key.as_deref(), Some("S"));
        assert_eq!(default.region.as_deref(), Some("r1"));
        let ci = read_profile(text, "ci");
        assert_eq!(ci.access_key_id.as_deref(), Some("B"));
        assert_eq!(ci.session_token.as_deref(), Some("T"));
        assert_eq!(ci.secret_access_key, None);
        assert_eq!(read_profile(text, "other"), Profile::default());
    }
}
