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

// ---- 3. bad input ------------------------------------------------------------------

/// A store that already holds an image, so a refusal can be seen to lose nothing.
fn store_with_base() -> Store {
    let s = Store::new();
    let base = ImageSpec::new(&["base:1"]).layer(Layer::simple("base", Comp::Gzip)).build();
    s.load("base.tar", &Archive::docker(&[&base]).tar());
    s
}

/// Loads `input`, expecting a refusal: one `error:` line naming the input and
/// saying each of `wants`, the store exactly as before, nothing left in
/// ingest/, and fsck clean. Returns the error line.
fn assert_load_refused(s: &Store, input: &Path, wants: &[&str]) -> String {
    let before = s.snapshot();
    let o = s.run(&["load", "-i", arg(input)]);
    let line = o.one_error_line();
    assert!(line.contains(arg(input)), "the error does not name the input {}\n{}", input.display(), o.describe());
    for w in wants {
        assert!(line.contains(w), "the error does not say {w:?}\n{}", o.describe());
    }
    assert!(o.stdout.is_empty(), "{}", o.describe());
    assert_eq!(s.snapshot(), before, "a refused load changed the store");
    s.assert_ingest_empty();
    s.assert_fsck_clean();
    line
}

/// Writes `data` as a file and expects `img load` to refuse it.
fn refuse_bytes(name: &str, data: &[u8], wants: &[&str]) -> String {
    let s = store_with_base();
    let p = s.write(name, data);
    assert_load_refused(&s, &p, wants)
}

fn docker_fixture() -> (Image, Archive) {
    let img = two_layer_image(&["app:1"]);
    let a = Archive::docker(&[&img]);
    (img, a)
}

fn oci_fixture() -> (Image, Archive) {
    let img = two_layer_image(&["app:1"]);
    let a = Archive::oci(&[&img]);
    (img, a)
}

/// Loads `data` cut at each offset into a store holding an image; returns a
/// description of each cut not refused with one `error:` line naming the
/// file and saying "truncated". Asserts the store is unchanged either way.
fn truncation_failures(data: &[u8], ext: &str, cuts: &[usize]) -> Vec<String> {
    let mut failures = Vec::new();
    for &cut in cuts {
        let s = store_with_base();
        let p = s.write(&format!("cut-{cut}.{ext}"), &data[..cut]);
        let before = s.snapshot();
        let o = s.run(&["load", "-i", arg(&p)]);
        let ok = matches!(o.code(), Some(c) if c != 0)
            && o.stderr.trim_end().lines().count() == 1
            && o.stderr.starts_with("error:")
            && o.stderr.contains(arg(&p))
            && o.stderr.contains("truncated");
        if !ok {
            failures.push(format!("cut at {cut} of {}:\n{}", data.len(), o.describe()));
        }
        assert_eq!(s.snapshot(), before, "cut at {cut}: the store changed");
        s.assert_ingest_empty();
        s.assert_fsck_clean();
    }
    failures
}

// Guards: an archive cut short (in or after a header, in layer data; plain or gzip) is refused as truncated, storing nothing.
#[test]
fn truncated_archive_is_refused() {
    let (_, a) = docker_fixture();
    let tar = a.tar();
    let mut failures = truncation_failures(&tar, "tar", &[600, 1024, 1100, tar.len() / 2 + 7]);
    let gz = gzip(&tar);
    failures.extend(truncation_failures(&gz, "tar.gz", &[gz.len() / 2, gz.len() - 4]));
    assert!(failures.is_empty(), "truncated archives not reported as truncated:\n{}", failures.join("\n"));
}

// Guards: an archive cut inside its last entry (manifest.json) is reported as truncated, like any other cut.
#[test]
fn archive_cut_in_last_entry_is_reported_as_truncated() {
    let (_, a) = docker_fixture();
    let tar = a.tar();
    let failures = truncation_failures(&tar, "tar", &[tar.len() - 1024 - 40]);
    assert!(failures.is_empty(), "truncated archives not reported as truncated:\n{}", failures.join("\n"));
}

// Guards: a layer whose content does not match the config's diff_id is refused.
#[test]
fn layer_not_matching_diff_id_is_refused() {
    let (img, mut a) = docker_fixture();
    let name = format!("{}.tar", img.layers[0].digest().hex());
    a.set(&name, TarBuilder::new().file("evil", "not the layer").build());
    refuse_bytes("diffid.tar", &a.tar(), &["layer 0", "diff_id"]);
}

