//! `GET /docs` (§11): an HTML reference of every endpoint, rendered once
//! from the OpenAPI document (the one description there is) — method,
//! path, scope, parameters, request and response schemas, and a curl
//! example. Readable without JavaScript (there is none), nothing loaded
//! from elsewhere; every value escaped.

use std::fmt::Write as _;
use std::sync::OnceLock;

use http::HeaderValue;
use serde_json::Value;

use super::resolve;
use crate::format::html::{esc, Shell};

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}\
form.try{margin:.6em 0;padding:.5em .7em;background:#f3f6fb;border-radius:4px}form.try label{margin-right:.6em}\
form.try details{display:inline-block;margin-right:.6em}.account{float:right}\
header{background:#1d2330;color:#fff;padding:.8em 1.2em}header a{color:#cfe0ff}\
main{max-width:72em;margin:1em auto;padding:0 1.2em}nav{column-width:22em;background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:.6em 1em}\
nav a{display:block;text-decoration:none;color:#1f5fbf;font:13px ui-monospace,Menlo,Consolas,monospace}\
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:.6em 1em;margin:1em 0}\
h2{font-size:1.1em;margin:1.2em 0 .4em}h3{font-size:1em;margin:.2em 0}\
.m{display:inline-block;min-width:4.5em;font:bold 12px ui-monospace,monospace;color:#fff;background:#4a5468;border-radius:3px;padding:.1em .4em;margin-right:.5em;text-align:center}\
.GET{background:#17803d}.POST{background:#1f5fbf}.PUT{background:#8a5a00}.PATCH{background:#7a2e8f}.DELETE{background:#b42318}\
table{border-collapse:collapse;font-size:13px;width:100%}td,th{border-bottom:1px solid #e6e8ee;padding:.2em .5em;text-align:left;vertical-align:top}\
pre{background:#f5f6f8;padding:.5em;overflow:auto;font:12px/1.45 ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap}\
details summary{cursor:pointer;color:#4a5468}.hint{color:#6b7385;font-size:13px}";

/// The page's CSP: its own style and script only (by hash), nothing from
/// anywhere.
pub fn csp() -> &'static HeaderValue {
    static CSP: OnceLock<HeaderValue> = OnceLock::new();
    CSP.get_or_init(|| crate::format::html::csp_allowing(STYLE, Some(SCRIPT), ""))
}

/// A parameter's type as a reader wants it: the allowed names of a list,
/// JSON for a JSON-valued one.
fn parameter_type(p: &Value) -> String {
    let s = &p["schema"];
    if s.is_null() && p["content"].get("application/json").is_some() {
        return "JSON (see description)".into();
    }
    if let Some(names) = s["items"]["enum"].as_array() {
        let names: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
        return format!("comma-separated, of: {}", names.join(", "));
    }
    schema_type(s)
}

/// A schema's type in words: `string (date-time)`, `one of: json, xml`,
/// `array of integer`; alternatives are joined with "or", each once.
fn schema_type(s: &Value) -> String {
    if let Some(options) = s["anyOf"].as_array().or(s["oneOf"].as_array()) {
        let mut words: Vec<String> = Vec::new();
        for w in options.iter().map(schema_type) {
            if !words.contains(&w) {
                words.push(w);
            }
        }
        return words.join(" or ");
    }
    if let Some(values) = s["enum"].as_array() {
        let values: Vec<String> = values
            .iter()
            .map(|v| match v {
                Value::String(t) => t.clone(),
                other => other.to_string(),
            })
            .collect();
        return format!("one of: {}", values.join(", "));
    }
    if s["type"] == "array" {
        return format!("array of {}", schema_type(&s["items"]));
    }
    let base = match &s["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ if s.get("$ref").is_some() => s["$ref"]
            .as_str()
            .unwrap_or_default()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string(),
        _ => "any".into(),
    };
    match (s["format"].as_str(), s["pattern"].as_str()) {
        (Some(f), _) => format!("{base} ({f})"),
        (None, Some("^[0-9]{1,14}$")) => format!("{base} (milliseconds)"),
        _ => base,
    }
}

/// Escaped prose, with `backticked` spans set as code (as the
/// declarations' descriptions write names and values).
fn prose(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut parts = text.split('`');
    if let Some(first) = parts.next() {
        out.push_str(&esc(first));
    }
    let rest: Vec<&str> = parts.collect();
    // An odd count of backticks leaves the last one as it was written.
    let paired = rest.len() - rest.len() % 2;
    for (i, part) in rest.iter().enumerate() {
        if i >= paired {
            out.push('`');
            out.push_str(&esc(part));
        } else if i % 2 == 0 {
            out.push_str("<code>");
            out.push_str(&esc(part));
            out.push_str("</code>");
        } else {
            out.push_str(&esc(part));
        }
    }
    out
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// A small example body for a request schema: each property's example
/// value by type.
fn example(doc: &Value, schema: &Value) -> Value {
    let schema = resolve(doc, schema);
    if schema["type"] == "array" {
        return Value::Array(vec![example(doc, &schema["items"])]);
    }
    crate::validate::example_body(schema)
}

/// The reference page for `doc`.
pub fn render(doc: &Value) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let title = doc["info"]["title"].as_str().unwrap_or("API");
    let server = doc["servers"][0]["url"].as_str().unwrap_or("");
    let mut header = format!(
        "<b>{}</b> {} · <a href=\"/openapi.json\">openapi.json</a> · <a href=\"/\">the API</a>",
        esc(title),
        esc(doc["info"]["version"].as_str().unwrap_or("")),
    );
    // "Try it" opens the browsable pages, which read with the signed-in
    // session: offer the sign-in here too.
    if doc["paths"].get(crate::http::own::SIGN_IN).is_some() {
        let _ = write!(
            header,
            " · <a class=\"account\" href=\"{}?next=%2Fdocs\">Sign in</a>",
            crate::http::own::SIGN_IN
        );
    }
    Shell {
        title: &format!("{title} reference"),
        style: STYLE,
        header: Some(&header),
        noindex: false,
    }
    .open(&mut out);
    if let Some(d) = doc["info"]["description"].as_str() {
        let _ = write!(out, "<p>{}</p>", prose(d));
    }
    let Some(paths) = doc["paths"].as_object() else {
        Shell::close(&mut out, None);
        return out;
    };
    out.push_str("<h2>Endpoints</h2><nav>");
    for (path, item) in paths {
        for (method, op) in item.as_object().into_iter().flatten() {
            if method == "parameters" {
                continue;
            }
            let _ = write!(
                out,
                "<a href=\"#{}\">{} {}</a>",
                esc(op["operationId"].as_str().unwrap_or("")),
                esc(&method.to_ascii_uppercase()),
                esc(path)
            );
        }
    }
    out.push_str("</nav>");
    for (path, item) in paths {
        let shared: Vec<&Value> = item["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        for (method, op) in item.as_object().into_iter().flatten() {
            if method == "parameters" {
                continue;
            }
            let m = method.to_ascii_uppercase();
            let _ = write!(
                out,
                "<section id=\"{}\"><h3><span class=\"m {m}\">{m}</span><code>{}</code></h3><p>{}</p>",
                esc(op["operationId"].as_str().unwrap_or("")),
                esc(path),
                esc(op["summary"].as_str().unwrap_or(""))
            );
            if let Some(d) = op["description"].as_str() {
                let _ = write!(out, "<p>{}</p>", prose(d));
            }
            let scope = op["security"][0]["oauth2"][0].as_str();
            match scope {
                Some(s) => {
                    let _ = write!(out, "<p class=\"hint\">Needs an access token with the scope <code>{}</code>.</p>", esc(s));
                }
                None => out.push_str("<p class=\"hint\">Public.</p>"),
            }
            let params: Vec<&Value> = shared
                .iter()
                .copied()
                .chain(op["parameters"].as_array().into_iter().flatten())
                .map(|p| resolve(doc, p))
                .collect();
            if !params.is_empty() {
                out.push_str("<table><tr><th>parameter</th><th>in</th><th>type</th><th>description</th></tr>");
                for p in &params {
                    let _ = write!(
                        out,
                        "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(p["name"].as_str().unwrap_or("")),
                        esc(p["in"].as_str().unwrap_or("")),
                        esc(&parameter_type(p)),
                        prose(p["description"].as_str().unwrap_or(""))
                    );
                }
                out.push_str("</table>");
            }
            let body_schema = op["requestBody"]["content"]
                .as_object()
                .and_then(|c| c.get("application/json").or_else(|| c.values().next()))
                .map(|m| &m["schema"]);
            if let Some(schema) = body_schema {
                let _ = write!(
                    out,
                    "<details><summary>Request body</summary><pre>{}</pre></details>",
                    esc(&pretty(resolve(doc, schema)))
                );
            }
            out.push_str("<details><summary>Responses</summary><table>");
            for (status, r) in op["responses"].as_object().into_iter().flatten() {
                let r = resolve(doc, r);
                let schema = r["content"]
                    .get("application/json")
                    .or_else(|| r["content"].get("application/problem+json"))
                    .map(|m| schema_type(&m["schema"]))
                    .unwrap_or_default();
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(status),
                    prose(r["description"].as_str().unwrap_or("")),
                    esc(&schema)
                );
            }
            out.push_str("</table></details>");
            // A curl example.
            let mut curl = String::from("curl");
            if scope.is_some() {
                curl.push_str(" -H \"Authorization: Bearer $TOKEN\"");
            }
            if m != "GET" {
                let _ = write!(curl, " -X {m}");
            }
            if let Some(schema) = body_schema {
                let body = example(doc, schema).to_string();
                let _ = write!(
                    curl,
                    " -H 'content-type: application/json' -d '{}'",
                    body.replace('\'', "'\\''")
                );
            }
            let _ = write!(curl, " '{server}{path}'");
            let _ = write!(out, "<pre>{}</pre>", esc(&curl));
            // A live feed (§16): how to follow it.
            if let Some(live) = op["responses"]["200"]["content"].get("text/event-stream") {
                let mut follow = String::from("curl -N -H 'Accept: text/event-stream'");
                if scope.is_some() {
                    follow.push_str(" -H \"Authorization: Bearer $TOKEN\"");
                }
                let _ = write!(follow, " '{server}{path}'");
                let _ = write!(
                    out,
                    "<details><summary>Follow live (Server-Sent Events)</summary><p>{}</p><pre>{}</pre></details>",
                    prose(live["schema"]["description"].as_str().unwrap_or("")),
                    esc(&follow)
                );
            }
            if item.get("get").is_some() {
                try_it(&mut out, path, &m, &params);
            }
            out.push_str("</section>");
        }
    }
    Shell::close(&mut out, Some(SCRIPT));
    out
}

/// "Try it": the operation's path parameters (and, for a GET, its query
/// parameters) filled in, then its URL opened as the browsable page —
/// which reads with the signed-in session, and whose forms send the
/// other methods. Needs the page's script (it fills the path).
fn try_it(out: &mut String, path: &str, method: &str, params: &[&Value]) {
    out.push_str("<form class=\"try\" data-template=\"");
    out.push_str(&esc(path));
    out.push_str("\"><b>Try it</b> ");
    let mut query = String::new();
    for p in params {
        let name = esc(p["name"].as_str().unwrap_or(""));
        match p["in"].as_str() {
            Some("path") => {
                let _ = write!(
                    out,
                    "<label>{name} <input name=\"{name}\" data-path required size=\"8\"></label> "
                );
            }
            Some("query") if method == "GET" => {
                let _ = write!(
                    query,
                    "<label>{name} <input name=\"{name}\" size=\"14\"></label> "
                );
            }
            _ => {}
        }
    }
    if !query.is_empty() {
        let _ = write!(
            out,
            "<details><summary>query parameters</summary>{query}</details>"
        );
    }
    let what = if method == "GET" {
        "Open"
    } else {
        "Open the page that sends it"
    };
    let _ = write!(
        out,
        "<button type=\"submit\" disabled>{what}</button> <span class=\"hint\">in the browsable \
         API, signed in (needs JavaScript)</span></form>"
    );
}

/// Fills each "Try it" form's path template and opens the URL.
const SCRIPT: &str = "document.querySelectorAll('form.try').forEach(function(f){\
var b=f.querySelector('button');b.disabled=false;f.addEventListener('submit',function(ev){ev.preventDefault();\
var path=f.dataset.template,q=[];f.querySelectorAll('input').forEach(function(i){\
if(i.hasAttribute('data-path'))path=path.split('{'+i.name+'}').join(encodeURIComponent(i.value));\
else if(i.value!=='')q.push(encodeURIComponent(i.name)+'='+encodeURIComponent(i.value))});\
location.href=path+(q.length?'?'+q.join('&'):'')})});";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn types_read_as_words_each_alternative_once() {
        let timestamp = json!({"anyOf": [
            {"type": "string", "pattern": "^[0-9]{1,14}$"},
            {"type": "string", "format": "date-time"},
        ]});
        assert_eq!(
            schema_type(&timestamp),
            "string (milliseconds) or string (date-time)"
        );
        assert_eq!(
            schema_type(&json!({"anyOf": [{"type": "string"}, {"type": "string"}]})),
            "string"
        );
        assert_eq!(
            schema_type(&json!({"type": "string", "enum": ["json", "xml"]})),
            "one of: json, xml"
        );
        assert_eq!(
            schema_type(&json!({"type": "array", "items": {"enum": [1, 2]}})),
            "array of one of: 1, 2"
        );
    }

    #[test]
    fn backticks_become_code_and_everything_is_escaped() {
        assert_eq!(
            prose("Use `q=(a:<b>)` & `x`"),
            "Use <code>q=(a:&lt;b&gt;)</code> &amp; <code>x</code>"
        );
        assert_eq!(prose("one ` left"), "one ` left");
        assert_eq!(prose("`a` and `b"), "<code>a</code> and `b");
    }
}
