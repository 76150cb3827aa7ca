//! Crash and concurrency tests for the registry commands, against the
//! in-process fake registry (tests/support/fake_registry.rs):
//!
//! - `img pull` killed (SIGKILL) at seeded random moments of a slowed,
//!   multi-layer download: no partial image, a clean store, and a re-run
//!   that resumes each partial download with Range instead of starting over;
//! - two `img pull`s of images sharing layers, at once: each shared blob
//!   is downloaded once in total;
//! - `img push` killed at random moments of a slowed upload: the local
//!   store is untouched, the registry never has a tag whose blobs are
//!   missing, and a re-run completes the push without re-sending what the
//!   registry already has;
//! - pull, rmi, images, inspect, prune and push mixed in one store by six
//!   processes: no locking errors, only the expected "image not known"
//!   races, and a consistent store and registry at the end;
//! - what a pull keeps when another layer fails, and pulls of the very same
//!   image at once.
//!
//! The seed comes from IMG_TEST_SEED (decimal or 0x-hex) or is fixed; each
//! test prints it. IMG_TEST_LONG=1 runs more trials and longer mixes.

mod support;

use img::digest::Digest;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use support::fake_registry::{FakeRegistry, Fault, Request};
use support::*;

/// Longest any img run may take before the test kills it and fails.
const WATCHDOG: Duration = Duration::from_secs(60);

// ---- running img ---------------------------------------------------------------

/// img in `s` with a clean environment: no proxies, auth files, registries
/// configuration or registry timeout from the machine running the tests.
fn command(s: &Store, args: &[&str]) -> Command {
    let mut c = s.command(args);
    for k in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
        "REGISTRY_AUTH_FILE",
        "DOCKER_CONFIG",
        "XDG_CONFIG_HOME",
        "IMG_REGISTRY_TIMEOUT",
    ] {
        c.env_remove(k);
    }
    c.env("HOME", s.work())
        .env("XDG_RUNTIME_DIR", s.work())
        .env("CONTAINERS_REGISTRIES_CONF", s.work().join("no-registries.conf"))
        .env("IMG_ISULAD_DAEMON_JSON", s.work().join("no-daemon.json"));
    c
}

/// Waits for `child` (started by `command`), killing it and failing the
/// test if it runs past the watchdog.
fn finish(args: &[&str], mut child: Child) -> Out {
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("waiting for img") {
            break st;
        }
        if start.elapsed() > WATCHDOG {
            let _ = child.kill();
            let _ = child.wait();
            let err = err_t.join().unwrap();
            panic!("img {} was still running after {WATCHDOG:?}; killed\n--- stderr ---\n{err}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Out { cmd: args.join(" "), status, stdout: out_t.join().unwrap(), stderr: err_t.join().unwrap() }
}

fn img(s: &Store, args: &[&str]) -> Out {
    finish(args, command(s, args).spawn().expect("starting img"))
}

fn img_ok(s: &Store, args: &[&str], reg: &FakeRegistry) -> String {
    let o = img(s, args);
    assert!(o.success(), "expected success\n{}\nrequests:\n{}", o.describe(), reg.describe());
    o.out()
}

/// Starts img, lets it run for `delay`, then kills it with SIGKILL.
fn kill_after(s: &Store, args: &[&str], delay: Duration) -> Out {
    let child = command(s, args).spawn().expect("starting img");
    std::thread::sleep(delay);
    kill_now(args, child)
}

/// Kills a running img with SIGKILL (std's kill) and collects what it did.
fn kill_now(args: &[&str], mut child: Child) -> Out {
    let _ = child.kill();
    finish(args, child)
}

fn pull_args(reference: &str) -> Vec<&str> {
    vec!["pull", "--tls-verify=false", "-q", reference]
}

// ---- fixtures ----------------------------------------------------------------------

/// A gzip layer holding `size` random bytes (so the blob is a little larger).
fn random_layer(rng: &mut Rng, name: &str, size: usize) -> Layer {
    let tar = TarBuilder::new().dir(name).file(&format!("{name}/random"), rng.bytes(size)).build();
    Layer::new(tar, Comp::Gzip)
}

/// Every blob of `image` as the registry serves it: config, then layers.
fn blobs_of(image: &Image) -> Vec<(Digest, Vec<u8>)> {
    let mut v = vec![(image.id.clone(), image.config.clone())];
    v.extend(image.layers.iter().map(|l| (l.digest(), l.blob.clone())));
    v
}

/// The image is listed with exactly `tag` and every blob of it is stored.
fn assert_stored(s: &Store, image: &Image, tag: &str) {
    let found: Vec<Value> = s.images().into_iter().filter(|i| i["Id"] == image.hex()).collect();
    assert_eq!(found.len(), 1, "image {} not listed", image.short());
    let tags: Vec<&str> = found[0]["RepoTags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert!(tags.contains(&tag), "{tag} not among {tags:?}");
    for (d, data) in blobs_of(image) {
        let p = s.blob_path(&d);
        let got = fs::read(&p).unwrap_or_else(|e| panic!("blob {d} of {tag} missing: {e}"));
        assert!(got == data, "blob {d} of {tag} has other content");
    }
    assert!(s.has_blob(&image.manifest_digest), "the manifest of {tag} is not stored");
}

fn partial_path(s: &Store, d: &Digest) -> std::path::PathBuf {
    s.root().join("ingest").join(format!("partial-{}", d.hex()))
}

/// Requests from index `mark` on.
fn since(reg: &FakeRegistry, mark: usize) -> Vec<Request> {
    reg.requests().into_iter().skip(mark).collect()
}

fn blob_gets<'a>(reqs: &'a [Request], name: &str, d: &Digest) -> Vec<&'a Request> {
    let path = FakeRegistry::blob_path(name, d);
    reqs.iter().filter(|r| r.method == "GET" && r.path == path).collect()
}

// ---- 1. SIGKILL during pull ---------------------------------------------------------

const PULL_NAME: &str = "crash/app";

/// An image of a few MB over four layers, served slowly by `reg`.
fn slow_pull_fixture(reg: &FakeRegistry, rng: &mut Rng) -> Image {
    let image = ImageSpec::new(&["app:1"])
        .layer(random_layer(rng, "one", 1_200_000))
        .layer(random_layer(rng, "two", 800_000))
        .layer(random_layer(rng, "three", 500_000))
        .layer(Layer::simple("small", Comp::Gzip))
        .build();
    reg.serve_image(PULL_NAME, "1", &image);
    for l in &image.layers {
        // 32 KiB every 10 ms: about 3 MB/s per layer.
        let pace = Fault::Paced { chunk: 32 * 1024, every: Duration::from_millis(10) };
        reg.fault_always(&FakeRegistry::blob_path(PULL_NAME, &l.digest()), pace);
    }
    image
}

/// What a killed pull had left, as the re-run should find it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Left {
    /// Nothing of this blob.
    Nothing,
    /// A partial download of this many bytes (less than the blob).
    Partial(u64),
    /// A complete partial download, or the blob in blobs/.
    Whole,
}

