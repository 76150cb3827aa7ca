//! Replays every input kept for the fuzz targets (`testdata/fuzz/<target>/`:
//! inputs that once crashed a parser, found by scripts/fuzz.sh, and hostile
//! ones written by scripts/make-fuzz-seeds.py) through the same entry
//! points as the fuzzer, on the stable toolchain: none may panic. Also
//! checks that every directory there names a target.

use std::path::Path;

#[test]
fn kept_fuzz_inputs_no_longer_crash_their_parsers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fuzz");
    // Kept in the repository: a missing directory is a broken checkout, not
    // an empty list (found: the test returned early and could not fail).
    let dirs = std::fs::read_dir(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let mut replayed = 0;
    for d in dirs {
        let d = d.unwrap();
        let target = d.file_name().to_string_lossy().into_owned();
        assert!(
            img::fuzz_entry::TARGETS.contains(&target.as_str()),
            "testdata/fuzz/{target} names no fuzz target (img::fuzz_entry::TARGETS)"
        );
        for f in std::fs::read_dir(d.path()).unwrap() {
            let f = f.unwrap();
            let data = std::fs::read(f.path()).unwrap();
            let res = std::panic::catch_unwind(|| img::fuzz_entry::run(&target, &data));
            assert!(res.is_ok(), "testdata/fuzz/{target}/{} crashes its parser again", f.file_name().to_string_lossy());
            replayed += 1;
        }
    }
    assert!(replayed > 0, "testdata/fuzz has directories but no inputs");
}

/// Each target's entry takes the inputs that matter most to it without
/// panicking: empty, huge, and typical ones.
#[test]
fn every_fuzz_target_takes_edge_inputs() {
    let big = vec![b'a'; 1 << 20];
    let samples: [&[u8]; 6] = [
        b"",
        b"\0\xff\xfe",
        b"docker.io/library/busybox:latest",
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#,
        b"GET /v2/a/b/manifests/sha256:00 HTTP/1.1\r\n\r\n",
        &big,
    ];
    for t in img::fuzz_entry::TARGETS {
        for s in samples {
            img::fuzz_entry::run(t, s);
        }
    }
}
