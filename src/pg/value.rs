//! Parameters going to the server and rows coming back, both in text
//! format (bytea parameters go in binary, rows' bytea comes back as hex).

use super::error::PgError;
use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::DataRowBody;

/// A statement parameter (`$1`, `$2`, ...). Text, integers and booleans
/// go as text with their type left for the server to infer from the
/// statement; bytes go as `bytea`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param<'a> {
    Null,
    Text(&'a str),
    Int(i64),
    Bool(bool),
    Bytes(&'a [u8]),
}

impl Param<'_> {
    /// The type the statement is told (0: the server infers it).
    pub(super) fn type_oid(&self) -> u32 {
        match self {
            Param::Bytes(_) => 17, // bytea
            _ => 0,
        }
    }

    /// 0 text, 1 binary.
    pub(super) fn format(&self) -> i16 {
        match self {
            Param::Bytes(_) => 1,
            _ => 0,
        }
    }

    /// Appends the value's bytes; false for NULL.
    pub(super) fn write(&self, out: &mut BytesMut) -> bool {
        match self {
            Param::Null => return false,
            Param::Text(s) => out.extend_from_slice(s.as_bytes()),
            Param::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
            Param::Bool(b) => out.extend_from_slice(if *b { b"t" } else { b"f" }),
            Param::Bytes(b) => out.extend_from_slice(b),
        }
        true
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(s: &'a str) -> Self {
        Param::Text(s)
    }
}

impl<'a> From<&'a String> for Param<'a> {
    fn from(s: &'a String) -> Self {
        Param::Text(s)
    }
}

impl From<i64> for Param<'_> {
    fn from(i: i64) -> Self {
        Param::Int(i)
    }
}

impl From<i32> for Param<'_> {
    fn from(i: i32) -> Self {
        Param::Int(i.into())
    }
}

impl From<u32> for Param<'_> {
    fn from(i: u32) -> Self {
        Param::Int(i.into())
    }
}

/// As `i64`: values over `i64::MAX` wrap to negative numbers (sizes and
/// counts never get there).
impl From<u64> for Param<'_> {
    fn from(i: u64) -> Self {
        Param::Int(i as i64)
    }
}

impl From<bool> for Param<'_> {
    fn from(b: bool) -> Self {
        Param::Bool(b)
    }
}

impl<'a> From<&'a [u8]> for Param<'a> {
    fn from(b: &'a [u8]) -> Self {
        Param::Bytes(b)
    }
}

impl<'a> From<&'a Vec<u8>> for Param<'a> {
    fn from(b: &'a Vec<u8>) -> Self {
        Param::Bytes(b)
    }
}

impl<'a, T: Into<Param<'a>>> From<Option<T>> for Param<'a> {
    fn from(o: Option<T>) -> Self {
        match o {
            Some(v) => v.into(),
            None => Param::Null,
        }
    }
}

/// One row of a result, its columns in text format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    cols: Vec<Option<String>>,
}

impl Row {
    /// Checks and copies a DataRow: every value must be UTF-8.
    pub(super) fn from_body(body: &DataRowBody) -> Result<Row, String> {
        let buf = body.buffer();
        let mut ranges = body.ranges();
        let mut cols = Vec::new();
        loop {
            match ranges.next() {
                Ok(Some(None)) => cols.push(None),
                Ok(Some(Some(r))) => {
                    let b = buf.get(r).ok_or("a column past the end of its row")?;
                    let s = std::str::from_utf8(b).map_err(|_| "a column that is not UTF-8")?;
                    cols.push(Some(s.to_string()));
                }
                Ok(None) => break,
                Err(e) => return Err(format!("a row that does not add up: {e}")),
            }
        }
        Ok(Row { cols })
    }

    /// The number of columns.
    pub fn len(&self) -> usize {
        self.cols.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cols.is_empty()
    }

    /// Column `i` as text; `None` for NULL or a column that is not there.
    pub fn text(&self, i: usize) -> Option<&str> {
        self.cols.get(i).and_then(|c| c.as_deref())
    }

