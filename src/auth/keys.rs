//! Signing keys for access tokens (§8.2): one RSA key signs (RS256, with
//! its `kid`), and the JWKS publishes it together with any previous public
//! keys, so tokens signed before a rotation verify until they expire.
//!
//! A key's `kid` is its RFC 7638 thumbprint. Keys come from PEM files
//! (`auth.private_key`, `auth.previous_public_keys`), or — with no file
//! configured — are generated once and kept in a file beside the database
//! (`restkit-jwt-key.pem`), so restarts keep tokens valid.

use std::path::{Path, PathBuf};

use base64::Engine;
use jsonwebtoken::{DecodingKey, EncodingKey};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A public key tokens may be verified with.
pub struct VerifyingKey {
    pub kid: String,
    pub decoding: DecodingKey,
    /// The key as a JWK (RFC 7517), for the JWKS.
    pub jwk: Value,
}

/// The signing key and every key a token may be verified with (the
/// signing key's public half first).
pub struct KeySet {
    pub kid: String,
    encoding: EncodingKey,
    verifying: Vec<VerifyingKey>,
    /// Derived from the private key (so every instance holding it, and
    /// every restart, agrees): the key of the tag each access token's
    /// `jti` carries ([`KeySet::jti_tag`]).
    tag_key: [u8; 32],
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kid", &self.kid)
            .field("verifying", &self.verifying.len())
            .finish()
    }
}

/// The file a generated key is kept in, beside the database.
pub const GENERATED_KEY_FILE: &str = "restkit-jwt-key.pem";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn verifying_key(public: &RsaPublicKey) -> Result<VerifyingKey, String> {
    let n = b64(&public.n().to_bytes_be());
    let e = b64(&public.e().to_bytes_be());
    // RFC 7638: the required members, lexicographic order, no spaces.
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    let kid = b64(&Sha256::digest(canonical.as_bytes()));
    let decoding = DecodingKey::from_rsa_components(&n, &e).map_err(|e| e.to_string())?;
    Ok(VerifyingKey {
        jwk: json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e}),
        kid,
        decoding,
    })
}

fn private_from_pem(pem: &str) -> Result<RsaPrivateKey, String> {
    RsaPrivateKey::from_pkcs8_pem(pem)
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
        .map_err(|_| "not an RSA private key in PEM (PKCS#8 or PKCS#1)".to_string())
}

fn public_from_pem(pem: &str) -> Result<RsaPublicKey, String> {
    RsaPublicKey::from_public_key_pem(pem)
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
        .map_err(|_| "not an RSA public key in PEM (SPKI or PKCS#1)".to_string())
}

impl KeySet {
    /// From a private key's PEM and the PEMs of previous public keys.
    pub fn from_pem(private_pem: &str, previous: &[String]) -> Result<KeySet, String> {
        let private = private_from_pem(private_pem)?;
        if private.size() < 256 {
            return Err("an RSA key of at least 2048 bits is required".into());
        }
        let current = verifying_key(&private.to_public_key())?;
        let encoding = EncodingKey::from_rsa_pem(private_pem.as_bytes())
            .map_err(|e| format!("cannot use the key for RS256: {e}"))?;
        let mut verifying = vec![current];
        for pem in previous {
            let key = verifying_key(&public_from_pem(pem)?)?;
            if verifying.iter().all(|k| k.kid != key.kid) {
                verifying.push(key);
            }
        }
        let mut tag_key = Sha256::new();
        tag_key.update(b"restkit access-token jti tag\0");
        tag_key.update(private_pem.trim().as_bytes());
        Ok(KeySet {
            kid: verifying[0].kid.clone(),
            tag_key: tag_key.finalize().into(),
            encoding,
            verifying,
        })
    }

    /// The configured keys (`private_key` and `previous_public_keys` are
    /// PEM file paths), or, without a configured key, the one generated
    /// once and kept in `data_dir` (in memory only when there is none).
    pub fn load(
        private_key: &str,
        previous_public_keys: &[String],
        data_dir: Option<&Path>,
        stored: Option<&str>,
    ) -> Result<KeySet, String> {
        let read = |path: &str, what: &str| {
            std::fs::read_to_string(path)
                .map_err(|e| format!("auth.{what}: cannot read {path}: {e}"))
        };
        let previous = previous_public_keys
            .iter()
            .map(|p| read(p, "previous_public_keys"))
            .collect::<Result<Vec<_>, _>>()?;
        if !private_key.is_empty() {
            let pem = read(private_key, "private_key")?;
            return KeySet::from_pem(&pem, &previous)
                .map_err(|e| format!("auth.private_key: {private_key}: {e}"));
        }
        if let Some(pem) = stored {
            return KeySet::from_pem(pem, &previous)
                .map_err(|e| format!("the signing key stored in the database: {e}"));
        }
        let Some(dir) = data_dir else {
            let (pem, _) = generate()?;
            return KeySet::from_pem(&pem, &previous);
        };
        let path: PathBuf = dir.join(GENERATED_KEY_FILE);
        let pem = match std::fs::read_to_string(&path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (pem, _) = generate()?;
                publish_private(&path, &pem)?
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        KeySet::from_pem(&pem, &previous).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Signs `claims` as a JWT with this set's key and `kid`, `typ`
    /// `at+jwt` (RFC 9068).
    pub fn sign(&self, claims: &Value) -> Result<String, String> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| e.to_string())
    }

