//! Integration tests: the real `img` binary against fresh temporary stores,
//! with image fixtures generated here (see tests/support).

mod support;

use img::digest::Digest;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
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

// Guards: an archive that is both an OCI layout and a docker-archive (as
// `ctr images export` and docker save from 25 on write) loads through its
// index.json, keeping the manifest digest; its manifest.json would make a
// new manifest with another digest.
#[test]
fn load_oci_archive_with_manifest_json_keeps_the_manifest_digest() {
    let s = Store::new();
    let img = two_layer_image(&["app:1"]);
    let mut a = Archive::oci(&[&img]);
    let layers: Vec<String> = img.layers.iter().map(|l| blob_name(&l.digest())).collect();
    let manifest = json!([{"Config": blob_name(&img.id), "RepoTags": ["app:1"], "Layers": layers}]);
    a.set("manifest.json", serde_json::to_vec(&manifest).unwrap());
    let out = s.load("ctr-export.tar", &a.tar());
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

// ---- 4. tag, rmi, prune ------------------------------------------------------------

/// Two images sharing a base layer: a:1 and b:1.
fn shared_pair() -> (Store, Image, Image) {
    let s = Store::new();
    let base = Layer::simple("shared-base", Comp::Gzip);
    let a = ImageSpec::new(&["a:1"]).layer(base.clone()).layer(Layer::simple("only-a", Comp::None)).build();
    let b = ImageSpec::new(&["b:1"]).layer(base).layer(Layer::simple("only-b", Comp::None)).build();
    s.load("a.tar", &Archive::docker(&[&a]).tar());
    s.load("b.tar", &Archive::docker(&[&b]).tar());
    (s, a, b)
}

// Guards: `img tag` adds names; rmi of one tag of a multi-tag image only untags it.
#[test]
fn rmi_of_one_tag_only_untags() {
    let s = Store::new();
    let img = two_layer_image(&["app:1"]);
    s.load("app.tar", &Archive::docker(&[&img]).tar());
    assert_eq!(s.ok(&["tag", "app:1", "app:2", "other/app:3"]), "");
    assert_eq!(s.tags(), vec!["docker.io/library/app:1", "docker.io/library/app:2", "docker.io/other/app:3"]);
    let blobs = s.blob_files();
    let out = s.ok(&["rmi", "app:2"]);
    assert_eq!(out, "Untagged: docker.io/library/app:2\n");
    assert_eq!(s.tags(), vec!["docker.io/library/app:1", "docker.io/other/app:3"]);
    assert_eq!(s.blob_files(), blobs, "untagging removed blobs");
    assert_stored(&s, &Image { tags: vec!["app:1".into(), "other/app:3".into()], ..img });
    s.assert_fsck_clean();
}

// Guards: rmi by ID of an image with several tags needs -f; with -f it removes all.
#[test]
fn rmi_of_multi_tag_id_needs_force() {
    let s = Store::new();
    let img = two_layer_image(&["app:1"]);
    s.load("app.tar", &Archive::docker(&[&img]).tar());
    s.ok(&["tag", "app:1", "other:1"]);
    let before = s.snapshot();
    let o = s.fail(&["rmi", img.short()]);
    let line = o.one_error_line();
    assert!(line.contains("conflict"), "{}", o.describe());
    assert!(line.contains("-f"), "{}", o.describe());
    assert_eq!(s.snapshot(), before);
    let out = s.ok(&["rmi", "-f", img.short()]);
    assert_eq!(
        out,
        format!("Untagged: docker.io/library/app:1\nUntagged: docker.io/library/other:1\nDeleted: {}\n", img.id)
    );
    assert!(s.images().is_empty());
    assert!(s.blob_files().is_empty(), "{:?}", s.blob_files());
    s.assert_fsck_clean();
}

// Guards: removing an image keeps a layer another image still needs.
#[test]
fn rmi_keeps_shared_layers() {
    let (s, a, b) = shared_pair();
    let out = s.ok(&["rmi", "a:1"]);
    assert_eq!(out, format!("Untagged: docker.io/library/a:1\nDeleted: {}\n", a.id));
    assert!(s.has_blob(&a.layers[0].digest()), "shared layer removed");
    assert!(!s.has_blob(&a.layers[1].digest()), "a's own layer kept");
    assert!(!s.has_blob(&a.id), "a's config kept");
    assert_stored(&s, &b);
    s.assert_fsck_clean();
    // b still exports in full.
    let t = s.work().join("b.rootfs.tar");
    s.ok(&["export", "b:1", "-o", arg(&t)]);
    let names: Vec<String> = list_tar(&fs::read(&t).unwrap()).into_iter().map(|e| e.name).collect();
    assert!(names.contains(&"files-shared-base/data".to_string()), "{names:?}");
}

// Guards: prune -a removes every image that is not mounted, as podman's does.
#[test]
fn prune_all_removes_tagged_images_too() {
    let (s, a, b) = shared_pair();
    let out = s.ok(&["prune", "-a", "-f"]);
    assert!(out.contains(&format!("deleted: {}", a.id)) && out.contains(&format!("deleted: {}", b.id)), "{out}");
    assert!(s.images().is_empty());
    assert!(s.blob_files().is_empty(), "blobs left: {:?}", s.blob_files());
    s.assert_fsck_clean();
}

// Guards: prune removes dangling images and unreferenced blobs and reports the bytes.
#[test]
fn prune_removes_dangling_images_and_blobs() {
    let (s, a, _b) = shared_pair();
    let dangling = ImageSpec::new(&[]).layer(a.layers[0].clone()).layer(Layer::simple("dangling", Comp::Gzip)).build();
    let out = s.load("d.tar", &Archive::docker(&[&dangling]).tar());
    assert_eq!(out, format!("Loaded image ID: {}\n", dangling.id));
    let before: std::collections::BTreeMap<String, u64> = s.blob_files().into_iter().collect();
    let out = s.ok(&["prune", "-f"]);
    let after: std::collections::BTreeMap<String, u64> = s.blob_files().into_iter().collect();
    let removed: u64 = before.iter().filter(|(k, _)| !after.contains_key(*k)).map(|(_, v)| v).sum();
    assert!(removed > 0);
    assert_eq!(
        out,
        format!(
            "Deleted Images:\ndeleted: {}\n\nTotal reclaimed space: {}\n",
            dangling.id,
            img::timefmt::human_size(removed)
        )
    );
    assert!(!s.has_blob(&dangling.id));
    assert!(!s.has_blob(&dangling.layers[1].digest()));
    assert!(s.has_blob(&a.layers[0].digest()), "shared layer pruned");
    assert_eq!(s.tags(), vec!["docker.io/library/a:1", "docker.io/library/b:1"]);
    assert_eq!(s.images().len(), 2);
    s.assert_fsck_clean();
    // Nothing left to prune.
    assert_eq!(s.ok(&["prune", "-f"]), "Total reclaimed space: 0B\n");
}

// Guards: rmi -a removes every image and every blob.
#[test]
fn rmi_all_removes_everything() {
    let (s, _a, _b) = shared_pair();
    s.ok(&["tag", "a:1", "a:2"]);
    let out = s.ok(&["rmi", "-a"]);
    assert_eq!(out.matches("Deleted: ").count(), 2, "{out}");
    assert_eq!(out.matches("Untagged: ").count(), 3, "{out}");
    assert!(s.images().is_empty());
    assert!(s.blob_files().is_empty(), "{:?}", s.blob_files());
    s.assert_fsck_clean();
}

// Guards: rmi of several names with one missing fails but removes the others.
#[test]
fn rmi_with_one_missing_name_removes_the_rest() {
    let (s, a, b) = shared_pair();
    let o = s.fail(&["rmi", "a:1", "nope:1", "b:1"]);
    let line = o.one_error_line();
    assert!(line.contains("nope:1"), "{}", o.describe());
    assert!(line.contains("image not known"), "{}", o.describe());
    assert_eq!(
        o.out(),
        format!(
            "Untagged: docker.io/library/a:1\nDeleted: {}\nUntagged: docker.io/library/b:1\nDeleted: {}\n",
            a.id, b.id
        )
    );
    assert!(s.images().is_empty());
    assert!(s.blob_files().is_empty());
    s.assert_fsck_clean();
}

/// Two images whose IDs share their first 4 hex digits.
fn colliding_pair() -> (Image, Image) {
    let mut seen: std::collections::HashMap<String, Image> = std::collections::HashMap::new();
    let layer = Layer::simple("prefix", Comp::None);
    for i in 0..100_000 {
        let img = ImageSpec::new(&[]).label("n", &i.to_string()).layer(layer.clone()).build();
        let p = img.hex()[..4].to_string();
        if let Some(other) = seen.remove(&p) {
            return (other, img);
        }
        seen.insert(p, img);
    }
    panic!("no ID prefix collision found");
}

// Guards: a unique ID prefix of 4+ hex names an image; an ambiguous one fails clearly.
#[test]
fn id_prefix_lookup() {
    let s = Store::new();
    let (mut x, mut y) = colliding_pair();
    x.tags = vec!["x:1".into()];
    y.tags = vec!["y:1".into()];
    s.load("xy.tar", &Archive::docker(&[&x, &y]).tar());
    let common = x.hex().chars().zip(y.hex().chars()).take_while(|(a, b)| a == b).count();
    assert!(common >= 4);
    let ambiguous = &x.hex()[..4];
    let o = s.fail(&["inspect", ambiguous]);
    let line = o.one_error_line();
    assert!(line.contains("ambiguous"), "{}", o.describe());
    assert!(line.contains(ambiguous), "{}", o.describe());
    let o = s.fail(&["rmi", ambiguous]);
    assert!(o.stderr.contains("ambiguous"), "{}", o.describe());
    assert_eq!(s.images().len(), 2);
    for img in [&x, &y] {
        let unique = &img.hex()[..common + 1];
        assert_eq!(s.inspect(unique)["Id"], json!(img.hex()), "prefix {unique}");
        let with_alg = format!("sha256:{unique}");
        assert_eq!(s.inspect(&with_alg)["Id"], json!(img.hex()));
    }
    // A prefix shorter than 4 is not an ID.
    let o = s.fail(&["inspect", &x.hex()[..3]]);
    assert!(o.stderr.contains("image not known"), "{}", o.describe());
    // A unique prefix removes the image.
    let unique = &x.hex()[..common + 1];
    s.ok(&["rmi", unique]);
    assert_eq!(s.image_ids(), vec![y.hex().to_string()]);
    s.assert_fsck_clean();
}

// ---- 5. images, inspect, history ---------------------------------------------------

struct Listing {
    s: Store,
    old: Image,
    mid: Image,
    new: Image,
    dangling: Image,
}

/// Four images with distinct creation times and labels:
/// dangling (2019), old app:1 (2020, tier=back), mid app:2 + web:1 (2021,
/// tier=front), new tool:1 (2022, no labels).
fn listing() -> Listing {
    let s = Store::new();
    let dangling =
        ImageSpec::new(&[]).created("2019-01-01T00:00:00Z").layer(Layer::simple("dangling", Comp::None)).build();
    let old = ImageSpec::new(&["app:1"])
        .created("2020-01-01T00:00:00Z")
        .label("tier", "back")
        .layer(Layer::simple("old", Comp::None))
        .build();
    let mid = ImageSpec::new(&["app:2", "web:1"])
        .created("2021-01-01T00:00:00Z")
        .label("tier", "front")
        .label("k", "v")
        .layer(Layer::simple("mid", Comp::Gzip))
        .build();
    let new =
        ImageSpec::new(&["tool:1"]).created("2022-01-01T00:00:00Z").layer(Layer::simple("new", Comp::None)).build();
    s.load("all.tar", &Archive::docker(&[&dangling, &old, &mid, &new]).tar());
    Listing { s, old, mid, new, dangling }
}

/// (repository, tag) of each table row.
fn table_names(out: &str) -> Vec<String> {
    let mut lines = out.lines();
    let head = lines.next().unwrap_or("");
    assert!(head.starts_with("REPOSITORY"), "{out}");
    lines
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{}:{}", f[0], f[1])
        })
        .collect()
}

fn quiet_ids(s: &Store, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["images", "-q", "--no-trunc"];
    args.extend_from_slice(extra);
    s.ok(&args).lines().map(str::to_string).collect()
}

fn ids(imgs: &[&Image]) -> Vec<String> {
    imgs.iter().map(|i| i.id.to_string()).collect()
}

// Guards: `img images PATTERN` matches names with wildcards, short or full.
#[test]
fn images_pattern_with_wildcards() {
    let l = listing();
    let s = &l.s;
    assert_eq!(
        table_names(&s.ok(&["images"])),
        vec![
            "docker.io/library/tool:1",
            "docker.io/library/app:2",
            "docker.io/library/web:1",
            "docker.io/library/app:1",
            "<none>:<none>"
        ]
    );
    let app = vec!["docker.io/library/app:2", "docker.io/library/app:1"];
    assert_eq!(table_names(&s.ok(&["images", "app*"])), app);
    assert_eq!(table_names(&s.ok(&["images", "ap?"])), app);
    assert_eq!(table_names(&s.ok(&["images", "docker.io/library/a*"])), app);
    assert_eq!(table_names(&s.ok(&["images", "app"])), app);
    assert_eq!(table_names(&s.ok(&["images", "app:2"])), vec!["docker.io/library/app:2"]);
    assert_eq!(
        table_names(&s.ok(&["images", "*:1"])),
        vec!["docker.io/library/tool:1", "docker.io/library/web:1", "docker.io/library/app:1"]
    );
    assert!(table_names(&s.ok(&["images", "nomatch*"])).is_empty());
}

// Guards: --filter dangling=true|false.
#[test]
fn images_filter_dangling() {
    let l = listing();
    assert_eq!(quiet_ids(&l.s, &["--filter", "dangling=true"]), ids(&[&l.dangling]));
    assert_eq!(quiet_ids(&l.s, &["--filter", "dangling=false"]), ids(&[&l.new, &l.mid, &l.old]));
    let o = l.s.fail(&["images", "--filter", "dangling=maybe"]);
    assert!(o.stderr.contains("dangling"), "{}", o.describe());
}