// Guards: SIGKILL at seeded random moments of a slowed multi-layer pull
// leaves no partial image, a clean store and only partial-* files in
// ingest/; the same pull then succeeds, asks for each partial blob from the
// partial's size with Range, and is sent exactly the bytes still missing.
#[test]
fn sigkill_during_pull_resumes_from_the_partial_downloads() {
    let mut rng = Rng::new(seed("sigkill_during_pull", 0x9011_0001));
    let reg = FakeRegistry::start();
    let image = slow_pull_fixture(&reg, &mut rng);
    let reference = reg.reference(PULL_NAME, "1");
    let blobs = blobs_of(&image);
    let total: u64 = blobs.iter().map(|(_, b)| b.len() as u64).sum::<u64>() + image.manifest.len() as u64;
    // How long a whole pull takes here.
    let dur = {
        let s = Store::new();
        let t = Instant::now();
        img_ok(&s, &pull_args(&reference), &reg);
        t.elapsed()
    };
    // 20 trials in the default run, 100 with IMG_TEST_LONG=1.
    let trials = if long() { 100 } else { 20 };
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    for trial in 0..trials {
        let s = Store::new();
        let delay = dur.mul_f64(rng.below(1000) as f64 / 1000.0);
        let ctx = format!("trial {trial} (kill after {delay:?} of a {dur:?} pull)");
        let o = kill_after(&s, &pull_args(&reference), delay);
        // The first command after the kill cleans up temporary files; only
        // resumable partial downloads of this image's blobs may stay.
        let ids = s.image_ids();
        let allowed: BTreeSet<String> = blobs.iter().map(|(d, _)| format!("partial-{}", d.hex())).collect();
        let stray: Vec<String> = s.ingest_files().into_iter().filter(|f| !allowed.contains(f)).collect();
        assert!(stray.is_empty(), "{ctx}: files in ingest/ after the next command: {stray:?}");
        assert!(ids.is_empty() || ids == vec![image.hex().to_string()], "{ctx}: unexpected images {ids:?}");
        if o.success() || !ids.is_empty() {
            assert_stored(&s, &image, &reference);
        }
        s.assert_fsck_clean();
        // What the re-run should find, blob by blob.
        let left: Vec<Left> = blobs
            .iter()
            .map(|(d, data)| {
                let len = data.len() as u64;
                if s.has_blob(d) {
                    return Left::Whole;
                }
                match fs::metadata(partial_path(&s, d)).map(|m| m.len()) {
                    Ok(n) if n > len => panic!("{ctx}: partial download of {d} is {n} bytes, more than {len}"),
                    Ok(n) if n == len => Left::Whole,
                    Ok(0) | Err(_) => Left::Nothing,
                    Ok(n) => Left::Partial(n),
                }
            })
            .collect();
        let kind = if !ids.is_empty() {
            "complete before the kill"
        } else if left.iter().any(|l| matches!(l, Left::Partial(_))) {
            "killed mid-blob"
        } else if left.contains(&Left::Whole) {
            "killed with whole blobs only"
        } else {
            "killed before any blob data"
        };
        *tally.entry(kind).or_default() += 1;

        let mark = reg.requests().len();
        let out = img_ok(&s, &pull_args(&reference), &reg);
        assert_eq!(out.trim(), image.hex(), "{ctx}");
        let reqs = since(&reg, mark);
        let log = || format!("{ctx}\nleft: {left:?}\nre-run requests:\n{}", reg.describe());
        for ((d, data), l) in blobs.iter().zip(&left) {
            let len = data.len() as u64;
            let gets = blob_gets(&reqs, PULL_NAME, d);
            let expect_from = match l {
                _ if !ids.is_empty() => None,
                Left::Whole => None,
                Left::Partial(n) => Some(*n),
                Left::Nothing => Some(0),
            };
            match expect_from {
                None => assert!(gets.is_empty(), "blob {d} was fetched again although it was whole\n{}", log()),
                Some(from) => {
                    assert_eq!(gets.len(), 1, "blob {d}: expected one GET\n{}", log());
                    let r = gets[0];
                    let want_range = (from > 0).then_some(from);
                    assert_eq!(r.range_start(), want_range, "blob {d}: not resumed from {from}\n{}", log());
                    assert_eq!(r.body_sent, len - from, "blob {d}: expected {} bytes sent\n{}", len - from, log());
                }
            }
        }
        let resumed = left.iter().any(|l| matches!(l, Left::Partial(_) | Left::Whole));
        let all_sent: u64 = reqs.iter().map(|r| r.body_sent).sum();
        if resumed {
            assert!(all_sent < total, "{ctx}: the re-run was sent {all_sent} bytes, the whole image is {total}");
        }
        assert_stored(&s, &image, &reference);
        s.assert_ingest_empty();
        s.assert_fsck_clean();
    }
    eprintln!("sigkill_during_pull: {trials} trials, pull takes {dur:?}: {tally:?}");
    assert!(
        tally.get("killed mid-blob").copied().unwrap_or(0) > 0,
        "no trial killed a pull mid-blob (a pull takes {dur:?}): {tally:?}"
    );
}

