//! HTML (§5.1): a browsable page in the spirit of Django REST Framework's —
//! the request, the status and headers, the data pretty-printed with its
//! links made clickable, a table for collections, the pagination links,
//! and a form that sends GET/POST/PUT/PATCH/DELETE to the same URL where
//! the route accepts them.
//!
//! Everything that comes from data or from the request goes through
//! [`escape`]; only `http(s)` URLs become links. The page's one style
//! sheet and one script are inline constants, allowed by hash in its
//! `Content-Security-Policy` — nothing is loaded from anywhere else, and
//! nothing injected into the page could run.

use std::fmt::Write as _;
use std::sync::OnceLock;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::{Map, Value};

use super::Content;

/// What the page says about the request it answers. Made by negotiation
/// when HTML was chosen; the route adds the methods and a body template.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub method: String,
    /// Path and query, credentials removed.
    pub target: String,
    /// Methods the route accepts (for the form), e.g. `["GET", "POST"]`.
    pub methods: Vec<String>,
    /// A body to start the form with: the fields a write of the route takes
    /// (a shown record is cut down to them).
    pub template: Option<Value>,
    /// The JSON Schema of the route's write body (its create's, else its
    /// replacement's): the page's field-by-field form is made from it.
    pub input: Option<Value>,
    /// The browsable sign-in: `None` where the server offers none,
    /// `Some(signed_in)` where it does (the page then offers to sign in
    /// or out).
    pub account: Option<bool>,
    /// The route's collection can be followed live (§16): the page offers
    /// to, with `EventSource`.
    pub live: bool,
}

impl Page {
    /// `target` with any `access-token`/`access_token` parameter removed:
    /// the page shows it, and pages get shared.
    pub fn new(method: &str, path: &str, query: Option<&str>) -> Page {
        let target = match query {
            Some(q) if !q.is_empty() => {
                let kept: Vec<(String, String)> = form_urlencoded::parse(q.as_bytes())
                    .filter(|(k, _)| k != "access-token" && k != "access_token")
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                if kept.is_empty() {
                    path.to_string()
                } else {
                    let q = form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(kept)
                        .finish();
                    format!("{path}?{q}")
                }
            }
            _ => path.to_string(),
        };
        Page {
            method: method.to_string(),
            target,
            methods: Vec::new(),
            template: None,
            input: None,
            account: None,
            live: false,
        }
    }
}

const STYLE: &str = "\
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}\
header{background:#1d2330;color:#fff;padding:.6em 1.2em}header b{margin-right:1em}\
header a{color:#cfe0ff;text-decoration:none}.account{float:right;margin:0}\
.account button{background:none;border:1px solid #cfe0ff;color:#cfe0ff;border-radius:4px;cursor:pointer}main{max-width:72em;margin:1em auto;padding:0 1.2em}\
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:.8em 1em;margin-bottom:1em}\
h2{font-size:1em;margin:0 0 .5em;color:#4a5468}pre{margin:0;white-space:pre-wrap;word-break:break-word;font:13px/1.5 ui-monospace,Menlo,Consolas,monospace}\
.status{font-weight:bold}.ok{color:#17803d}.bad{color:#b42318}.hn{color:#4a5468}\
.k{color:#7a2e8f}.s{color:#0b6b3a}.n{color:#8a5a00}.l{color:#5a6272}a{color:#1f5fbf}\
table{border-collapse:collapse;width:100%;font-size:13px}th,td{border-bottom:1px solid #e6e8ee;padding:.3em .5em;text-align:left;vertical-align:top}\
th{background:#f0f2f6}td pre{font-size:12px}nav.pages a,nav.pages span{margin-right:1em}\
form label{display:block;margin:.4em 0}textarea{width:100%;min-height:9em;font:13px ui-monospace,Menlo,Consolas,monospace;box-sizing:border-box}\
input,select,button{font:inherit}table.fields th{background:none;width:12em;font-weight:600}\
table.fields td input[type=text],table.fields td input[type=email],table.fields td select{min-width:18em}\
textarea.small{min-height:4em;width:60%}.req{color:#b42318}.err{color:#b42318;margin-left:.6em}button{padding:.3em 1.2em}.hint{color:#6b7385;font-size:13px}";