    /// The tag an access token's `jti` carries after its id (`<id>.<tag>`):
    /// an HMAC over the id, subject and expiry. A token whose tag does not
    /// match was not issued here, and is refused for the price of an HMAC
    /// instead of an RSA verification — without charging its sender's
    /// address, so a flood of forgeries cannot lock out the real tokens
    /// sent from it. (Only a copy of a real token's id, subject and expiry
    /// passes to the RSA check.)
    pub fn jti_tag(&self, id: &str, sub: &str, exp: i64) -> String {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<Sha256>>::new_from_slice(&self.tag_key)
            .expect("HMAC accepts any key length");
        for part in [id.as_bytes(), b"\0", sub.as_bytes(), b"\0"] {
            mac.update(part);
        }
        mac.update(&exp.to_be_bytes());
        b64(&mac.finalize().into_bytes()[..16])
    }

    /// Does `tag` match [`KeySet::jti_tag`] (compared in constant time)?
    pub fn jti_tag_matches(&self, id: &str, sub: &str, exp: i64, tag: &str) -> bool {
        let expected = self.jti_tag(id, sub, exp);
        expected.len() == tag.len()
            && expected
                .bytes()
                .zip(tag.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// The key with this `kid`, if the set has it.
    pub fn verifying(&self, kid: &str) -> Option<&VerifyingKey> {
        self.verifying.iter().find(|k| k.kid == kid)
    }

    /// `/.well-known/jwks.json`.
    pub fn jwks(&self) -> Value {
        json!({"keys": self.verifying.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
    }
}

/// A new RSA-2048 key pair: (private PKCS#8 PEM, public SPKI PEM).
pub fn generate() -> Result<(String, String), String> {
    let mut rng = argon2::password_hash::rand_core::OsRng;
    let private = RsaPrivateKey::new(&mut rng, 2048).map_err(|e| e.to_string())?;
    let private_pem = private
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| e.to_string())?
        .to_string();
    let public_pem = private
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| e.to_string())?;
    Ok((private_pem, public_pem))
}

/// Puts a freshly generated key at `path` unless another process got
/// there first, and returns the key in effect. Instances started at once
/// in one directory must agree on one key: the key is written whole to a
/// file of this process's own, then linked to `path` — atomically, and
/// only if `path` does not exist yet — so a reader never sees half a key
/// and the loser of the race reads the winner's.
fn publish_private(path: &Path, pem: &str) -> Result<String, String> {
    let tmp = path.with_extension(format!(
        "pem.{}.{}.tmp",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    write_private(&tmp, pem)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    let ours = match linked {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        // A file system without hard links (FAT, some network mounts):
        // an exclusive create is the next best thing.
        Err(_) => match write_private(path, pem) {
            Ok(()) => true,
            Err(_) if path.exists() => false,
            Err(e) => return Err(e),
        },
    };
    if !ours {
        return std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()));
    }
    // The new name is durable too, or a crash could lose the key that
    // tokens were just signed with.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    tracing::info!(path = %path.display(), "generated the token signing key");
    Ok(pem.to_string())
}

/// Writes a private key readable by its owner only (and synced, so a
/// crash right after leaves the whole key or none).
pub fn write_private(path: &Path, pem: &str) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIVATE: &str = include_str!("../../tests/fixtures/jwt-private.pem");
    const PREVIOUS: &str = include_str!("../../tests/fixtures/jwt-previous-public.pem");

    /// Instances started at once in one empty directory agree on one key.
    #[test]
    fn racing_first_starts_agree_on_one_generated_key() {
        let dir = tempfile::tempdir().unwrap();
        let kids: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| KeySet::load("", &[], Some(dir.path()), None).unwrap().kid))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(kids.iter().all(|k| k == &kids[0]), "{kids:?}");
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn the_kid_is_the_thumbprint_and_previous_keys_are_published() {
        let set = KeySet::from_pem(PRIVATE, &[PREVIOUS.to_string()]).unwrap();
        let jwks = set.jwks();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0]["kid"], set.kid);
        assert_eq!(keys[0]["alg"], "RS256");
        assert_ne!(keys[0]["kid"], keys[1]["kid"]);
        assert_eq!(set.kid.len(), 43, "base64url of a SHA-256");
        assert!(KeySet::from_pem("nope", &[]).is_err());
    }
}
