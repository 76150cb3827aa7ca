//! Integration tests: the real `img` binary against fresh temporary stores,
//! with image fixtures generated here (see tests/support).

mod support;

use img::digest::Digest;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use support::*;

// ---- shared fixtures -----------------------------------------------------------

/// A two-layer image (plain + gzip) with a label.
fn two_layer_image(tags: &[&str]) -> Image {
    ImageSpec::new(tags)
        .label("org.example.k", "v")
        .layer(Layer::new(
            TarBuilder::new()
                .dir("bin")
                .exe("bin/sh", "#!fake shell\n")
                .dir("etc")
                .file("etc/os-release", "ID=test\n")
                .build(),
            Comp::None,
        ))
        .layer(Layer::new(TarBuilder::new().dir("app").file("app/main", "main program\n").build(), Comp::Gzip))
        .build()
}

/// A three-layer image with plain, gzip and zstd layers (OCI only).
fn three_layer_image(tags: &[&str]) -> Image {
    ImageSpec::new(tags)
        .layer(Layer::simple("plain", Comp::None))
        .layer(Layer::simple("gzip", Comp::Gzip))
        .layer(Layer::simple("zstd", Comp::Zstd))
        .build()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Asserts `img` is in the store: listed with its tags, inspectable, its
/// ID the sha256 of its config bytes, its layers and blobs all there.
fn assert_stored(s: &Store, img: &Image) {
    let images = s.images();
    let found = images
        .iter()
        .find(|i| i["Id"] == json!(img.hex()))
        .unwrap_or_else(|| panic!("image {} not listed: {images:?}", img.id));
    assert_eq!(sorted(strings(&found["RepoTags"])), img.full_tags());
    let ins = s.inspect(img.hex());
    assert_eq!(ins["Id"], json!(Digest::of_bytes(&img.config).hex()));
    assert_eq!(strings(&ins["RootFS"]["Layers"]), img.diff_ids());
    let layers: Vec<String> =
        ins["Layers"].as_array().unwrap().iter().map(|l| l["Digest"].as_str().unwrap().to_string()).collect();
    assert_eq!(layers, img.layer_digests());
    assert!(s.has_blob(&img.id), "config blob missing");
    for l in &img.layers {
        assert!(s.has_blob(&l.digest()), "layer blob {} missing", l.digest());
    }
    for t in &img.tags {
        assert_eq!(s.inspect(t)["Id"], json!(img.hex()), "tag {t}");
    }
}

fn loaded_lines(img: &Image) -> String {
    img.tags.iter().map(|t| format!("Loaded image: {}\n", full_name(t))).collect()
}

// ---- 1. load ---------------------------------------------------------------------

// Guards: a docker-archive loads, prints `Loaded image:` per tag, and is listed and inspectable under its config's sha256.
#[test]
fn load_docker_archive() {
    let s = Store::new();
    let img = two_layer_image(&["app:1", "app:latest"]);
    let out = s.load("app.tar", &Archive::docker(&[&img]).tar());
    assert_eq!(out, loaded_lines(&img));
    assert_stored(&s, &img);
    let table = s.ok(&["images"]);
    assert!(table.starts_with("REPOSITORY"), "{table}");
    assert!(table.contains(img.short()), "{table}");
    assert!(table.contains("docker.io/library/app"), "{table}");
    s.assert_fsck_clean();
}

// Guards: an OCI archive loads with its names, keeping the manifest digest.
#[test]
fn load_oci_archive() {
    let s = Store::new();
    let img = three_layer_image(&["app:1"]);
    let out = s.load("app-oci.tar", &Archive::oci(&[&img]).tar());
    assert_eq!(out, "Loaded image: docker.io/library/app:1\n");
    assert_stored(&s, &img);
    assert_eq!(s.inspect("app:1")["Digest"], json!(img.manifest_digest.to_string()));
    s.assert_fsck_clean();
}

// Guards: an OCI layout directory loads like an OCI archive.
#[test]
fn load_oci_layout_directory() {
    let s = Store::new();
    let img = three_layer_image(&["app:1"]);
    let dir = s.work().join("layout");
    Archive::oci(&[&img]).write_dir(&dir);
    let out = s.ok(&["load", "-i", arg(&dir)]);
    assert_eq!(out, "Loaded image: docker.io/library/app:1\n");
    assert_stored(&s, &img);
    // The layout directory is left as it was.
    assert!(dir.join("index.json").exists());
    s.assert_fsck_clean();
}

// Guards: gzip-, xz- and zstd-compressed archives load like plain ones.
#[test]
fn load_compressed_archives() {
    let img = two_layer_image(&["app:1"]);
    let tar = Archive::docker(&[&img]).tar();
    let oci = Archive::oci(&[&img]).tar();
    type Compress = fn(&[u8]) -> Vec<u8>;
    let kinds: [(&str, Compress); 3] = [("gz", gzip), ("xz", xz), ("zst", zstd)];
    for (ext, f) in kinds {
        for (what, data) in [("docker", &tar), ("oci", &oci)] {
            let s = Store::new();
            let out = s.load(&format!("app-{what}.tar.{ext}"), &f(data));
            assert_eq!(out, "Loaded image: docker.io/library/app:1\n", "{what} {ext}");
            assert_stored(&s, &img);
            s.assert_ingest_empty();
        }
    }
}

// Guards: `img load` with no -i reads the archive from standard input.
#[test]
fn load_from_stdin() {
    let s = Store::new();
    let img = two_layer_image(&["app:1"]);
    let o = s.run_with(&["load"], &[], Some(&Archive::docker(&[&img]).tar()));
    assert!(o.success(), "{}", o.describe());
    assert_eq!(o.out(), "Loaded image: docker.io/library/app:1\n");
    assert_stored(&s, &img);
    // `-i -` means standard input too, here a gzip-compressed OCI archive.
    let s2 = Store::new();
    let o = s2.run_with(&["load", "-q", "-i", "-"], &[], Some(&gzip(&Archive::oci(&[&img]).tar())));
    assert!(o.success(), "{}", o.describe());
    assert_eq!(o.out(), format!("{}\n", img.id));
    assert_stored(&s2, &img);
}

// Guards: loading the same archive again succeeds and changes nothing.
#[test]
fn load_twice_is_a_noop() {
    let s = Store::new();
    let img = two_layer_image(&["app:1"]);
    let p = s.write("app.tar", &Archive::docker(&[&img]).tar());
    let first = s.ok(&["load", "-i", arg(&p)]);
    let before = s.snapshot();
    let second = s.ok(&["load", "-i", arg(&p)]);
    assert_eq!(first, second);
    assert_eq!(s.snapshot(), before);
    s.assert_ingest_empty();
    s.assert_fsck_clean();
}

// Guards: a multi-image docker-archive with a shared layer loads every image and tag, storing the layer once.
#[test]
fn load_multi_image_archive_with_shared_layers() {
    let s = Store::new();
    let base = Layer::simple("shared", Comp::Gzip);
    let a = ImageSpec::new(&["a:1", "a:latest"]).layer(base.clone()).layer(Layer::simple("a", Comp::None)).build();
    let b = ImageSpec::new(&["b:1"]).layer(base.clone()).layer(Layer::simple("b", Comp::Gzip)).build();
    let out = s.load("ab.tar", &Archive::docker(&[&a, &b]).tar());
    assert_eq!(out, format!("{}{}", loaded_lines(&a), loaded_lines(&b)));
    assert_stored(&s, &a);
    assert_stored(&s, &b);
    assert_eq!(s.images().len(), 2);
    // 2 manifests + 2 configs + 3 distinct layers.
    assert_eq!(s.blob_files().len(), 7, "{:?}", s.blob_files());
    s.assert_fsck_clean();
}

// ---- 2. save ---------------------------------------------------------------------

/// Loads `archive` into a store, saves `app:1` in `format`, loads the result
/// into a second store and compares ID, layer digests and tags.
fn round_trip(format: &str, img: &Image, archive: &[u8]) {
    let s1 = Store::new();
    s1.load("src.tar", archive);
    let out = s1.work().join(format!("saved-{format}"));
    let o = s1.ok(&["save", "--format", format, "-o", arg(&out), "app:1"]);
    assert_eq!(o, "", "save -o prints nothing");
    let s2 = Store::new();
    let loaded = s2.ok(&["load", "-i", arg(&out)]);
    assert_eq!(loaded, "Loaded image: docker.io/library/app:1\n", "{format}");
    let (i1, i2) = (s1.inspect("app:1"), s2.inspect("app:1"));
    assert_eq!(i2["Id"], json!(img.hex()), "{format}");
    assert_eq!(i1["Layers"].as_array().unwrap().len(), img.layers.len());
    let digests =
        |v: &Value| -> Vec<Value> { v["Layers"].as_array().unwrap().iter().map(|l| l["Digest"].clone()).collect() };
    assert_eq!(digests(&i1), digests(&i2), "{format}");
    assert_eq!(i1["RootFS"], i2["RootFS"], "{format}");
    assert_eq!(i1["RepoTags"], i2["RepoTags"], "{format}");
    assert_stored(&s2, img);
    s2.assert_fsck_clean();
    // The output is complete: no temp file is left beside it.
    let names: Vec<String> =
        fs::read_dir(s1.work()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.contains("tmp")), "temp files left: {names:?}");
}

