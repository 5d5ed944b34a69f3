//! The command lines reprise must read: fedora-coreos-pipeline's calls of
//! `cosa push-container-manifest` (shell variables filled in), every example of cosa's own
//! `--help`, argparse's prefixes and repeats, and the strictness of reprise's own commands.

use std::collections::BTreeMap;

use clap::CommandFactory as _;
use clap::error::ErrorKind;

use super::cosa::{self, COSA_OPTIONS, Resolved};
use super::{Cli, Command, PushArgs, try_parse_from};

/// Splits a command line on whitespace, as the shell does for these (no quotes in any).
fn argv(line: &str) -> Vec<String> {
    std::iter::once("reprise")
        .chain(line.split_whitespace())
        .map(str::to_owned)
        .collect()
}

fn parse(line: &str) -> Result<Cli, clap::Error> {
    try_parse_from(argv(line))
}

fn push_args(line: &str) -> PushArgs {
    match parse(line) {
        Ok(Cli {
            command: Command::PushContainerManifest(args),
            ..
        }) => args,
        Ok(other) => panic!("{line}: parsed as another command: {other:?}"),
        Err(e) => panic!("{line}: {e}"),
    }
}

/// What a push command line asks for, field by field, as text.
fn fields(a: &PushArgs) -> BTreeMap<&'static str, String> {
    let p = &a.plan;
    let join = |v: Vec<String>| v.join(" ");
    BTreeMap::from([
        ("repo", p.repo.to_string()),
        (
            "tags",
            join(p.tags.iter().map(ToString::to_string).collect()),
        ),
        ("artifact", p.artifact.clone().unwrap_or_default()),
        ("metajsonname", p.metajsonname.clone().unwrap_or_default()),
        ("build", p.build.clone()),
        (
            "arches",
            join(p.arches.iter().map(ToString::to_string).collect()),
        ),
        (
            "images",
            join(p.images.iter().map(ToString::to_string).collect()),
        ),
        (
            "authfile",
            p.connect
                .authfile
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        ),
        ("v2s2", p.v2s2.to_string()),
        ("force", p.force.to_string()),
        ("json", p.json.to_string()),
        (
            "write-digest-to-file",
            a.write_digest_to_file
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        ),
        ("retry-times", p.connect.retry_times.to_string()),
    ])
}