// Guards: a pull that fails on one layer (its body cut short on every
// attempt) keeps what it did download whole, like the partial download of
// the failing layer: the next pull fetches only the bytes still missing.
#[test]
fn a_pull_failing_on_one_layer_keeps_the_other_downloads() {
    let mut rng = Rng::new(seed("pull_failing_on_one_layer", 0x9011_0005));
    let reg = FakeRegistry::start();
    let image = ImageSpec::new(&["app:1"])
        .layer(random_layer(&mut rng, "good", 200_000))
        .layer(random_layer(&mut rng, "cut", 600_000))
        .build();
    reg.serve_image(PULL_NAME, "1", &image);
    let cut_path = FakeRegistry::blob_path(PULL_NAME, &image.layers[1].digest());
    reg.fault_always(&cut_path, Fault::CloseAfter(64 * 1024));
    let reference = reg.reference(PULL_NAME, "1");
    let s = Store::new();
    let o = img(&s, &pull_args(&reference));
    assert!(!o.success(), "expected the pull to fail\n{}\n{}", o.describe(), reg.describe());
    assert!(s.image_ids().is_empty());
    s.assert_fsck_clean();
    let have = |d: &Digest| s.has_blob(d) || fs::metadata(partial_path(&s, d)).is_ok_and(|m| m.len() > 0);
    let kept: Vec<bool> = blobs_of(&image).iter().map(|(d, _)| have(d)).collect();
    reg.clear_faults();
    let mark = reg.requests().len();
    img_ok(&s, &pull_args(&reference), &reg);
    assert_stored(&s, &image, &reference);
    let reqs = since(&reg, mark);
    let refetched: Vec<String> = blobs_of(&image)
        .iter()
        .filter(|(d, data)| blob_gets(&reqs, PULL_NAME, d).iter().any(|r| r.body_sent == data.len() as u64))
        .map(|(d, _)| d.to_string())
        .collect();
    assert!(
        refetched.is_empty(),
        "blobs downloaded whole by the failed pull were downloaded whole again: {refetched:?} \
         (kept after the failure, config then layers: {kept:?})\n{}",
        reg.describe()
    );
}