// Guards: save --format docker-archive then load gives the same image back.
#[test]
fn save_load_round_trip_docker_archive() {
    let d = two_layer_image(&["app:1"]);
    round_trip("docker-archive", &d, &Archive::docker(&[&d]).tar());
    let o = three_layer_image(&["app:1"]);
    round_trip("docker-archive", &o, &Archive::oci(&[&o]).tar());
}

// Guards: save --format oci-archive then load gives the same image back.
#[test]
fn save_load_round_trip_oci_archive() {
    let d = two_layer_image(&["app:1"]);
    round_trip("oci-archive", &d, &Archive::docker(&[&d]).tar());
    let o = three_layer_image(&["app:1"]);
    round_trip("oci-archive", &o, &Archive::oci(&[&o]).tar());
}

// Guards: save --format oci-dir then load of the directory gives the same image back.
#[test]
fn save_load_round_trip_oci_dir() {
    let d = two_layer_image(&["app:1"]);
    round_trip("oci-dir", &d, &Archive::docker(&[&d]).tar());
    let o = three_layer_image(&["app:1"]);
    round_trip("oci-dir", &o, &Archive::oci(&[&o]).tar());
}

// Guards: save without -o writes the archive to standard output.
#[test]
fn save_to_stdout() {
    let s = Store::new();
    let img = two_layer_image(&["app:1"]);
    s.load("app.tar", &Archive::docker(&[&img]).tar());
    let o = s.run(&["save", "app:1"]);
    assert!(o.success(), "{}", o.describe());
    assert!(o.stderr.is_empty(), "{}", o.describe());
    let names: Vec<String> = list_tar(&o.stdout).into_iter().map(|e| e.name).collect();
    assert!(names.contains(&"manifest.json".to_string()), "{names:?}");
    let s2 = Store::new();
    let l = s2.run_with(&["load"], &[], Some(&o.stdout));
    assert!(l.success(), "{}", l.describe());
    assert_stored(&s2, &img);
    // Saving twice gives the same bytes.
    let again = s.run(&["save", "app:1"]);
    assert_eq!(again.stdout, o.stdout, "save output is not deterministic");
}