// Guards: an OCI manifest whose layer digest does not match the blob's content is refused.
#[test]
fn oci_layer_digest_mismatch_is_refused() {
    let (img, mut a) = oci_fixture();
    let real = img.layers[1].digest();
    let fake = Digest::of_bytes(b"something else");
    a.rename(&blob_name(&real), &blob_name(&fake));
    a.edit_oci_manifest(0, |m| m["layers"][1]["digest"] = json!(fake.to_string()));
    refuse_bytes("digest.tar", &a.tar(), &["layer 1", "digest mismatch"]);
}

// Guards: an OCI manifest whose layer size is wrong is refused.
#[test]
fn oci_layer_size_mismatch_is_refused() {
    let (img, mut a) = oci_fixture();
    let size = img.layers[0].blob.len() as u64 + 1;
    a.edit_oci_manifest(0, |m| m["layers"][0]["size"] = json!(size));
    refuse_bytes("size.tar", &a.tar(), &["layer 0", "size mismatch"]);
}

// Guards: an index.json entry whose manifest digest does not match the blob is refused.
#[test]
fn oci_index_digest_mismatch_is_refused() {
    let (img, mut a) = oci_fixture();
    let fake = Digest::of_bytes(b"another manifest");
    a.rename(&blob_name(&img.manifest_digest), &blob_name(&fake));
    a.edit_json("index.json", |ix| ix["manifests"][0]["digest"] = json!(fake.to_string()));
    refuse_bytes("index-digest.tar", &a.tar(), &["index.json", "digest mismatch"]);
}

// Guards: an index.json entry with the wrong manifest size is refused.
#[test]
fn oci_index_size_mismatch_is_refused() {
    let (img, mut a) = oci_fixture();
    a.edit_json("index.json", |ix| ix["manifests"][0]["size"] = json!(img.manifest.len() + 10));
    refuse_bytes("index-size.tar", &a.tar(), &["index.json", "size mismatch"]);
}

// Guards: a manifest whose config descriptor has the wrong size is refused.
#[test]
fn oci_config_size_mismatch_is_refused() {
    let (img, mut a) = oci_fixture();
    a.edit_oci_manifest(0, |m| m["config"]["size"] = json!(img.config.len() - 1));
    refuse_bytes("config-size.tar", &a.tar(), &["config", "size mismatch"]);
}

// Guards: manifest.json names with `../` that leave the archive are refused.
#[test]
fn docker_manifest_parent_paths_are_refused() {
    let (img, a) = docker_fixture();
    let config = format!("../{}.json", img.hex());
    let mut bad = a.clone();
    bad.edit_json("manifest.json", |m| m[0]["Config"] = json!(config));
    refuse_bytes("parent-config.tar", &bad.tar(), &[&config]);
    let layer = "../../../../etc/passwd";
    let mut bad = a.clone();
    bad.edit_json("manifest.json", |m| m[0]["Layers"][0] = json!(layer));
    refuse_bytes("parent-layer.tar", &bad.tar(), &[layer]);
}

// Guards: absolute manifest.json names never reach host files.
#[test]
fn docker_manifest_absolute_paths_are_refused() {
    let (_, a) = docker_fixture();
    let mut bad = a.clone();
    bad.edit_json("manifest.json", |m| m[0]["Layers"][0] = json!("/etc/passwd"));
    refuse_bytes("abs-layer.tar", &bad.tar(), &["/etc/passwd"]);
    let mut bad = a.clone();
    bad.edit_json("manifest.json", |m| m[0]["Config"] = json!("/etc/hostname"));
    refuse_bytes("abs-config.tar", &bad.tar(), &["/etc/hostname"]);
}

// Guards: an index.json digest that is a path (`../`) is refused, with an error that names the bad digest.
#[test]
fn oci_index_path_digest_error_names_the_digest() {
    let (_, mut a) = oci_fixture();
    a.edit_json("index.json", |ix| ix["manifests"][0]["digest"] = json!("sha256:../../../../etc/passwd"));
    refuse_bytes("index-path.tar", &a.tar(), &["index.json", "sha256:../../../../etc/passwd"]);
}

// Guards: a docker-archive without one of its layers is refused.
#[test]
fn missing_layer_is_refused() {
    let (img, mut a) = docker_fixture();
    let name = format!("{}.tar", img.layers[1].digest().hex());
    a.remove(&name);
    refuse_bytes("no-layer.tar", &a.tar(), &[&name, "not in the archive"]);
    let (img, mut a) = oci_fixture();
    a.remove(&blob_name(&img.layers[0].digest()));
    refuse_bytes("no-layer-oci.tar", &a.tar(), &[img.layers[0].digest().hex(), "does not contain"]);
}