/// Sends the form with fetch() — HTML forms cannot PUT, PATCH or DELETE —
/// and shows the answer (an HTML page too) in place of this one. The token
/// is kept in this tab's sessionStorage only. Until this runs the button
/// stays disabled, so a page without scripts says so instead of failing.
const SCRIPT: &str = "\
(function(){var f=document.getElementById('rk-send');if(!f)return;var k='restkit.token';\
try{f.elements.token.value=sessionStorage.getItem(k)||''}catch(e){}\
var b=f.querySelector('button');b.disabled=false;\
f.addEventListener('submit',function(ev){ev.preventDefault();\
var m=f.elements.method.value,t=f.elements.token.value.trim(),h={'Accept':'text/html'};\
try{sessionStorage.setItem(k,t)}catch(e){}if(t)h['Authorization']='Bearer '+t;\
var o={method:m,headers:h};if(m!=='GET'&&m!=='DELETE'){h['Content-Type']='application/json';o.body=f.elements.body.value}\
b.disabled=true;fetch(location.href,o).then(function(r){var loc=r.headers.get('Location');\
return r.text().then(function(s){if(loc&&r.status===201)history.pushState(null,'',loc);\
document.open();document.write(s);document.close()})}).catch(function(e){b.disabled=false;alert(e)})})})();\
(function(){var g=document.getElementById('rk-fields');if(!g)return;var gb=g.querySelector('button[type=submit]');\
var st=document.getElementById('rk-fields-status');gb.disabled=false;\
g.addEventListener('submit',function(ev){ev.preventDefault();var m=g.elements._method.value,body={},bad=null;\
g.querySelectorAll('[data-error-for]').forEach(function(e){e.textContent=''});st.textContent='';\
g.querySelectorAll('[data-kind]').forEach(function(el){var v=el.value,k=el.dataset.kind,n=el.name;\
if(m==='PATCH'&&v===el.dataset.initial)return;if(v===''){if(m==='PATCH')body[n]=null;return}\
if(k==='integer'||k==='number'){var x=Number(v);if(isNaN(x))bad=n;else body[n]=x}\
else if(k==='boolean')body[n]=(v==='true');\
else if(k==='json'){try{body[n]=JSON.parse(v)}catch(e){bad=n}}else body[n]=v});\
if(bad){g.querySelector('[data-error-for=\"'+CSS.escape(bad)+'\"]').textContent='not valid here';return}\
var h={'Accept':'application/json','Content-Type':'application/json'},t='';\
try{t=sessionStorage.getItem('restkit.token')||''}catch(e){}if(t)h['Authorization']='Bearer '+t;gb.disabled=true;\
fetch(location.href,{method:m,headers:h,body:JSON.stringify(body)}).then(function(r){return r.text().then(function(s){\
gb.disabled=false;if(r.ok){location.href=r.headers.get('Location')||location.href;return}var p={};\
try{p=JSON.parse(s)}catch(e){}var rest='';(p.errors||[]).forEach(function(e){\
var el=g.querySelector('[data-error-for=\"'+CSS.escape(e.field)+'\"]');if(el)el.textContent=e.message;\
else rest+=' '+e.field+': '+e.message});st.textContent=r.status+' '+(p.detail||'')+rest})})\
.catch(function(e){gb.disabled=false;st.textContent=String(e)})})})();\
(function(){var l=document.getElementById('rk-live');if(!l)return;var lb=l.querySelector('button'),\
ol=l.querySelector('ol'),ls=l.querySelector('.hint'),es=null;lb.disabled=false;\
lb.addEventListener('click',function(){if(es){es.close();es=null;lb.textContent='Follow live';ls.textContent='';return}\
var u=new URL(location.href);u.pathname=u.pathname.replace(/\\.(html|json|xml|csv)$/,'');\
['type','page','per-page','limit','offset','cursor','sort','sync_mark'].forEach(function(k){u.searchParams.delete(k)});\
u.searchParams.set('type','events');es=new EventSource(u.toString());lb.textContent='Stop';ls.textContent='following…';\
['created','updated','deleted'].forEach(function(k){es.addEventListener(k,function(e){var li=document.createElement('li');\
li.dataset.kind=k;li.textContent=k+' '+e.data;ol.insertBefore(li,ol.firstChild)})});\
es.addEventListener('end',function(e){var r={};try{r=JSON.parse(e.data)}catch(x){}\
if(r.reason==='shutdown'){ls.textContent='server restarting; reconnecting…';return}\
ls.textContent='ended: '+(r.detail||e.data);es.close();es=null;lb.textContent='Follow live'});\
es.addEventListener('resync',function(){es.close();es=null;location.reload()});\
es.onerror=function(){if(es)ls.textContent='reconnecting…'};es.onopen=function(){ls.textContent='following'}})})();";