// Guards: --filter reference=GLOB.
#[test]
fn images_filter_reference() {
    let l = listing();
    assert_eq!(
        table_names(&l.s.ok(&["images", "--filter", "reference=app:*"])),
        vec!["docker.io/library/app:2", "docker.io/library/app:1"]
    );
    assert_eq!(quiet_ids(&l.s, &["--filter", "reference=web"]), ids(&[&l.mid]));
    assert!(quiet_ids(&l.s, &["--filter", "reference=zzz*"]).is_empty());
}

// Guards: --filter label=K and label=K=V.
#[test]
fn images_filter_label() {
    let l = listing();
    assert_eq!(quiet_ids(&l.s, &["--filter", "label=tier=front"]), ids(&[&l.mid]));
    assert_eq!(quiet_ids(&l.s, &["--filter", "label=tier"]), ids(&[&l.mid, &l.old]));
    assert_eq!(quiet_ids(&l.s, &["--filter", "label=tier=back", "--filter", "dangling=false"]), ids(&[&l.old]));
    assert!(quiet_ids(&l.s, &["--filter", "label=tier=none"]).is_empty());
}

// Guards: --filter before=IMAGE and since=IMAGE compare creation times.
#[test]
fn images_filter_before_since() {
    let l = listing();
    assert_eq!(quiet_ids(&l.s, &["--filter", "before=app:2"]), ids(&[&l.old, &l.dangling]));
    assert_eq!(quiet_ids(&l.s, &["--filter", "since=app:1"]), ids(&[&l.new, &l.mid]));
    assert_eq!(quiet_ids(&l.s, &["--filter", "since=app:1", "--filter", "before=tool:1"]), ids(&[&l.mid]));
    let o = l.s.fail(&["images", "--filter", "before=nope:1"]);
    assert!(o.stderr.contains("nope:1"), "{}", o.describe());
}

// Guards: -q (unique short IDs), --digests and --no-trunc.
#[test]
fn images_quiet_digests_no_trunc() {
    let l = listing();
    let q = l.s.ok(&["images", "-q"]);
    assert_eq!(q, format!("{}\n{}\n{}\n{}\n", l.new.short(), l.mid.short(), l.old.short(), l.dangling.short()));
    let d = l.s.ok(&["images", "--digests"]);
    let head = d.lines().next().unwrap();
    assert!(head.contains("DIGEST"), "{d}");
    for i in [&l.new, &l.mid, &l.old, &l.dangling] {
        let digest = l.s.inspect(i.hex())["Digest"].as_str().unwrap().to_string();
        assert!(digest.starts_with("sha256:"));
        assert!(d.contains(&digest), "{digest} missing from\n{d}");
        assert!(d.contains(i.short()));
        assert!(!d.contains(i.hex()), "--digests alone does not untruncate IDs");
    }
    let n = l.s.ok(&["images", "--no-trunc"]);
    for i in [&l.new, &l.mid, &l.old, &l.dangling] {
        assert!(n.contains(&i.id.to_string()), "{n}");
    }
}

// Guards: --format json prints a valid JSON array, one object per image.
#[test]
fn images_format_json() {
    let l = listing();
    let v: Value = serde_json::from_str(&l.s.ok(&["images", "--format", "json"])).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 4);
    let mid = arr.iter().find(|i| i["Id"] == json!(l.mid.hex())).unwrap();
    assert_eq!(sorted(strings(&mid["RepoTags"])), l.mid.full_tags());
    assert_eq!(mid["Labels"]["tier"], json!("front"));
    assert_eq!(mid["Dangling"], json!(false));
    assert_eq!(mid["Created"], json!(1_609_459_200));
    let d = arr.iter().find(|i| i["Id"] == json!(l.dangling.hex())).unwrap();
    assert_eq!(d["Dangling"], json!(true));
    assert_eq!(d["RepoTags"], json!([]));
    // A pattern narrows the JSON too.
    let v: Value = serde_json::from_str(&l.s.ok(&["images", "tool*", "--format", "json"])).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
}

/// One image with a plain and a gzip layer, both compressible, made from the
/// same tars with the compression `comp`: the same config, so the same ID.
fn compressible_image(tags: &[&str], comp: Comp) -> Image {
    let big = |seed: &str| {
        TarBuilder::new().dir(seed).file(&format!("{seed}/data"), format!("{seed} ").repeat(20_000)).build()
    };
    ImageSpec::new(tags).layer(Layer::new(big("one"), comp)).layer(Layer::new(big("two"), Comp::Gzip)).build()
}

/// `Size` of each image in `img images --format json`, by ID.
fn listed_sizes(s: &Store) -> Vec<(String, u64)> {
    s.images().iter().map(|i| (i["Id"].as_str().unwrap().to_string(), i["Size"].as_u64().unwrap())).collect()
}

// Guards: an image's size is its layers' uncompressed size, as docker and
// podman show it, the same however it arrived: a docker-archive with plain
// layers and an OCI archive with gzip ones gave 2 MB and 1.06 MB.
#[test]
fn images_size_is_uncompressed_however_the_image_arrived() {
    let plain = compressible_image(&["app:1"], Comp::None);
    let gzip = compressible_image(&["app:1"], Comp::Gzip);
    assert_eq!(plain.id, gzip.id, "the same image");
    let want: u64 = plain.layers.iter().map(|l| l.tar.len() as u64).sum();
    assert!(gzip.layers.iter().map(|l| l.blob.len() as u64).sum::<u64>() < want / 4, "the layers compress");
    let (a, b) = (Store::new(), Store::new());
    a.load("docker.tar", &Archive::docker(&[&plain]).tar());
    b.load("oci.tar", &Archive::oci(&[&gzip]).tar());
    for s in [&a, &b] {
        assert_eq!(listed_sizes(s), vec![(plain.hex().to_string(), want)]);
        assert_eq!(s.inspect("app:1")["Size"], json!(want));
        assert_eq!(s.ok(&["images", "--format", "{{.Size}}"]), format!("{}\n", img::timefmt::human_size(want)));
    }
}

// Guards: layers stored by an img that did not record their uncompressed
// size (a store from before the index had it) count at their stored size;
// img fsck says how many there are, and img fsck --repair measures them.
#[test]
fn fsck_repair_measures_layers_stored_by_an_older_img() {
    let s = Store::new();
    let gzip = compressible_image(&["app:1"], Comp::Gzip);
    s.load("oci.tar", &Archive::oci(&[&gzip]).tar());
    let want: u64 = gzip.layers.iter().map(|l| l.tar.len() as u64).sum();
    let stored: u64 = gzip.layers.iter().map(|l| l.blob.len() as u64).sum();
    s.db().execute("UPDATE blobs SET diff_size = NULL", []).unwrap();
    assert_eq!(listed_sizes(&s), vec![(gzip.hex().to_string(), stored)]);
    let o = s.run(&["fsck"]);
    assert!(o.success() && o.out().contains(": clean"), "not measured is not a problem\n{}", o.describe());
    assert!(o.out().contains("2 layers") && o.out().contains("img fsck --repair"), "{}", o.describe());
    let o = s.run(&["fsck", "--repair"]);
    assert!(o.success() && o.out().contains("measured"), "{}", o.describe());
    assert_eq!(listed_sizes(&s), vec![(gzip.hex().to_string(), want)]);
    assert!(!s.ok(&["fsck"]).contains("note:"), "nothing left to measure");
}

// Guards: `img images --format json` lists each RepoDigest once, not once
// per tag of its repository.
#[test]
fn images_json_repo_digests_once_per_repository() {
    let s = Store::new();
    let i = ImageSpec::new(&["app:1", "app:2", "web:1"]).layer(Layer::simple("rd", Comp::None)).build();
    s.load("i.tar", &Archive::oci(&[&i]).tar());
    let listed = s.images();
    let d = i.manifest_digest.to_string();
    let want = json!([format!("docker.io/library/app@{d}"), format!("docker.io/library/web@{d}")]);
    assert_eq!(listed[0]["RepoDigests"], want);
    assert_eq!(s.inspect("app:1")["RepoDigests"], want);
}

// Guards: --format with a Go template renders each row.
#[test]
fn images_format_template() {
    let l = listing();
    let out = l.s.run(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(out.success(), "{}", out.describe());
    assert_eq!(
        out.out(),
        "docker.io/library/tool:1\ndocker.io/library/app:2\ndocker.io/library/web:1\ndocker.io/library/app:1\n<none>:<none>\n",
        "{}",
        out.describe()
    );
    let out = l.s.run(&["images", "tool", "--format", "{{.ID}} {{.Size}}"]);
    assert!(out.success(), "{}", out.describe());
    assert!(out.out().starts_with(&format!("{} ", l.new.short())), "{}", out.describe());
}

fn template(s: &Store, t: &str, name: &str) -> Out {
    s.run(&["inspect", "-f", t, name])
}

fn assert_template(s: &Store, t: &str, name: &str, want: &str) {
    let o = template(s, t, name);
    assert!(o.success(), "template {t:?}\n{}", o.describe());
    assert_eq!(o.out(), want, "template {t:?}\n{}", o.describe());
}

// Guards: inspect -f '{{.Id}}'.
#[test]
fn inspect_template_id() {
    let l = listing();
    assert_template(&l.s, "{{.Id}}", "app:2", &format!("{}\n", l.mid.hex()));
    // One line per image.
    let o = l.s.run(&["inspect", "-f", "{{.Id}}", "app:1", "tool:1"]);
    assert_eq!(o.out(), format!("{}\n{}\n", l.old.hex(), l.new.hex()), "{}", o.describe());
}

// Guards: inspect -f '{{json .Config}}' prints the config as JSON: the
// image's own fields as they are, docker's others at their zero values.
#[test]
fn inspect_template_json_config() {
    let l = listing();
    let o = template(&l.s, "{{json .Config}}", "app:2");
    assert!(o.success(), "{}", o.describe());
    let v: Value = serde_json::from_str(o.out().trim()).unwrap_or_else(|e| panic!("not JSON ({e})\n{}", o.describe()));
    for (k, want) in l.mid.config_json["config"].as_object().unwrap() {
        assert_eq!(&v[k], want, "Config.{k}");
    }
    assert_eq!(v["Entrypoint"], Value::Null);
    assert_eq!(v["WorkingDir"], json!(""));
}

/// docker's `ImageInspect` fields (API 1.41, docker 20.10).
const DOCKER_IMAGE_INSPECT: &[&str] = &[
    "Id",
    "RepoTags",
    "RepoDigests",
    "Parent",
    "Comment",
    "Created",
    "Container",
    "ContainerConfig",
    "DockerVersion",
    "Author",
    "Config",
    "Architecture",
    "Variant",
    "Os",
    "OsVersion",
    "Size",
    "VirtualSize",
    "GraphDriver",
    "RootFS",
    "Metadata",
];

/// docker's `container.Config` fields.
const DOCKER_CONTAINER_CONFIG: &[&str] = &[
    "Hostname",
    "Domainname",
    "User",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "ExposedPorts",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "Env",
    "Cmd",
    "Healthcheck",
    "ArgsEscaped",
    "Image",
    "Volumes",
    "WorkingDir",
    "Entrypoint",
    "NetworkDisabled",
    "MacAddress",
    "OnBuild",
    "Labels",
    "StopSignal",
    "StopTimeout",
    "Shell",
];

// Guards: templates on fields an image lacks print what docker prints
// instead of failing with "can't evaluate field ... in type map": on an
// image whose config has only Cmd and Env, `{{json .Config.Entrypoint}}`
// is null, `{{.ContainerConfig.Hostname}}` and `{{.Config.User}}` are
// empty, and on one without Env `{{json .Config.Env}}` is null (the
// README's `{{.Id}} {{json .Config.Env}}` too).
#[test]
fn inspect_template_on_fields_the_image_lacks() {
    let s = Store::new();
    let plain = ImageSpec::new(&["plain:1"]).layer(Layer::simple("plain", Comp::None)).build();
    let mut spec = ImageSpec::new(&["noenv:1"]).layer(Layer::simple("noenv", Comp::None));
    spec.env.clear();
    let noenv = spec.build();
    assert!(noenv.config_json["config"].get("Env").is_none(), "the fixture has no Env");
    s.load("both.tar", &Archive::docker(&[&plain, &noenv]).tar());
    assert_template(&s, "{{json .Config.Entrypoint}}", "plain:1", "null\n");
    assert_template(&s, "{{.ContainerConfig.Hostname}}", "plain:1", "\n");
    assert_template(&s, "{{.Config.User}}", "plain:1", "\n");
    assert_template(&s, "{{json .Config.Cmd}}", "plain:1", "[\"/bin/sh\"]\n");
    assert_template(&s, "{{json .Config.Env}}", "noenv:1", "null\n");
    assert_template(&s, "{{.Id}} {{json .Config.Env}}", "noenv:1", &format!("{} null\n", noenv.hex()));
    assert_template(
        &s,
        "{{.Config.ArgsEscaped}} {{json .Config.Healthcheck}} {{.Variant}}|",
        "plain:1",
        "false null |\n",
    );
    assert_template(&s, "{{.DockerVersion}}|{{.Container}}|{{.Parent}}|{{.OsVersion}}|", "plain:1", "||||\n");
    // Nil slices, maps and pointers print as docker's Go templates print them.
    assert_template(
        &s,
        "{{.Config.Entrypoint}} {{.Config.Labels}} {{.Config.Healthcheck}} {{.Config.StopTimeout}} {{.GraphDriver.Data}}",
        "plain:1",
        "[] map[] <nil> <nil> map[]\n",
    );
    assert_template(&s, "{{.Config.Env}} {{len .Config.Env}} {{.ContainerConfig.Cmd}}", "noenv:1", "[] 0 []\n");
    // Every field of docker's document is there for templates, at docker's zero values.
    let o = template(&s, "{{json .}}", "plain:1");
    assert!(o.success(), "{}", o.describe());
    let v: Value = serde_json::from_str(o.out().trim()).unwrap();
    for k in DOCKER_IMAGE_INSPECT {
        assert!(v.get(*k).is_some(), "{k} missing for templates\n{v:#}");
    }
    for c in ["Config", "ContainerConfig"] {
        for k in DOCKER_CONTAINER_CONFIG {
            assert!(v[c].get(*k).is_some(), "{c}.{k} missing for templates");
        }
    }
    assert_eq!(v["ContainerConfig"]["Env"], Value::Null);
    assert_eq!(v["ContainerConfig"]["Tty"], json!(false));
    assert_eq!(v["Metadata"]["LastTagTime"], json!("0001-01-01T00:00:00Z"));
    assert_eq!(v["GraphDriver"], json!({"Data": null, "Name": ""}));
    // Without a template, JSON as docker prints it: empty omitempty fields
    // left out, the others there with their zero values.
    let printed = s.inspect("plain:1");
    let cfg = &printed["Config"];
    for gone in [
        "ExposedPorts",
        "Healthcheck",
        "ArgsEscaped",
        "NetworkDisabled",
        "MacAddress",
        "StopSignal",
        "StopTimeout",
        "Shell",
    ] {
        assert!(cfg.get(gone).is_none(), "Config.{gone} is printed though empty\n{printed:#}");
    }
    assert!(printed.get("Variant").is_none() && printed.get("OsVersion").is_none());
    assert_eq!(cfg["Entrypoint"], Value::Null);
    assert_eq!(cfg["User"], json!(""));
    assert_eq!(printed["ContainerConfig"]["Hostname"], json!(""));
    assert_eq!(printed["RootFS"]["Layers"], json!(plain.diff_ids()));
    // img's own fields stay.
    for k in ["Digest", "Layers", "History", "Labels", "ManifestType", "User"] {
        assert!(printed.get(k).is_some(), "{k} missing");
    }
}

// Guards: `img inspect --type image` and docker's `-s/--size` are
// accepted; `--type container` is refused as a usage error saying that
// img handles images only.
#[test]
fn inspect_type_and_size_flags() {
    let l = listing();
    for args in [&["--type", "image"][..], &["-s"], &["--size"], &["--type=image", "-s"]] {
        let mut a = vec!["inspect", "-f", "{{.Id}}"];
        a.extend_from_slice(args);
        a.push("app:2");
        assert_eq!(l.s.ok(&a), format!("{}\n", l.mid.hex()), "{args:?}");
    }
    for t in ["container", "volume", "nonsense"] {
        let o = l.s.run(&["inspect", "--type", t, "app:2"]);
        assert_eq!(o.code(), Some(125), "--type {t}\n{}", o.describe());
        assert!(o.stderr.contains("images only") && o.stderr.contains(t), "--type {t}\n{}", o.describe());
        assert!(o.stdout.is_empty(), "{}", o.describe());
    }
}

// Guards: inspect -f '{{index .Labels "k"}}'.
#[test]
fn inspect_template_index() {
    let l = listing();
    assert_template(&l.s, "{{index .Labels \"tier\"}}", "app:2", "front\n");
    assert_template(&l.s, "{{index .Labels \"k\"}}", "web:1", "v\n");
}

// Guards: inspect -f with range and join over RepoTags.
#[test]
fn inspect_template_range_and_join() {
    let l = listing();
    assert_template(
        &l.s,
        "{{range .RepoTags}}{{.}} {{end}}",
        "app:2",
        "docker.io/library/app:2 docker.io/library/web:1 \n",
    );
    assert_template(&l.s, "{{join .RepoTags \",\"}}", "app:2", "docker.io/library/app:2,docker.io/library/web:1\n");
}

// Guards: inspect -f with if/else.
#[test]
fn inspect_template_if() {
    let l = listing();
    let t = "{{if .Labels}}labelled{{else}}plain{{end}}";
    assert_template(&l.s, t, "app:2", "labelled\n");
    assert_template(&l.s, t, "tool:1", "plain\n");
}

// Guards: a template naming a field that does not exist is an error naming it.
#[test]
fn inspect_template_bad_field_is_an_error() {
    let l = listing();
    let o = template(&l.s, "{{.NoSuchField}}", "app:2");
    assert!(matches!(o.code(), Some(c) if c != 0), "expected failure\n{}", o.describe());
    assert!(o.stderr.starts_with("error:"), "{}", o.describe());
    assert!(o.stderr.contains("NoSuchField"), "{}", o.describe());
    let o = template(&l.s, "{{.Id", "app:2");
    assert!(matches!(o.code(), Some(c) if c != 0), "an unterminated action is accepted\n{}", o.describe());
}

// Guards: inspect (JSON) of a missing image fails and names it; the others still print.
#[test]
fn inspect_missing_image() {
    let l = listing();
    let o = l.s.run(&["inspect", "app:1", "nope:9"]);
    assert_eq!(o.code(), Some(1), "{}", o.describe());
    assert!(o.stderr.contains("nope:9"), "{}", o.describe());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["Id"], json!(l.old.hex()));
}