/// Each command line, and the fields it must come out with (the others are not checked).
const PUSH_LINES: &[(&str, &[(&str, &str)])] = &[
    // jobs/release.Jenkinsfile, "Push Containers": one call per artifact and repository.
    (
        "push-container-manifest --auth=tmp/push-secret-base-oscontainer \
         --repo=quay.io/fedora/fedora-coreos --tag=stable --tag=40.20261101.3.0 \
         --artifact=ostree --metajsonname=base-oscontainer --build=40.20261101.3.0",
        &[
            ("authfile", "tmp/push-secret-base-oscontainer"),
            ("repo", "quay.io/fedora/fedora-coreos"),
            ("tags", "stable 40.20261101.3.0"),
            ("artifact", "ostree"),
            ("metajsonname", "base-oscontainer"),
            ("build", "40.20261101.3.0"),
            ("v2s2", "false"),
        ],
    ),
    (
        "push-container-manifest --auth=tmp/push-secret-kubevirt \
         --repo=quay.io/fedora/fedora-coreos-kubevirt --tag=stable \
         --artifact=kubevirt --metajsonname=kubevirt --build=40.20261101.3.0 --v2s2",
        &[
            ("authfile", "tmp/push-secret-kubevirt"),
            ("artifact", "kubevirt"),
            ("metajsonname", "kubevirt"),
            ("v2s2", "true"),
            ("arches", ""),
        ],
    ),
    // jobs/build-cosa.Jenkinsfile, "Push Manifest".
    (
        "push-container-manifest --v2s2 --auth=/run/secrets/registry/auth.json --tag main \
         --repo quay.io/coreos-assembler/coreos-assembler \
         --image=docker://quay.io/coreos-assembler/staging:x86_64-6864566 \
         --image=docker://quay.io/coreos-assembler/staging:aarch64-6864566 \
         --image=docker://quay.io/coreos-assembler/staging:s390x-6864566",
        &[
            ("v2s2", "true"),
            ("authfile", "/run/secrets/registry/auth.json"),
            ("tags", "main"),
            ("repo", "quay.io/coreos-assembler/coreos-assembler"),
            (
                "images",
                "docker://quay.io/coreos-assembler/staging:x86_64-6864566 \
                 docker://quay.io/coreos-assembler/staging:aarch64-6864566 \
                 docker://quay.io/coreos-assembler/staging:s390x-6864566",
            ),
        ],
    ),
    // jobs/build-fcos-buildroot.Jenkinsfile, "Push Manifest" (no --v2s2).
    (
        "push-container-manifest --auth=/run/secrets/registry/auth.json --tag main \
         --repo quay.io/coreos/fcos-buildroot \
         --image=docker://quay.io/coreos/staging:x86_64-6864566 \
         --image=docker://quay.io/coreos/staging:ppc64le-6864566",
        &[
            ("v2s2", "false"),
            ("repo", "quay.io/coreos/fcos-buildroot"),
            (
                "images",
                "docker://quay.io/coreos/staging:x86_64-6864566 \
                 docker://quay.io/coreos/staging:ppc64le-6864566",
            ),
        ],
    ),
    // jobs/build-kola-containers.Jenkinsfile, "Push Manifests".
    (
        "push-container-manifest --v2s2 --auth=/run/secrets/registry/auth.json --tag latest \
         --repo quay.io/coreos/targetcli \
         --image=docker://quay.io/coreos/staging:targetcli-x86_64-6864566",
        &[
            ("v2s2", "true"),
            ("tags", "latest"),
            (
                "images",
                "docker://quay.io/coreos/staging:targetcli-x86_64-6864566",
            ),
        ],
    ),
    // utils.groovy push_manifest: images by digest, the digest written to a file.
    (
        "push-container-manifest --tag 4.19-9.6 --repo quay.io/openshift-release-dev/ocp-v4.0-art-dev \
         --image=docker://quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:1111111111111111111111111111111111111111111111111111111111111111 \
         --image=docker://quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:2222222222222222222222222222222222222222222222222222222222222222 \
         --write-digest-to-file 4.19-9.6.digestfile --v2s2",
        &[
            ("tags", "4.19-9.6"),
            (
                "images",
                "docker://quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:1111111111111111111111111111111111111111111111111111111111111111 \
                 docker://quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:2222222222222222222222222222222222222222222222222222222222222222",
            ),
            ("write-digest-to-file", "4.19-9.6.digestfile"),
            ("v2s2", "true"),
        ],
    ),
    // cosa's own --help, its three examples as written.
    (
        "push-container-manifest \
         --repo quay.io/dustymabe/coreos-assembler --tag latest \
         --image docker://quay.io/dustymabe/coreos-assembler:x86_64-6864566 \
         --image docker://quay.io/dustymabe/coreos-assembler:s390x-6864566 \
         --image docker://quay.io/dustymabe/coreos-assembler:aarch64-6864566",
        &[
            ("repo", "quay.io/dustymabe/coreos-assembler"),
            (
                "images",
                "docker://quay.io/dustymabe/coreos-assembler:x86_64-6864566 \
                 docker://quay.io/dustymabe/coreos-assembler:s390x-6864566 \
                 docker://quay.io/dustymabe/coreos-assembler:aarch64-6864566",
            ),
        ],
    ),
    (
        "push-container-manifest \
         --repo quay.io/dustymabe/fedora-coreos --tag stable \
         --image oci-archive://builds/36.20220716.3.1/x86_64/fedora-coreos-37.20220725.91.0-ostree.x86_64.ociarchive \
         --image oci-archive://builds/36.20220716.3.1/aarch64/fedora-coreos-37.20220725.91.0-ostree.aarch64.ociarchive \
         --image oci-archive://builds/36.20220716.3.1/s390x/fedora-coreos-37.20220725.91.0-ostree.s390x.ociarchive",
        &[
            // cosa's `oci-archive://` spelling is a relative path.
            (
                "images",
                "oci-archive:builds/36.20220716.3.1/x86_64/fedora-coreos-37.20220725.91.0-ostree.x86_64.ociarchive \
                 oci-archive:builds/36.20220716.3.1/aarch64/fedora-coreos-37.20220725.91.0-ostree.aarch64.ociarchive \
                 oci-archive:builds/36.20220716.3.1/s390x/fedora-coreos-37.20220725.91.0-ostree.s390x.ociarchive",
            ),
        ],
    ),
    (
        "push-container-manifest \
         --repo quay.io/dustymabe/fedora-coreos --tag stable --artifact=ostree \
         --metajsonname=base-oscontainer --build=latest --arch=x86_64 --arch=aarch64",
        &[
            ("artifact", "ostree"),
            ("metajsonname", "base-oscontainer"),
            ("build", "latest"),
            ("arches", "x86_64 aarch64"),
        ],
    ),
    // argparse's unique prefixes, with `=` and with a separate value.
    (
        "push-container-manifest --r quay.io/a/b --t stable --art ostree --m base-oscontainer \
         --au auth.json --w digest --v --f --b 40.1 --arc x86_64",
        &[
            ("repo", "quay.io/a/b"),
            ("tags", "stable"),
            ("artifact", "ostree"),
            ("metajsonname", "base-oscontainer"),
            ("authfile", "auth.json"),
            ("write-digest-to-file", "digest"),
            ("v2s2", "true"),
            ("force", "true"),
            ("build", "40.1"),
            ("arches", "x86_64"),
        ],
    ),
    (
        "push-container-manifest --rep=quay.io/a/b --ta=stable --artifac=ostree \
         --meta=base-oscontainer --auth=auth.json --write-digest=digest --v2",
        &[
            ("repo", "quay.io/a/b"),
            ("tags", "stable"),
            ("artifact", "ostree"),
            ("metajsonname", "base-oscontainer"),
            ("authfile", "auth.json"),
            ("write-digest-to-file", "digest"),
            ("v2s2", "true"),
        ],
    ),
    (
        "push-container-manifest --repo=quay.io/a/b --tag=stable --i=docker://quay.io/a/b:x86_64-1",
        &[("images", "docker://quay.io/a/b:x86_64-1")],
    ),
    // reprise's own options take unique prefixes too.
    (
        "push-container-manifest --repo=quay.io/a/b --tag=stable --artifact=ostree \
         --metajsonname=k --retry-t=2 --js",
        &[("retry-times", "2"), ("json", "true")],
    ),
    // A single-valued option given twice takes the last value; repeatable ones add up.
    (
        "push-container-manifest --repo quay.io/a/first --repo=quay.io/a/b --tag stable \
         --tag=40 --artifact ostree --metajsonname k --build 1 --build=2 --meta k2 \
         --force --force --v2s2 --v2s2 --json --json --auth a --authfile b",
        &[
            ("repo", "quay.io/a/b"),
            ("tags", "stable 40"),
            ("build", "2"),
            ("metajsonname", "k2"),
            ("force", "true"),
            ("authfile", "b"),
        ],
    ),
    // Global flags before the command, and after it.
    (
        "-v push-container-manifest --repo quay.io/a/b --tag stable --image \
         oci-archive:a.ociarchive -q",
        &[("images", "oci-archive:a.ociarchive")],
    ),
];