    /// Column `i` as text; NULL is an error.
    pub fn str(&self, i: usize) -> Result<&str, PgError> {
        match self.cols.get(i) {
            Some(Some(s)) => Ok(s),
            Some(None) => Err(PgError::value(format!(
                "postgres row: column {i} is NULL where a value was expected: check the query"
            ))),
            None => Err(PgError::value(format!(
                "postgres row: there is no column {i} (the row has {}): check the query",
                self.cols.len()
            ))),
        }
    }

    /// Column `i` as an integer (int2, int4, int8, or text that is one).
    pub fn i64(&self, i: usize) -> Result<i64, PgError> {
        let s = self.str(i)?;
        s.parse().map_err(|_| PgError::value(format!("postgres row: column {i} ({s:.40}) is not an integer")))
    }

    /// Column `i` as a boolean (`t` or `f`).
    pub fn bool(&self, i: usize) -> Result<bool, PgError> {
        match self.str(i)? {
            "t" => Ok(true),
            "f" => Ok(false),
            s => Err(PgError::value(format!("postgres row: column {i} ({s:.40}) is not a boolean"))),
        }
    }

    /// Column `i` as bytes: a bytea in hex output format (`\x0a1b`).
    pub fn bytes(&self, i: usize) -> Result<Vec<u8>, PgError> {
        let s = self.str(i)?;
        unhex(s).ok_or_else(|| {
            PgError::value(format!(
                "postgres row: column {i} is not a bytea in hex format: check that the column \
                 is bytea and bytea_output is hex"
            ))
        })
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let h = s.strip_prefix("\\x")?.as_bytes();
    if h.len() % 2 != 0 {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    h.chunks_exact(2).map(|p| Some(nib(p[0])? << 4 | nib(p[1])?)).collect()
}

#[cfg(test)]
pub(super) fn row(cols: &[Option<&str>]) -> Row {
    Row { cols: cols.iter().map(|c| c.map(str::to_string)).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params() {
        let s = String::from("x");
        let v = vec![1u8, 2];
        let cases: Vec<(Param, Option<&[u8]>)> = vec![
            ("a".into(), Some(b"a")),
            ((&s).into(), Some(b"x")),
            ((-5i64).into(), Some(b"-5")),
            (7.into(), Some(b"7")),
            ((u64::MAX).into(), Some(b"-1")),
            (true.into(), Some(b"t")),
            (false.into(), Some(b"f")),
            ((&v).into(), Some(&[1, 2])),
            ((&v[..]).into(), Some(&[1, 2])),
            (None::<&str>.into(), None),
            (Some(3i64).into(), Some(b"3")),
            (Param::Null, None),
        ];
        for (p, want) in cases {
            let mut out = BytesMut::new();
            let some = p.write(&mut out);
            assert_eq!(some.then_some(&out[..]), want, "{p:?}");
        }
        assert_eq!(Param::Bytes(b"").type_oid(), 17);
        assert_eq!(Param::Bytes(b"").format(), 1);
        assert_eq!(Param::Text("").format(), 0);
    }

    #[test]
    fn row_values() {
        let r = row(&[Some("12"), None, Some("t"), Some("f"), Some("\\x00ff"), Some("x")]);
        assert_eq!(r.len(), 6);
        assert_eq!(r.i64(0).unwrap(), 12);
        assert_eq!(r.text(1), None);
        assert!(r.str(1).unwrap_err().to_string().contains("NULL"));
        assert!(r.str(9).unwrap_err().to_string().contains("no column 9"));
        assert!(r.bool(2).unwrap());
        assert!(!r.bool(3).unwrap());
        assert_eq!(r.bytes(4).unwrap(), vec![0, 255]);
        assert!(r.i64(5).is_err());
        assert!(r.bool(5).is_err());
        assert!(r.bytes(5).is_err());
        for bad in ["\\x0", "\\xzz", "00", "\\x0g"] {
            assert_eq!(unhex(bad), None, "{bad}");
        }
        assert_eq!(unhex("\\x").unwrap(), Vec::<u8>::new());
        assert_eq!(unhex("\\xAbCd").unwrap(), vec![0xab, 0xcd]);
    }
}