// Guards: history lists entries newest first, with layer sizes and the ID on top.
#[test]
fn history_lists_layers_newest_first() {
    let s = Store::new();
    let l0 = Layer::simple("bottom", Comp::Gzip);
    let l1 = Layer::simple("top", Comp::None);
    let img = ImageSpec::new(&["app:1"])
        .layer(l0.clone())
        .layer(l1.clone())
        .history(vec![
            json!({"created": "2024-01-01T00:00:00Z", "created_by": "ADD rootfs.tar /"}),
            json!({"created": "2024-01-02T00:00:00Z", "created_by": "ENV A=1", "empty_layer": true}),
            json!({"created": "2024-01-03T00:00:00Z", "created_by": "COPY app /app", "comment": "top"}),
        ])
        .build();
    s.load("app.tar", &Archive::docker(&[&img]).tar());
    let v: Value = serde_json::from_str(&s.ok(&["history", "--format", "json", "app:1"])).unwrap();
    let rows = v.as_array().unwrap();
    let by: Vec<&str> = rows.iter().map(|r| r["CreatedBy"].as_str().unwrap()).collect();
    assert_eq!(by, vec!["COPY app /app", "ENV A=1", "ADD rootfs.tar /"]);
    let sizes: Vec<u64> = rows.iter().map(|r| r["Size"].as_u64().unwrap()).collect();
    assert_eq!(sizes, vec![l1.blob.len() as u64, 0, l0.blob.len() as u64]);
    assert_eq!(rows[0]["ID"], json!(img.short()));
    assert_eq!(rows[1]["ID"], json!("<missing>"));
    assert_eq!(rows[0]["Comment"], json!("top"));
    let table = s.ok(&["history", "app:1"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("IMAGE"), "{table}");
    assert!(lines[1].starts_with(img.short()), "{table}");
    assert!(lines[1].contains("COPY app /app"), "{table}");
    assert!(lines[3].starts_with("<missing>") && lines[3].contains("ADD rootfs.tar"), "{table}");
    let q = s.ok(&["history", "-q", "--no-trunc", "app:1"]);
    assert_eq!(q.lines().next().unwrap(), img.id.to_string());
}

// ---- 6. export ---------------------------------------------------------------------

/// (name, kind, link, data) of every entry, for comparing trees.
fn tree(entries: &[Listed]) -> BTreeSet<(String, char, String, String)> {
    entries
        .iter()
        .map(|e| {
            (
                e.name.trim_start_matches("./").to_string(),
                e.kind,
                e.link.clone(),
                String::from_utf8_lossy(&e.data).into_owned(),
            )
        })
        .collect()
}

fn entry(name: &str, kind: char, link: &str, data: &str) -> (String, char, String, String) {
    (name.into(), kind, link.into(), data.into())
}

fn export(s: &Store, name: &str) -> Vec<Listed> {
    let out = s.work().join(format!("{}.rootfs.tar", name.replace([':', '/'], "_")));
    s.ok(&["export", name, "-o", arg(&out)]);
    list_tar(&fs::read(&out).unwrap())
}

/// Asserts every entry's parent directory comes before it.
fn assert_parents_first(entries: &[Listed]) {
    let mut seen = BTreeSet::new();
    for e in entries {
        let name = e.name.trim_end_matches('/');
        if let Some((parent, _)) = name.rsplit_once('/') {
            assert!(seen.contains(parent), "{} comes before its parent {parent}", e.name);
        }
        seen.insert(name.to_string());
    }
}

// Guards: export merges layers: whiteout, opaque dir, dir replaced by file, hard links and symlinks.
#[test]
fn export_merges_layers() {
    let s = Store::new();
    let l1 = TarBuilder::new()
        .dir("bin")
        .exe("bin/busybox", "busybox binary")
        .symlink("bin/sh", "busybox")
        .dir("etc")
        .file("etc/passwd", "root:x:0:0\n")
        .file("etc/gone", "to be deleted")
        .dir("opt")
        .file("opt/a", "a")
        .dir("opt/sub")
        .file("opt/sub/b", "b")
        .dir("data")
        .file("data/f", "f")
        .dir("lib")
        .file("lib/libc.so", "T")
        .hardlink("lib/libc.so.6", "lib/libc.so")
        .build();
    let l2 = TarBuilder::new()
        .dir("etc")
        .file("etc/.wh.gone", "")
        .dir("opt")
        .file("opt/.wh..wh..opq", "")
        .file("opt/c", "c")
        .file("data", "data is a file now")
        .build();
    let l3 = TarBuilder::new()
        .dir("etc")
        .file("etc/passwd", "root:x:0:0\nuser:x:1000:1000\n")
        .hardlink("etc/passwd-link", "etc/passwd")
        .dir("usr")
        .symlink("usr/link", "../etc/passwd")
        .build();
    let img = ImageSpec::new(&["merged:1"])
        .layer(Layer::new(l1, Comp::None))
        .layer(Layer::new(l2, Comp::Gzip))
        .layer(Layer::new(l3, Comp::Zstd))
        .build();
    s.load("merged.tar", &Archive::oci(&[&img]).tar());
    let entries = export(&s, "merged:1");
    let want: BTreeSet<_> = [
        entry("bin/", 'd', "", ""),
        entry("bin/busybox", 'f', "", "busybox binary"),
        entry("bin/sh", 's', "busybox", ""),
        entry("data", 'f', "", "data is a file now"),
        entry("etc/", 'd', "", ""),
        entry("etc/passwd", 'f', "", "root:x:0:0\nuser:x:1000:1000\n"),
        entry("etc/passwd-link", 'h', "etc/passwd", ""),
        entry("lib/", 'd', "", ""),
        entry("lib/libc.so", 'f', "", "T"),
        entry("lib/libc.so.6", 'h', "lib/libc.so", ""),
        entry("opt/", 'd', "", ""),
        entry("opt/c", 'f', "", "c"),
        entry("usr/", 'd', "", ""),
        entry("usr/link", 's', "../etc/passwd", ""),
    ]
    .into_iter()
    .collect();
    assert_eq!(tree(&entries), want);
    assert_eq!(entries.len(), want.len(), "duplicate entries in the export");
    assert_parents_first(&entries);
    let files = extract(&entries);
    assert_eq!(files["etc/passwd-link"].1, "root:x:0:0\nuser:x:1000:1000\n");
    assert_eq!(files["lib/libc.so.6"].1, "T");
    // Standard output gives the same tree.
    let o = s.run(&["export", "merged:1"]);
    assert!(o.success(), "{}", o.describe());
    assert_eq!(tree(&list_tar(&o.stdout)), want);
}

// Guards: a dir replaced by a file, then created again by a later layer, does not bring back the old dir's children.
#[test]
fn export_dir_recreated_over_file_drops_old_children() {
    let s = Store::new();
    let img = ImageSpec::new(&["redo:1"])
        .layer(Layer::new(TarBuilder::new().dir("data").file("data/old", "old").build(), Comp::None))
        .layer(Layer::new(TarBuilder::new().file("data", "a file").build(), Comp::None))
        .layer(Layer::new(TarBuilder::new().dir("data").file("data/new", "new").build(), Comp::None))
        .build();
    s.load("redo.tar", &Archive::docker(&[&img]).tar());
    let want: BTreeSet<_> = [entry("data/", 'd', "", ""), entry("data/new", 'f', "", "new")].into_iter().collect();
    assert_eq!(tree(&export(&s, "redo:1")), want);
}

/// A layer with PAX sparse files as GNU tar writes them (formats 0.1 and
/// 1.0: a regular entry under a made-up name, the real name and map in
/// `GNU.sparse.*` records or, for 1.0, the map at the start of the data),
/// each 20 bytes with "abc" at 2 and "defg" at 10; `map` is format 0.1's.
fn pax_sparse_layer(map: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |records: &[(&str, &[u8])], name: &str, data: &[u8]| {
        b.append_pax_extensions(records.iter().copied()).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    };
    let v01: &[(&str, &[u8])] =
        &[("GNU.sparse.size", b"20"), ("GNU.sparse.name", b"data/v01"), ("GNU.sparse.map", map.as_bytes())];
    add(v01, "data/GNUSparseFile.0/v01", b"abcdefg");
    let mut data = b"2\n2\n3\n10\n4\n".to_vec();
    data.resize(512, 0);
    data.extend_from_slice(b"abcdefg");
    let v10: &[(&str, &[u8])] = &[
        ("GNU.sparse.major", b"1"),
        ("GNU.sparse.minor", b"0"),
        ("GNU.sparse.name", b"data/v10"),
        ("GNU.sparse.realsize", b"20"),
    ];
    add(v10, "data/GNUSparseFile.0/v10", &data);
    b.into_inner().unwrap()
}

// Guards: export writes PAX sparse files whole (holes as zeros) under their real names.
#[test]
fn export_expands_pax_sparse_files() {
    let s = Store::new();
    let img = ImageSpec::new(&["sparse:1"]).layer(Layer::new(pax_sparse_layer("2,3,10,4"), Comp::Gzip)).build();
    s.load("sparse.tar", &Archive::oci(&[&img]).tar());
    let want = "\0\0abc\0\0\0\0\0defg\0\0\0\0\0\0";
    let want: BTreeSet<_> = [entry("data/v01", 'f', "", want), entry("data/v10", 'f', "", want)].into_iter().collect();
    assert_eq!(tree(&export(&s, "sparse:1")), want);
}

// Guards: a sparse map with overlapping segments makes export fail, naming the entry.
#[test]
fn export_refuses_a_hostile_sparse_map() {
    let s = Store::new();
    let img = ImageSpec::new(&["hostile:1"]).layer(Layer::new(pax_sparse_layer("2,3,4,4"), Comp::None)).build();
    s.load("hostile.tar", &Archive::oci(&[&img]).tar());
    let o = s.fail(&["export", "hostile:1", "-o", arg(&s.work().join("out.tar"))]);
    assert!(o.stderr.contains("data/v01") && o.stderr.contains("sparse map"), "{}", o.describe());
}

/// Extracts `entries` in order the way tar does, into name -> (kind, content):
/// a hard link gets the content its target has at that point. Panics on a
/// hard link whose target was not extracted before it.
fn extract(entries: &[Listed]) -> std::collections::BTreeMap<String, (char, String)> {
    let mut fs_tree: std::collections::BTreeMap<String, (char, String)> = Default::default();
    for e in entries {
        let name = e.name.trim_end_matches('/').to_string();
        let v = match e.kind {
            'h' => {
                let target = e.link.trim_end_matches('/');
                let (_, data) = fs_tree.get(target).cloned().unwrap_or_else(|| {
                    panic!("hard link {} -> {} comes before its target (or has none)", e.name, e.link)
                });
                ('f', data)
            }
            's' => ('s', e.link.clone()),
            k => (k, String::from_utf8_lossy(&e.data).into_owned()),
        };
        fs_tree.insert(name, v);
    }
    fs_tree
}

// Guards: a hard link keeps its content when a later layer replaces its target, and follows the entry it links to.
#[test]
fn export_hard_link_survives_target_replacement() {
    let s = Store::new();
    let img = ImageSpec::new(&["links:1"])
        .layer(Layer::new(TarBuilder::new().file("a", "old").build(), Comp::None))
        .layer(Layer::new(TarBuilder::new().hardlink("b", "a").build(), Comp::None))
        .layer(Layer::new(TarBuilder::new().file("a", "new").build(), Comp::None))
        .build();
    s.load("links.tar", &Archive::docker(&[&img]).tar());
    let tree = extract(&export(&s, "links:1"));
    assert_eq!(tree.get("a"), Some(&('f', "new".to_string())), "{tree:?}");
    assert_eq!(tree.get("b"), Some(&('f', "old".to_string())), "{tree:?}");
}

// Guards: a hard link whose target a later layer deletes keeps its content.
#[test]
fn export_hard_link_survives_target_whiteout() {
    let s = Store::new();
    let img = ImageSpec::new(&["links:2"])
        .layer(Layer::new(TarBuilder::new().file("a", "content").hardlink("b", "a").build(), Comp::None))
        .layer(Layer::new(TarBuilder::new().file(".wh.a", "").build(), Comp::None))
        .build();
    s.load("links.tar", &Archive::docker(&[&img]).tar());
    let tree = extract(&export(&s, "links:2"));
    assert_eq!(tree.get("a"), None, "{tree:?}");
    assert_eq!(tree.get("b"), Some(&('f', "content".to_string())), "{tree:?}");
}

// Guards: a layer entry `../escape` makes export fail clearly, with no output file.
#[test]
fn export_refuses_escaping_entry() {
    let s = Store::new();
    let img = ImageSpec::new(&["evil:1"])
        .layer(Layer::simple("fine", Comp::None))
        .layer(Layer::new(TarBuilder::new().file("ok", "ok").file("../escape", "gotcha").build(), Comp::Gzip))
        .build();
    s.load("evil.tar", &Archive::docker(&[&img]).tar());
    let out = s.work().join("evil.rootfs.tar");
    let o = s.fail(&["export", "evil:1", "-o", arg(&out)]);
    let line = o.one_error_line();
    assert!(line.contains("../escape"), "{}", o.describe());
    assert!(!out.exists(), "an output file was left behind");
    let left: Vec<String> = fs::read_dir(s.work())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("rootfs"))
        .collect();
    assert!(left.is_empty(), "temp files left: {left:?}");
    assert!(!s.dir.path().join("escape").exists());
    assert!(!s.work().parent().unwrap().join("escape").exists());
}

