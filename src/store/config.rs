//! The store's settings, `ROOT/config.toml`, read by every command that
//! adds data or moves it over the network. Absent file or key: no limit.
//!
//! ```toml
//! max-size = "2G"          # the most the store may hold (blobs, indexes, lazy caches)
//! high-watermark = 85      # percent of max-size at which images are evicted ...
//! low-watermark = 80       # ... down to this percent, least recently used first
//! limit-rate = "1M"        # bytes per second for pulls, pushes, copies and lazy mounts
//! ```
//!
//! Sizes are a number of bytes with an optional `k`, `m`, `g` or `t`
//! suffix (powers of 1024, `KiB`/`KB` spellings too), or a bare integer.

use std::path::Path;

use serde::Deserialize;

/// Why a size or the config file is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid size {0:?}: use a number of bytes with an optional k, m, g or t suffix, like 500m")]
    Size(String),
    #[error("reading store config {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("store config {path}: {message}; fix or remove the file")]
    Parse { path: String, message: String },
}

/// The store's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// The most bytes the store may hold; `None`: no limit.
    pub max_size: Option<u64>,
    /// Percent of `max_size` above which images are evicted.
    pub high_watermark: u8,
    /// Percent of `max_size` eviction brings the store down to.
    pub low_watermark: u8,
    /// Bytes per second for network transfers; `None`: no cap.
    pub limit_rate: Option<u64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { max_size: None, high_watermark: 85, low_watermark: 80, limit_rate: None }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Raw {
    max_size: Option<SizeValue>,
    high_watermark: Option<u8>,
    low_watermark: Option<u8>,
    limit_rate: Option<SizeValue>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Int(u64),
    Text(String),
}

impl SizeValue {
    fn bytes(self) -> Result<u64, ConfigError> {
        match self {
            SizeValue::Int(n) if n > 0 => Ok(n),
            SizeValue::Int(n) => Err(ConfigError::Size(n.to_string())),
            SizeValue::Text(s) => parse_size(&s),
        }
    }
}

impl StoreConfig {
    /// Reads the config at `path`; a missing file is the default.
    pub fn load(path: &Path) -> Result<StoreConfig, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(StoreConfig::default()),
            Err(source) => return Err(ConfigError::Read { path: path.display().to_string(), source }),
        };
        StoreConfig::parse(&text).map_err(|message| ConfigError::Parse { path: path.display().to_string(), message })
    }

    /// Parses the text of a config file.
    pub fn parse(text: &str) -> Result<StoreConfig, String> {
        let raw: Raw = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let mut c = StoreConfig::default();
        c.max_size = raw.max_size.map(SizeValue::bytes).transpose().map_err(|e| format!("max-size: {e}"))?;
        c.limit_rate = raw.limit_rate.map(SizeValue::bytes).transpose().map_err(|e| format!("limit-rate: {e}"))?;
        if let Some(h) = raw.high_watermark {
            c.high_watermark = h;
        }
        if let Some(l) = raw.low_watermark {
            c.low_watermark = l;
        }
        if c.high_watermark == 0 || c.high_watermark > 100 {
            return Err(format!("high-watermark {} is not a percent from 1 to 100", c.high_watermark));
        }
        if c.low_watermark > c.high_watermark {
            return Err(format!(
                "low-watermark {} is above high-watermark {}: eviction must bring the store below where it starts",
                c.low_watermark, c.high_watermark
            ));
        }
        Ok(c)
    }

    /// The size above which eviction starts, if there is a limit.
    pub fn high_bytes(&self) -> Option<u64> {
        self.max_size.map(|m| m / 100 * u64::from(self.high_watermark) + m % 100 * u64::from(self.high_watermark) / 100)
    }

    /// The size eviction brings the store down to, if there is a limit.
    pub fn low_bytes(&self) -> Option<u64> {
        self.max_size.map(|m| m / 100 * u64::from(self.low_watermark) + m % 100 * u64::from(self.low_watermark) / 100)
    }
}

/// Parses a size: bytes, with an optional `k`, `m`, `g` or `t` suffix
/// (powers of 1024; `kb`, `kib`, `mb`, ... too). Zero is refused.
pub fn parse_size(s: &str) -> Result<u64, ConfigError> {
    let err = || ConfigError::Size(s.to_string());
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix("ib").or_else(|| t.strip_suffix('b')).unwrap_or(&t);
    let (num, shift) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        Some('t') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let num = num.trim();
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let n: u64 = num.parse().map_err(|_| err())?;
    let v = n.checked_mul(1u64 << shift).ok_or_else(err)?;
    if v == 0 {
        return Err(err());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_and_without_suffixes() {
        for (s, v) in [
            ("1", 1),
            ("5m", 5 << 20),
            ("5M", 5 << 20),
            ("5MB", 5 << 20),
            ("5MiB", 5 << 20),
            ("2g", 2 << 30),
            ("1t", 1 << 40),
            (" 10k ", 10 << 10),
            ("100b", 100),
        ] {
            assert_eq!(parse_size(s).unwrap(), v, "{s}");
        }
        for s in ["", "0", "0m", "-1", "1.5m", "m", "5x", "99999999999999999999", "16777216t"] {
            assert!(parse_size(s).is_err(), "{s:?} should be refused");
        }
    }

    #[test]
    fn config_reads_keys_and_refuses_bad_ones() {
        let c = StoreConfig::parse("max-size = \"1G\"\nlimit-rate = 1000\nlow-watermark = 50\n").unwrap();
        assert_eq!(c.max_size, Some(1 << 30));
        assert_eq!(c.limit_rate, Some(1000));
        assert_eq!((c.high_watermark, c.low_watermark), (85, 50));
        assert_eq!(c.high_bytes(), Some((1u64 << 30) * 85 / 100));
        assert_eq!(StoreConfig::parse("").unwrap(), StoreConfig::default());
        assert!(StoreConfig::parse("max-size = \"lots\"").unwrap_err().contains("max-size"));
        assert!(StoreConfig::parse("high-watermark = 101").is_err());
        assert!(StoreConfig::parse("high-watermark = 50\nlow-watermark = 60").is_err());
        assert!(StoreConfig::parse("maxsize = 1").is_err());
    }

    #[test]
    fn a_missing_config_is_the_default() {
        let d = crate::testdir::TestDir::new("store-config");
        assert_eq!(StoreConfig::load(&d.join("config.toml")).unwrap(), StoreConfig::default());
    }

    proptest::proptest! {
        #[test]
        fn parse_size_never_panics(s in ".{0,24}") {
            let _ = parse_size(&s);
        }

        #[test]
        fn watermark_bytes_never_overflow(m in 1u64.., h in 1u8..=100, l in 0u8..=100) {
            let c = StoreConfig { max_size: Some(m), high_watermark: h, low_watermark: l.min(h), limit_rate: None };
            proptest::prop_assert!(c.high_bytes().unwrap() <= m);
            proptest::prop_assert!(c.low_bytes().unwrap() <= c.high_bytes().unwrap());
        }
    }
}
