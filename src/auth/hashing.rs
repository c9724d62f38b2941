//! Argon2id, bounded in time and in memory (§8).
//!
//! Argon2id is deliberately expensive: about 19 MiB of working memory and
//! tens of milliseconds per hash. So:
//! - at most one hash per core runs at once, on the blocking pool, and a
//!   job that cannot start within [`HASH_WAIT`] is a 503 (unbounded, 50
//!   clients sending a wrong password took a process from 66 MB to
//!   6.6 GB);
//! - each of those slots owns its working memory, allocated on first use
//!   and reused for every later hash. Letting the argon2 crate allocate
//!   19 MiB per hash looks harmless but is not: the first free of such a
//!   block raises glibc's dynamic mmap threshold past it, after which every
//!   hash's block comes from whichever malloc arena the blocking thread
//!   uses, and each arena keeps it. A soak run grew from 100 to 270 MiB
//!   that way, in steps, each time a remembered password expired. With the
//!   memory owned here the process holds at most `cores × 19 MiB` for
//!   hashing, allocated once (plus, for a stored hash made elsewhere with
//!   stronger settings, its own buffer for that one check, at most
//!   [`MAX_FOREIGN_M_COST`]).

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// The most memory (KiB) a stored hash made elsewhere may ask for: 64 MiB,
/// OWASP's strongest Argon2id setting with room to spare.
pub const MAX_FOREIGN_M_COST: u32 = 64 * 1024;

/// Block buffers allocated so far (never more than the slots).
static ALLOCATED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Longest a hashing job waits for a free slot.
pub const HASH_WAIT: Duration = Duration::from_secs(2);

/// The hashing slots: a permit per core, and the working memory of the
/// slots that have run (never more buffers than permits).
struct Slots {
    permits: Semaphore,
    memory: Mutex<Vec<Vec<Block>>>,
}

fn slots() -> &'static Slots {
    static S: OnceLock<Slots> = OnceLock::new();
    S.get_or_init(|| Slots {
        permits: Semaphore::new(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        ),
        memory: Mutex::new(Vec::new()),
    })
}

/// One slot's working memory, for the length of one job; it goes back to
/// the slots when dropped (a panicking job included).
pub(crate) struct Hasher {
    memory: Vec<Block>,
}

impl Hasher {
    fn take() -> Hasher {
        let kept = slots()
            .memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        Hasher {
            memory: kept.unwrap_or_else(|| {
                ALLOCATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                vec![Block::default(); Params::DEFAULT.block_count()]
            }),
        }
    }

    /// Runs `argon` over the slot's memory. A stored hash asking for more
    /// memory than restkit's own parameters (one made elsewhere, with
    /// stronger settings) gets a buffer of its own for that one call, up to
    /// [`MAX_FOREIGN_M_COST`]; past that it is refused rather than let a
    /// stored string decide how much the process allocates.
    fn run(
        &mut self,
        argon: &Argon2,
        secret: &[u8],
        salt: &[u8],
        out: &mut [u8],
    ) -> argon2::Result<()> {
        let needed = argon.params().block_count();
        if needed <= self.memory.len() {
            argon.hash_password_into_with_memory(secret, salt, out, &mut self.memory[..needed])
        } else if argon.params().m_cost() <= MAX_FOREIGN_M_COST {
            argon.hash_password_into(secret, salt, out)
        } else {
            tracing::warn!(
                m_cost = argon.params().m_cost(),
                "a stored password hash asks for more memory than restkit allows; refused"
            );
            Err(argon2::Error::MemoryTooMuch)
        }
    }

    /// Argon2id PHC string for `password`, with argon2's default parameters
    /// (m = 19 MiB, t = 2, p = 1) and a random 16-byte salt.
    pub fn hash(&mut self, password: &str) -> Result<String, ApiError> {
        let salt = SaltString::generate(&mut OsRng);
        let mut raw = [0u8; 64];
        let raw = salt.decode_b64(&mut raw).map_err(ApiError::internal)?;
        let params = Params::DEFAULT;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        self.run(&argon, password.as_bytes(), raw, &mut out)
            .map_err(ApiError::internal)?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).map_err(ApiError::internal)?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).map_err(ApiError::internal)?),
        };
        Ok(phc.to_string())
    }

    /// Does `secret` match the PHC string `stored`? Any Argon2 variant,
    /// version and parameters the string names; anything unreadable is
    /// `false`. The comparison is constant-time (`Output`'s equality).
    pub fn verify(&mut self, secret: &str, stored: &str) -> bool {
        self.matches(secret, stored).unwrap_or(false)
    }

    fn matches(&mut self, secret: &str, stored: &str) -> Option<bool> {
        let phc = PasswordHash::new(stored).ok()?;
        let expected = phc.hash?;
        let algorithm = Algorithm::try_from(phc.algorithm).ok()?;
        let version = match phc.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::default(),
        };
        let params = Params::try_from(&phc).ok()?;
        let mut raw = [0u8; 64];
        let salt = phc.salt?.decode_b64(&mut raw).ok()?;
        let argon = Argon2::new(algorithm, version, params);
        let mut out = vec![0u8; expected.len()];
        self.run(&argon, secret.as_bytes(), salt, &mut out).ok()?;
        Some(Output::new(&out).ok()? == expected)
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        let memory = std::mem::take(&mut self.memory);
        slots()
            .memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(memory);
    }
}