// ---- 7. import ---------------------------------------------------------------------

fn rootfs_tar() -> Vec<u8> {
    TarBuilder::new()
        .dir("bin")
        .exe("bin/hello", "#!/bin/sh\necho hello\n")
        .dir("etc")
        .file("etc/motd", "welcome\n")
        .symlink("etc/link", "motd")
        .build()
}

// Guards: import of plain, gzip, xz and zstd rootfs tarballs makes a one-layer image whose export gives the same tree.
#[test]
fn import_compressed_rootfs_tarballs() {
    let s = Store::new();
    let tar = rootfs_tar();
    let want = tree(&list_tar(&tar));
    type Compress = fn(&[u8]) -> Vec<u8>;
    let plain: Compress = |d| d.to_vec();
    let kinds: [(&str, Compress, &str); 4] = [
        ("tar", plain, "application/vnd.oci.image.layer.v1.tar"),
        ("tar.gz", gzip, "application/vnd.oci.image.layer.v1.tar+gzip"),
        ("tar.xz", xz, "application/vnd.oci.image.layer.v1.tar+gzip"),
        ("tar.zst", zstd, "application/vnd.oci.image.layer.v1.tar+zstd"),
    ];
    for (i, (ext, f, mt)) in kinds.into_iter().enumerate() {
        let p = s.write(&format!("rootfs.{ext}"), &f(&tar));
        let name = format!("imported:{i}");
        let out = s.ok(&["import", arg(&p), &name]);
        let id = out.trim();
        assert!(id.starts_with("sha256:") && id.len() == 71, "{out}");
        let ins = s.inspect(&name);
        assert_eq!(format!("sha256:{}", ins["Id"].as_str().unwrap()), id);
        assert_eq!(ins["RootFS"]["Layers"], json!([Digest::of_bytes(&tar).to_string()]), "{ext}");
        assert_eq!(ins["Layers"][0]["MediaType"], json!(mt), "{ext}");
        assert_eq!(tree(&export(&s, &name)), want, "{ext}");
    }
    assert_eq!(s.images().len(), 4);
    s.assert_ingest_empty();
    s.assert_fsck_clean();
    // From standard input, without a name: a dangling image.
    let o = s.run_with(&["import", "-"], &[], Some(&gzip(&tar)));
    assert!(o.success(), "{}", o.describe());
    assert_eq!(s.ok(&["images", "-q", "--filter", "dangling=true"]).lines().count(), 1);
}

// Guards: -c CMD/ENV and -m end up in the image config and history.
#[test]
fn import_with_changes_and_message() {
    let s = Store::new();
    let p = s.write("rootfs.tar", &rootfs_tar());
    s.ok(&["import", arg(&p), "app:1", "-c", "CMD [\"/bin/sh\"]", "-c", "ENV A=b", "-m", "first import"]);
    let ins = s.inspect("app:1");
    assert_eq!(ins["Config"]["Cmd"], json!(["/bin/sh"]));
    assert_eq!(ins["Config"]["Env"], json!(["A=b"]));
    assert_eq!(ins["History"][0]["comment"], json!("first import"));
    let h: Value = serde_json::from_str(&s.ok(&["history", "--format", "json", "app:1"])).unwrap();
    assert_eq!(h[0]["Comment"], json!("first import"));
}

// Guards: --change reads EXPOSE as a Dockerfile does (it refused a range
// and an upper-case protocol that a build took): each port of a range, the
// protocol lower-cased; and ENTRYPOINT keeps a CMD given before it.
#[test]
fn import_change_accepts_expose_port_range_and_upper_case_protocol() {
    let s = Store::new();
    let p = s.write("rootfs.tar", &rootfs_tar());
    s.ok(&[
        "import",
        arg(&p),
        "app:1",
        "-c",
        "EXPOSE 8000-8002 80/TCP",
        "-c",
        "CMD [\"x\"]",
        "-c",
        "ENTRYPOINT [\"/e\"]",
    ]);
    let ins = s.inspect("app:1");
    assert_eq!(ins["Config"]["ExposedPorts"], json!({"8000/tcp": {}, "8001/tcp": {}, "8002/tcp": {}, "80/tcp": {}}));
    assert_eq!(ins["Config"]["Cmd"], json!(["x"]));
    assert_eq!(ins["Config"]["Entrypoint"], json!(["/e"]));
}

/// Asserts an import failed with one clear line and stored nothing.
fn assert_import_refused(s: &Store, args: &[&str], wants: &[&str]) {
    let o = s.run(args);
    let line = o.one_error_line();
    for w in wants {
        assert!(line.contains(w), "the error does not say {w:?}\n{}", o.describe());
    }
    assert!(s.images().is_empty(), "an image was stored");
    assert!(s.blob_files().is_empty(), "blobs were stored: {:?}", s.blob_files());
    s.assert_ingest_empty();
    s.assert_fsck_clean();
}

// Guards: a bad --change instruction is refused and nothing is stored.
#[test]
fn import_bad_change_is_refused() {
    let s = Store::new();
    let p = s.write("rootfs.tar", &rootfs_tar());
    assert_import_refused(&s, &["import", arg(&p), "app:1", "-c", "RUN echo hi"], &["RUN echo hi"]);
    assert_import_refused(&s, &["import", arg(&p), "app:1", "-c", "STOPSIGNAL SIGNOPE"], &["STOPSIGNAL SIGNOPE"]);
    assert_import_refused(&s, &["import", arg(&p), "app:1", "-c", "EXPOSE http"], &["EXPOSE http"]);
}

// Guards: a rootfs tarball with a `../x` entry is refused and nothing is stored.
#[test]
fn import_refuses_parent_entry() {
    let s = Store::new();
    let bad = TarBuilder::new().file("ok", "ok").file("../x", "escape").unsorted().build();
    for (name, data) in [("bad.tar", bad.clone()), ("bad.tar.gz", gzip(&bad))] {
        let p = s.write(name, &data);
        assert_import_refused(&s, &["import", arg(&p), "bad:1"], &[arg(&p), "../x"]);
    }
    // A hard link leaving the root is refused too.
    let bad = TarBuilder::new().file("ok", "ok").hardlink("link", "../../etc/shadow").build();
    let p = s.write("badlink.tar", &bad);
    assert_import_refused(&s, &["import", arg(&p), "bad:1"], &[arg(&p), "link"]);
}

// Guards: a file that is not a tar is refused by import and nothing is stored.
#[test]
fn import_refuses_non_tar() {
    let s = Store::new();
    let p = s.write("notes.txt", "just some text\n".repeat(100).as_bytes());
    assert_import_refused(&s, &["import", arg(&p), "x:1"], &[arg(&p), "not a tar"]);
    let p = s.write("notes.txt.gz", &gzip("just some text\n".repeat(100).as_bytes()));
    assert_import_refused(&s, &["import", arg(&p), "x:1"], &[arg(&p), "not a tar"]);
    let p = s.write("empty.tar", b"");
    assert_import_refused(&s, &["import", arg(&p), "x:1"], &[arg(&p), "empty"]);
}

// ---- 8. fsck -----------------------------------------------------------------------

// Guards: fsck passes a clean store and reports what it checked.
#[test]
fn fsck_clean_store_passes() {
    let (s, _a, _b) = shared_pair();
    let out = s.ok(&["fsck"]);
    assert!(out.contains("checked 2 images, 7 blobs"), "{out}");
    assert!(out.trim_end().ends_with("clean"), "{out}");
    let v: Value = serde_json::from_str(&s.ok(&["fsck", "--format", "json"])).unwrap();
    assert_eq!(v["Clean"], json!(true));
    assert_eq!(v["Problems"], json!([]));
}

fn make_writable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(0o644)).unwrap();
}

// Guards: a corrupt blob is reported (exit 1); --repair removes the damaged image and blob, leaving a clean store.
#[test]
fn fsck_reports_and_repairs_corrupt_blob() {
    let (s, a, b) = shared_pair();
    let victim = a.layers[1].digest();
    let p = s.blob_path(&victim);
    let mut data = fs::read(&p).unwrap();
    make_writable(&p);
    let mid = data.len() / 2;
    data[mid] ^= 0x20;
    fs::write(&p, &data).unwrap();
    let o = s.run(&["fsck"]);
    assert_eq!(o.code(), Some(1), "{}", o.describe());
    let out = o.out();
    assert!(out.contains(&format!("problem: blob {victim} is corrupt")), "{}", o.describe());
    assert!(out.contains(&a.id.to_string()), "the damaged image is named\n{}", o.describe());
    assert!(o.stderr.starts_with("error:"), "{}", o.describe());
    let o = s.run(&["fsck", "--repair"]);
    assert!(o.success(), "{}", o.describe());
    let out = o.out();
    assert!(out.contains(&format!("removed damaged image {}", a.id)), "{out}");
    assert!(out.contains(&format!("removed damaged blob {victim}")), "{out}");
    s.assert_fsck_clean();
    assert!(!p.exists());
    assert_eq!(s.image_ids(), vec![b.hex().to_string()]);
    assert_stored(&s, &b);
    // The image can be loaded again.
    s.load("a.tar", &Archive::docker(&[&a]).tar());
    assert_stored(&s, &a);
    s.assert_fsck_clean();
}

// Guards: an orphan file in blobs/sha256 is reported and --repair removes it.
#[test]
fn fsck_reports_and_repairs_orphan_file() {
    let (s, a, b) = shared_pair();
    let orphan_digest = Digest::of_bytes(b"orphan");
    let orphans = [s.blob_path(&orphan_digest), s.blobs_dir().join("not-a-digest")];
    for o in &orphans {
        fs::write(o, b"orphan").unwrap();
    }
    let o = s.run(&["fsck"]);
    assert_eq!(o.code(), Some(1), "{}", o.describe());
    for name in [orphan_digest.hex(), "not-a-digest"] {
        assert!(o.out().contains(&format!("orphan file blobs/sha256/{name}")), "{}", o.describe());
    }
    let o = s.run(&["fsck", "--repair"]);
    assert!(o.success(), "{}", o.describe());
    for p in &orphans {
        assert!(!p.exists(), "{} not removed", p.display());
    }
    s.assert_fsck_clean();
    assert_stored(&s, &a);
    assert_stored(&s, &b);
}

// ---- 9. store format ---------------------------------------------------------------

fn file_sha(p: &Path) -> String {
    file_digest(p).to_string()
}

