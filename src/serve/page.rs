//! The image center: one read-only HTML page with the caller's access
//! credentials (the registry's address, the login command, the account)
//! and what the caller may pull (public, or shared with them), by
//! namespace and repository, each repository with its summary and
//! description, each tag with its digest, size, time and the command that
//! pulls it. No script; everything escaped.

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

/// Who is looking, for the access credentials.
pub struct Viewer<'a> {
    /// The user's name, or None for an anonymous caller.
    pub user: Option<&'a str>,
    pub admin: bool,
}

/// A repository the caller may pull, as the page shows it.
pub struct Shown<'a> {
    pub tag: &'a ServedTag,
    /// Anyone may pull it (else it is shared with the caller).
    pub public: bool,
    pub summary: &'a str,
    pub description: &'a str,
}

/// The page for `host` (as the client named the registry): the access
/// credentials, then the tags the caller may see, sorted by repository
/// and tag, each repository with its summary and description and whether
/// it is public or shared with the caller.
pub fn render(host: &str, viewer: &Viewer, tags: &[Shown]) -> String {
    let now = timefmt::now();
    let h = escape(host);
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>img serve: images at {h}</title>\
         <style>{STYLE}</style></head><body>\n<h1>Images at {h}</h1>\n"
    );
    // Access credentials: the registry's address, how to log in, the account.
    html.push_str("<section id=\"credentials\"><h2>Access credentials</h2><table>\n");
    html.push_str(&format!("<tr><th>Registry address</th><td><code>{h}</code></td></tr>\n"));
    match viewer.user {
        Some(u) => {
            let u = escape(u);
            html.push_str(&format!(
                "<tr><th>Account</th><td id=\"account\">{u}{}</td></tr>\n",
                if viewer.admin { " (admin)" } else { "" }
            ));
            html.push_str(&format!(
                "<tr><th>Log in</th><td><code>img login {h} -u {u}</code> or <code>docker login {h} -u {u}</code> \
                 (the password is your account's)</td></tr>\n"
            ));
        }
        None => {
            html.push_str(
                "<tr><th>Account</th><td id=\"account\">not logged in: public images only \
                 (<a href=\"/login\">log in</a> to see what is shared with you)</td></tr>\n",
            );
            html.push_str(&format!("<tr><th>Log in</th><td><code>img login {h} -u USER</code></td></tr>\n"));
        }
    }
    html.push_str(&format!(
        "<tr><th>Push</th><td><code>img push IMAGE {h}/NAMESPACE/REPOSITORY:TAG</code></td></tr>\n</table></section>\n"
    ));
    if tags.is_empty() {
        html.push_str("<p class=\"empty\">No images you may pull. Push one with <code>img push IMAGE ");
        html.push_str(&h);
        html.push_str("/NAMESPACE/REPOSITORY:TAG</code>.</p>\n");
    }
    let mut ns = "";
    let mut repo = "";
    for s in tags {
        let t = s.tag;
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
                "<h3 data-repository=\"{0}\">{0} <span class=\"kind\">{1}</span></h3>\n",
                escape(repo),
                if s.public { "public" } else { "shared with you" }
            ));
            if !s.summary.is_empty() {
                html.push_str(&format!("<p class=\"summary\">{}</p>\n", escape(s.summary)));
            }
            if !s.description.is_empty() {
                html.push_str(&format!("<p class=\"description\">{}</p>\n", escape(s.description)));
            }
            html.push_str("<table><tr><th>Tag</th><th>Digest</th><th>Size</th><th>Pushed</th><th>Pull</th></tr>\n");
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
        let tags = [t("team/app", "1"), t("team/app", "2"), t("team/web", "v1")];
        let shown: Vec<Shown> = tags
            .iter()
            .map(|tag| Shown { tag, public: tag.repository == "team/app", summary: "<b>s</b>", description: "" })
            .collect();
        let anon = Viewer { user: None, admin: false };
        let html = render("h<1>:5000", &anon, &shown);
        assert!(html.contains("Images at h&lt;1&gt;:5000"));
        assert_eq!(html.matches("<h2 id=\"ns-").count(), 1);
        assert_eq!(html.matches("<h3 ").count(), 2);
        assert!(html.contains("img pull h&lt;1&gt;:5000/team/app:2"));
        assert!(!html.contains("<1>"));
        assert!(!html.contains("<b>s"));
        assert!(html.contains("team/app <span class=\"kind\">public</span>"));
        assert!(html.contains("team/web <span class=\"kind\">shared with you</span>"));
        assert!(html.contains("not logged in"));
        assert!(render("h", &anon, &[]).contains("No images you may pull"));
        let alice = Viewer { user: Some("alice<"), admin: false };
        let page = render("h", &alice, &[]);
        assert!(page.contains("img login h -u alice&lt;"));
        assert!(!page.contains("alice<"));
    }
}
