//! Reading a layer tar into the entries the image filesystem merges: each
//! file's data is found by its offset in the uncompressed stream, so it can
//! later be read without unpacking anything.

use crate::archive::layer::{classify, clean_entry_path, EntryKind};
use img_fuse::{DataRef, Entry, Kind, Layer};
use std::io::Read;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("layer {layer}: entry {name:?}: {msg}")]
    Entry { layer: String, name: String, msg: String },
    #[error("layer {layer}: {source}")]
    Read { layer: String, source: std::io::Error },
}

/// Largest xattr value kept (the kernel's own limit is 64 KiB).
const MAX_XATTR: usize = 64 << 10;

/// Scans the uncompressed tar stream of layer number `index` (`label` names
/// it in errors).
pub fn scan(r: impl Read, index: usize, label: &str) -> Result<Layer, ScanError> {
    let mut out = Layer::default();
    let mut ar = tar::Archive::new(r);
    let read_err = |e| ScanError::Read { layer: label.to_string(), source: e };
    for e in ar.entries().map_err(read_err)? {
        let mut e = e.map_err(read_err)?;
        let raw = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let err = |msg: &str| ScanError::Entry { layer: label.to_string(), name: raw.clone(), msg: msg.to_string() };
        let path = clean_entry_path(&raw).map_err(err)?.unwrap_or_default();
        match classify(&path).map_err(err)? {
            EntryKind::Whiteout(t) => {
                out.whiteouts.push(t.into_bytes());
                continue;
            }
            EntryKind::Opaque(d) => {
                out.opaque.push(d.into_bytes());
                continue;
            }
            EntryKind::Normal => {}
        }
        let h = e.header().clone();
        let mut mtime = (h.mtime().unwrap_or(0) as i64, 0u32);
        let mut xattrs = Vec::new();
        if let Ok(Some(exts)) = e.pax_extensions() {
            for ext in exts.flatten() {
                let Ok(k) = ext.key() else { continue };
                if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
                    if ext.value_bytes().len() <= MAX_XATTR {
                        xattrs.push((name.as_bytes().to_vec(), ext.value_bytes().to_vec()));
                    }
                } else if k == "mtime" {
                    if let Some(t) = ext.value().ok().and_then(parse_pax_time) {
                        mtime = t;
                    }
                }
            }
        }
        let link = || e.link_name_bytes().map(|b| b.into_owned()).unwrap_or_default();
        let t = h.entry_type();
        let kind = if t.is_dir() {
            Kind::Dir
        } else if t.is_symlink() {
            Kind::Symlink(link())
        } else if t.is_hard_link() {
            let target = String::from_utf8_lossy(&link()).into_owned();
            match clean_entry_path(&target) {
                Ok(Some(t)) => Kind::HardLink(t.into_bytes()),
                _ => return Err(err("a hard link that leaves the root filesystem; refusing the layer")),
            }
        } else if t.is_fifo() {
            Kind::Fifo
        } else if t.is_character_special() || t.is_block_special() {
            let major = h.device_major().ok().flatten().unwrap_or(0);
            let minor = h.device_minor().ok().flatten().unwrap_or(0);
            if t.is_character_special() {
                Kind::Char { major, minor }
            } else {
                Kind::Block { major, minor }
            }
        } else if t.is_gnu_sparse() {
            return Err(err("a sparse file (GNU sparse entry), which img mount cannot serve yet; use img export"));
        } else if t.is_file() || t == tar::EntryType::Continuous {
            Kind::File(DataRef::plain(index, e.raw_file_position(), e.size()))
        } else {
            // PAX and GNU meta entries are consumed by the tar reader;
            // anything else (sockets, unknown types) is skipped, as tar does.
            continue;
        };
        if path.is_empty() && kind != Kind::Dir {
            return Err(err("the root must be a directory"));
        }
        out.entries.push(Entry {
            path: path.into_bytes(),
            kind,
            mode: h.mode().unwrap_or(0o644) & 0o7777,
            uid: h.uid().unwrap_or(0) as u32,
            gid: h.gid().unwrap_or(0) as u32,
            mtime,
            xattrs,
        });
        // Skip the data without reading it into memory.
        std::io::copy(&mut e, &mut std::io::sink()).map_err(read_err)?;
    }
    Ok(out)
}

/// A PAX time (`1700000000.123456789`).
fn parse_pax_time(s: &str) -> Option<(i64, u32)> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos = if digits.is_empty() { 0 } else { format!("{digits:0<9}").parse().ok()? };
    Some((secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(parse_pax_time("12"), Some((12, 0)));
        assert_eq!(parse_pax_time("x"), None);
    }

    #[test]
    fn offsets_point_at_file_data() {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8], mode: u32| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_mtime(7);
            // Names written as given (the builder refuses absolute ones).
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, data).unwrap();
        };
        add("a/one", b"first file", 0o644);
        add("./a/.wh.gone", b"", 0o644);
        add("b/.wh..wh..opq", b"", 0o644);
        add("/abs/two", b"second", 0o4755);
        let data = b.into_inner().unwrap();
        let l = scan(&data[..], 3, "test").unwrap();
        assert_eq!(l.whiteouts, vec![b"a/gone".to_vec()]);
        assert_eq!(l.opaque, vec![b"b".to_vec()]);
        assert_eq!(l.entries.len(), 2);
        for (e, want) in l.entries.iter().zip([&b"first file"[..], b"second"]) {
            let Kind::File(d) = &e.kind else { panic!("not a file") };
            assert_eq!(d.layer, 3);
            assert_eq!(&data[d.offset as usize..(d.offset + d.size) as usize], want);
        }
        assert_eq!(l.entries[1].path, b"abs/two");
        assert_eq!(l.entries[1].mode, 0o4755);
    }

    #[test]
    fn escaping_names_and_links_are_refused() {
        for (name, link) in [("../x", None), ("ok", Some("../../etc/passwd"))] {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_size(0);
            match link {
                Some(l) => {
                    h.set_entry_type(tar::EntryType::Link);
                    b.append_link(&mut h, name, l).unwrap();
                }
                None => {
                    // The builder refuses `..`; write the name into the header by hand.
                    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                    h.set_cksum();
                    b.append(&h, &[][..]).unwrap();
                }
            }
            let data = b.into_inner().unwrap();
            let e = scan(&data[..], 0, "bad").unwrap_err().to_string();
            assert!(e.contains("leaves the root"), "{e}");
        }
    }
}