/// The page's security headers: a CSP that allows exactly its own style
/// and script (by hash), `nosniff`, and no referrer (URLs may carry
/// query-string credentials).
pub fn security_headers(headers: &mut HeaderMap) {
    static CSP: OnceLock<HeaderValue> = OnceLock::new();
    let csp = CSP.get_or_init(|| {
        csp_allowing(
            STYLE,
            Some(SCRIPT),
            "connect-src 'self'; img-src data:; form-action 'self'",
        )
    });
    headers.insert(http::header::CONTENT_SECURITY_POLICY, csp.clone());
    headers.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Nothing leaves for another site; the page's own sign-out form keeps
    // its `Origin` (see `oauth::authorize`'s note on `no-referrer`).
    headers.insert(
        http::header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

/// A Content-Security-Policy for a page of restkit's own: nothing from
/// anywhere (`default-src 'none'`), except the one inline `style` (and
/// `script`, if any) allowed by its SHA-256, never framed, plus `extra`
/// directives. Every page restkit serves builds its policy here.
pub fn csp_allowing(style: &str, script: Option<&str>, extra: &str) -> HeaderValue {
    let hash = |s: &str| {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(s.as_bytes()))
    };
    let mut v = format!("default-src 'none'; style-src 'sha256-{}'", hash(style));
    if let Some(script) = script {
        v.push_str(&format!("; script-src 'sha256-{}'", hash(script)));
    }
    if !extra.is_empty() {
        v.push_str("; ");
        v.push_str(extra);
    }
    v.push_str("; base-uri 'none'; frame-ancestors 'none'");
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("default-src 'none'"))
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(out: &mut String, s: &str) {
    // Most text has nothing to escape: copy it whole.
    if !s.bytes().any(|b| {
        matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'') || b < 0x20 || b == 0x7f || b == 0xc2
    }) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Controls other than tab/LF/CR are not allowed in HTML text.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

/// [`escape`]d into a new string.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape(&mut out, s);
    out
}

/// Only absolute http(s) URLs without spaces or controls become links:
/// never `javascript:` or `data:`.
fn is_link(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://"))
        && s.len() < 4096
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn link(out: &mut String, href: &str, text: &str) {
    out.push_str("<a href=\"");
    escape(out, href);
    out.push_str("\">");
    escape(out, text);
    out.push_str("</a>");
}

/// The shell every HTML page restkit serves is written in — the
/// browsable pages, the sign-in and consent page, the docs: doctype,
/// charset, viewport, title, the page's one style sheet (which its CSP
/// allows by hash, [`csp_allowing`]), a header bar when it has one, then
/// `main`; [`Shell::close`] ends it.
pub struct Shell<'a> {
    /// Plain text, escaped here.
    pub title: &'a str,
    pub style: &'static str,
    /// The header bar's markup, if the page has one.
    pub header: Option<&'a str>,
    /// Asks search engines not to index the page.
    pub noindex: bool,
}

impl Shell<'_> {
    /// Writes everything up to the start of `main`.
    pub fn open(&self, out: &mut String) {
        out.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">");
        out.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
        if self.noindex {
            out.push_str("<meta name=\"robots\" content=\"noindex\">");
        }
        out.push_str("<title>");
        escape(out, self.title);
        out.push_str("</title><style>");
        out.push_str(self.style);
        out.push_str("</style></head><body>");
        if let Some(header) = self.header {
            out.push_str("<header>");
            out.push_str(header);
            out.push_str("</header>");
        }
        out.push_str("<main>");
    }

    /// Ends `main`, then runs `script` (which the page's CSP must allow),
    /// and ends the page.
    pub fn close(out: &mut String, script: Option<&str>) {
        out.push_str("</main>");
        if let Some(script) = script {
            out.push_str("<script>");
            out.push_str(script);
            out.push_str("</script>");
        }
        out.push_str("</body></html>");
    }
}

/// The page for a reply (or an error) with `status`, `headers` and
/// `content`, answering `page`'s request.
pub fn encode(
    status: StatusCode,
    content_type: &HeaderValue,
    headers: &HeaderMap,
    content: &Content,
    page: &Page,
) -> Bytes {
    let mut out = String::with_capacity(8192);
    let mut header = String::from("<b>restkit</b>");
    breadcrumbs(&mut header, path_of(&page.target));
    account(&mut header, page);
    Shell {
        title: &format!("{} {} · restkit", page.method, path_of(&page.target)),
        style: STYLE,
        header: Some(&header),
        noindex: true,
    }
    .open(&mut out);

    // The request.
    out.push_str("<section><h2>Request</h2><pre><b>");
    escape(&mut out, &page.method);
    out.push_str("</b> ");
    escape(&mut out, &page.target);
    out.push_str("</pre></section>");

    // The response: status and headers.
    let class = if status.is_success() || status == StatusCode::NOT_MODIFIED {
        "ok"
    } else {
        "bad"
    };
    let _ = writeln!(
        out,
        "<section><h2>Response</h2><pre><span class=\"status {class}\">HTTP {} {}</span>",
        status.as_u16(),
        esc(status.canonical_reason().unwrap_or(""))
    );
    if !page.methods.is_empty() {
        header_line(&mut out, "Allow", &page.methods.join(", "));
    }
    header_line(
        &mut out,
        "Content-Type",
        content_type.to_str().unwrap_or(""),
    );
    for (name, value) in headers {
        if shown(name) {
            header_line(
                &mut out,
                name.as_str(),
                &String::from_utf8_lossy(value.as_bytes()),
            );
        }
    }
    out.push_str("</pre></section>");

    let rows = match content {
        Content::Records(rs) => Some(rs.iter().collect()),
        Content::Value(v) => rows_of(v),
        _ => None,
    };
    if let (Content::Value(v), false) = (content, status.is_success()) {
        problem_summary(&mut out, v);
        if status == StatusCode::UNAUTHORIZED && page.account.is_some() {
            out.push_str("<section><p><a class=\"signin\" href=\"");
            escape(&mut out, &sign_in_href(page));
            out.push_str("\">Sign in</a> to see this page.</p></section>");
        }
    }
    if let Some(rows) = rows {
        pages_nav(&mut out, headers);
        // Where the rows' own pages are: this collection's path (its
        // format extension dropped) and the id.
        let path = path_of(&page.target);
        let collection = [".html", ".json", ".xml", ".csv"]
            .iter()
            .find_map(|ext| path.strip_suffix(ext))
            .unwrap_or(path);
        // Only a collection's records live below its path.
        let collection = matches!(content, Content::Records(_)).then_some(collection);
        table(&mut out, &rows, collection);
    }
    if !matches!(content, Content::Empty) {
        out.push_str("<section><h2>Data</h2><pre>");
        match content {
            Content::Empty => {}
            Content::Record(r) => pretty_object(&mut out, r, 0),
            Content::Records(rs) => {
                pretty_array(&mut out, rs.iter().map(Item::Object), rs.len(), 0)
            }
            Content::Value(v) => pretty(&mut out, v, 0),
        }
        out.push_str("</pre></section>");
    }
    if page.live && matches!(content, Content::Records(_)) && status.is_success() {
        out.push_str(
            "<section id=\"rk-live\"><h2>Live changes</h2><p><button type=\"button\" disabled>Follow live</button> \
             <span class=\"hint\"></span></p><ol></ol></section>",
        );
    }
    fields_form(&mut out, page, content);
    form(&mut out, page, content);
    Shell::close(&mut out, Some(SCRIPT));
    Bytes::from(out)
}