// Guards: several images saved into one archive all load back with their tags.
#[test]
fn save_several_images_in_one_archive() {
    let s = Store::new();
    let base = Layer::simple("shared", Comp::Gzip);
    let a = ImageSpec::new(&["a:1"]).layer(base.clone()).layer(Layer::simple("a", Comp::None)).build();
    let b = ImageSpec::new(&["b:1", "b:2"]).layer(base).layer(Layer::simple("b", Comp::None)).build();
    s.load("a.tar", &Archive::docker(&[&a]).tar());
    s.load("b.tar", &Archive::oci(&[&b]).tar());
    for format in ["docker-archive", "oci-archive", "oci-dir"] {
        let out = s.work().join(format!("ab-{format}"));
        s.ok(&["save", "--format", format, "-o", arg(&out), "a:1", "b:1", "b:2"]);
        let s2 = Store::new();
        let loaded = s2.ok(&["load", "-i", arg(&out)]);
        let mut lines: Vec<&str> = loaded.lines().collect();
        lines.sort();
        assert_eq!(
            lines,
            vec![
                "Loaded image: docker.io/library/a:1",
                "Loaded image: docker.io/library/b:1",
                "Loaded image: docker.io/library/b:2",
            ],
            "{format}"
        );
        assert_stored(&s2, &a);
        assert_stored(&s2, &b);
        s2.assert_fsck_clean();
    }
}

// Guards: save of a missing image fails and leaves no output file behind.
#[test]
fn save_missing_image_fails_without_output() {
    let s = Store::new();
    let img = two_layer_image(&["app:1"]);
    s.load("app.tar", &Archive::docker(&[&img]).tar());
    let list = |d: &Path| -> BTreeSet<String> {
        fs::read_dir(d).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
    };
    let before = list(s.work());
    for format in ["docker-archive", "oci-archive", "oci-dir"] {
        let out = s.work().join(format!("out-{format}"));
        let o = s.fail(&["save", "--format", format, "-o", arg(&out), "app:1", "missing:1"]);
        let line = o.one_error_line();
        assert!(line.contains("missing:1"), "{}", o.describe());
        assert!(!out.exists(), "{format}: {} was left behind", out.display());
        assert_eq!(list(s.work()), before, "{format}: files left behind");
    }
    // To standard output: nothing written.
    let o = s.fail(&["save", "missing:1"]);
    assert!(o.stdout.is_empty(), "{}", o.describe());
}
