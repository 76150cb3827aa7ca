//! The image center: one read-only HTML page listing what the caller may
//! pull, by namespace and repository, each tag with its digest, size,
//! time and the command that pulls it. No script; everything escaped.

use crate::store::index::ServedTag;
use crate::timefmt;

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222;background:#fff}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.5em;border-bottom:1px solid #ccc}\
h3{font-size:1em;margin:1em 0 .3em}table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #eee;font-size:.9em}\
code{background:#f4f4f4;padding:.1em .3em}.empty{color:#777}";

/// The page for `host` (as the client named the registry) and the tags
/// the caller may see, sorted by repository and tag.
pub fn render(host: &str, tags: &[ServedTag]) -> String {
    let now = timefmt::now();
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>img serve: images at {h}</title>\
         <style>{STYLE}</style></head><body>\n<h1>Images at {h}</h1>\n",
        h = escape(host)
    );
    if tags.is_empty() {
        html.push_str("<p class=\"empty\">No images you may pull. Push one with <code>img push IMAGE ");
        html.push_str(&escape(host));
        html.push_str("/NAMESPACE/REPOSITORY:TAG</code>.</p>\n");
    }
    let mut ns = "";
    let mut repo = "";
    for t in tags {
        let (n, _) = t.repository.split_once('/').unwrap_or((&t.repository, ""));
        if n != ns {
            if !repo.is_empty() {
                html.push_str("</table>\n");
                repo = "";
            }
            ns = n;
            html.push_str(&format!("<h2 id=\"ns-{0}\">{0}</h2>\n", escape(n)));
        }
        if t.repository != repo {
            if !repo.is_empty() {
                html.push_str("</table>\n");
            }
            repo = &t.repository;
            html.push_str(&format!(
                "<h3>{}</h3>\n<table><tr><th>Tag</th><th>Digest</th><th>Size</th><th>Pushed</th><th>Pull</th></tr>\n",
                escape(repo)
            ));
        }
        let pull = format!("img pull {host}/{}:{}", t.repository, t.tag);
        html.push_str(&format!(
            "<tr><td>{}</td><td><code title=\"{}\">{}</code></td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>\n",
            escape(&t.tag),
            escape(t.digest.as_str()),
            escape(&t.digest.as_str()[..19.min(t.digest.as_str().len())]),
            if t.size > 0 { timefmt::human_size(t.size) } else { "-".into() },
            escape(&timefmt::human_ago(Some(t.at), now)),
            escape(&pull),
        ));
    }
    if !repo.is_empty() {
        html.push_str("</table>\n");
    }
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    #[test]
    fn names_are_escaped_and_grouped() {
        let d = Digest::of_bytes(b"x");
        let t = |repo: &str, tag: &str| ServedTag {
            repository: repo.into(),
            tag: tag.into(),
            digest: d.clone(),
            media_type: String::new(),
            size: 2048,
            at: 0,
        };
        let html = render("h<1>:5000", &[t("team/app", "1"), t("team/app", "2"), t("team/web", "v1")]);
        assert!(html.contains("Images at h&lt;1&gt;:5000"));
        assert_eq!(html.matches("<h2").count(), 1);
        assert_eq!(html.matches("<h3>").count(), 2);
        assert!(html.contains("img pull h&lt;1&gt;:5000/team/app:2"));
        assert!(!html.contains("<1>"));
        assert!(render("h", &[]).contains("No images you may pull"));
    }
}
