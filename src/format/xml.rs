//! XML (§5.1): a `<response>` root; a collection is a sequence of `<item>`
//! elements; a record's fields are child elements; array members are
//! `<item>` too. Text goes through quick-xml's escaping writer, so a value
//! can never close an element or open one.
//!
//! Two things JSON can say and XML 1.0 cannot are mapped, not dropped:
//! a key that is not an XML name is written as `<field name="the key">`,
//! and characters XML 1.0 forbids (control characters other than tab, CR
//! and LF) become U+FFFD. `null` is an empty element.

use bytes::Bytes;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;
use serde_json::{Map, Value};

use super::Content;

/// Encodes content under a `<response>` root.
pub fn encode(content: &Content) -> Bytes {
    let mut w = Writer::new(Vec::with_capacity(4096));
    // Writing to a Vec cannot fail.
    let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
    let _ = open(&mut w, "response");
    match content {
        Content::Empty => {}
        Content::Record(r) => fields(&mut w, r),
        Content::Records(rs) => {
            for r in rs {
                let _ = open(&mut w, "item");
                fields(&mut w, r);
                let _ = close(&mut w, "item");
            }
        }
        Content::Value(v) => inner(&mut w, v),
    }
    let _ = close(&mut w, "response");
    Bytes::from(w.into_inner())
}

fn open(w: &mut Writer<Vec<u8>>, name: &str) -> std::io::Result<()> {
    w.write_event(Event::Start(BytesStart::new(name)))
}

fn close(w: &mut Writer<Vec<u8>>, name: &str) -> std::io::Result<()> {
    w.write_event(Event::End(BytesEnd::new(name)))
}

fn fields(w: &mut Writer<Vec<u8>>, map: &Map<String, Value>) {
    for (k, v) in map {
        element(w, k, v);
    }
}

/// The children of an element holding `v`.
fn inner(w: &mut Writer<Vec<u8>>, v: &Value) {
    match v {
        Value::Null => {}
        Value::Object(map) => fields(w, map),
        Value::Array(items) => {
            for item in items {
                element(w, "item", item);
            }
        }
        Value::String(s) => text(w, s),
        other => text(w, &other.to_string()),
    }
}

fn element(w: &mut Writer<Vec<u8>>, key: &str, v: &Value) {
    let (name, start) = if is_xml_name(key) {
        (key, BytesStart::new(key))
    } else {
        let mut start = BytesStart::new("field");
        start.push_attribute(("name", &*clean(key)));
        ("field", start)
    };
    if v.is_null() {
        let _ = w.write_event(Event::Empty(start));
        return;
    }
    let _ = w.write_event(Event::Start(start));
    inner(w, v);
    let _ = close(w, name);
}

fn text(w: &mut Writer<Vec<u8>>, s: &str) {
    let s = clean(s);
    let _ = w.write_event(Event::Text(BytesText::new(&s)));
}

/// Replaces characters XML 1.0 cannot carry with U+FFFD.
fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}');
    if s.chars().any(bad) {
        s.chars()
            .map(|c| if bad(c) { '\u{fffd}' } else { c })
            .collect::<String>()
            .into()
    } else {
        s.into()
    }
}

/// A plain XML name: ASCII letter or `_` first, then letters, digits,
/// `_`, `-`, `.`; not starting with `xml` (reserved).
fn is_xml_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !s.to_ascii_lowercase().starts_with("xml")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn xml(v: Value) -> String {
        String::from_utf8(encode(&Content::Value(v)).to_vec()).unwrap()
    }

    #[test]
    fn records_nest_and_text_is_escaped() {
        let out = xml(
            json!([{"id": 1, "title": "<script>alert(1)</script> & co", "tags": ["a", "b"], "note": null}]),
        );
        assert_eq!(
            out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><response><item><id>1</id>\
             <title>&lt;script&gt;alert(1)&lt;/script&gt; &amp; co</title>\
             <tags><item>a</item><item>b</item></tags><note/></item></response>"
        );
    }

    #[test]
    fn keys_that_are_not_names_and_forbidden_characters_are_mapped() {
        let out = xml(json!({"1st key": "x\u{1}y", "_links": {"self": {"href": "h"}}}));
        assert!(
            out.contains("<field name=\"1st key\">x\u{fffd}y</field>"),
            "{out}"
        );
        assert!(
            out.contains("<_links><self><href>h</href></self></_links>"),
            "{out}"
        );
    }
}
