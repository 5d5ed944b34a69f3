use super::*;
use sha2::{Digest as _, Sha256};

/// The sha256 of a whole file, read plainly, to check `Archive::verify` against.
fn file_sha256(path: &Utf8Path) -> io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// A tar holding `index.json` and `blobs/sha256/<name>` for each (name, bytes).
fn tar_with(dir: &Utf8Path, blobs: &[(&Digest, &[u8])]) -> Utf8PathBuf {
    let path = dir.join("a.ociarchive");
    let mut b = tar::Builder::new(File::create(&path).unwrap());
    let mut put = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    };
    put("index.json", b"{}");
    for (digest, data) in blobs {
        put(&format!("blobs/sha256/{}", digest.hex()), data);
    }
    b.into_inner().unwrap();
    path
}

fn blob(data: &[u8]) -> BlobRef {
    BlobRef {
        digest: Digest::of(data),
        size: data.len() as u64,
        media_type: String::new(),
    }
}

#[test]
fn one_pass_checks_every_blob_and_hashes_the_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(dir.path()).unwrap();
    // Blocks larger than the read buffer, so blobs straddle reads.
    let big: Vec<u8> = (0..(3 << 20) + 17).map(|i| (i % 251) as u8).collect();
    let (a, b, c) = (blob(b"config"), blob(&big), blob(b""));
    let path = tar_with(
        dir,
        &[(&a.digest, b"config"), (&b.digest, &big), (&c.digest, b"")],
    );
    let archive = Archive::open(&path).unwrap();
    let before = archive.bytes_read();
    let sha = archive.verify(&[&b, &a, &c, &a]).unwrap();
    assert_eq!(sha, Some(file_sha256(&path).unwrap().0));
    // Exactly one read of the file.
    assert_eq!(
        archive.bytes_read() - before,
        std::fs::metadata(&path).unwrap().len()
    );

    // The same bytes under another blob's name fail, naming the blob.
    let wrong = BlobRef {
        digest: Digest::of(b"something else"),
        size: big.len() as u64,
        media_type: String::new(),
    };
    let path = tar_with(dir, &[(&wrong.digest, &big)]);
    let err = Archive::open(&path).unwrap().verify(&[&wrong]).unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::DigestMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(wrong.digest.as_str()), "{err}");
}

#[test]
fn directory_entries_are_skipped_in_any_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(dir.path()).unwrap();
    let path = dir.join("a.ociarchive");
    let data = b"layer bytes";
    let b = blob(data);
    let mut tar = tar::Builder::new(File::create(&path).unwrap());
    let mut put = |name: &str, kind: tar::EntryType, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        tar.append_data(&mut h, name, data).unwrap();
    };
    // The spellings tar writers use: "./", with and without a trailing slash.
    for name in ["./", "blobs/", "./blobs/sha256", "blobs/sha256/"] {
        put(name, tar::EntryType::Directory, b"");
    }
    put(
        &format!("./blobs/sha256/{}", b.digest.hex()),
        tar::EntryType::Regular,
        data,
    );
    put("index.json", tar::EntryType::Regular, b"{}");
    tar.into_inner().unwrap();

    let archive = Archive::open(&path).unwrap();
    let names: Vec<&str> = archive.entries.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            format!("blobs/sha256/{}", b.digest.hex()).as_str(),
            "index.json"
        ]
    );
    let mut out = Vec::new();
    archive
        .blob_reader(&b)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, data);
    assert!(archive.verify(&[&b]).unwrap().is_some());
}

#[test]
fn entry_names_are_normalised_and_escapes_refused() {
    assert_eq!(normalise_entry_name("./index.json").unwrap(), "index.json");
    assert_eq!(
        normalise_entry_name("blobs/sha256/ab").unwrap(),
        "blobs/sha256/ab"
    );
    assert!(normalise_entry_name("/etc/passwd").is_err());
    assert!(normalise_entry_name("blobs/../../x").is_err());
}

#[test]
fn verifying_reader_fails_on_mismatch_at_end() {
    let data = b"hello".to_vec();
    let good = BlobRef {
        digest: Digest::of(&data),
        size: 5,
        media_type: String::new(),
    };
    let mut out = Vec::new();
    VerifyingReader::new(&data[..], good.clone())
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, data);

    let wrong_digest = BlobRef {
        digest: Digest::of(b"other"),
        ..good.clone()
    };
    let err = VerifyingReader::new(&data[..], wrong_digest)
        .read_to_end(&mut Vec::new())
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("does not match its digest"));

    let wrong_size = BlobRef { size: 6, ..good };
    let err = VerifyingReader::new(&data[..], wrong_size)
        .read_to_end(&mut Vec::new())
        .unwrap_err();
    assert!(err.to_string().contains("5 bytes"), "{err}");
}

/// Up to `limit` bytes of `reader`, in the chunks it gives.
fn read_up_to(mut reader: impl crate::hash::ReadChunks, limit: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while (out.len() as u64) < limit {
        let want = (limit - out.len() as u64).min(100_000) as usize;
        let chunk = reader.read_chunk(want).unwrap();
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    out
}

#[test]
fn a_tapped_blob_is_handed_over_as_the_pass_reads_it_and_read_on_from_where_it_stopped() {
    use crate::hash::BlobSource as _;
    use std::sync::atomic::AtomicBool;

    let dir = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(dir.path()).unwrap();
    let big: Vec<u8> = (0..(2 << 20) + 5).map(|i| (i % 241) as u8).collect();
    let (a, b) = (blob(b"config"), blob(&big));
    let path = tar_with(dir, &[(&a.digest, b"config"), (&b.digest, &big)]);
    let archive = Archive::open(&path).unwrap();
    let before = archive.bytes_read();
    let (source, tap) = archive.fed_source(&b, true).unwrap();
    let reader = archive.clone();
    let pass = std::thread::spawn(move || {
        reader.check_pass(&[&a], tap.into_iter().collect(), &AtomicBool::new(false))
    });
    // Read it as a chunked upload would: a piece, then on from where that stopped.
    let mut first = read_up_to(source.open_at(0).unwrap(), 1 << 20);
    first.extend(read_up_to(source.open_at(1 << 20).unwrap(), u64::MAX));
    assert_eq!(first, big);
    let sha = pass.join().unwrap().unwrap();
    assert_eq!(sha, Some(file_sha256(&path).unwrap().0));
    // The pass read the file once; the blob was not read from it a second time.
    assert_eq!(archive.bytes_read() - before, archive.size());
}

#[test]
fn a_reading_elsewhere_than_the_feed_opens_the_file_and_frees_the_pass() {
    use crate::hash::BlobSource as _;
    use std::sync::atomic::AtomicBool;

    let dir = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(dir.path()).unwrap();
    let big: Vec<u8> = (0..(3 << 20)).map(|i| (i % 239) as u8).collect();
    let b = blob(&big);
    let path = tar_with(dir, &[(&b.digest, &big)]);
    let archive = Archive::open(&path).unwrap();
    let (source, tap) = archive.fed_source(&b, true).unwrap();
    let reader = archive.clone();
    let pass = std::thread::spawn(move || {
        reader.check_pass(&[], tap.into_iter().collect(), &AtomicBool::new(false))
    });
    // A resumed upload starting in the middle: the feed is given up, and the pass, no longer
    // held by it, finishes on its own.
    let tail = read_up_to(source.open_at(1 << 20).unwrap(), u64::MAX);
    assert_eq!(tail, big[1 << 20..]);
    assert!(pass.join().unwrap().unwrap().is_some());
}