#[test]
fn every_pipeline_and_cosa_help_command_line_parses_as_cosa_reads_it() {
    for (line, want) in PUSH_LINES {
        let got = fields(&push_args(line));
        for (field, value) in *want {
            let value: Vec<&str> = value.split_whitespace().collect();
            assert_eq!(
                got[field].split_whitespace().collect::<Vec<_>>(),
                value,
                "{field} of: {line}"
            );
        }
    }
}

#[test]
fn prefixed_spellings_mean_the_same_as_the_full_names() {
    let short = push_args(
        "push-container-manifest --rep=quay.io/a/b --ta=stable --artifac=ostree \
         --meta=base-oscontainer --auth=auth.json --write-digest=digest --v2s2 --fo",
    );
    let full = push_args(
        "push-container-manifest --repo=quay.io/a/b --tag=stable --artifact=ostree \
         --metajsonname=base-oscontainer --authfile=auth.json --write-digest-to-file=digest \
         --v2s2 --force",
    );
    assert_eq!(fields(&short), fields(&full));
}

/// Prefixes, and every option each could mean: an error naming them all when there are
/// several, the option itself when there is one.
const PREFIXES: &[(&str, &[&str])] = &[
    // Ambiguous in cosa too: argparse refuses them the same way.
    ("--a=x", &["--arch", "--artifact", "--authfile"]),
    ("--ar x", &["--arch", "--artifact"]),
    // Among reprise's own options.
    ("--ret=1", &["--retry-delay", "--retry-times"]),
    ("--ve", &["--verbose", "--verify-timeout"]),
    ("--j", &["--jobs", "--json"]),
    ("--mo=quay.io/a/c", &["--mount-from"]),
    ("--mi=keep", &["--missing-arch"]),
];