/// Runs Argon2 work on the blocking pool, at most one job per core at a
/// time, over that slot's memory; a job that cannot start within
/// [`HASH_WAIT`] is a 503 `AUTH_BUSY`.
pub(crate) async fn hashing<T: Send + 'static>(
    job: impl FnOnce(&mut Hasher) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let slot = tokio::time::timeout(HASH_WAIT, slots().permits.acquire())
        .await
        .map_err(|_| {
            ApiError::new(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "AUTH_BUSY",
                "Too many password checks at once; retry in a moment.",
            )
            .header(http::header::RETRY_AFTER, "1")
        })?
        .map_err(ApiError::internal)?;
    // The slot travels with the job: if the request is cancelled while
    // Argon2 runs, the slot stays taken until the hashing really ends. The
    // memory is taken while the permit is held, so there are never more
    // buffers than permits.
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let mut hasher = Hasher::take();
        job(&mut hasher)
    })
    .await
    .map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    #[tokio::test]
    async fn hashes_agree_with_the_argon2_crate_both_ways() {
        let ours = hashing(|h| h.hash("correct horse")).await.unwrap().unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert_eq!(parsed.algorithm, Algorithm::Argon2id.ident());
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"correct horsf", &parsed)
            .is_err());

        // A hash the crate made, with other parameters and variant: a
        // larger memory cost than the slot's takes its own buffer.
        let salt = SaltString::generate(&mut OsRng);
        for (alg, m) in [
            (Algorithm::Argon2i, 8 * 1024),
            (Algorithm::Argon2id, 24 * 1024),
        ] {
            let argon = Argon2::new(alg, Version::V0x13, Params::new(m, 1, 1, None).unwrap());
            let theirs = argon.hash_password(b"pw", &salt).unwrap().to_string();
            let (yes, no, junk) = hashing(move |h| {
                (
                    h.verify("pw", &theirs),
                    h.verify("pW", &theirs),
                    h.verify("pw", "$argon2id$x"),
                )
            })
            .await
            .unwrap();
            assert!(yes && !no && !junk, "{alg:?} m={m}");
        }
    }

    #[tokio::test]
    async fn the_working_memory_is_reused_not_reallocated() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut jobs = Vec::new();
        for i in 0..4 * cores {
            jobs.push(tokio::spawn(hashing(move |h| {
                let phc = h.hash(&format!("p{i}")).unwrap();
                h.verify(&format!("p{i}"), &phc)
            })));
        }
        for j in jobs {
            assert!(j.await.unwrap().unwrap());
        }
        // Other tests in this binary hash too: whatever ran, never more
        // buffers than slots.
        let allocated = ALLOCATED.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            (1..=cores).contains(&allocated),
            "{allocated} buffers for {cores} slots"
        );
    }

    #[tokio::test]
    async fn a_stored_hash_may_not_ask_for_unbounded_memory() {
        let salt = SaltString::generate(&mut OsRng);
        let greedy = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&Params::new(4 * 1024 * 1024, 1, 1, None).unwrap())
                .unwrap(),
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&[0u8; 32]).unwrap()),
        }
        .to_string();
        // Refused by the bound, before any work (filling 4 GiB would take
        // seconds and may succeed): asserted by the reason, not by a clock.
        let argon = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::try_from(&PasswordHash::new(&greedy).unwrap()).unwrap(),
        );
        assert!(!hashing(move |h| h.verify("pw", &greedy)).await.unwrap());
        let mut out = [0u8; 32];
        let refused = hashing(move |h| h.run(&argon, b"pw", b"somesalt", &mut out))
            .await
            .unwrap();
        assert_eq!(refused, Err(argon2::Error::MemoryTooMuch));
    }
}