// Guards: an archive without its config is refused.
#[test]
fn missing_config_is_refused() {
    let (img, mut a) = docker_fixture();
    let name = format!("{}.json", img.hex());
    a.remove(&name);
    refuse_bytes("no-config.tar", &a.tar(), &[&name, "not in the archive"]);
    let (img, mut a) = oci_fixture();
    a.remove(&blob_name(&img.id));
    refuse_bytes("no-config-oci.tar", &a.tar(), &[img.hex(), "does not contain"]);
}

// Guards: an archive with two entries of the same name is refused as ambiguous.
#[test]
fn duplicate_entries_are_refused() {
    let (img, mut a) = docker_fixture();
    let name = format!("{}.tar", img.layers[0].digest().hex());
    a.push(&name, img.layers[0].blob.clone());
    refuse_bytes("dup.tar", &a.tar(), &["two entries", &name]);
    let (_, mut a) = oci_fixture();
    let ix = a.get("index.json").to_vec();
    a.push("index.json", ix);
    refuse_bytes("dup-oci.tar", &a.tar(), &["two entries", "index.json"]);
}

// Guards: a file that is not an archive is refused.
#[test]
fn non_archive_is_refused() {
    let text = "this is a text file, not an image archive\n".repeat(40);
    refuse_bytes("notes.txt", text.as_bytes(), &["not a tar archive"]);
    // A compressed non-tar too.
    refuse_bytes("notes.txt.gz", &gzip(text.as_bytes()), &["not a tar archive"]);
}

// Guards: an empty file is refused.
#[test]
fn empty_file_is_refused() {
    refuse_bytes("empty.tar", b"", &["empty"]);
}

// Guards: a directory that is not an OCI layout is refused.
#[test]
fn non_layout_directory_is_refused() {
    let s = store_with_base();
    let empty = s.work().join("empty-dir");
    fs::create_dir_all(&empty).unwrap();
    assert_load_refused(&s, &empty, &["not an image directory"]);
    let other = s.work().join("other-dir");
    fs::create_dir_all(other.join("blobs")).unwrap();
    fs::write(other.join("readme.txt"), "hello").unwrap();
    assert_load_refused(&s, &other, &["not an image directory"]);
}

// Guards: a 2 MiB manifest.json is refused by its size limit.
#[test]
fn huge_docker_manifest_is_refused() {
    let (_, mut a) = docker_fixture();
    let mut m = a.get("manifest.json").to_vec();
    m.resize(2 << 20, b' ');
    a.set("manifest.json", m);
    refuse_bytes("huge.tar", &a.tar(), &["manifest.json", "limit"]);
}

// Guards: an OCI manifest with a digest of an unknown algorithm is refused.
#[test]
fn oci_unknown_digest_algorithm_is_refused() {
    let (_, mut a) = oci_fixture();
    let d = format!("sha512:{}", "ab".repeat(64));
    a.edit_oci_manifest(0, |m| m["layers"][0]["digest"] = json!(d));
    refuse_bytes("sha512.tar", &a.tar(), &["sha512"]);
    let (_, mut a) = oci_fixture();
    let d = format!("md5:{}", "ab".repeat(16));
    a.edit_oci_manifest(0, |m| m["layers"][0]["digest"] = json!(d));
    refuse_bytes("md5.tar", &a.tar(), &["md5"]);
}

// Guards: an OCI manifest digest in upper-case hex is refused, with an error that names the bad digest.
#[test]
fn oci_uppercase_digest_error_names_the_digest() {
    let (img, mut a) = oci_fixture();
    let upper = format!("sha256:{}", img.layers[0].digest().hex().to_uppercase());
    a.edit_oci_manifest(0, |m| m["layers"][0]["digest"] = json!(upper));
    refuse_bytes("upper.tar", &a.tar(), &[&upper]);
}

// Guards: a manifest with both `manifests` and `layers` is refused (CVE-2021-41190).
#[test]
fn ambiguous_oci_manifest_is_refused() {
    let (_, mut a) = oci_fixture();
    a.edit_oci_manifest(0, |m| m["manifests"] = json!([]));
    refuse_bytes("ambiguous.tar", &a.tar(), &["ambiguous"]);
}

// Guards: a RepoTag that is a path or has upper case is refused.
#[test]
fn bad_repo_tags_are_refused() {
    for tag in ["../x:1", "App:1", "app:../1"] {
        let (_, mut a) = docker_fixture();
        a.edit_json("manifest.json", |m| m[0]["RepoTags"] = json!([tag]));
        refuse_bytes("badtag.tar", &a.tar(), &["RepoTag", tag]);
    }
}