// Guards: two pulls each holding a finished download the other needed
// deadlocked (a finished download stays locked until its own image is
// stored). Here the other pull is this test, holding the lock on a complete
// download for as long as it likes: the pull takes the download as it is,
// after checking it, and never fetches that blob.
#[test]
fn a_pull_takes_a_finished_download_another_pull_keeps_locked() {
    let mut rng = Rng::new(seed("finished_download_kept_locked", 0xdead_10c4));
    let reg = FakeRegistry::start();
    let image = ImageSpec::new(&["app:1"])
        .layer(random_layer(&mut rng, "held", 300_000))
        .layer(random_layer(&mut rng, "free", 100_000))
        .build();
    reg.serve_image(PULL_NAME, "1", &image);
    let reference = reg.reference(PULL_NAME, "1");
    let s = Store::new();
    s.run(&["images"]);
    let (held, data) = blobs_of(&image).into_iter().find(|(d, _)| *d == image.layers[0].digest()).unwrap();
    let partial = partial_path(&s, &held);
    fs::create_dir_all(partial.parent().unwrap()).unwrap();
    fs::write(&partial, &data).unwrap();
    let lock = fs::OpenOptions::new().read(true).write(true).open(&partial).unwrap();
    lock.lock().unwrap();
    let mark = reg.requests().len();
    // `img` fails the test if the pull is still waiting after the watchdog.
    img_ok(&s, &pull_args(&reference), &reg);
    assert_stored(&s, &image, &reference);
    let reqs = since(&reg, mark);
    let gets = blob_gets(&reqs, PULL_NAME, &held);
    assert!(gets.is_empty(), "the held blob was fetched again: {} requests\n{}", gets.len(), reg.describe());
    drop(lock);
    s.assert_fsck_clean();
    s.run(&["images"]);
    s.assert_ingest_empty();
}

// Guards: a pull that runs out of space says so, stores nothing, keeps no
// partial download (the space is given back: a resume would fail the same
// way), and the store keeps working.
#[test]
fn a_pull_on_a_full_disk_gives_the_space_back() {
    let mut rng = Rng::new(seed("pull_on_a_full_disk", 0xd15c_f012));
    let reg = FakeRegistry::start();
    let big = ImageSpec::new(&["big:1"])
        .layer(random_layer(&mut rng, "small", 100_000))
        .layer(random_layer(&mut rng, "big", 8 << 20))
        .build();
    let small = ImageSpec::new(&["small:1"]).layer(random_layer(&mut rng, "other", 100_000)).build();
    reg.serve_image(PULL_NAME, "big", &big);
    reg.serve_image(PULL_NAME, "small", &small);
    let fsys = SmallFs::mount(6 << 20);
    let s = Store::at(&fsys.path.join("store"));
    s.run(&["images"]);
    let used = fsys.used();
    let reference = reg.reference(PULL_NAME, "big");
    let o = img(&s, &pull_args(&reference));
    let err = o.one_error_line();
    assert!(err.contains("no space left on device while"), "{err}");
    assert!(err.contains(&reference), "the error does not name {reference}: {err}");
    assert!(s.image_ids().is_empty());
    s.assert_fsck_clean();
    let left: Vec<String> = s.ingest_files().into_iter().filter(|f| f.starts_with("partial-")).collect();
    let big_layer = big.layers[1].digest();
    assert!(
        !left.contains(&format!("partial-{}", big_layer.hex())) && !s.has_blob(&big_layer),
        "the layer that did not fit is kept: {left:?}"
    );
    let now = fsys.used();
    assert!(now <= used + (512 << 10), "{used} bytes used before the pull, {now} after; files: {:?}", fsys.files());
    img_ok(&s, &pull_args(&reg.reference(PULL_NAME, "small")), &reg);
    assert_stored(&s, &small, &reg.reference(PULL_NAME, "small"));
    s.assert_fsck_clean();
}

// ---- 2. concurrent pulls of images sharing layers ----------------------------------

