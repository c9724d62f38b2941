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
use quick_xml::escape::{escape, partial_escape};
use serde_json::{Map, Value};

use super::Content;

/// Encodes content under a `<response>` root.
///
/// Written straight into one buffer: element names are checked XML names
/// (or a `field` element), and every text and attribute goes through
/// quick-xml's escaping. (Its event writer cost 2–3× JSON's encoding for
/// a page; this costs about 1.3×, see `examples/encode_cost.rs`.)
pub fn encode(content: &Content) -> Bytes {
    let mut w = Vec::with_capacity(8192);
    w.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><response>");
    match content {
        Content::Empty => {}
        Content::Record(r) => fields(&mut w, r),
        Content::Records(rs) => {
            for r in rs {
                w.extend_from_slice(b"<item>");
                fields(&mut w, r);
                w.extend_from_slice(b"</item>");
            }
        }
        Content::Value(v) => inner(&mut w, v),
    }
    w.extend_from_slice(b"</response>");
    Bytes::from(w)
}

fn fields(w: &mut Vec<u8>, map: &Map<String, Value>) {
    for (k, v) in map {
        element(w, k, v);
    }
}

/// The children of an element holding `v`.
fn inner(w: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => {}
        Value::Object(map) => fields(w, map),
        Value::Array(items) => {
            for item in items {
                element(w, "item", item);
            }
        }
        Value::String(s) => text(w, s),
        Value::Bool(b) => w.extend_from_slice(if *b { b"true" } else { b"false" }),
        // serde_json writes numbers with itoa/ryu, as its own encoder does.
        Value::Number(n) => {
            let _ = serde_json::to_writer(&mut *w, n);
        }
    }
}

/// Escaped text. One scan decides: most text has nothing to escape or
/// replace, and is copied as it is.
fn text(w: &mut Vec<u8>, s: &str) {
    let plain = !s.bytes().any(|b| {
        matches!(b, b'<' | b'>' | b'&' | 0xEF) || (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
    });
    if plain {
        w.extend_from_slice(s.as_bytes());
    } else {
        w.extend_from_slice(partial_escape(clean(s)).as_bytes());
    }
}

fn element(w: &mut Vec<u8>, key: &str, v: &Value) {
    let named = is_xml_name(key);
    w.push(b'<');
    if named {
        w.extend_from_slice(key.as_bytes());
    } else {
        w.extend_from_slice(b"field name=\"");
        w.extend_from_slice(escape(clean(key)).as_bytes());
        w.push(b'"');
    }
    if v.is_null() {
        w.extend_from_slice(b"/>");
        return;
    }
    w.push(b'>');
    inner(w, v);
    w.extend_from_slice(b"</");
    w.extend_from_slice(if named { key } else { "field" }.as_bytes());
    w.push(b'>');
}

/// Replaces characters XML 1.0 cannot carry with U+FFFD.
fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}');
    // Bytes first: most text has no control character and no U+FFFE/F
    // (UTF-8 EF BF BE/BF), and decoding characters costs more.
    let suspect = s
        .bytes()
        .any(|b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r') || b == 0xEF);
    if suspect && s.chars().any(bad) {
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
        && !s.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("xml"))
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

    #[test]
    fn text_is_copied_whole_or_escaped_and_cleaned() {
        let out = xml(json!({
            "plain": "Dune \u{fffc} ok",
            "marks": "a<b>&c \"q\" 'a'",
            "bad": "x\u{fffe}y\u{ffff}z\u{1b}",
            "n": 2.5, "t": true
        }));
        assert!(out.contains("<plain>Dune \u{fffc} ok</plain>"), "{out}");
        assert!(
            out.contains("<marks>a&lt;b&gt;&amp;c \"q\" 'a'</marks>"),
            "{out}"
        );
        assert!(
            out.contains("<bad>x\u{fffd}y\u{fffd}z\u{fffd}</bad>"),
            "{out}"
        );
        assert!(out.contains("<n>2.5</n><t>true</t>"), "{out}");
        assert!(roxmltree::Document::parse(&out).is_ok(), "{out}");
    }
}
