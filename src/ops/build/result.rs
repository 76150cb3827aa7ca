//! The result of a build: the final stage as an image (config, manifest,
//! the layers it uses), stored with the layers kept for the cache and the
//! cache's records.

use super::stage::Stage;
use super::{build, BuildOptions, Builder, PROXY_ARGS};
use crate::digest::Digest;
use crate::image;
use crate::store::{StagedBlob, Store};
use anyhow::Result;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::Path;

/// What a build made, not yet stored.
pub struct Built {
    pub manifest_media_type: &'static str,
    pub manifest: Vec<u8>,
    pub config: Vec<u8>,
    pub layers: Vec<(Digest, u64)>,
    /// The layers made by this build, to commit with it.
    pub staged: Vec<StagedBlob>,
    /// Build arguments given but not used.
    pub unused_args: Vec<String>,
    /// Layers of earlier stages, kept for the cache (unreferenced blobs).
    pub extra: Vec<StagedBlob>,
    /// What each step made, for the cache.
    pub cache: Vec<crate::store::index::CacheEntry>,
}

/// Builds the image and stores it under `tags`; returns its ID.
pub fn build_and_store(
    kernel: &dyn img_sys::Kernel,
    store: &mut Store,
    opts: &BuildOptions,
    tags: &[crate::store::index::TagName],
    log: &(dyn Fn(&str) + Sync),
) -> Result<Digest> {
    let built = build(kernel, store, opts, log).map_err(|e| {
        let full = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>().is_some_and(|io| {
                io.kind() == std::io::ErrorKind::StorageFull || io.kind() == std::io::ErrorKind::QuotaExceeded
            }) || matches!(c.downcast_ref::<crate::store::StoreError>(), Some(crate::store::StoreError::NoSpace { .. }))
        });
        if full {
            e.context(format!(
                "no space left on device while building {} (the store is at {}); nothing was stored; free some space (img prune removes unused blobs) or use a store on a larger disk (--root)",
                opts.context.display(),
                store.root().display()
            ))
        } else {
            e
        }
    })?;
    // A store with a max-size makes room for the layers made (already
    // staged in ingest/) before they are committed, or refuses, storing
    // nothing.
    let sizes: Vec<u64> = built.staged.iter().chain(&built.extra).map(StagedBlob::size).collect();
    crate::ops::evict::make_room_for_staged(
        store,
        &sizes,
        &format!("building {}", opts.context.display()),
        &[],
        &|l: &str| log(l),
    )?;
    let parsed = image::parse_config("the built config", &built.config)?;
    for a in &built.unused_args {
        log(&format!("warning: the build argument {a} was not used"));
    }
    let mut staged = built.staged;
    let mut refs: Vec<&mut StagedBlob> = staged.iter_mut().collect();
    let id = crate::ops::store_made_image(
        store,
        &crate::ops::MadeImage {
            manifest_media_type: built.manifest_media_type,
            manifest: &built.manifest,
            config: &built.config,
            parsed: &parsed,
            layers: &built.layers,
        },
        &mut refs,
        tags,
    )?;
    // The earlier stages' layers stay as unreferenced blobs (img prune
    // removes them), so that the cache can give them again.
    let mut extra = built.extra;
    if !extra.is_empty() {
        let mut refs: Vec<&mut StagedBlob> = extra.iter_mut().collect();
        let done = store.commit_blobs(&mut refs)?;
        store.index_mut().resolve_pending(&done, &[])?;
    }
    store.index_mut().cache_put(&built.cache)?;
    crate::ops::evict::release_room(store);
    Ok(id)
}

impl Builder<'_> {
    pub(super) fn finish(mut self, mut st: Stage, df_path: &Path) -> Result<Built> {
        let _ = df_path;
        if let Some(u) = st.squash_upper.take() {
            let l = self.write_layer(&u)?;
            st.layers.push(l);
            // The last entry of the history stands for the squashed layer.
            if let Some(last) = st.config.get_mut("history").and_then(Value::as_array_mut).and_then(|h| h.last_mut()) {
                if let Some(o) = last.as_object_mut() {
                    o.remove("empty_layer");
                }
            }
        }
        let docker = self.opts.docker_format;
        let mut config = st.config;
        let created = st.last_created.clone().unwrap_or_else(|| self.now.clone());
        config.insert("created".into(), json!(created));
        if docker {
            // docker's own fields describe the container a build ran; none here.
            config.remove("container");
        }
        let diff_ids: Vec<Value> = st.layers.iter().map(|l| json!(l.diff_id.as_str())).collect();
        config.insert("rootfs".into(), json!({"type": "layers", "diff_ids": diff_ids}));
        let config_bytes = serde_json::to_vec(&Value::Object(config))?;
        let config_digest = Digest::of_bytes(&config_bytes);
        let mut layers = Vec::new();
        for l in &st.layers {
            layers.push((crate::ops::commit::convert_layer_type(&l.media_type, docker)?, l.digest.clone(), l.size));
        }
        let (manifest_mt, config_mt) = if docker {
            (image::DOCKER_MANIFEST, image::DOCKER_CONFIG)
        } else {
            (image::OCI_MANIFEST, image::OCI_CONFIG)
        };
        let refs: Vec<(&str, &Digest, u64)> = layers.iter().map(|(m, d, s)| (m.as_str(), d, *s)).collect();
        let manifest =
            image::build_manifest(manifest_mt, (config_mt, &config_digest, config_bytes.len() as u64), &refs);
        // The staged layers the final image uses; the others go.
        let used: HashSet<usize> = st.layers.iter().filter_map(|l| l.staged).collect();
        // Layers of other stages that steps made are kept for the cache.
        let recorded: HashSet<usize> = self.records.iter().filter_map(|(_, i)| *i).collect();
        let mut staged = Vec::new();
        let mut extra = Vec::new();
        for (i, s) in std::mem::take(&mut self.staged).into_iter().enumerate() {
            if used.contains(&i) {
                staged.push(s);
            } else if recorded.contains(&i) {
                extra.push(s);
            }
        }
        let cache = if self.opts.squash { Vec::new() } else { self.records.iter().map(|(e, _)| e.clone()).collect() };
        let unused_args = unused_args(&self.opts.build_args, &self.used_args);
        Ok(Built {
            manifest_media_type: manifest_mt,
            manifest,
            config: config_bytes,
            layers: layers.into_iter().map(|(_, d, s)| (d, s)).collect(),
            staged,
            unused_args,
            extra,
            cache,
        })
    }
}

/// The build arguments given but used by no ARG nor RUN (the proxy
/// variables are never reported), sorted, each once.
fn unused_args(given: &[(String, String)], used: &HashSet<String>) -> Vec<String> {
    let mut unused: Vec<String> = given
        .iter()
        .map(|(k, _)| k.clone())
        .filter(|k| !used.contains(k) && !PROXY_ARGS.contains(&k.as_str()))
        .collect();
    unused.sort();
    unused.dedup();
    unused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_build_args_are_reported_once_and_sorted_but_not_proxies() {
        let given: Vec<(String, String)> = [("Z", "1"), ("A", "1"), ("USED", "1"), ("Z", "2"), ("http_proxy", "p")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let used: HashSet<String> = ["USED".to_string()].into();
        assert_eq!(unused_args(&given, &used), vec!["A".to_string(), "Z".to_string()]);
        assert!(unused_args(&[], &used).is_empty());
    }
}