/// Damages the index with `sql`, then asserts img refuses the store with a
/// message naming img.db and saying `wants` and "upgrade img", leaving it unmodified.
fn assert_store_refused(sql: &str, wants: &str) {
    let (s, _a, _b) = shared_pair();
    s.db().execute_batch(sql).unwrap();
    let db = s.root().join("img.db");
    let before = file_sha(&db);
    let blobs = s.blob_files();
    let archive = s.write("c.tar", &Archive::docker(&[&two_layer_image(&["c:1"])]).tar());
    for args in [
        vec!["images"],
        vec!["load", "-i", arg(&archive)],
        vec!["rmi", "a:1"],
        vec!["prune", "-f"],
        vec!["fsck", "--repair"],
    ] {
        let o = s.run(&args);
        let line = o.one_error_line();
        assert!(line.contains(arg(&db)), "the error names img.db\n{}", o.describe());
        assert!(line.contains(wants), "the error says {wants:?}\n{}", o.describe());
        assert!(line.contains("upgrade img"), "{}", o.describe());
        assert_eq!(file_sha(&db), before, "{args:?} modified img.db");
        assert_eq!(s.blob_files(), blobs, "{args:?} changed blobs/");
        for suffix in ["-wal", "-journal"] {
            let side = s.root().join(format!("img.db{suffix}"));
            assert!(!side.exists() || fs::metadata(&side).unwrap().len() == 0, "{args:?} left {}", side.display());
        }
    }
}

// Guards: an index with a newer schema (user_version) is refused, untouched.
#[test]
fn newer_schema_is_refused() {
    assert_store_refused("PRAGMA user_version = 99", "schema version 99");
}

// Guards: an index with an unknown meta.format is refused, untouched.
#[test]
fn unknown_store_format_is_refused() {
    assert_store_refused("UPDATE meta SET value = '2' WHERE key = 'format'", "store format 2");
}

// ---- 10. crash safety --------------------------------------------------------------

fn assert_aborted(o: &Out) {
    assert!(
        o.code().is_none() && o.signal() == Some(6),
        "expected the command to abort at the crash point\n{}",
        o.describe()
    );
}

/// Runs a load that aborts at `point`, then checks the store and re-runs it.
fn crash_load(point: &str) {
    let s = store_with_base();
    let base_ids = s.image_ids();
    let app = two_layer_image(&["app:1"]);
    let other = three_layer_image(&["other:1"]);
    let p = s.write("two.tar", &Archive::oci(&[&app, &other]).tar());
    let o = s.run_with(&["load", "-i", arg(&p)], &[("IMG_CRASHPOINT", point)], None);
    assert_aborted(&o);
    assert_eq!(s.image_ids(), base_ids, "a partial image is visible");
    s.assert_fsck_clean();
    s.assert_ingest_empty();
    let out = s.ok(&["load", "-i", arg(&p)]);
    assert_eq!(out, format!("{}{}", loaded_lines(&app), loaded_lines(&other)));
    assert_stored(&s, &app);
    assert_stored(&s, &other);
    s.assert_fsck_clean();
}

// Guards: a load aborted at after_blob_rename_before_index leaves no partial image, a clean store, and can be re-run.
#[test]
fn crash_after_blob_rename_before_index() {
    crash_load("after_blob_rename_before_index");
}

// Guards: a load aborted at before_index_commit leaves no partial image, a clean store, and can be re-run.
#[test]
fn crash_before_index_commit() {
    crash_load("before_index_commit");
}

// Guards: a prune aborted at after_index_delete_before_unlink leaves a store fsck accepts, and can be re-run.
#[test]
fn crash_before_unlink_in_prune_leaves_fsck_clean() {
    let (s, a, b) = shared_pair();
    let dangling = ImageSpec::new(&[]).layer(a.layers[0].clone()).layer(Layer::simple("dangling", Comp::Gzip)).build();
    s.load("d.tar", &Archive::docker(&[&dangling]).tar());
    let o = s.run_with(&["prune", "-f"], &[("IMG_CRASHPOINT", "after_index_delete_before_unlink")], None);
    assert_aborted(&o);
    assert_eq!(s.image_ids(), sorted(vec![a.hex().into(), b.hex().into()]));
    assert_stored(&s, &a);
    assert_stored(&s, &b);
    s.assert_ingest_empty();
    s.assert_fsck_clean();
    let out = s.ok(&["prune", "-f"]);
    assert!(out.contains("Total reclaimed space:"), "{out}");
    assert!(!s.has_blob(&dangling.id));
    assert!(!s.has_blob(&dangling.layers[1].digest()));
    s.assert_fsck_clean();
}

// Guards: an rmi aborted at after_index_delete_before_unlink keeps other images intact and leaves a store fsck accepts.
#[test]
fn crash_before_unlink_in_rmi_leaves_fsck_clean() {
    let (s, a, b) = shared_pair();
    let o = s.run_with(&["rmi", "a:1"], &[("IMG_CRASHPOINT", "after_index_delete_before_unlink")], None);
    assert_aborted(&o);
    assert_eq!(s.image_ids(), vec![b.hex().to_string()]);
    assert_stored(&s, &b);
    s.assert_ingest_empty();
    s.assert_fsck_clean();
    // The name is gone for good; removing it again is the documented error.
    let o = s.fail(&["rmi", "a:1"]);
    assert!(o.stderr.contains("image not known"), "{}", o.describe());
    // Loading it again works over whatever files the crash left.
    s.load("a.tar", &Archive::docker(&[&a]).tar());
    assert_stored(&s, &a);
    s.assert_fsck_clean();
}

// Guards: SIGKILL at seeded random moments of a ~20 MiB load leaves no partial image, no dirt, and a re-runnable load.
#[test]
fn sigkill_during_load() {
    let fixtures = TempDir::new("kill");
    let mut rng = Rng::new(0x5eed_2024);
    let big = rng.bytes(20 << 20);
    let img = ImageSpec::new(&["big:1"])
        .layer(Layer::new(TarBuilder::new().file("big", &big).build(), Comp::None))
        .layer(Layer::simple("small", Comp::Gzip))
        .build();
    drop(big);
    let p = fixtures.join("big.tar");
    fs::write(&p, Archive::docker(&[&img]).tar()).unwrap();
    // How long a whole load takes here.
    let dur = {
        let s = Store::new();
        let t = Instant::now();
        s.ok(&["load", "-i", arg(&p)]);
        t.elapsed()
    };
    let mut outcomes = Vec::new();
    // 20 trials in the default run, 100 with IMG_TEST_LONG=1 (scripts/test.sh --long).
    let trials = if long() { 100 } else { 20 };
    for trial in 0..trials {
        let s = Store::new();
        let delay = dur.mul_f64(rng.below(1100) as f64 / 1000.0);
        let mut child = s.command(&["load", "-i", arg(&p)]).spawn().expect("starting img");
        std::thread::sleep(delay);
        let _ = child.kill();
        let o = child.wait_with_output().unwrap();
        outcomes.push(o.status.success());
        let ids = s.image_ids();
        assert!(
            ids.is_empty() || ids == vec![img.hex().to_string()],
            "trial {trial} (kill after {delay:?}): unexpected images {ids:?}"
        );
        if !ids.is_empty() {
            assert_stored(&s, &img);
        }
        s.assert_ingest_empty();
        s.assert_fsck_clean();
        let out = s.ok(&["load", "-i", arg(&p)]);
        assert_eq!(out, "Loaded image: docker.io/library/big:1\n");
        assert_stored(&s, &img);
    }
    assert!(outcomes.iter().any(|ok| !ok), "no trial killed a load in progress (load takes {dur:?})");
}

// Guards: tag, rmi, prune and load killed with SIGKILL at random moments
// (seeded; 20 trials, 100 with IMG_TEST_LONG=1): the store stays clean, no
// image is half there, no temporary file outlives the next command, and the
// command run again succeeds (or finds its work already done).
#[test]
fn sigkill_during_store_commands_leaves_a_clean_store() {
    let mut rng = Rng::new(seed("sigkill_during_store_commands", 0x5eed_51c1));
    let base = Layer::simple("shared-base", Comp::Gzip);
    let images: Vec<Image> = (0..3)
        .map(|i| {
            ImageSpec::new(&[&format!("k{i}:1")])
                .label("n", &i.to_string())
                .layer(base.clone())
                .layer(Layer::new(TarBuilder::new().file("data", rng.bytes(2 << 20)).build(), Comp::Gzip))
                .build()
        })
        .collect();
    let s = Store::new();
    let archives: Vec<PathBuf> = images
        .iter()
        .enumerate()
        .map(|(i, img)| s.write(&format!("k{i}.tar"), &Archive::docker(&[img]).tar()))
        .collect();
    let fill = |s: &Store| {
        for a in &archives {
            s.ok(&["load", "-q", "-i", arg(a)]);
        }
    };
    type Cmd = (&'static str, Vec<String>);
    let commands: Vec<Cmd> = vec![
        ("tag", vec!["tag".into(), "k0:1".into(), "extra:1".into()]),
        ("rmi", vec!["rmi".into(), "k1:1".into()]),
        ("rmi -f", vec!["rmi".into(), "-f".into(), images[2].short().to_string()]),
        ("prune", vec!["image".into(), "prune".into(), "-a".into(), "-f".into()]),
        ("load", vec!["load".into(), "-q".into(), "-i".into(), arg(&archives[1]).to_string()]),
    ];
    // How long each command takes here, from a filled store.
    let durations: Vec<Duration> = commands
        .iter()
        .map(|(_, args)| {
            fill(&s);
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let t = Instant::now();
            let o = s.run(&a);
            assert!(o.success(), "{}", o.describe());
            t.elapsed()
        })
        .collect();
    let trials = if long() { 100 } else { 20 };
    let mut killed = 0;
    for trial in 0..trials {
        fill(&s);
        let which = rng.below(commands.len() as u64) as usize;
        let (name, args) = &commands[which];
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let delay = durations[which].mul_f64(rng.below(1100) as f64 / 1000.0);
        let mut child = s.command(&a).spawn().expect("starting img");
        std::thread::sleep(delay);
        let _ = child.kill();
        let o = child.wait_with_output().unwrap();
        if !o.status.success() {
            killed += 1;
        }
        let ctx = format!("trial {trial}: img {name} killed after {delay:?}");
        // Whatever is listed is whole (fsck reads every blob of every image).
        s.assert_fsck_clean();
        s.run(&["images"]);
        assert!(s.ingest_files().is_empty(), "{ctx}: files left in ingest/: {:?}", s.ingest_files());
        for id in s.image_ids() {
            let o = s.run(&["inspect", &id]);
            assert!(o.success(), "{ctx}: image {id} is listed but cannot be inspected\n{}", o.describe());
        }
        // Run again: it succeeds, or its work was done before the kill.
        let again = s.run(&a);
        let done_before = match *name {
            "rmi" => !s.tags().contains(&"docker.io/library/k1:1".to_string()),
            "rmi -f" => !s.image_ids().contains(&images[2].hex().to_string()),
            _ => false,
        };
        assert!(
            again.success() || (done_before && again.stderr.contains("image not known")),
            "{ctx}: running it again failed\n{}",
            again.describe()
        );
        s.assert_fsck_clean();
        s.assert_ingest_empty();
    }
    eprintln!("sigkill_during_store_commands: {trials} trials, {killed} commands killed before they finished");
    assert!(killed > 0, "no trial killed a command in progress");
}

// ---- convert -----------------------------------------------------------------------

// Guards: img convert --format estargz makes a new OCI image whose layers carry
// the TOC digest and uncompressed size annotations, with the same files; bad
// requests and layers it cannot write are refused and leave the store as it was.
#[test]
fn convert_to_estargz_and_its_refusals() {
    let s = Store::new();
    let img = three_layer_image(&["three:1"]);
    s.load("three.tar", &Archive::oci(&[&img]).tar());
    let id = s.ok(&["convert", "-q", "--format", "estargz", "three:1", "three:esgz"]).trim().to_string();
    let v = s.inspect("three:esgz");
    assert_eq!(v["Id"].as_str(), Some(id.trim_start_matches("sha256:")));
    assert_eq!(v["RootFS"]["Layers"].as_array().map(Vec::len), Some(3));
    let manifest: Value =
        serde_json::from_slice(&fs::read(s.blob_path(&Digest::parse(v["Digest"].as_str().unwrap()).unwrap())).unwrap())
            .unwrap();
    for l in manifest["layers"].as_array().unwrap() {
        assert_eq!(l["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
        assert!(l["annotations"]["containerd.io/snapshot/stargz/toc.digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")));
        assert!(l["annotations"]["io.containers.estargz.uncompressed-size"].as_str().is_some());
    }
    let files = |name: &str| -> Vec<String> {
        let out = s.work().join(format!("{}.tar", name.replace(':', "-")));
        s.ok(&["export", "-o", arg(&out), name]);
        let mut v: Vec<String> = list_tar(&fs::read(&out).unwrap())
            .into_iter()
            .map(|e| format!("{} {} {}", e.name, e.kind, Digest::of_bytes(&e.data)))
            .filter(|p| !p.starts_with("stargz.index.json ") && !p.starts_with(".no.prefetch.landmark "))
            .collect();
        v.sort();
        v
    };
    assert_eq!(files("three:1"), files("three:esgz"));
    s.assert_fsck_clean();

    let before = s.snapshot();
    // An unknown format is a usage error.
    let o = s.run(&["convert", "--format", "squashfs", "three:1", "x:1"]);
    assert_eq!(o.code(), Some(125), "{}", o.describe());
    assert!(o.stderr.contains("unknown format \"squashfs\""), "{}", o.describe());
    assert_eq!(s.snapshot(), before);
    for (args, want) in [
        (
            vec!["convert", "--format", "zstd:chunked", "--prefetch-list", "/etc/hostname", "three:1", "x:1"],
            "no prefetch list",
        ),
        (vec!["convert", "--format", "estargz", "nosuch:1", "x:1"], "nosuch:1"),
        (vec!["convert", "--format", "estargz", "three:esgz", "x:1"], "eStargz already"),
        (vec!["convert", "--format", "estargz", "three:1", "Bad/Name"], "Bad/Name"),
    ] {
        let o = s.run(&args);
        let err = o.one_error_line();
        assert!(err.contains(want), "img {}: {err}", args.join(" "));
        assert_eq!(s.snapshot(), before, "img {} changed the store", args.join(" "));
        s.assert_ingest_empty();
    }
    s.assert_fsck_clean();
}

// Guards: img convert --format zstd:chunked gave back the source image when
// its config came out byte for byte the same (zstd:chunked keeps each
// layer's tar, so the DiffIDs stay): the image ID is the config's digest,
// so the new tag was put on the source and the converted layers were left
// unreferenced. The conversion is now a step of the config's history.
#[test]
fn convert_to_zstd_chunked_makes_a_new_image_though_the_diff_ids_stay() {
    let s = Store::new();
    let img = three_layer_image(&["three:1"]);
    s.load("three.tar", &Archive::oci(&[&img]).tar());
    let src = s.inspect("three:1");
    let id = s.ok(&["convert", "-q", "--format", "zstd:chunked", "three:1", "three:zc"]).trim().to_string();
    let v = s.inspect("three:zc");
    assert_eq!(v["Id"].as_str(), Some(id.trim_start_matches("sha256:")));
    assert_ne!(v["Id"], src["Id"], "the converted image is the source");
    assert_eq!(v["RootFS"]["Layers"], src["RootFS"]["Layers"], "zstd:chunked changed the DiffIDs");
    let manifest_of = |v: &Value| -> Value {
        serde_json::from_slice(&fs::read(s.blob_path(&Digest::parse(v["Digest"].as_str().unwrap()).unwrap())).unwrap())
            .unwrap()
    };
    for l in manifest_of(&v)["layers"].as_array().unwrap() {
        assert_eq!(l["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd");
        let a = &l["annotations"];
        assert!(a["io.github.containers.zstd-chunked.manifest-checksum"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")));
        assert_eq!(
            a["io.github.containers.zstd-chunked.manifest-position"],
            a["io.containers.zstd-chunked.manifest-position"]
        );
    }
    // The source keeps its own layers.
    assert_eq!(s.inspect("three:1")["Digest"], src["Digest"]);
    for l in manifest_of(&src)["layers"].as_array().unwrap() {
        assert!(l["annotations"].is_null(), "the source's layers changed: {l}");
    }
    let history = v["History"].as_array().cloned().unwrap_or_default();
    let last = history.last().expect("a history");
    assert_eq!(last["CreatedBy"].as_str().or(last["created_by"].as_str()), Some("img convert --format zstd:chunked"));
    // The same conversion again is the same image.
    let again = s.ok(&["convert", "-q", "--format", "zstd:chunked", "three:1", "three:zc2"]).trim().to_string();
    assert_eq!(again, id);
    let export = |name: &str| {
        let out = s.work().join(format!("{}.tar", name.replace(':', "-")));
        s.ok(&["export", "-o", arg(&out), name]);
        fs::read(&out).unwrap()
    };
    assert_eq!(export("three:1"), export("three:zc"));
    s.assert_fsck_clean();
}

// Guards: symlink targets came out of export rewritten as paths ("/" became
// "//", "a//b" became "a/b") and non-UTF-8 ones mangled; a target is data.
#[test]
fn export_keeps_symlink_targets_byte_for_byte() {
    let s = Store::new();
    let long = format!("/{}", "e//".repeat(50));
    let targets: Vec<Vec<u8>> = vec![
        b"/".to_vec(),
        b"./x".to_vec(),
        b"a//b".to_vec(),
        b"a/".to_vec(),
        b"../../../etc".to_vec(),
        long.into_bytes(),
        b"caf\xe9".to_vec(),
    ];
    let mut b = tar::Builder::new(Vec::new());
    for (i, t) in targets.iter().enumerate() {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_mtime(MTIME);
        if t.len() <= 100 {
            h.set_link_name_literal(t).unwrap();
            b.append_data(&mut h, format!("l{i}"), std::io::empty()).unwrap();
        } else {
            use std::os::unix::ffi::OsStrExt;
            b.append_link(&mut h, format!("l{i}"), std::ffi::OsStr::from_bytes(t)).unwrap();
        }
    }
    let rootfs = s.write("links.tar", &b.into_inner().unwrap());
    s.ok(&["import", arg(&rootfs), "links:1"]);
    let out = s.work().join("out.tar");
    s.ok(&["export", "-o", arg(&out), "links:1"]);
    let data = fs::read(&out).unwrap();
    let mut ar = tar::Archive::new(data.as_slice());
    let mut got: Vec<(String, Vec<u8>)> = ar
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (String::from_utf8_lossy(&e.path_bytes()).into_owned(), e.link_name_bytes().unwrap().into_owned())
        })
        .collect();
    got.sort();
    let want: Vec<(String, Vec<u8>)> = targets.iter().enumerate().map(|(i, t)| (format!("l{i}"), t.clone())).collect();
    assert_eq!(got, want);
}

// Guards: names that are not UTF-8 were replaced by U+FFFD in export (and in
// mounts), so files were renamed and hard links pointed at names that no
// longer existed.
#[test]
fn names_that_are_not_utf8_survive_import_and_export() {
    let s = Store::new();
    let names: [&[u8]; 4] = [b"caf\xe9", b"d\xff/", b"d\xff/f", "\u{f700}pua".as_bytes()];
    let mut b = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, path: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(if kind == tar::EntryType::Regular { 2 } else { 0 });
        h.set_mode(0o644);
        h.set_mtime(MTIME);
        h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path);
        h.set_cksum();
        h
    };
    for n in names {
        let kind = if n.ends_with(b"/") { tar::EntryType::Directory } else { tar::EntryType::Regular };
        let data: &[u8] = if kind == tar::EntryType::Regular { b"x\n" } else { b"" };
        b.append(&header(kind, n), data).unwrap();
    }
    let mut link = header(tar::EntryType::Link, b"h\xe9");
    link.as_gnu_mut().unwrap().linkname[..4].copy_from_slice(b"caf\xe9");
    link.set_cksum();
    b.append(&link, &b""[..]).unwrap();
    let rootfs = s.write("names.tar", &b.into_inner().unwrap());
    s.ok(&["import", arg(&rootfs), "names:1"]);
    let out = s.work().join("out.tar");
    s.ok(&["export", "-o", arg(&out), "names:1"]);
    let data = fs::read(&out).unwrap();
    let mut ar = tar::Archive::new(data.as_slice());
    let mut got: Vec<(Vec<u8>, Option<Vec<u8>>)> = ar
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path_bytes().into_owned(), e.link_name_bytes().map(|l| l.into_owned()))
        })
        .collect();
    got.sort();
    let mut want: Vec<(Vec<u8>, Option<Vec<u8>>)> = names.iter().map(|n| (n.to_vec(), None)).collect();
    want.push((b"h\xe9".to_vec(), Some(b"caf\xe9".to_vec())));
    want.sort();
    assert_eq!(got, want);
}

