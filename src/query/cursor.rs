//! Opaque, tamper-evident cursors for keyset pagination (§6.8).
//!
//! A cursor carries the sort-key values and primary key of the last record
//! of a page, bound to the resource and to the query (filter, sort,
//! timestamp) it was issued for, and signed with HMAC-SHA256. Clients
//! cannot read meaning into it or forge one; a cursor replayed against
//! another resource or another query is refused (400).
//!
//! Why keysets: an offset makes the database walk and discard every row
//! before the page, so page 40,000 costs 40,000 times page 1. A keyset
//! (`WHERE (sort key, id) > (last seen)`) starts at the right place in
//! the index, whatever the page.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

use super::QueryError;

type HmacSha256 = Hmac<Sha256>;

#[derive(Serialize, Deserialize)]
struct Payload {
    /// Resource (module prefix + name).
    r: String,
    /// Digest of the query the cursor belongs to.
    q: String,
    /// Sort-key values, then the primary key, of the last record seen.
    k: Vec<Value>,
}

/// Signs and checks cursors with one secret.
#[derive(Clone)]
pub struct CursorKey {
    secret: Vec<u8>,
}

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(..)")
    }
}

fn digest(text: &str) -> String {
    use sha2::Digest;
    let d = Sha256::digest(text.as_bytes());
    URL_SAFE_NO_PAD.encode(&d[..12])
}

impl CursorKey {
    pub fn new(secret: &[u8]) -> CursorKey {
        CursorKey {
            secret: secret.to_vec(),
        }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length.
        HmacSha256::new_from_slice(&self.secret).expect("HMAC accepts any key length")
    }

    /// The cursor for the page after the record whose keys are `keys`.
    pub fn issue(&self, resource: &str, signature: &str, keys: Vec<Value>) -> String {
        let payload = serde_json::to_vec(&Payload {
            r: resource.to_string(),
            q: digest(signature),
            k: keys,
        })
        .unwrap_or_default();
        let mut mac = self.mac();
        mac.update(&payload);
        let tag = mac.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The keys a cursor carries, if it is genuine and was issued for this
    /// resource and query.
    pub fn open(
        &self,
        token: &str,
        resource: &str,
        signature: &str,
    ) -> Result<Vec<Value>, QueryError> {
        let bad = |why: &str| QueryError::BadCursor(why.to_string());
        if token.len() > 4096 {
            return Err(bad("too long"));
        }
        let (p, t) = token.split_once('.').ok_or_else(|| bad("not a cursor"))?;
        let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| bad("not a cursor"))?;
        let tag = URL_SAFE_NO_PAD.decode(t).map_err(|_| bad("not a cursor"))?;
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&tag)
            .map_err(|_| bad("it was altered or not issued here"))?;
        let payload: Payload = serde_json::from_slice(&payload).map_err(|_| bad("not a cursor"))?;
        if payload.r != resource {
            return Err(bad("it was issued for another resource"));
        }
        if payload.q != digest(signature) {
            return Err(bad("it was issued for another filter or sort"));
        }
        Ok(payload.k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cursors_round_trip_and_refuse_tampering_and_replay() {
        let key = CursorKey::new(b"secret");
        let c = key.issue("/v1/books", "sort=-year\n", vec![json!(2010), json!(42)]);
        assert_eq!(
            key.open(&c, "/v1/books", "sort=-year\n").unwrap(),
            vec![json!(2010), json!(42)]
        );
        assert!(key.open(&c, "/v2/books", "sort=-year\n").is_err());
        assert!(key.open(&c, "/v1/books", "sort=year\n").is_err());
        let mut forged = c.clone().into_bytes();
        forged[3] ^= 1;
        assert!(key
            .open(
                &String::from_utf8_lossy(&forged),
                "/v1/books",
                "sort=-year\n"
            )
            .is_err());
        assert!(CursorKey::new(b"other")
            .open(&c, "/v1/books", "sort=-year\n")
            .is_err());
        assert!(key.open("garbage", "/v1/books", "").is_err());
    }
}
