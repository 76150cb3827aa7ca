//! The few XML answers of S3 (ListObjectsV2, InitiateMultipartUpload,
//! CopyObject, CompleteMultipartUpload, errors), read by a small tree
//! parser with limits: no DTD, no entities beyond the five predefined and
//! character references, bounded depth and element count. Pure.

/// The deepest nesting accepted.
const MAX_DEPTH: usize = 32;
/// The most elements accepted in one document (a 1000-key list page has
/// about 6000).
const MAX_ELEMENTS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The local name (a namespace prefix dropped).
    pub name: String,
    /// The text directly inside, concatenated.
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
    /// The text of the first child called `name`.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }
}

fn local(name: &str) -> &str {
    name.rsplit_once(':').map(|(_, l)| l).unwrap_or(name)
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':') || b >= 0x80
}

/// Replaces the predefined entities and character references of `raw`.
fn unescape(raw: &str) -> Result<String, String> {
    if !raw.contains('&') {
        return Ok(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        let end = rest.find(';').filter(|&e| e <= 12).ok_or("an unterminated entity reference")?;
        let ent = &rest[..end];
        rest = &rest[end + 1..];
        let c = match ent {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(h) = ent.strip_prefix("#x").or_else(|| ent.strip_prefix("#X")) {
                    u32::from_str_radix(h, 16).ok()
                } else if let Some(d) = ent.strip_prefix('#') {
                    d.parse::<u32>().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32).ok_or_else(|| format!("an unknown entity &{ent};"))?
            }
        };
        out.push(c);
    }
    out.push_str(rest);
    Ok(out)
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    elements: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }
    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{what} at byte {}", self.pos))
    }
    /// Skips past `end`, which must come.
    fn skip_past(&mut self, end: &str) -> Result<(), String> {
        match self.rest().find(end) {
            Some(i) => {
                self.pos += i + end.len();
                Ok(())
            }
            None => self.err(&format!("no closing {end}")),
        }
    }
    fn skip_space(&mut self) {
        let n = self.rest().len() - self.rest().trim_start_matches([' ', '\t', '\r', '\n']).len();
        self.pos += n;
    }
    fn name(&mut self) -> Result<&'a str, String> {
        let r = self.rest();
        let n = r.bytes().take_while(|&b| is_name_byte(b)).count();
        if n == 0 {
            return self.err("a missing name");
        }
        self.pos += n;
        Ok(&r[..n])
    }
    /// Skips comments, processing instructions and space; refuses a DTD.
    fn misc(&mut self) -> Result<(), String> {
        loop {
            self.skip_space();
            let r = self.rest();
            if r.starts_with("<?") {
                self.skip_past("?>")?;
            } else if r.starts_with("<!--") {
                self.skip_past("-->")?;
            } else if r.starts_with("<!") {
                return self.err("a document type declaration (not accepted)");
            } else {
                return Ok(());
            }
        }
    }

    /// An element starting at `<`.
    fn element(&mut self, depth: usize) -> Result<Element, String> {
        if depth > MAX_DEPTH {
            return self.err("elements nested too deep");
        }
        self.elements += 1;
        if self.elements > MAX_ELEMENTS {
            return self.err("too many elements");
        }
        self.pos += 1; // '<'
        let qname = self.name()?;
        // attributes: skipped, but read properly
        loop {
            self.skip_space();
            let r = self.rest();
            if r.starts_with("/>") {
                self.pos += 2;
                return Ok(Element { name: local(qname).to_string(), text: String::new(), children: Vec::new() });
            }
            if r.starts_with('>') {
                self.pos += 1;
                break;
            }
            self.name()?;
            self.skip_space();
            if !self.rest().starts_with('=') {
                return self.err("an attribute without a value");
            }
            self.pos += 1;
            self.skip_space();
            let q = match self.rest().as_bytes().first() {
                Some(&q @ (b'"' | b'\'')) => q as char,
                _ => return self.err("an unquoted attribute value"),
            };
            self.pos += 1;
            match self.rest().find(q) {
                Some(i) if !self.rest()[..i].contains('<') => self.pos += i + 1,
                _ => return self.err("an unterminated attribute value"),
            }
        }
        let mut el = Element { name: local(qname).to_string(), text: String::new(), children: Vec::new() };
        loop {
            let r = self.rest();
            let i = r.find('<').map_or_else(|| self.err("an unclosed element"), Ok)?;
            if i > 0 {
                let t = unescape(&r[..i]).map_err(|e| format!("{e} at byte {}", self.pos))?;
                el.text.push_str(&t);
                self.pos += i;
            }
            let r = self.rest();
            if let Some(after) = r.strip_prefix("</") {
                self.pos += 2;
                let end = self.name()?;
                if end != qname {
                    return self.err(&format!("</{end}> closing <{qname}>"));
                }
                let _ = after;
                self.skip_space();
                if !self.rest().starts_with('>') {
                    return self.err("a malformed end tag");
                }
                self.pos += 1;
                return Ok(el);
            } else if let Some(data) = r.strip_prefix("<![CDATA[") {
                let end = data.find("]]>").map_or_else(|| self.err("an unterminated CDATA section"), Ok)?;
                el.text.push_str(&data[..end]);
                self.pos += 9 + end + 3;
            } else if r.starts_with("<!--") {
                self.skip_past("-->")?;
            } else if r.starts_with("<?") {
                self.skip_past("?>")?;
            } else if r.starts_with("<!") {
                return self.err("a declaration inside an element");
            } else {
                let child = self.element(depth + 1)?;
                el.children.push(child);
            }
        }
    }
}