// ---- disk full -----------------------------------------------------------------

/// Runs a command expected to fill the store's small filesystem and checks
/// what it must leave: one clear error line, the store as it was, nothing
/// in ingest/, a clean fsck, and the space given back.
fn assert_full_disk_refusal(s: &Store, fsys: &SmallFs, args: &[&str], names: &str) {
    let before = s.snapshot();
    let used = fsys.used();
    let o = s.run(args);
    let err = o.one_error_line();
    assert!(err.contains("no space left on device while"), "img {}: {err}", args.join(" "));
    assert!(err.contains(names), "img {}: the error does not name {names}: {err}", args.join(" "));
    assert!(err.contains("nothing was stored"), "{err}");
    assert_eq!(s.snapshot(), before, "img {} changed the store", args.join(" "));
    s.assert_ingest_empty();
    s.assert_fsck_clean();
    // The database may have grown by a page or two; the blob may not stay.
    let now = fsys.used();
    assert!(
        now <= used + (256 << 10),
        "img {}: {used} bytes used before, {now} after; files: {:?}",
        args.join(" "),
        fsys.files()
    );
}

// Guards: load and import onto a full disk say so, keep the store exactly as
// it was, give the partial blob's space back, and the store goes on working.
#[test]
fn load_and_import_on_a_full_disk_keep_the_store_and_give_the_space_back() {
    let fsys = SmallFs::mount(6 << 20);
    let s = Store::at(&fsys.path.join("store"));
    s.load("small.tar", &Archive::docker(&[&two_layer_image(&["small:1"])]).tar());
    let mut rng = Rng::new(0xd15c_f011);
    let random = rng.bytes(8 << 20);
    let big = ImageSpec::new(&["big:1"])
        .layer(Layer::simple("base", Comp::Gzip))
        .layer(Layer::new(TarBuilder::new().file("big", &random).build(), Comp::Gzip))
        .build();
    // The archives are beside the store, on a disk with room.
    let docker = s.write("big-docker.tar", &Archive::docker(&[&big]).tar());
    let oci = s.write("big-oci.tar", &Archive::oci(&[&big]).tar());
    let rootfs = s.write("rootfs.tar", &TarBuilder::new().file("big", &random).build());
    assert_full_disk_refusal(&s, &fsys, &["load", "-i", arg(&docker)], arg(&docker));
    assert_full_disk_refusal(&s, &fsys, &["load", "-i", arg(&oci)], arg(&oci));
    assert_full_disk_refusal(&s, &fsys, &["import", arg(&rootfs), "big:1"], arg(&rootfs));
    // Room made elsewhere is used: the store works as before.
    s.load("other.tar", &Archive::docker(&[&two_layer_image(&["other:1"])]).tar());
    assert_eq!(sorted(s.tags()), ["docker.io/library/other:1", "docker.io/library/small:1"]);
    s.assert_fsck_clean();
}

// ---- 11. concurrency ---------------------------------------------------------------

fn lock_trouble(stderr: &str) -> bool {
    let e = stderr.to_lowercase();
    e.contains("database is locked") || e.contains("busy")
}

/// img build mounts FUSE and overlayfs: as root, with /dev/fuse.
/// Whether builds can run here, for tests that mix them in when they can.
fn can_build() -> bool {
    is_root() && std::path::Path::new("/dev/fuse").exists()
}

// Guards: 8 processes mixing commands (builds among them) for ~10 s in one store: no lock errors, only semantic failures, a consistent store.
#[test]
fn concurrent_commands_keep_the_store_consistent() {
    let s = Store::new();
    let base = Layer::simple("shared-base", Comp::Gzip);
    let images: Vec<Image> = (0..4)
        .map(|i| {
            ImageSpec::new(&[&format!("c{i}:1")])
                .label("n", &i.to_string())
                .layer(base.clone())
                .layer(Layer::simple(&format!("c{i}"), Comp::None))
                .build()
        })
        .collect();
    let mut paths: Vec<PathBuf> = images
        .iter()
        .enumerate()
        .map(|(i, img)| s.write(&format!("c{i}.tar"), &Archive::docker(&[img]).tar()))
        .collect();
    paths.push(s.write("c01.tar", &Archive::oci(&[&images[0], &images[1]]).tar()));
    s.ok(&["load", "-i", arg(&paths[0])]);
    // 10 s in the default run, 60 s with IMG_TEST_LONG=1.
    let secs = if long() { 60 } else { 10 };
    let deadline = Instant::now() + Duration::from_secs(secs);
    let results: Vec<Out> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..8u64)
            .map(|w| {
                let s = &s;
                let paths = &paths;
                sc.spawn(move || {
                    let mut rng = Rng::new(w * 7919 + 1);
                    let mut outs = Vec::new();
                    while Instant::now() < deadline {
                        let i = rng.below(4);
                        let name = format!("c{i}:1");
                        let alias = format!("t{}:1", rng.below(3));
                        let save = s.work().join(format!("save-{w}.tar"));
                        let path = arg(&paths[rng.below(paths.len() as u64) as usize]);
                        let ctx = s.work().join(format!("ctx-{w}-{i}"));
                        if w == 6 && !ctx.exists() {
                            fs::create_dir_all(&ctx).unwrap();
                            fs::write(ctx.join("f"), format!("from worker {w}")).unwrap();
                            fs::write(ctx.join("Dockerfile"), format!("FROM {name}\nCOPY f /f-{w}\nENV W={w}\n"))
                                .unwrap();
                        }
                        let args: Vec<&str> = match (w, rng.below(3)) {
                            (0 | 1, _) => vec!["load", "-q", "-i", path],
                            (2, 0) => vec!["tag", &name, &alias],
                            (2, _) => vec!["tag", &name, &name, "c9:1"],
                            (3, 0) => vec!["rmi", &alias],
                            (3, _) => vec!["rmi", &name],
                            (4, 0) => vec!["images"],
                            (4, 1) => vec!["images", "--format", "json"],
                            (4, _) => vec!["images", "-q", "--filter", "dangling=false"],
                            (5, 0) => vec!["history", &name],
                            (5, _) => vec!["inspect", &name, &alias],
                            (6, 0) => vec!["save", "-o", arg(&save), &name],
                            (6, 1) => vec!["rmi", "-f", &name, "c9:1"],
                            (6, _) if can_build() => vec!["build", "-q", "-t", "built:1", arg(&ctx)],
                            (6, _) => vec!["images"],
                            _ => vec!["prune", "-f"],
                        };
                        let o = s.run(&args);
                        outs.push(o);
                        if w == 7 {
                            std::thread::sleep(Duration::from_millis(300));
                        }
                    }
                    outs
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut bad = Vec::new();
    let mut ok_by_cmd: std::collections::BTreeMap<String, usize> = Default::default();
    for o in &results {
        let cmd = o.cmd.split(' ').next().unwrap().to_string();
        if lock_trouble(&o.stderr) {
            bad.push(o.describe());
            continue;
        }
        if o.success() {
            *ok_by_cmd.entry(cmd.clone()).or_default() += 1;
            if o.cmd.contains("--format json") {
                if let Err(e) = serde_json::from_slice::<Value>(&o.stdout) {
                    bad.push(format!("invalid JSON ({e})\n{}", o.describe()));
                }
            }
        } else {
            let errors: Vec<&str> = o.stderr.lines().filter(|l| l.starts_with("error:")).collect();
            // A build whose base image another worker removed tries to pull it.
            let semantic = o.code().is_some()
                && !errors.is_empty()
                && errors
                    .iter()
                    .all(|l| l.contains("image not known") || l.contains("is not in the store and pulling it failed"));
            if !semantic {
                bad.push(o.describe());
            }
        }
    }
    // Distinct error lines, with counts, then the first few failures in full.
    let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
    for b in &bad {
        let line = b.lines().find(|l| l.starts_with("error:")).unwrap_or("(no error line)");
        *kinds.entry(line.to_string()).or_default() += 1;
    }
    assert!(
        bad.is_empty(),
        "{} of {} commands failed badly:\n{}\nfirst ones:\n{}",
        bad.len(),
        results.len(),
        kinds.iter().map(|(k, n)| format!("{n:5} {k}")).collect::<Vec<_>>().join("\n"),
        bad.iter().take(5).cloned().collect::<Vec<_>>().join("\n\n")
    );
    for c in ["load", "tag", "rmi", "images", "inspect", "prune"] {
        assert!(ok_by_cmd.get(c).copied().unwrap_or(0) > 0, "no `{c}` succeeded: {ok_by_cmd:?}");
    }
    if can_build() {
        assert!(ok_by_cmd.get("build").copied().unwrap_or(0) > 0, "no `build` succeeded: {ok_by_cmd:?}");
    }
    s.assert_ingest_empty();
    s.assert_fsck_clean();
    let db = s.db();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count("SELECT count(*) FROM tags WHERE image_id NOT IN (SELECT id FROM images)"),
        0,
        "tags point at missing images"
    );
    assert_eq!(count("SELECT count(*) FROM pragma_foreign_key_check"), 0);
    drop(db);
    for t in s.tags() {
        s.inspect(&t);
    }
    s.ok(&["prune", "-f"]);
    let db = s.db();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count("SELECT count(*) FROM blobs WHERE digest NOT IN (SELECT digest FROM image_blobs)"),
        0,
        "unreferenced blobs survived prune"
    );
    let rows: BTreeSet<String> = db
        .prepare("SELECT digest FROM blobs")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    drop(db);
    let files: BTreeSet<String> = s.blob_digests().into_iter().collect();
    assert_eq!(rows, files, "blob files and index rows differ");
    s.assert_fsck_clean();
}

/// Runs the commands `racer(thread, iteration)` gives in `n` threads and the
/// `other` commands in one thread until `secs` pass or a racer fails in a way
/// `acceptable` does not accept; returns such failures.
fn race(
    s: &Store,
    n: usize,
    secs: u64,
    racer: impl Fn(usize, usize) -> Vec<String> + Sync,
    other: &[&[&str]],
    acceptable: impl Fn(&Out) -> bool + Sync,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let bad = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        for t in 0..n {
            let (stop, bad, acceptable, racer) = (&stop, &bad, &acceptable, &racer);
            sc.spawn(move || {
                let mut k = 0;
                while Instant::now() < deadline && !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let args = racer(t, k);
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    let o = s.run(&args);
                    k += 1;
                    if !o.success() && !acceptable(&o) {
                        bad.lock().unwrap().push(o.describe());
                        stop.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            });
        }
        sc.spawn(|| {
            while Instant::now() < deadline && !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for args in other {
                    s.run(args);
                }
            }
        });
    });
    bad.into_inner().unwrap()
}

