//! Layer bytes for the image filesystem, from the blobs in the store.
//!
//! An uncompressed layer is read in place. A compressed one is read through
//! a decoder kept open at the last position, so that a file read from start
//! to end decompresses the layer once up to that file; a read behind the
//! decoder starts it again from the beginning of the layer.

use crate::store::Compression;
use img_fuse::BlobSource;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Mutex;

type Decoder = Box<dyn Read + Send>;

struct Cursor {
    pos: u64,
    reader: Decoder,
}

enum LayerData {
    Plain(File),
    Compressed { path: PathBuf, compression: Compression, cursor: Mutex<Option<Cursor>> },
}

pub struct StoreSource {
    layers: Vec<LayerData>,
}

fn decoder(path: &PathBuf, c: Compression) -> io::Result<Decoder> {
    let r = BufReader::with_capacity(256 * 1024, File::open(path)?);
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(r)?;
            d.window_log_max(27)?;
            Box::new(d)
        }
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(r)),
        Compression::Bzip2 => return Err(io::Error::other("bzip2 layers are not supported")),
    })
}

impl StoreSource {
    /// Opens the layer blobs at `paths`, bottom first.
    pub fn open(paths: &[PathBuf]) -> io::Result<StoreSource> {
        let mut layers = Vec::new();
        for p in paths {
            let mut f = BufReader::new(File::open(p)?);
            let c = Compression::sniff(f.fill_buf()?);
            layers.push(match c {
                Compression::None => LayerData::Plain(f.into_inner()),
                c => LayerData::Compressed { path: p.clone(), compression: c, cursor: Mutex::new(None) },
            });
        }
        Ok(StoreSource { layers })
    }
}

impl BlobSource for StoreSource {
    fn read_at(&self, layer: usize, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        match self.layers.get(layer) {
            None => Err(io::Error::other(format!("no layer {layer}"))),
            Some(LayerData::Plain(f)) => f.read_at(buf, offset),
            Some(LayerData::Compressed { path, compression, cursor }) => {
                let mut guard = cursor.lock().map_err(|_| io::Error::other("layer reader poisoned"))?;
                let restart = guard.as_ref().is_none_or(|c| c.pos > offset);
                if restart {
                    *guard = Some(Cursor { pos: 0, reader: decoder(path, *compression)? });
                }
                let Some(c) = guard.as_mut() else { return Err(io::Error::other("no layer reader")) };
                let res = (|| {
                    let skip = offset - c.pos;
                    let skipped = io::copy(&mut (&mut c.reader).take(skip), &mut io::sink())?;
                    c.pos += skipped;
                    if skipped < skip {
                        return Ok(0);
                    }
                    let n = c.reader.read(buf)?;
                    c.pos += n as u64;
                    Ok(n)
                })();
                if res.is_err() {
                    // The decoder's position is unknown now: start afresh next time.
                    *guard = None;
                }
                res
            }
        }
    }
}