#[test]
fn an_ambiguous_prefix_is_a_usage_error_naming_every_candidate() {
    for (typed, candidates) in PREFIXES {
        let line = format!(
            "push-container-manifest --repo quay.io/a/b --tag stable --artifact ostree \
             --metajsonname k {typed}"
        );
        let result = parse(&line);
        if candidates.len() == 1 {
            // Unique after all: the control case, so the table cannot pass vacuously.
            assert!(result.is_ok(), "{line}: {:?}", result.err());
            continue;
        }
        let err = result.expect_err(&line);
        assert_eq!(err.kind(), ErrorKind::UnknownArgument, "{line}");
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        let first = text.lines().next().unwrap_or_default();
        assert!(first.contains("ambiguous"), "{first}");
        for c in *candidates {
            assert!(first.contains(c), "{c} not named in: {first}");
        }
    }
}

/// Reprise's own names for push-container-manifest's long options, aliases included.
fn push_option_names() -> Vec<String> {
    let mut root = Cli::command();
    root.build();
    let sub = root
        .find_subcommand(cosa::COMMAND)
        .expect("the command exists");
    sub.get_arguments()
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect()
}

#[test]
fn every_cosa_option_exists_and_every_prefix_unique_in_cosa_means_the_cosa_option() {
    let names = push_option_names();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut checked = 0;
    for option in COSA_OPTIONS {
        assert!(names.contains(&option), "--{option} is not an option");
        for end in 1..=option.len() {
            let prefix = &option[..end];
            let in_cosa = COSA_OPTIONS.iter().filter(|o| o.starts_with(prefix));
            if in_cosa.count() == 1 {
                assert_eq!(
                    cosa::resolve(prefix, &names),
                    Resolved::Option(option.to_owned()),
                    "--{prefix}"
                );
                checked += 1;
            }
        }
    }
    // Among them the prefixes reprise's own options would otherwise make ambiguous.
    for (prefix, option) in [
        ("r", "repo"),
        ("t", "tag"),
        ("w", "write-digest-to-file"),
        ("v", "v2s2"),
        ("m", "metajsonname"),
    ] {
        let shared = names.iter().filter(|n| n.starts_with(prefix)).count();
        assert!(shared > 1, "--{prefix} is not shared, so not a real case");
        assert_eq!(
            cosa::resolve(prefix, &names),
            Resolved::Option(option.to_owned())
        );
    }
    assert!(checked > 60, "{checked} prefixes checked");
}