/// Sixteen small images, and their docker-archive.
fn sixteen(s: &Store) -> (Vec<Image>, PathBuf) {
    let images: Vec<Image> = (0..16)
        .map(|i| ImageSpec::new(&[&format!("n{i}:1")]).layer(Layer::simple(&format!("n{i}"), Comp::None)).build())
        .collect();
    let refs: Vec<&Image> = images.iter().collect();
    let docker = s.write("sixteen-docker.tar", &Archive::docker(&refs).tar());
    (images, docker)
}

/// The images as an OCI archive whose manifests carry a `variant`
/// annotation, so that each variant has manifest digests of its own.
fn oci_variant(images: &[Image], variant: &str) -> Vec<u8> {
    let refs: Vec<&Image> = images.iter().collect();
    let mut a = Archive::oci(&refs);
    for n in 0..refs.len() {
        a.edit_oci_manifest(n, |m| m["annotations"] = json!({"variant": variant}));
    }
    a.tar()
}

// Guards: `img load` of images an `img rmi` is removing at the same time succeeds (no index FOREIGN KEY error).
#[test]
fn load_racing_rmi_never_fails() {
    let s = Store::new();
    let (images, docker) = sixteen(&s);
    s.ok(&["load", "-i", arg(&docker)]);
    let mut rmi: Vec<&str> = vec!["rmi", "-f"];
    rmi.extend(images.iter().map(|i| i.tags[0].as_str()));
    // Each load brings the same images with manifests the store has never seen.
    let load = |t: usize, k: usize| {
        let p = s.write(&format!("oci-{t}-{k}.tar"), &oci_variant(&images, &format!("{t}-{k}")));
        vec!["load".to_string(), "-i".into(), arg(&p).into()]
    };
    let bad = race(&s, 3, 5, load, &[&["load", "-i", arg(&docker)], &rmi], |_| false);
    assert!(bad.is_empty(), "a load racing rmi failed:\n{}", bad.join("\n"));
    s.assert_fsck_clean();
}

// Guards: `img tag` racing an `img rmi` of its source fails only with "image not known".
#[test]
fn tag_racing_rmi_reports_image_not_known() {
    let s = Store::new();
    let (images, docker) = sixteen(&s);
    s.ok(&["load", "-i", arg(&docker)]);
    let id = images[0].id.to_string();
    let targets: Vec<String> = (0..16).map(|i| format!("alias{i}:1")).collect();
    let mut tag: Vec<&str> = vec!["tag", "n0:1"];
    tag.extend(targets.iter().map(String::as_str));
    let tag: Vec<String> = tag.iter().map(|a| a.to_string()).collect();
    let bad = race(
        &s,
        2,
        4,
        |_, _| tag.clone(),
        &[&["load", "-i", arg(&docker)], &["rmi", "-f", &id]],
        |o| o.code() == Some(1) && o.stderr.starts_with("error:") && o.stderr.contains("image not known"),
    );
    assert!(bad.is_empty(), "a tag racing rmi failed unclearly:\n{}", bad.join("\n"));
    s.assert_fsck_clean();
}

// Guards: 8 processes using a brand-new store at once all succeed without lock errors.
#[test]
fn concurrent_first_use_of_a_new_store() {
    let s = Store::new();
    let img = two_layer_image(&["app:1"]);
    let p = s.write("app.tar", &Archive::docker(&[&img]).tar());
    let children: Vec<_> = (0..8)
        .map(|i| {
            let args: &[&str] = if i % 2 == 0 { &["images"] } else { &["load", "-i", arg(&p)] };
            (args.join(" "), s.command(args).spawn().unwrap())
        })
        .collect();
    for (cmd, c) in children {
        let o = c.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() && !lock_trouble(&stderr), "img {cmd}: {:?}\n{stderr}", o.status);
    }
    assert_stored(&s, &img);
    s.assert_fsck_clean();
}

// ---- 12. embedded images -----------------------------------------------------------

const SQUASHFS: &str = "application/squashfs.image.rootfs.diff.img";
const BIND_DIR: &str = "application/bind.image.rootfs.diff.dir";

/// An embedded image directory: `app.manifest`, `app.sgn` and `n` layer files.
struct Embedded {
    dir: PathBuf,
    manifest: Value,
    layer_files: Vec<PathBuf>,
}

impl Embedded {
    fn new(s: &Store, n: usize) -> Embedded {
        let dir = s.work().join("embedded");
        fs::create_dir_all(dir.join("layers")).unwrap();
        let mut rng = Rng::new(42);
        let mut layers = vec![json!({
            "mediaType": BIND_DIR, "pathInHost": "/", "pathInContainer": "",
            "digest": "", "size": 0,
        })];
        let mut files = Vec::new();
        for i in 1..=n {
            let rel = format!("layers/l{i}.sqfs");
            let data = rng.bytes(1000 + 100 * i);
            fs::write(dir.join(&rel), &data).unwrap();
            // Every other layer names its digest.
            let digest = if i % 2 == 1 { Digest::of_bytes(&data).to_string() } else { String::new() };
            layers.push(json!({
                "mediaType": SQUASHFS, "pathInHost": rel,
                "pathInContainer": if i == 1 { "/".to_string() } else { format!("/opt/l{i}") },
                "digest": digest, "size": data.len(),
            }));
            files.push(dir.join(rel));
        }
        let manifest = json!({
            "schemaVersion": 1,
            "mediaType": "application/embedded.manifest+json",
            "imageName": "app:1",
            "created": "2024-01-02T03:04:05+08:00",
            "config": {"Env": ["A=1", "PATH=/bin"], "Entrypoint": ["/bin/app", "-v"], "WorkingDir": "/work"},
            "layers": layers,
        });
        Embedded { dir, manifest, layer_files: files }
    }

    fn manifest_path(&self) -> PathBuf {
        self.dir.join("app.manifest")
    }

    /// Writes the manifest and its matching `.sgn`.
    fn write(&self) -> PathBuf {
        let bytes = serde_json::to_vec_pretty(&self.manifest).unwrap();
        fs::write(self.manifest_path(), &bytes).unwrap();
        fs::write(self.dir.join("app.sgn"), format!("{}\n", Digest::of_bytes(&bytes))).unwrap();
        self.manifest_path()
    }

    fn layers_size(&self) -> u64 {
        self.layer_files.iter().map(|f| fs::metadata(f).unwrap().len()).sum()
    }

    fn layer_contents(&self) -> Vec<Vec<u8>> {
        self.layer_files.iter().map(|f| fs::read(f).unwrap()).collect()
    }
}

// Guards: an embedded image loads (twice), lists its layer files' size, shows its config; rmi leaves the files alone.
#[test]
fn embedded_image_load_inspect_rmi() {
    let s = Store::new();
    let e = Embedded::new(&s, 3);
    let m = e.write();
    let contents = e.layer_contents();
    let out = s.ok(&["load", "--type", "embedded", "-i", arg(&m)]);
    assert_eq!(out, "Loaded image: docker.io/library/app:1\n");
    let images = s.images();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["RepoTags"], json!(["docker.io/library/app:1"]));
    assert_eq!(images[0]["Size"], json!(e.layers_size()));
    assert_eq!(images[0]["Created"], json!(1_704_135_845));
    let ins = s.inspect("app:1");
    assert_eq!(ins["Config"]["Env"], json!(["A=1", "PATH=/bin"]));
    assert_eq!(ins["Config"]["Entrypoint"], json!(["/bin/app", "-v"]));
    assert_eq!(ins["Config"]["WorkingDir"], json!("/work"));
    s.assert_fsck_clean();
    let again = s.ok(&["load", "--type", "embedded", "-i", arg(&m)]);
    assert_eq!(again, out);
    assert_eq!(s.images().len(), 1);
    s.assert_fsck_clean();
    let rm = s.ok(&["rmi", "app:1"]);
    assert!(rm.contains("Untagged: docker.io/library/app:1"), "{rm}");
    assert!(s.images().is_empty());
    assert!(s.blob_files().is_empty(), "{:?}", s.blob_files());
    assert_eq!(e.layer_contents(), contents, "layer files changed");
    assert!(m.exists() && e.dir.join("app.sgn").exists());
    s.assert_fsck_clean();
}

// Guards: --copy stores the layer files as blobs; rmi removes the blobs, not the files.
#[test]
fn embedded_copy_stores_layers_as_blobs() {
    let s = Store::new();
    let e = Embedded::new(&s, 2);
    let m = e.write();
    let contents = e.layer_contents();
    s.ok(&["load", "--type", "embedded", "--copy", "-i", arg(&m)]);
    for c in &contents {
        assert!(s.has_blob(&Digest::of_bytes(c)), "layer not copied into blobs/");
    }
    let ins = s.inspect("app:1");
    let digests: Vec<String> =
        ins["Layers"].as_array().unwrap().iter().map(|l| l["Digest"].as_str().unwrap().to_string()).collect();
    assert_eq!(digests, contents.iter().map(|c| Digest::of_bytes(c).to_string()).collect::<Vec<_>>());
    s.assert_fsck_clean();
    s.ok(&["rmi", "app:1"]);
    assert!(s.blob_files().is_empty(), "{:?}", s.blob_files());
    assert_eq!(e.layer_contents(), contents);
    s.assert_fsck_clean();
}

/// Builds a 2-layer embedded image, lets `setup` break it (after the manifest
/// and .sgn are written), and expects a refusal naming the manifest and
/// saying `wants`, with nothing stored.
fn embedded_refused(n: usize, edit: impl FnOnce(&Path, &mut Value), after: impl FnOnce(&Path), wants: &[&str]) {
    let s = Store::new();
    let mut e = Embedded::new(&s, n);
    edit(&e.dir, &mut e.manifest);
    let m = e.write();
    after(&e.dir);
    let o = s.run(&["load", "--type", "embedded", "-i", arg(&m)]);
    let line = o.one_error_line();
    assert!(line.contains(arg(&m)), "the error names the manifest\n{}", o.describe());
    for w in wants {
        assert!(line.contains(w), "the error does not say {w:?}\n{}", o.describe());
    }
    assert!(o.stdout.is_empty(), "{}", o.describe());
    assert!(s.images().is_empty(), "an image was stored");
    assert!(s.blob_files().is_empty(), "{:?}", s.blob_files());
    s.assert_ingest_empty();
    s.assert_fsck_clean();
}

fn no_edit(_: &Path, _: &mut Value) {}
fn no_after(_: &Path) {}

// Guards: an embedded manifest without its .sgn is refused.
#[test]
fn embedded_missing_sgn_is_refused() {
    embedded_refused(2, no_edit, |d| fs::remove_file(d.join("app.sgn")).unwrap(), &["app.sgn"]);
}

// Guards: an embedded manifest whose .sgn does not match is refused.
#[test]
fn embedded_wrong_sgn_is_refused() {
    embedded_refused(
        2,
        no_edit,
        |d| fs::write(d.join("app.sgn"), format!("{}\n", Digest::of_bytes(b"other"))).unwrap(),
        &["signature"],
    );
}

// Guards: schemaVersion 2 is refused.
#[test]
fn embedded_schema_version_2_is_refused() {
    embedded_refused(2, |_, m| m["schemaVersion"] = json!(2), no_after, &["schema version"]);
}

// Guards: a wrong mediaType is refused.
#[test]
fn embedded_wrong_media_type_is_refused() {
    embedded_refused(
        2,
        |_, m| m["mediaType"] = json!("application/vnd.oci.image.manifest.v1+json"),
        no_after,
        &["media type"],
    );
}