/// Headers the page lists: those the reply itself set (pagination,
/// `Link`, `Location`, …). Per-connection ones added later (request id,
/// CORS) would make each page different and its ETag useless.
fn shown(name: &HeaderName) -> bool {
    name != http::header::CONTENT_TYPE
}

fn header_line(out: &mut String, name: &str, value: &str) {
    out.push_str("<span class=\"hn\">");
    escape(out, &canonical(name));
    out.push_str(":</span> ");
    // Link and Location values: make their URLs clickable.
    if is_link(value) {
        link(out, value, value);
    } else if value.contains('<') && value.contains('>') {
        let mut rest = value;
        while let Some(start) = rest.find('<') {
            escape(out, &rest[..=start]);
            let after = &rest[start + 1..];
            let Some(end) = after.find('>') else {
                rest = after;
                break;
            };
            let url = &after[..end];
            if is_link(url) {
                link(out, url, url);
            } else {
                escape(out, url);
            }
            rest = &after[end..];
        }
        escape(out, rest);
    } else {
        escape(out, value);
    }
    out.push('\n');
}

/// `x-pagination-total-count` → `X-Pagination-Total-Count`.
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn path_of(target: &str) -> &str {
    target.split('?').next().unwrap_or(target)
}

/// `/v1/books/3` → links to `/v1`, `/v1/books`, `/v1/books/3`.
fn breadcrumbs(out: &mut String, path: &str) {
    let mut so_far = String::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        so_far.push('/');
        so_far.push_str(segment);
        out.push_str(" / ");
        out.push_str("<a href=\"");
        escape(out, &so_far);
        out.push_str("\">");
        escape(out, segment);
        out.push_str("</a>");
    }
}

/// An error's title and detail, above its data.
/// `/_restkit/sign-in?next=<this page>`.
fn sign_in_href(page: &Page) -> String {
    let next = form_urlencoded::Serializer::new(String::new())
        .append_pair("next", &page.target)
        .finish();
    format!("/_restkit/sign-in?{next}")
}

/// Sign in, or sign out (a POST from this page), at the header's end.
fn account(out: &mut String, page: &Page) {
    match page.account {
        None => {}
        Some(false) => {
            out.push_str("<span class=\"account\"><a href=\"");
            escape(out, &sign_in_href(page));
            out.push_str("\">Sign in</a></span>");
        }
        Some(true) => {
            // Back to this page afterwards (a public one still answers).
            let next = form_urlencoded::Serializer::new(String::new())
                .append_pair("next", &page.target)
                .finish();
            out.push_str("<form class=\"account\" method=\"post\" action=\"/_restkit/sign-out?");
            escape(out, &next);
            out.push_str("\"><button type=\"submit\">Sign out</button></form>");
        }
    }
}

fn problem_summary(out: &mut String, data: &Value) {
    let title = data.get("title").and_then(Value::as_str);
    let detail = data.get("detail").and_then(Value::as_str);
    if title.is_none() && detail.is_none() {
        return;
    }
    out.push_str("<section><h2>Error</h2><p class=\"bad\"><b>");
    escape(out, title.unwrap_or(""));
    out.push_str("</b> ");
    escape(out, detail.unwrap_or(""));
    out.push_str("</p></section>");
}