// Guards: two pulls started together of two images sharing two slowed
// layers, into one store: both succeed, every shared blob is downloaded once
// in total (one GET, complete, no Range), and the store is clean.
#[test]
fn concurrent_pulls_download_each_shared_blob_once() {
    let mut rng = Rng::new(seed("concurrent_pulls", 0x9011_0002));
    let shared = [random_layer(&mut rng, "shared-a", 600_000), random_layer(&mut rng, "shared-b", 300_000)];
    let images: Vec<Image> = ["a", "b"]
        .iter()
        .map(|n| {
            ImageSpec::new(&[&format!("{n}:1")])
                .label("name", n)
                .layer(shared[0].clone())
                .layer(shared[1].clone())
                .layer(random_layer(&mut rng, n, 100_000))
                .build()
        })
        .collect();
    let rounds = if long() { 20 } else { 4 };
    let mut waited = 0;
    for round in 0..rounds {
        let reg = FakeRegistry::start();
        let names = ["crash/a", "crash/b"];
        for (img, name) in images.iter().zip(names) {
            reg.serve_image(name, "1", img);
            for l in &img.layers {
                let pace = Fault::Paced { chunk: 32 * 1024, every: Duration::from_millis(10) };
                reg.fault_always(&FakeRegistry::blob_path(name, &l.digest()), pace);
            }
        }
        let s = Store::new();
        // The second pull starts up to 100 ms after the first.
        let offset = Duration::from_millis(rng.below(100));
        let refs: Vec<String> = names.iter().map(|n| reg.reference(n, "1")).collect();
        let outs: Vec<Out> = std::thread::scope(|sc| {
            let hs: Vec<_> = refs
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let s = &s;
                    sc.spawn(move || {
                        if i == 1 {
                            std::thread::sleep(offset);
                        }
                        // Not quiet: the progress shows who waited for whom.
                        img(s, &["pull", "--tls-verify=false", r])
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ctx = format!("round {round} (second pull {offset:?} later)");
        for (o, img) in outs.iter().zip(&images) {
            assert!(o.success(), "{ctx}: a pull failed\n{}\nrequests:\n{}", o.describe(), reg.describe());
            assert_eq!(o.out().trim(), img.hex(), "{ctx}");
        }
        if outs.iter().any(|o| o.stderr.contains("waiting for another img process downloading")) {
            waited += 1;
        }
        let reqs = reg.requests();
        for l in &shared {
            let d = l.digest();
            let gets: Vec<&Request> =
                names.iter().flat_map(|n| blob_gets(&reqs, n, &d)).filter(|r| r.body_sent > 0).collect();
            assert_eq!(gets.len(), 1, "{ctx}: shared blob {d} was downloaded {} times\n{}", gets.len(), reg.describe());
            assert!(gets[0].complete && gets[0].range_start().is_none(), "{ctx}\n{}", reg.describe());
        }
        for (img, r) in images.iter().zip(&refs) {
            assert_stored(&s, img, r);
        }
        s.assert_ingest_empty();
        s.assert_fsck_clean();
    }
    eprintln!("concurrent_pulls: {rounds} rounds, one pull waited for the other's download in {waited}");
    assert!(waited > 0, "in no round did one pull wait for the other's download of a shared blob");
}

// Guards: a pull waiting for another process's download of a shared blob
// takes the download over when that process is killed: it resumes the
// partial file with Range (nothing is downloaded twice from the start), and
// the killed pull's re-run fetches only its own blobs.
#[test]
fn a_pull_waiting_for_a_killed_pull_resumes_its_download() {
    use std::io::BufRead;
    let mut rng = Rng::new(seed("waiting_pull_takes_over", 0x9011_0006));
    let shared = random_layer(&mut rng, "shared", 1_000_000);
    let reg = FakeRegistry::start();
    let names = ["crash/a", "crash/b"];
    let images: Vec<Image> = names
        .iter()
        .map(|n| {
            ImageSpec::new(&[n]).label("name", n).layer(shared.clone()).layer(Layer::simple(n, Comp::Gzip)).build()
        })
        .collect();
    for (img, name) in images.iter().zip(names) {
        reg.serve_image(name, "1", img);
        let pace = Fault::Paced { chunk: 32 * 1024, every: Duration::from_millis(10) };
        reg.fault_always(&FakeRegistry::blob_path(name, &shared.digest()), pace);
    }
    let refs: Vec<String> = names.iter().map(|n| reg.reference(n, "1")).collect();
    let d = shared.digest();
    let s = Store::new();
    let first = command(&s, &pull_args(&refs[0])).spawn().expect("starting img");
    // The first pull is well into the shared blob.
    let t = Instant::now();
    while fs::metadata(partial_path(&s, &d)).map(|m| m.len()).unwrap_or(0) < 100_000 {
        assert!(t.elapsed() < WATCHDOG, "the first pull never started the shared blob\n{}", reg.describe());
        std::thread::sleep(Duration::from_millis(2));
    }
    // The second waits for it (it says so), then the first is killed.
    let args = ["pull", "--tls-verify=false", refs[1].as_str()];
    let mut second = command(&s, &args).spawn().expect("starting img");
    let mut err = std::io::BufReader::new(second.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = err.read_line(&mut line).unwrap();
        seen.push_str(&line);
        assert!(n > 0, "the second pull ended without waiting for the first\n{seen}\n{}", reg.describe());
        if line.contains("waiting for another img process downloading") {
            break;
        }
    }
    let reader = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = err.read_to_string(&mut rest);
        rest
    });
    let killed = kill_now(&pull_args(&refs[0]), first);
    assert!(!killed.success(), "the first pull ended before it was killed\n{}", killed.describe());
    let mut so = String::new();
    second.stdout.take().unwrap().read_to_string(&mut so).unwrap();
    let st = second.wait().unwrap();
    let rest = reader.join().unwrap();
    assert!(st.success(), "the second pull failed\n{seen}{rest}\n{}", reg.describe());
    assert_eq!(so.trim(), images[1].hex());
    let reqs = reg.requests();
    let gets: Vec<&Request> = names.iter().flat_map(|n| blob_gets(&reqs, n, &d)).collect();
    let ctx = || format!("GETs of the shared blob: {gets:#?}\n{}", reg.describe());
    assert_eq!(gets.len(), 2, "{}", ctx());
    assert!(!gets[0].complete && gets[0].range_start().is_none(), "{}", ctx());
    let from = gets[1].range_start().unwrap_or_else(|| panic!("the second pull started over\n{}", ctx()));
    assert!(from > 0 && from <= gets[0].body_sent, "{}", ctx());
    assert_eq!(gets[1].body_sent, shared.blob.len() as u64 - from, "{}", ctx());
    assert!(gets[1].complete, "{}", ctx());
    assert_stored(&s, &images[1], &refs[1]);
    assert_eq!(s.image_ids(), vec![images[1].hex().to_string()]);
    s.assert_fsck_clean();
    // The killed pull, again: the shared blob is there already.
    let mark = reg.requests().len();
    img_ok(&s, &pull_args(&refs[0]), &reg);
    assert!(blob_gets(&since(&reg, mark), names[0], &d).is_empty(), "{}", reg.describe());
    assert_stored(&s, &images[0], &refs[0]);
    s.assert_ingest_empty();
    s.assert_fsck_clean();
}

// Guards: pulls at once of the same image, whose layers the store has
// already (from another image) so that only the config and manifest are
// downloaded, started a few ms apart over many rounds: all succeed, even
// the ones that find the config downloaded by another pull that commits it
// meanwhile.
#[test]
fn concurrent_pulls_of_the_same_image_all_succeed() {
    let mut rng = Rng::new(seed("concurrent_pulls_same_image", 0x9011_0007));
    let layer = random_layer(&mut rng, "layer", 100_000);
    let with_label = |v: &str| ImageSpec::new(&["x:1"]).label("v", v).layer(layer.clone()).build();
    let (first, image) = (with_label("first"), with_label("second"));
    let reg = FakeRegistry::start();
    reg.serve_image("crash/first", "1", &first);
    reg.serve_image("crash/same", "1", &image);
    let s = Store::new();
    img_ok(&s, &pull_args(&reg.reference("crash/first", "1")), &reg);
    let r = reg.reference("crash/same", "1");
    let rounds = if long() { 200 } else { 40 };
    let mut failures = Vec::new();
    for round in 0..rounds {
        let offsets: Vec<Duration> = (0..3).map(|_| Duration::from_millis(rng.below(20))).collect();
        let outs: Vec<Out> = std::thread::scope(|sc| {
            let hs: Vec<_> = offsets
                .iter()
                .map(|o| {
                    let (s, r) = (&s, &r);
                    sc.spawn(move || {
                        std::thread::sleep(*o);
                        img(s, &pull_args(r))
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for o in outs.iter().filter(|o| !o.success()) {
            failures.push(format!("round {round} (starts {offsets:?}): {}", o.describe()));
        }
        assert_stored(&s, &image, &r);
        s.assert_ingest_empty();
        s.assert_fsck_clean();
        // Removing it deletes its config and manifest, not the shared layer.
        img_ok(&s, &["rmi", &r], &reg);
        assert!(!s.has_blob(&image.id) && s.has_blob(&layer.digest()));
    }
    assert!(
        failures.is_empty(),
        "{} of {} pulls failed (the config is {}):\n{}",
        failures.len(),
        3 * rounds,
        image.id,
        failures.iter().take(3).cloned().collect::<Vec<_>>().join("\n")
    );
}

// ---- 3. SIGKILL during push ---------------------------------------------------------

/// Every manifest PUT the registry saw was accepted: img never sent a
/// manifest before all its blobs were there.
fn assert_no_manifest_before_blobs(reg: &FakeRegistry, ctx: &str) {
    let bad: Vec<Request> = reg
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/manifests/") && r.status != 201)
        .collect();
    assert!(bad.is_empty(), "{ctx}: manifests refused by the registry: {bad:?}\n{}", reg.describe());
}

/// The registry's `name:tag`, if it exists, is a manifest whose blobs are
/// all there, with the bytes `image` has. Returns whether it exists.
fn registry_tag_complete(reg: &FakeRegistry, name: &str, tag: &str, image: &Image, ctx: &str) -> bool {
    let Some(m) = reg.manifest(name, tag) else { return false };
    assert!(m == image.manifest, "{ctx}: {name}:{tag} is another manifest: {}", String::from_utf8_lossy(&m));
    for (d, data) in blobs_of(image) {
        let got = reg.blob(name, &d);
        assert!(got.is_some(), "{ctx}: {name}:{tag} exists but its blob {d} does not\n{}", reg.describe());
        assert!(got.unwrap() == data, "{ctx}: blob {d} in the registry has other content");
    }
    true
}

// Guards: SIGKILL at seeded random moments of a slowed push (in one request
// per blob or in chunks) leaves the local store exactly as it was and
// clean, and the registry never with a tag pointing at missing blobs; the
// push re-run succeeds and uploads only the blobs the registry lacks.
#[test]
fn sigkill_during_push_leaves_the_store_alone_and_no_tag_without_blobs() {
    let mut rng = Rng::new(seed("sigkill_during_push", 0x9011_0003));
    let image = ImageSpec::new(&["app:1"])
        .layer(random_layer(&mut rng, "one", 700_000))
        .layer(random_layer(&mut rng, "two", 400_000))
        .layer(random_layer(&mut rng, "three", 200_000))
        .build();
    let s = Store::new();
    s.load("app.tar", &Archive::oci(&[&image]).tar());
    let before = s.snapshot();
    let name = "pushed/app";
    let push = |reg: &FakeRegistry, chunked: bool| -> Vec<String> {
        let mut a = vec!["push".to_string(), "--tls-verify=false".into(), "-q".into()];
        if chunked {
            a.extend(["--chunk-size".to_string(), "128k".into()]);
        }
        a.extend(["app:1".to_string(), reg.reference(name, "1")]);
        a
    };
    let slow_registry = || {
        let reg = FakeRegistry::start();
        reg.pace_uploads(32 * 1024, Duration::from_millis(10));
        reg
    };
    let dur = {
        let reg = slow_registry();
        let args = push(&reg, false);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let t = Instant::now();
        img_ok(&s, &args, &reg);
        let d = t.elapsed();
        assert!(registry_tag_complete(&reg, name, "1", &image, "calibration"), "the push left no tag");
        d
    };
    // 20 trials in the default run, 100 with IMG_TEST_LONG=1.
    let trials = if long() { 100 } else { 20 };
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    let mut patches = 0;
    for trial in 0..trials {
        let reg = slow_registry();
        let chunked = trial % 2 == 1;
        let args = push(&reg, chunked);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let delay = dur.mul_f64(rng.below(1100) as f64 / 1000.0);
        let ctx =
            format!("trial {trial} (kill after {delay:?} of a {dur:?} push{})", if chunked { ", chunked" } else { "" });
        let o = kill_after(&s, &args, delay);
        // The registry first, before img runs again.
        assert_no_manifest_before_blobs(&reg, &ctx);
        let tagged = registry_tag_complete(&reg, name, "1", &image, &ctx);
        assert!(!o.success() || tagged, "{ctx}: the push succeeded but left no tag");
        let present: Vec<Digest> =
            blobs_of(&image).into_iter().map(|(d, _)| d).filter(|d| reg.blob(name, d).is_some()).collect();
        // The local store: as it was, once the next command has cleaned up.
        assert_eq!(s.snapshot(), before, "{ctx}: the push changed the local store");
        s.assert_ingest_empty();
        s.assert_fsck_clean();
        *tally
            .entry(if tagged {
                "complete before the kill"
            } else if present.is_empty() {
                "killed before any blob was complete"
            } else {
                "killed with some blobs uploaded"
            })
            .or_default() += 1;

        let mark = reg.requests().len();
        img_ok(&s, &args, &reg);
        assert!(registry_tag_complete(&reg, name, "1", &image, &ctx), "{ctx}: the re-run left no tag");
        assert_no_manifest_before_blobs(&reg, &ctx);
        // Blobs the registry had were not sent again.
        let reqs = since(&reg, mark);
        let completions: Vec<String> = reqs
            .iter()
            .filter(|r| r.method == "PUT" && r.path.contains("/blobs/uploads/"))
            .filter_map(|r| r.target.split("digest=").nth(1).map(|d| d.replace("%3A", ":")))
            .collect();
        for d in &present {
            assert!(
                !completions.iter().any(|c| c == d.as_str()),
                "{ctx}: blob {d} was uploaded again although the registry had it\n{}",
                reg.describe()
            );
        }
        assert_eq!(s.snapshot(), before, "{ctx}: the push changed the local store");
        s.assert_ingest_empty();
        if chunked {
            patches += reqs.iter().filter(|r| r.method == "PATCH").count();
        }
    }
    assert!(patches > 0, "no chunked push sent a PATCH");
    s.assert_fsck_clean();
    eprintln!("sigkill_during_push: {trials} trials, push takes {dur:?}: {tally:?}");
    assert!(
        tally.get("killed with some blobs uploaded").copied().unwrap_or(0)
            + tally.get("killed before any blob was complete").copied().unwrap_or(0)
            > 0,
        "no trial killed a push in progress (a push takes {dur:?}): {tally:?}"
    );
}

// ---- 4. concurrency ---------------------------------------------------------------

/// Whether a failed command's stderr is the one race the mix allows: the
/// image named was removed (by rmi or prune) before the command resolved
/// it, which rmi, inspect and push report as `error: NAME: image not known`.
fn image_not_known_race(o: &Out, name: &str) -> bool {
    let allowed = matches!(o.cmd.split(' ').next(), Some("rmi" | "inspect" | "push"));
    allowed && matches!(o.code(), Some(c) if c != 0) && o.stderr.trim_end() == format!("error: {name}: image not known")
}

// Guards: 6 processes for ~10 s doing pull, rmi, images, inspect, prune -a -f
// and push on four images sharing a layer, in one store: no locking errors,
// only "image not known" races, a clean store whose every tag points at a
// complete image, and a registry whose every pushed tag has its blobs.
#[test]
fn concurrent_registry_commands_keep_the_store_consistent() {
    let mut rng = Rng::new(seed("concurrent_registry_commands", 0x9011_0004));
    let reg = FakeRegistry::start();
    let base = random_layer(&mut rng, "base", 300_000);
    let images: Vec<Image> = (0..4)
        .map(|i| {
            ImageSpec::new(&[&format!("c{i}:1")])
                .label("n", &i.to_string())
                .layer(base.clone())
                .layer(random_layer(&mut rng, &format!("c{i}"), 50_000))
                .build()
        })
        .collect();
    for (i, image) in images.iter().enumerate() {
        let name = format!("crash/c{i}");
        reg.serve_image(&name, "1", image);
        for l in &image.layers {
            let pace = Fault::Paced { chunk: 64 * 1024, every: Duration::from_millis(5) };
            reg.fault_always(&FakeRegistry::blob_path(&name, &l.digest()), pace);
        }
    }
    let local: Vec<String> = (0..4).map(|i| reg.reference(&format!("crash/c{i}"), "1")).collect();
    let pushed: Vec<String> = (0..4).map(|i| reg.reference(&format!("pushed/c{i}"), "1")).collect();
    let s = Store::new();
    img_ok(&s, &pull_args(&local[0]), &reg);
    // 10 s in the default run, 60 s with IMG_TEST_LONG=1.
    let secs = if long() { 60 } else { 10 };
    let deadline = Instant::now() + Duration::from_secs(secs);
    let worker_seeds: Vec<u64> = (0..6).map(|_| rng.next_u64()).collect();
    let results: Vec<(Out, String)> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..6usize)
            .map(|w| {
                let (s, local, pushed) = (&s, &local, &pushed);
                let mut rng = Rng::new(worker_seeds[w]);
                sc.spawn(move || {
                    let mut outs = Vec::new();
                    while Instant::now() < deadline {
                        let i = rng.below(4) as usize;
                        let name = local[i].as_str();
                        let pull = pull_args(name);
                        let args: Vec<&str> = match (w, rng.below(3)) {
                            (0 | 1, 0 | 1) => pull,
                            (0, _) => vec!["images"],
                            (1, _) => vec!["rmi", name],
                            (2, 0) => vec!["images", "--format", "json"],
                            (2, _) => vec!["inspect", name],
                            (3, 0) => vec!["images", "--format", "json"],
                            (3, _) => vec!["rmi", name],
                            (4, _) => vec!["prune", "-a", "-f"],
                            _ => vec!["push", "--tls-verify=false", "-q", name, pushed[i].as_str()],
                        };
                        outs.push((img(s, &args), name.to_string()));
                        if w == 4 {
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
    let mut by_cmd: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (o, name) in &results {
        let cmd = o.cmd.split(' ').next().unwrap().to_string();
        let e = by_cmd.entry(cmd).or_default();
        if o.success() {
            e.0 += 1;
            if o.cmd.contains("--format json") {
                if let Err(err) = serde_json::from_slice::<Value>(&o.stdout) {
                    bad.push(format!("invalid JSON ({err})\n{}", o.describe()));
                }
            }
        } else if image_not_known_race(o, name) {
            e.1 += 1;
        } else {
            bad.push(o.describe());
        }
    }
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for b in &bad {
        let line = b.lines().find(|l| l.starts_with("error:")).unwrap_or("(no error line)");
        *kinds.entry(line.to_string()).or_default() += 1;
    }
    eprintln!("concurrent_registry_commands: (succeeded, image not known) by command: {by_cmd:?}");
    assert!(
        bad.is_empty(),
        "{} of {} commands failed badly:\n{}\nfirst ones:\n{}\nrequests: {}",
        bad.len(),
        results.len(),
        kinds.iter().map(|(k, n)| format!("{n:5} {k}")).collect::<Vec<_>>().join("\n"),
        bad.iter().take(5).cloned().collect::<Vec<_>>().join("\n\n"),
        reg.requests().len()
    );
    for c in ["pull", "rmi", "images", "inspect", "prune", "push"] {
        assert!(by_cmd.get(c).is_some_and(|n| n.0 > 0), "no `{c}` succeeded: {by_cmd:?}");
    }
    // The store: clean, nothing left behind, every tag a complete image.
    s.assert_ingest_empty();
    s.assert_fsck_clean();
    let db = s.db();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM tags WHERE image_id NOT IN (SELECT id FROM images)"), 0);
    assert_eq!(count("SELECT count(*) FROM pragma_foreign_key_check"), 0);
    drop(db);
    for t in s.tags() {
        let i = local.iter().position(|l| l == &t).unwrap_or_else(|| panic!("unexpected tag {t}"));
        assert_stored(&s, &images[i], &t);
        s.inspect(&t);
    }
    // The registry: every pushed tag has all its blobs.
    assert_no_manifest_before_blobs(&reg, "the mix");
    for (i, image) in images.iter().enumerate() {
        registry_tag_complete(&reg, &format!("pushed/c{i}"), "1", image, "the mix");
    }
    // And everything still works in that store.
    for (r, image) in local.iter().zip(&images) {
        let out = img_ok(&s, &pull_args(r), &reg);
        assert_eq!(out.trim(), image.hex());
        assert_stored(&s, image, r);
    }
    s.assert_ingest_empty();
    s.assert_fsck_clean();
}