// Guards: an image name without a tag is refused.
#[test]
fn embedded_name_without_tag_is_refused() {
    embedded_refused(2, |_, m| m["imageName"] = json!("app"), no_after, &["tag"]);
}

// Guards: a created time without a zone is refused.
#[test]
fn embedded_bad_created_is_refused() {
    embedded_refused(2, |_, m| m["created"] = json!("2024-01-02T03:04:05"), no_after, &["created"]);
}

// Guards: an absolute pathInHost for layer 1 is refused.
#[test]
fn embedded_absolute_layer_path_is_refused() {
    embedded_refused(
        2,
        |d, m| m["layers"][1]["pathInHost"] = json!(arg(&d.join("layers/l1.sqfs")).to_string()),
        no_after,
        &["layer 1", "relative"],
    );
}

// Guards: a layer path through a symlink leading outside the directory is refused.
#[test]
fn embedded_symlink_outside_is_refused() {
    embedded_refused(
        2,
        |d, m| {
            let outside = d.parent().unwrap().join("outside.sqfs");
            fs::write(&outside, b"outside the image directory").unwrap();
            std::os::unix::fs::symlink(&outside, d.join("layers/evil")).unwrap();
            m["layers"][2]["pathInHost"] = json!("layers/evil");
        },
        no_after,
        &["layer 2", "outside"],
    );
    // A `..` path too.
    embedded_refused(
        2,
        |d, m| {
            let outside = d.parent().unwrap().join("outside2.sqfs");
            fs::write(&outside, b"outside").unwrap();
            m["layers"][1]["pathInHost"] = json!("../outside2.sqfs");
        },
        no_after,
        &["layer 1", "outside"],
    );
}

// Guards: a layer whose content does not match its digest is refused.
#[test]
fn embedded_wrong_layer_digest_is_refused() {
    embedded_refused(
        2,
        |_, m| m["layers"][1]["digest"] = json!(Digest::of_bytes(b"other").to_string()),
        no_after,
        &["layer 1", "digest"],
    );
}

// Guards: more than 125 layers (126 with layer 0) is refused.
#[test]
fn embedded_126_layers_is_refused() {
    embedded_refused(125, no_edit, no_after, &["126 layers"]);
}

// Guards: 125 layers (the most allowed) still load.
#[test]
fn embedded_125_layers_load() {
    let s = Store::new();
    let e = Embedded::new(&s, 124);
    let m = e.write();
    s.ok(&["load", "--type", "embedded", "-i", arg(&m)]);
    assert_eq!(s.images()[0]["Size"], json!(e.layers_size()));
}

// Guards: save of an embedded image turns each squashfs layer into a tar layer
// placed at its pathInContainer (needs mksquashfs and sqfs2tar, which
// scripts/test.sh installs).
#[test]
fn embedded_save_converts_squashfs_layers_to_tar() {
    let s = Store::new();
    let e = Embedded::new(&s, 1);
    let content = s.work().join("content");
    fs::create_dir_all(content.join("bin")).unwrap();
    fs::write(content.join("bin/hello"), b"hello from squashfs\n").unwrap();
    let sqfs = &e.layer_files[0];
    let st = std::process::Command::new("mksquashfs")
        .args([arg(&content), arg(sqfs), "-noappend", "-quiet", "-all-root", "-mkfs-time", "0"])
        .status()
        .expect("mksquashfs (squashfs-tools) is needed for this test");
    assert!(st.success());
    let mut e = e;
    e.manifest["layers"][1]["pathInContainer"] = json!("/opt/app");
    e.manifest["layers"][1]["digest"] = json!("");
    let m = e.write();
    s.ok(&["load", "--type", "embedded", "-i", arg(&m)]);
    let out = s.work().join("emb.tar");
    s.ok(&["save", "-o", arg(&out), "app:1"]);
    let archive = fs::read(&out).unwrap();
    let names: Vec<String> = list_tar(&archive).into_iter().map(|l| l.name).collect();
    let manifest_json: Value = {
        let mut ar = tar::Archive::new(&archive[..]);
        let mut v = Value::Null;
        for ent in ar.entries().unwrap() {
            let mut ent = ent.unwrap();
            if ent.path().unwrap().to_str() == Some("manifest.json") {
                v = serde_json::from_reader(&mut ent).unwrap();
            }
        }
        v
    };
    assert_eq!(manifest_json[0]["RepoTags"], json!(["docker.io/library/app:1"]), "{names:?}");
    let layer_name = manifest_json[0]["Layers"][0].as_str().unwrap().to_string();
    let mut ar = tar::Archive::new(&archive[..]);
    let mut layer = Vec::new();
    for ent in ar.entries().unwrap() {
        let mut ent = ent.unwrap();
        if ent.path().unwrap().to_str() == Some(layer_name.as_str()) {
            std::io::Read::read_to_end(&mut ent, &mut layer).unwrap();
        }
    }
    let inside: Vec<String> = list_tar(&layer).into_iter().map(|l| l.name).collect();
    assert!(inside.iter().any(|n| n.trim_end_matches('/') == "opt/app/bin/hello"), "{inside:?}");
    // The archive loads back into a fresh store as a regular image.
    let t = Store::new();
    t.ok(&["load", "-i", arg(&out)]);
    assert_eq!(t.images().len(), 1);
    t.assert_fsck_clean();
    // Saving left nothing behind in the source store.
    s.assert_fsck_clean();
}

// ---- mounts without a kernel mount -------------------------------------------------

// Guards: commit and umount of something that is not a writable mount are
// refused with what to do, and change nothing.
#[test]
fn commit_of_a_directory_that_is_not_a_mount_is_refused() {
    let s = store_with_base();
    let before = s.ok(&["images", "-q", "--no-trunc"]);
    let dir = s.work().join("plain");
    fs::create_dir_all(&dir).unwrap();
    let o = s.fail(&["commit", arg(&dir), "new:1"]);
    let line = o.one_error_line();
    assert!(line.contains("plain") && line.contains("img mount --rw"), "{}", o.describe());
    let o = s.fail(&["commit", "base:1", "new:1"]);
    assert!(o.one_error_line().contains("not a writable img mount"), "{}", o.describe());
    let o = s.fail(&["umount", "--discard", arg(&dir)]);
    assert!(o.one_error_line().contains("not an img mount"), "{}", o.describe());
    assert_eq!(s.ok(&["images", "-q", "--no-trunc"]), before);
    s.ok(&["fsck"]);
}

// Guards: a bad --format or an unparsable -p value is a usage error.
#[test]
fn commit_usage_errors_exit_125() {
    let s = Store::new();
    let o = s.run(&["commit", "-p=maybe", "/tmp", "x:1"]);
    assert_eq!(o.status.code(), Some(125), "{}", o.describe());
}

// Regression: `img export -o /dev/null` renamed its temp file onto
// /dev/null, replacing the device with a regular file. Devices and fifos
// are written as they are; a symlink stays and its target gets the file.
#[test]
fn save_and_export_to_a_device_a_fifo_or_a_symlink_keep_them() {
    use std::os::unix::fs::FileTypeExt;
    let s = Store::new();
    let img = two_layer_image(&["app:1"]);
    s.load("app.tar", &Archive::docker(&[&img]).tar());
    s.ok(&["export", "-o", "/dev/null", "app:1"]);
    s.ok(&["save", "-o", "/dev/null", "app:1"]);
    let m = fs::metadata("/dev/null").unwrap();
    assert!(m.file_type().is_char_device(), "/dev/null is no longer a device");
    // A fifo: its reader gets the archive, and it stays a fifo.
    let fifo = s.work().join("out.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read(&fifo).unwrap())
    };
    s.ok(&["save", "-o", arg(&fifo), "app:1"]);
    let got = reader.join().unwrap();
    assert!(got.len() > 1024 && tar::Archive::new(got.as_slice()).entries().unwrap().count() > 2);
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    // A symlink: it stays, and the file it names is the archive.
    let real = s.work().join("real.tar");
    fs::write(&real, b"old").unwrap();
    let link = s.work().join("link.tar");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    s.ok(&["save", "-o", arg(&link), "app:1"]);
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert!(fs::metadata(&real).unwrap().len() > 1024);
    // A directory is refused.
    let o = s.fail(&["export", "-o", arg(s.work()), "app:1"]);
    assert!(o.one_error_line().contains("is a directory"), "{}", o.describe());
}

// Guards: `-o -` wrote a file named "-" instead of standard output.
#[test]
fn export_and_save_to_dash_write_standard_output() {
    let s = Store::new();
    let img =
        ImageSpec::new(&["dash:1"]).layer(Layer::new(TarBuilder::new().file("f", "x").build(), Comp::None)).build();
    s.load("dash.tar", &Archive::docker(&[&img]).tar());
    for args in [&["export", "-o", "-", "dash:1"][..], &["save", "-o", "-", "dash:1"][..]] {
        let o = s.run(args);
        assert!(o.success(), "{}", o.describe());
        assert!(o.stdout.len() >= 1024 && o.stdout[257..262] == *b"ustar", "img {}: no tar on stdout", args.join(" "));
        assert!(!std::path::Path::new("-").exists(), "img {} wrote a file named -", args.join(" "));
    }
}

// Guards: img build killed with SIGKILL at seeded random moments (20 trials,
// 100 with IMG_TEST_LONG=1): no half-made image, nothing mounted left
// behind (the build's mounts live in its own namespace), no temporary file
// after the next command, a clean fsck, and the build run again succeeds.
#[test]
fn sigkill_during_build_leaves_a_clean_store() {
    if !need_root("img build") {
        return;
    }
    let mut rng = Rng::new(seed("sigkill_during_build", 0x5eed_b11d));
    let base = ImageSpec::new(&["base:1"]).layer(Layer::simple("kill-base", Comp::Gzip)).build();
    let fixtures = TempDir::new("kill-build");
    let ctx = fixtures.join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("big"), rng.bytes(16 << 20)).unwrap();
    fs::write(ctx.join("small"), b"small\n").unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM base:1\nCOPY big /big\nCOPY small /small\nENV X=1\n").unwrap();
    let archive = fixtures.join("base.tar");
    fs::write(&archive, Archive::docker(&[&base]).tar()).unwrap();
    let build = ["build", "--no-cache", "-q", "-t", "built:1", arg(&ctx)];
    let dur = {
        let s = Store::new();
        s.ok(&["load", "-q", "-i", arg(&archive)]);
        let t = Instant::now();
        s.ok(&build);
        t.elapsed()
    };
    let trials = if long() { 100 } else { 20 };
    let mut killed = 0;
    for trial in 0..trials {
        let s = Store::new();
        s.ok(&["load", "-q", "-i", arg(&archive)]);
        let delay = dur.mul_f64(rng.below(1100) as f64 / 1000.0);
        let mut child = s.command(&build).spawn().expect("starting img");
        std::thread::sleep(delay);
        let _ = child.kill();
        let o = child.wait_with_output().unwrap();
        if !o.status.success() {
            killed += 1;
        }
        let ctx = format!("trial {trial}: img build killed after {delay:?}");
        let ids = s.image_ids();
        assert!(ids.len() <= 2 && ids.contains(&base.hex().to_string()), "{ctx}: images {ids:?}");
        s.assert_ingest_empty();
        s.assert_fsck_clean();
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = s.root().to_string_lossy().into_owned();
        assert!(!mounts.contains(&root), "{ctx}: mounts left under the store:\n{mounts}");
        let again = s.run(&build);
        assert!(again.success(), "{ctx}: the build run again failed: {}", again.describe());
        s.assert_fsck_clean();
    }
    assert!(killed > 0, "no trial killed a build in progress (a build takes {dur:?})");
}

// Guards: `img version -f '{{.Client.Version}}'`, docker's template, works
// (it printed the table, ignoring the template).
#[test]
fn version_template_client_version() {
    let s = Store::new();
    let v = env!("CARGO_PKG_VERSION");
    assert_eq!(s.ok(&["version", "-f", "{{.Client.Version}}"]), format!("{v}\n"));
    assert_eq!(s.ok(&["version", "--format", "{{.Version}} {{.Client.Os}}"]), format!("{v} linux\n"));
    let j: Value = serde_json::from_str(&s.ok(&["version", "--format", "json"])).unwrap();
    assert_eq!(j["Client"]["Version"], json!(v));
}

// Guards: a --format value a command does not know is a usage error (exit
// 125) naming the value and the values it takes, instead of being ignored
// (`img version --format yaml` printed the table) or printed once per item.
#[test]
fn unknown_format_values_are_usage_errors() {
    let s = Store::new();
    s.load("i.tar", &Archive::docker(&[&two_layer_image(&["app:1"])]).tar());
    let cases: &[(&[&str], &[&str])] = &[
        (&["images", "--format", "yaml"], &["table", "json", "template"]),
        (&["inspect", "-f", "yaml", "app:1"], &["json", "template"]),
        (&["history", "--format", "yaml", "app:1"], &["table", "json", "template"]),
        (&["version", "--format", "yaml"], &["json", "template"]),
        (&["info", "--format", "yaml"], &["json", "template"]),
        (&["fsck", "--format", "yaml"], &["json"]),
        (&["system", "df", "--format", "yaml"], &["table", "json"]),
        (&["mounts", "--format", "yaml"], &["table", "json"]),
        (&["search", "--format", "yaml", "localhost:1/x"], &["table", "json", "template"]),
        (&["convert", "--format", "yaml", "app:1", "app:2"], &["estargz", "zstd:chunked"]),
        (&["build", "--format", "yaml", "."], &["oci", "docker"]),
    ];
    for (args, takes) in cases {
        let o = s.run(args);
        assert_eq!(o.code(), Some(125), "{args:?}\n{}", o.describe());
        assert!(o.stderr.contains("\"yaml\""), "the value is not named\n{}", o.describe());
        for t in *takes {
            assert!(o.stderr.contains(t), "{t} is not offered\n{}", o.describe());
        }
        assert!(o.stdout.is_empty(), "{}", o.describe());
    }
    // The values each takes still work.
    s.ok(&["images", "--format", "table"]);
    s.ok(&["images", "--format", "table {{.Repository}}\\t{{.Size}}"]);
    s.ok(&["history", "--format", "json", "app:1"]);
    s.ok(&["system", "df", "--format", "json"]);
    s.ok(&["fsck", "--format", "json"]);
    s.ok(&["info", "--format", "{{.Store.Images}}"]);
}