/// Parses a whole document: one root element, with comments, processing
/// instructions and space around it.
pub fn parse(doc: &[u8]) -> Result<Element, String> {
    let s = std::str::from_utf8(doc).map_err(|e| format!("not UTF-8 ({e})"))?;
    let s = s.strip_prefix('\u{feff}').unwrap_or(s);
    let mut p = Parser { s, pos: 0, elements: 0 };
    p.misc()?;
    if !p.rest().starts_with('<') {
        return p.err("no root element");
    }
    let root = p.element(0)?;
    p.misc()?;
    if !p.rest().is_empty() {
        return p.err("content after the root element");
    }
    Ok(root)
}

/// Decodes `%XX` (and `+` as a space) of a key listed with
/// `encoding-type=url`.
pub fn url_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
                out.push(h.ok_or_else(|| format!("a bad escape in {s:?}"))?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} does not decode to UTF-8"))
}

/// An S3 error document: `<Error><Code>..</Code><Message>..</Message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDoc {
    pub code: String,
    pub message: String,
}

/// The error in `doc` if it is an error document (an answer of 200 to
/// CopyObject or CompleteMultipartUpload may be one).
pub fn error_doc(doc: &[u8]) -> Option<ErrorDoc> {
    let root = parse(doc).ok()?;
    if root.name != "Error" {
        return None;
    }
    Some(ErrorDoc {
        code: root.text_of("Code").unwrap_or("").trim().to_string(),
        message: root.text_of("Message").unwrap_or("").trim().to_string(),
    })
}

/// One entry of a ListObjectsV2 page; `key` is the full key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub size: u64,
    pub last_modified: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    pub entries: Vec<Entry>,
    /// The token for the next page, when the list is truncated.
    pub next: Option<String>,
}

/// A ListObjectsV2 answer; `url_encoded` when asked with
/// `encoding-type=url` (keys then come percent-encoded).
pub fn list_page(doc: &[u8]) -> Result<ListPage, String> {
    let root = parse(doc)?;
    if root.name != "ListBucketResult" {
        return Err(format!("a <{}> document, not <ListBucketResult>", root.name));
    }
    let url_encoded = root.text_of("EncodingType").is_some_and(|t| t.trim().eq_ignore_ascii_case("url"));
    let mut entries = Vec::new();
    for c in root.children_named("Contents") {
        let raw = c.text_of("Key").ok_or("an entry without <Key>")?;
        let key = if url_encoded { url_decode(raw)? } else { raw.to_string() };
        let size = c
            .text_of("Size")
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| format!("entry {key:?} without a valid <Size>"))?;
        let last_modified =
            c.text_of("LastModified").and_then(|t| crate::timefmt::parse_rfc3339(t.trim())).unwrap_or(0);
        entries.push(Entry { key, size, last_modified });
    }
    let truncated = root.text_of("IsTruncated").is_some_and(|t| t.trim() == "true");
    let next = if truncated {
        let t = root.text_of("NextContinuationToken").map(str::trim).filter(|t| !t.is_empty());
        Some(t.ok_or("a truncated list without <NextContinuationToken>")?.to_string())
    } else {
        None
    };
    Ok(ListPage { entries, next })
}

