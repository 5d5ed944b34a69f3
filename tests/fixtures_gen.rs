//! The fixture generator is deterministic, and the checked-in demo tree is what it writes.

mod support;

use std::path::{Path, PathBuf};

use support::fixtures::{self, BuildSpec};

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(root).expect("prefix").to_path_buf());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn demo_fixture_is_reproducible() {
    let checked_in = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo");
    let fresh = tempfile::tempdir().expect("tempdir");
    fixtures::write_tree(fresh.path(), &[BuildSpec::demo()]).expect("generate");
    let files = files_under(&checked_in);
    assert_eq!(files, files_under(fresh.path()), "same file list");
    assert!(
        files.len() >= 9,
        "builds.json plus a meta.json and archive per arch"
    );
    for f in files {
        assert!(
            std::fs::read(checked_in.join(&f)).unwrap()
                == std::fs::read(fresh.path().join(&f)).unwrap(),
            "{} differs from the generator's output; regenerate fixtures/demo",
            f.display()
        );
    }
}

#[test]
fn salt_changes_only_that_arch() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let mut changed = BuildSpec::demo();
    changed.arch_mut("aarch64").salt = "rebuilt".to_owned();
    let one = fixtures::write_tree(a.path(), &[BuildSpec::demo()]).unwrap();
    let two = fixtures::write_tree(b.path(), &[changed]).unwrap();
    for (x, y) in one.iter().zip(&two) {
        assert_eq!(x.arch, y.arch);
        assert_eq!(
            x.layer_digests[0], one[0].layer_digests[0],
            "shared base layer"
        );
        if x.arch == "aarch64" {
            assert_ne!(x.manifest_digest, y.manifest_digest);
        } else {
            assert_eq!(x.manifest_digest, y.manifest_digest);
        }
    }
}

#[test]
fn skopeo_reads_the_archive_and_agrees_on_the_manifest_digest() {
    let dir = tempfile::tempdir().unwrap();
    let written = fixtures::write_tree(dir.path(), &[BuildSpec::demo()]).unwrap();
    let w = &written[0];
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}", w.archive.display()))
        .output()
        .expect("skopeo is installed by scripts/install-deps.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fixtures::sha256_digest(&out.stdout), w.manifest_digest);
}