/// The records of a collection (plain, or under an envelope's `records`).
fn rows_of(data: &Value) -> Option<Vec<&Map<String, Value>>> {
    let items = match data {
        Value::Array(items) => items,
        Value::Object(m) => m.get("records")?.as_array()?,
        _ => return None,
    };
    items.iter().map(Value::as_object).collect()
}

/// First, previous, next and last page, from the `Link` header.
fn pages_nav(out: &mut String, headers: &HeaderMap) {
    let Some(links) = headers
        .get(http::header::LINK)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    let mut found: Vec<(&str, &str)> = Vec::new();
    for part in links.split(", <") {
        let part = part.trim_start_matches('<');
        let Some((url, params)) = part.split_once('>') else {
            continue;
        };
        if let Some(rel) = params
            .split(';')
            .filter_map(|p| p.trim().strip_prefix("rel="))
            .map(|r| r.trim_matches('"'))
            .next()
        {
            found.push((rel, url));
        }
    }
    out.push_str("<nav class=\"pages\"><section>");
    for rel in ["first", "prev", "next", "last"] {
        match found.iter().find(|(r, _)| *r == rel) {
            Some((_, url)) if is_link(url) => link(out, url, rel),
            _ => {
                out.push_str("<span class=\"l\">");
                out.push_str(rel);
                out.push_str("</span>");
            }
        }
    }
    if let Some(total) = headers
        .get("x-pagination-total-count")
        .and_then(|v| v.to_str().ok())
    {
        out.push_str("<span class=\"hint\">");
        escape(out, total);
        out.push_str(" in all</span>");
    }
    out.push_str("</section></nav>");
}

/// At most this many columns in the table (the data section has all).
const MAX_COLUMNS: usize = 40;