/// The upload id of an InitiateMultipartUploadResult.
pub fn upload_id(doc: &[u8]) -> Result<String, String> {
    let root = parse(doc)?;
    if root.name != "InitiateMultipartUploadResult" {
        return Err(format!("a <{}> document, not <InitiateMultipartUploadResult>", root.name));
    }
    let id = root.text_of("UploadId").map(str::trim).unwrap_or("");
    if id.is_empty() || id.len() > 1024 {
        return Err("no valid <UploadId>".into());
    }
    Ok(id.to_string())
}

/// The body of CompleteMultipartUpload.
pub fn complete_body(parts: &[(u32, String)]) -> String {
    let mut s = String::from("<CompleteMultipartUpload>");
    for (n, etag) in parts {
        let etag = etag.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        s.push_str(&format!("<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"));
    }
    s.push_str("</CompleteMultipartUpload>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>bucket</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys>
  <EncodingType>url</EncodingType>
  <IsTruncated>true</IsTruncated>
  <NextContinuationToken>dG9rZW4=</NextContinuationToken>
  <Contents><Key>p/a%20b%2Bc</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified>
    <ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag><Size>434234</Size><StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>p/sha256/00</Key><LastModified>1970-01-01T00:00:01Z</LastModified><Size>0</Size></Contents>
</ListBucketResult>"#;

    #[test]
    fn list_page_reads_keys_sizes_times_and_token() {
        let p = list_page(LIST.as_bytes()).unwrap();
        assert_eq!(p.next.as_deref(), Some("dG9rZW4="));
        assert_eq!(
            p.entries,
            vec![
                Entry { key: "p/a b+c".into(), size: 434234, last_modified: 1255369830 },
                Entry { key: "p/sha256/00".into(), size: 0, last_modified: 1 },
            ]
        );
        let last =
            LIST.replace("<IsTruncated>true", "<IsTruncated>false").replace("<EncodingType>url</EncodingType>", "");
        let p = list_page(last.as_bytes()).unwrap();
        assert_eq!(p.next, None);
        assert_eq!(p.entries[0].key, "p/a%20b%2Bc");
    }

    #[test]
    fn list_page_refusals() {
        let cases: &[(&str, &str)] = &[
            ("<Error/>", "not <ListBucketResult>"),
            ("<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>", "NextContinuationToken"),
            ("<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>", "without <Key>"),
            ("<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents></ListBucketResult>", "valid <Size>"),
            ("<ListBucketResult><EncodingType>url</EncodingType><Contents><Key>%zz</Key><Size>1</Size></Contents></ListBucketResult>", "bad escape"),
            ("<ListBucketResult><EncodingType>url</EncodingType><Contents><Key>%ff</Key><Size>1</Size></Contents></ListBucketResult>", "UTF-8"),
        ];
        for (doc, want) in cases {
            let e = list_page(doc.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{doc}: {e}");
        }
    }

    #[test]
    fn parser_table() {
        let ok: &[(&str, &str, &str)] = &[
            ("<a/>", "a", ""),
            ("<a>x</a>", "a", "x"),
            (
                "\u{feff}<?xml version='1.0'?><!-- c --><s3:a x='1' y=\"a>b\">t&amp;&lt;&#65;&#x42;</s3:a>\n",
                "a",
                "t&<AB",
            ),
            ("<a><![CDATA[<b>&]]></a>", "a", "<b>&"),
            ("<a>x<!-- y -->z<?pi?></a>", "a", "xz"),
            ("<a >1</a >", "a", "1"),
        ];
        for (doc, name, text) in ok {
            let e = parse(doc.as_bytes()).unwrap_or_else(|e| panic!("{doc}: {e}"));
            assert_eq!((e.name.as_str(), e.text.as_str()), (*name, *text), "{doc}");
        }
        let bad: &[(&str, &str)] = &[
            ("", "no root"),
            ("text", "no root"),
            ("<a>", "unclosed"),
            ("<a></b>", "closing"),
            ("<a/><b/>", "after the root"),
            ("<!DOCTYPE a [<!ENTITY x \"y\">]><a/>", "document type"),
            ("<a><!DOCTYPE b></a>", "declaration"),
            ("<a>&x;</a>", "unknown entity"),
            ("<a>&#xD800;</a>", "unknown entity"),
            ("<a>&amp</a>", "unterminated entity"),
            ("<a b=1/>", "unquoted"),
            ("<a b/>", "without a value"),
            ("<a b='x/>", "unterminated attribute"),
            ("<a><![CDATA[x</a>", "CDATA"),
            ("<a><!-- x</a>", "closing -->"),
            ("< a/>", "missing name"),
            ("<a></a", "malformed end tag"),
        ];
        for (doc, want) in bad {
            let e = parse(doc.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{doc:?}: {e}");
        }
        assert!(parse(b"<a>\xff</a>").unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn parser_limits() {
        let deep = "<a>".repeat(MAX_DEPTH + 2) + &"</a>".repeat(MAX_DEPTH + 2);
        assert!(parse(deep.as_bytes()).unwrap_err().contains("too deep"));
        let ok = "<a>".repeat(MAX_DEPTH) + &"</a>".repeat(MAX_DEPTH);
        parse(ok.as_bytes()).unwrap();
        let many = format!("<a>{}</a>", "<b/>".repeat(MAX_ELEMENTS));
        assert!(parse(many.as_bytes()).unwrap_err().contains("too many"));
    }

    #[test]
    fn errors_and_uploads() {
        let doc = b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>The key does not exist</Message><Key>a</Key></Error>";
        assert_eq!(
            error_doc(doc),
            Some(ErrorDoc { code: "NoSuchKey".into(), message: "The key does not exist".into() })
        );
        assert_eq!(error_doc(b"<CopyObjectResult><ETag>x</ETag></CopyObjectResult>"), None);
        assert_eq!(error_doc(b"garbage"), None);
        let up = b"<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>VXBsb2FkIElE</UploadId></InitiateMultipartUploadResult>";
        assert_eq!(upload_id(up).unwrap(), "VXBsb2FkIElE");
        assert!(upload_id(b"<InitiateMultipartUploadResult/>").is_err());
        assert!(upload_id(b"<Error/>").is_err());
        assert_eq!(
            complete_body(&[(1, "\"a\"".into()), (2, "<&>".into())]),
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"a\"</ETag></Part>\
             <Part><PartNumber>2</PartNumber><ETag>&lt;&amp;&gt;</ETag></Part></CompleteMultipartUpload>"
        );
    }

    fn escape(s: &str) -> String {
        s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
    }

    proptest! {
        #[test]
        fn parse_never_panics(doc in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&doc);
            let _ = list_page(&doc);
            let _ = error_doc(&doc);
            let _ = upload_id(&doc);
        }

        #[test]
        fn parse_never_panics_on_xmlish_text(doc in "[<>/a-c=\"'&;#x!?\\[\\]CDAT -]{0,200}") {
            let _ = parse(doc.as_bytes());
        }

        #[test]
        fn listed_keys_come_back(keys in proptest::collection::vec(("\\PC{1,40}", 0u64..u64::MAX, 0i64..4_000_000_000), 0..20), encoded in any::<bool>()) {
            let mut doc = String::from("<ListBucketResult>");
            if encoded {
                doc.push_str("<EncodingType>url</EncodingType>");
            }
            for (k, size, t) in &keys {
                let k = if encoded { crate::s3::sigv4::uri_encode(k, true) } else { escape(k) };
                doc.push_str(&format!("<Contents><Key>{k}</Key><LastModified>{}</LastModified><Size>{size}</Size></Contents>", crate::timefmt::format_rfc3339(*t)));
            }
            doc.push_str("<IsTruncated>false</IsTruncated></ListBucketResult>");
            let page = list_page(doc.as_bytes()).unwrap();
            let want: Vec<Entry> = keys.iter().map(|(k, s, t)| Entry { key: k.clone(), size: *s, last_modified: *t }).collect();
            prop_assert_eq!(page.entries, want);
        }
    }
}