#[test]
fn help_can_be_shortened_as_in_argparse() {
    let err = parse("push-container-manifest --he").expect_err("help is shown");
    assert_eq!(err.kind(), ErrorKind::DisplayHelp);
    let text = err.to_string();
    assert!(text.contains("unique prefix"), "{text}");
}

#[test]
fn values_after_a_double_dash_are_not_rewritten() {
    let root = {
        let mut c = Cli::command();
        c.build();
        c
    };
    let args: Vec<std::ffi::OsString> = argv("push-container-manifest --auth=a -- --auth=b")
        .into_iter()
        .map(Into::into)
        .collect();
    let out = cosa::expand(args, &root).unwrap();
    let out: Vec<String> = out.iter().map(|a| a.to_string_lossy().into()).collect();
    assert_eq!(
        out,
        [
            "reprise",
            "push-container-manifest",
            "--authfile=a",
            "--",
            "--auth=b"
        ]
    );
}

/// reprise's own commands are strict: each of these is a usage error there, though the same
/// spelling works for push-container-manifest.
const STRICT_LINES: &[&str] = &[
    "status --repo quay.io/a/b --tag stable --artifact ostree --meta k",
    "status --repo quay.io/a/b --tag stable --artifact ostree --metajsonname k --auth=a.json",
    "status --repo quay.io/a/b --repo quay.io/a/c --tag stable --artifact ostree \
     --metajsonname k",
    "status --repo quay.io/a/b --tag stable --artifact ostree --metajsonname k --check --check",
    "run --conf release.toml",
    "run --build 1 --build 2",
    "inspect quay.io/a/b:stable --js",
    "inspect quay.io/a/b:stable --authfile a --authfile b",
];

#[test]
fn reprises_own_commands_take_full_names_once() {
    for line in STRICT_LINES {
        let err = parse(line).expect_err(line);
        assert_eq!(err.exit_code(), 2, "{line}");
        assert!(
            matches!(
                err.kind(),
                ErrorKind::UnknownArgument | ErrorKind::ArgumentConflict
            ),
            "{line}: {:?}",
            err.kind()
        );
    }
    // The same lines spelled in full, each option once, do parse.
    for line in [
        "status --repo quay.io/a/b --tag stable --artifact ostree --metajsonname k \
         --authfile=a.json --check",
        "run --config release.toml --build 2",
        "inspect quay.io/a/b:stable --json --authfile b",
    ] {
        assert!(parse(line).is_ok(), "{line}");
    }
    for command in ["status", "run", "inspect"] {
        let mut root = Cli::command();
        root.build();
        let help = root
            .find_subcommand_mut(command)
            .expect("command")
            .render_long_help()
            .to_string();
        assert!(
            help.contains("spelled in full"),
            "{command} --help:\n{help}"
        );
    }
}

#[test]
fn s3_flags_need_a_store_unless_a_release_config_names_it() {
    for line in [
        "push-container-manifest --repo quay.io/a/b --tag t --artifact ostree --metajsonname k \
         --s3-endpoint http://127.0.0.1:9000",
        "status --repo quay.io/a/b --tag t --artifact ostree --metajsonname k --s3-region eu-west-1",
        "inspect quay.io/a/b:t --aws-config-file creds",
    ] {
        let err = parse(line).expect_err(line);
        assert_eq!(err.exit_code(), 2, "{line}");
        assert!(
            err.to_string().contains("needs --builds-url"),
            "{line}: {err}"
        );
    }
    for line in [
        "push-container-manifest --repo quay.io/a/b --tag t --artifact ostree --metajsonname k --builds-url s3://b/builds \
         --s3-endpoint http://127.0.0.1:9000",
        // The config may hold builds-url.
        "run --config release.toml --s3-endpoint http://127.0.0.1:9000",
    ] {
        assert!(parse(line).is_ok(), "{line}");
    }
}