/// The rows as a table; an integer `id` without a `self` link links to
/// `{collection}/{id}`.
fn table(out: &mut String, rows: &[&Map<String, Value>], collection: Option<&str>) {
    let mut columns: Vec<&str> = Vec::new();
    for row in rows {
        for key in row.keys() {
            if columns.len() < MAX_COLUMNS && !columns.contains(&key.as_str()) {
                columns.push(key);
            }
        }
    }
    out.push_str("<section><h2>Records</h2><table><thead><tr>");
    for c in &columns {
        out.push_str("<th>");
        escape(out, c);
        out.push_str("</th>");
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        let own = row
            .get("_links")
            .and_then(|l| l.get("self"))
            .and_then(|s| s.get("href"))
            .and_then(Value::as_str)
            .filter(|u| is_link(u));
        out.push_str("<tr>");
        for c in &columns {
            out.push_str("<td>");
            match (row.get(*c), own) {
                (Some(v), Some(href)) if *c == "id" => link(out, href, &scalar_text(v)),
                (Some(Value::Number(n)), None) if *c == "id" && n.is_i64() => match collection {
                    Some(path) => link(out, &format!("{path}/{n}"), &n.to_string()),
                    None => escape(out, &n.to_string()),
                },
                (Some(Value::String(s)), _) if is_link(s) => link(out, s, s),
                (Some(Value::Object(links)), _) if *c == "_links" => {
                    for (rel, target) in links {
                        match target.get("href").and_then(Value::as_str) {
                            Some(href) if is_link(href) => link(out, href, rel),
                            _ => escape(out, rel),
                        }
                        out.push(' ');
                    }
                }
                (Some(v @ (Value::Object(_) | Value::Array(_))), _) => {
                    out.push_str("<pre>");
                    pretty(out, v, 0);
                    out.push_str("</pre>");
                }
                (Some(v), _) => escape(out, &scalar_text(v)),
                (None, _) => {}
            }
            out.push_str("</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></section>");
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// JSON, indented, escaped, with http(s) strings as links.
fn pretty(out: &mut String, v: &Value, depth: usize) {
    match v {
        Value::Null => out.push_str("<span class=\"n\">null</span>"),
        Value::Bool(b) => {
            let _ = write!(out, "<span class=\"n\">{b}</span>");
        }
        Value::Number(n) => {
            let _ = write!(out, "<span class=\"n\">{n}</span>");
        }
        Value::String(s) if is_link(s) => {
            out.push('"');
            link(out, s, s);
            out.push('"');
        }
        Value::String(s) => {
            out.push_str("<span class=\"s\">");
            escape(out, &serde_json::to_string(s).unwrap_or_default());
            out.push_str("</span>");
        }
        Value::Array(items) => pretty_array(out, items.iter().map(Item::Value), items.len(), depth),
        Value::Object(map) => pretty_object(out, map, depth),
    }
}

/// A member of an array being printed: a value, or a record of a page.
enum Item<'a> {
    Value(&'a Value),
    Object(&'a Map<String, Value>),
}

fn pad(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn pretty_array<'a>(
    out: &mut String,
    items: impl Iterator<Item = Item<'a>>,
    len: usize,
    depth: usize,
) {
    if len == 0 {
        out.push_str("[]");
        return;
    }
    out.push_str("[\n");
    for (i, item) in items.enumerate() {
        pad(out, depth + 1);
        match item {
            Item::Value(v) => pretty(out, v, depth + 1),
            Item::Object(m) => pretty_object(out, m, depth + 1),
        }
        out.push_str(if i + 1 < len { ",\n" } else { "\n" });
    }
    pad(out, depth);
    out.push(']');
}

fn pretty_object(out: &mut String, map: &Map<String, Value>, depth: usize) {
    if map.is_empty() {
        out.push_str("{}");
        return;
    }
    out.push_str("{\n");
    for (i, (k, item)) in map.iter().enumerate() {
        pad(out, depth + 1);
        out.push_str("<span class=\"k\">");
        escape(out, &serde_json::to_string(k).unwrap_or_default());
        out.push_str("</span>: ");
        pretty(out, item, depth + 1);
        out.push_str(if i + 1 < map.len() { ",\n" } else { "\n" });
    }
    pad(out, depth);
    out.push('}');
}

/// The input of one field: its kind (how the page's script reads it back)
/// and its markup attributes.
fn field_input(out: &mut String, name: &str, schema: &Value, value: Option<&Value>) {
    let types = crate::validate::types_of(schema);
    let ty = types
        .iter()
        .copied()
        .find(|t| *t != "null")
        .unwrap_or("json");
    let text = |v: Option<&Value>| match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let current = text(value);
    let attr = |out: &mut String, k: &str, v: &str| {
        let _ = write!(out, " {k}=\"");
        escape(out, v);
        out.push('"');
    };
    if let Some(options) = schema["enum"].as_array() {
        out.push_str("<select");
        attr(out, "name", name);
        attr(out, "data-kind", ty);
        attr(out, "data-initial", &current);
        out.push_str("><option value=\"\"></option>");
        for o in options.iter().filter(|o| !o.is_null()) {
            let o = text(Some(o));
            let selected = if o == current { " selected" } else { "" };
            out.push_str("<option");
            attr(out, "value", &o);
            out.push_str(selected);
            out.push('>');
            escape(out, &o);
            out.push_str("</option>");
        }
        out.push_str("</select>");
        return;
    }
    if ty == "boolean" {
        out.push_str("<select");
        attr(out, "name", name);
        attr(out, "data-kind", ty);
        attr(out, "data-initial", &current);
        out.push('>');
        for o in ["", "true", "false"] {
            let selected = if o == current { " selected" } else { "" };
            let _ = write!(out, "<option value=\"{o}\"{selected}>{o}</option>");
        }
        out.push_str("</select>");
        return;
    }
    if matches!(ty, "object" | "array" | "json") {
        out.push_str("<textarea class=\"small\"");
        attr(out, "name", name);
        attr(out, "data-kind", "json");
        attr(out, "data-initial", &current);
        out.push('>');
        escape(out, &current);
        out.push_str("</textarea>");
        return;
    }
    let input_type = match (ty, schema["format"].as_str()) {
        ("integer" | "number", _) => "number",
        (_, Some("date")) => "date",
        (_, Some("email")) => "email",
        _ => "text",
    };
    out.push_str("<input");
    attr(out, "type", input_type);
    attr(out, "name", name);
    attr(out, "data-kind", ty);
    attr(out, "data-initial", &current);
    attr(out, "value", &current);
    if ty == "number" {
        attr(out, "step", "any");
    }
    if let Some(n) = schema["maxLength"].as_u64() {
        attr(out, "maxlength", &n.to_string());
    }
    for (key, html) in [("minimum", "min"), ("maximum", "max")] {
        if let Some(n) = schema[key].as_f64().filter(|n| n.abs() < 1e15) {
            attr(out, html, &n.to_string());
        }
    }
    if let Some(f) = schema["format"].as_str() {
        attr(out, "placeholder", f);
    }
    out.push('>');
}

/// A form made from the declaration: one input per field the write takes
/// (numbers, dates, enums as selects, booleans, JSON), required ones
/// marked, the shown record's values filled in. The page's script sends
/// it as JSON and puts each 422 error beside its field.
fn fields_form(out: &mut String, page: &Page, content: &Content) {
    let Some(props) = page
        .input
        .as_ref()
        .and_then(|s| s["properties"].as_object())
    else {
        return;
    };
    let record = match content {
        Content::Record(r) => Some(r),
        _ => None,
    };
    let offered: Vec<&str> = if record.is_some() {
        ["PATCH", "PUT"]
            .into_iter()
            .filter(|m| page.methods.iter().any(|x| x == m))
            .collect()
    } else {
        ["POST"]
            .into_iter()
            .filter(|m| page.methods.iter().any(|x| x == m))
            .collect()
    };
    if offered.is_empty() || props.is_empty() {
        return;
    }
    let required: Vec<&str> = page
        .input
        .as_ref()
        .and_then(|s| s["required"].as_array())
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let title = if record.is_some() { "Edit" } else { "Create" };
    let _ = write!(
        out,
        "<section><h2>{title}</h2><form id=\"rk-fields\" novalidate><table class=\"fields\">"
    );
    for (name, schema) in props {
        if schema["readOnly"] == Value::Bool(true) {
            continue;
        }
        out.push_str("<tr><th><label>");
        escape(out, name);
        if required.contains(&name.as_str()) {
            out.push_str(" <span class=\"req\" title=\"required\">*</span>");
        }
        out.push_str("</label></th><td>");
        // A record's value; on a create form, the declared default.
        let value = match record {
            Some(r) => r.get(name),
            None => schema.get("default"),
        };
        field_input(out, name, schema, value);
        out.push_str(" <span class=\"err\" data-error-for=\"");
        escape(out, name);
        out.push_str("\"></span></td></tr>");
    }
    out.push_str("</table><p>");
    if offered.len() > 1 {
        out.push_str("<select name=\"_method\">");
        for m in &offered {
            let _ = write!(out, "<option>{m}</option>");
        }
        out.push_str("</select> ");
    } else {
        let _ = write!(
            out,
            "<input type=\"hidden\" name=\"_method\" value=\"{}\">",
            offered[0]
        );
    }
    let _ = write!(
        out,
        "<button type=\"submit\" disabled>{}</button> <span class=\"err\" id=\"rk-fields-status\"></span></p></form></section>",
        if record.is_some() { "Save" } else { "Create" }
    );
}

/// The request form: the route's methods, a JSON body (the shown record
/// for PUT/PATCH, else the route's template), and a bearer token.
fn form(out: &mut String, page: &Page, content: &Content) {
    if page.methods.is_empty() {
        return;
    }
    let methods: Vec<&str> = page
        .methods
        .iter()
        .map(String::as_str)
        .filter(|m| matches!(*m, "GET" | "POST" | "PUT" | "PATCH" | "DELETE"))
        .collect();
    let body = match content {
        Content::Record(r) if methods.iter().any(|m| matches!(*m, "PUT" | "PATCH")) => {
            let mut r = r.clone();
            r.remove("_links");
            // Only what a write takes: the fields the template (the
            // route's input) names — no key, no read-only field, no
            // embedded relation — so sending it unchanged succeeds.
            if let Some(Value::Object(writable)) = &page.template {
                r.retain(|k, _| writable.contains_key(k));
            }
            serde_json::to_string_pretty(&r).unwrap_or_default()
        }
        _ => page
            .template
            .as_ref()
            .and_then(|t| serde_json::to_string_pretty(t).ok())
            .unwrap_or_else(|| "{}".to_string()),
    };
    let order: &[&str] = if matches!(content, Content::Record(_)) {
        &["PATCH", "PUT", "POST", "DELETE", "GET"]
    } else {
        &["POST", "GET"]
    };
    let preferred = order
        .iter()
        .copied()
        .find(|m| methods.contains(m))
        .unwrap_or("GET");
    out.push_str("<section><h2>Send a request</h2><form id=\"rk-send\"><label>Method <select name=\"method\">");
    for m in &methods {
        let selected = if *m == preferred { " selected" } else { "" };
        let _ = write!(out, "<option{selected}>{}</option>", esc(m));
    }
    out.push_str(
        "</select></label><label>Body (JSON)<textarea name=\"body\" spellcheck=\"false\">",
    );
    escape(out, &body);
    out.push_str("</textarea></label><label>Bearer token <input type=\"password\" name=\"token\" autocomplete=\"off\" size=\"40\">");
    if page.account == Some(true) {
        out.push_str(" <span class=\"hint\">not needed: you are signed in</span>");
    }
    out.push_str("</label>");
    out.push_str("<button type=\"submit\" disabled>Send</button> <span class=\"hint\">Sends to this URL and shows the answer here; needs JavaScript.</span></form></section>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn page_for(content: Content, methods: &[&str]) -> String {
        let mut page = Page::new("GET", "/v1/books", Some("limit=2&access-token=secret"));
        page.methods = methods.iter().map(|m| m.to_string()).collect();
        let html = encode(
            StatusCode::OK,
            &HeaderValue::from_static("text/html; charset=UTF-8"),
            &HeaderMap::new(),
            &content,
            &page,
        );
        String::from_utf8(html.to_vec()).unwrap()
    }

    #[test]
    fn the_fields_form_follows_the_schema_and_the_record() {
        let mut page = Page::new("GET", "/v1/pets/1", None);
        page.methods = vec!["GET".into(), "PUT".into(), "PATCH".into()];
        page.input = Some(json!({
        "type": "object", "required": ["name"],
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "kind": {"type": ["string", "null"], "enum": ["cat", "dog", null]},
            "born": {"type": "string", "format": "date"},
            "weight": {"type": ["integer", "null"], "minimum": 0},
            "neutered": {"type": "boolean"},
            "id": {"type": "integer", "readOnly": true}
        }}));
        let mut rec = Map::new();
        rec.insert("name".into(), json!("Rex <3"));
        rec.insert("kind".into(), json!("dog"));
        rec.insert("neutered".into(), json!(true));
        let html = encode(
            StatusCode::OK,
            &HeaderValue::from_static("text/html; charset=UTF-8"),
            &HeaderMap::new(),
            &Content::Record(rec),
            &page,
        );
        let html = String::from_utf8(html.to_vec()).unwrap();
        let form = &html[html.find("id=\"rk-fields\"").unwrap()..];
        let form = &form[..form.find("</form>").unwrap()];
        assert!(form.contains("name=\"name\" data-kind=\"string\" data-initial=\"Rex &lt;3\" value=\"Rex &lt;3\" maxlength=\"20\""), "{form}");
        assert!(
            form.contains("name <span class=\"req\""),
            "required is marked: {form}"
        );
        assert!(
            form.contains("<option value=\"dog\" selected>dog</option>"),
            "{form}"
        );
        assert!(form.contains("type=\"date\" name=\"born\""), "{form}");
        assert!(form.contains("type=\"number\" name=\"weight\""), "{form}");
        assert!(
            form.contains("<option value=\"true\" selected>true</option>"),
            "{form}"
        );
        assert!(
            !form.contains("name=\"id\""),
            "read-only fields are not inputs"
        );
        assert!(
            form.contains("<option>PATCH</option><option>PUT</option>"),
            "{form}"
        );
        // A collection offers a create; a route without writes, nothing.
        page.methods = vec!["GET".into()];
        let html = encode(
            StatusCode::OK,
            &HeaderValue::from_static("text/html; charset=UTF-8"),
            &HeaderMap::new(),
            &Content::Records(Vec::new()),
            &page,
        );
        assert!(!String::from_utf8(html.to_vec())
            .unwrap()
            .contains("id=\"rk-fields\""));
    }

    #[test]
    fn a_collections_ids_link_to_their_records() {
        let mut rec = Map::new();
        rec.insert("id".into(), json!(7));
        rec.insert("title".into(), json!("Dune"));
        let out = page_for(Content::Records(vec![rec.clone()]), &["GET"]);
        assert!(out.contains("<a href=\"/v1/books/7\">7</a>"), "{out}");
        // Not an action's answer that happens to hold ids.
        let out = page_for(Content::Value(json!([{"id": 7}])), &["GET"]);
        assert!(!out.contains("href=\"/v1/books/7\""));
    }

    #[test]
    fn every_value_and_key_is_escaped() {
        let evil = "<script>alert(1)</script>\"'&";
        let mut rec = Map::new();
        rec.insert(evil.into(), json!(evil));
        rec.insert("id".into(), json!(1));
        let out = page_for(Content::Records(vec![rec.clone()]), &["GET", "POST"]);
        assert!(!out.contains("<script>alert"), "{out}");
        assert!(out.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        // The only script element is restkit's own.
        assert_eq!(out.matches("<script").count(), 1);
        let out = page_for(Content::Record(rec), &["GET", "PUT"]);
        assert!(!out.contains("<script>alert"), "{out}");
        assert_eq!(out.matches("<script").count(), 1);
    }

    #[test]
    fn only_http_urls_become_links_and_credentials_are_not_shown() {
        let out = page_for(
            Content::Value(json!({
                "a": "https://api.test/v1/books/1",
                "b": "javascript:alert(1)",
                "c": "https://x.test/\"onmouseover=alert(1)"
            })),
            &[],
        );
        assert!(out.contains("<a href=\"https://api.test/v1/books/1\">"));
        assert!(!out.contains("href=\"javascript"));
        assert!(out.contains("&quot;onmouseover"));
        assert!(!out.contains("secret"), "query credentials are dropped");
        assert!(out.contains("limit=2"));
    }

    #[test]
    fn the_form_offers_the_routes_methods_and_the_record() {
        let mut rec = Map::new();
        rec.insert("title".into(), json!("Dune"));
        rec.insert("_links".into(), json!({"self": {"href": "http://h/1"}}));
        let out = page_for(Content::Record(rec), &["GET", "PUT", "PATCH", "DELETE"]);
        assert!(out.contains("<option selected>PATCH</option>"));
        assert!(out.contains("&quot;title&quot;: &quot;Dune&quot;"));
        let form = &out[out.find("<form").unwrap()..];
        assert!(
            !form.contains("_links"),
            "read-only members are not sent back"
        );
        assert!(!page_for(Content::Empty, &[]).contains("<form"));
    }

    #[test]
    fn the_csp_allows_exactly_the_inline_style_and_script() {
        let mut h = HeaderMap::new();
        security_headers(&mut h);
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'sha256-"));
        assert!(!csp.contains("unsafe-inline"));
    }
}
