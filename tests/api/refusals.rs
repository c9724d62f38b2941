//! Refusals that cost nothing (§8.2, §9): a forged token sent again is
//! refused without another RSA verification, and a flood of new forged
//! tokens from one address is refused by the limiter before verification.

use crate::helpers::TestApp;

/// `token` with its signature's first character changed: a well-formed
/// JWT with a known `kid` whose signature is wrong.
fn forged(token: &str) -> String {
    let (head, sig) = token.rsplit_once('.').unwrap();
    let first = if sig.starts_with('A') { 'B' } else { 'A' };
    format!("{head}.{first}{}", &sig[1..])
}

async fn get_with(t: &TestApp, token: &str, ip: &str) -> crate::helpers::TestResponse {
    t.get("/v1/books/3")
        .header("authorization", &format!("Bearer {token}"))
        .sent_from(ip)
        .send()
        .await
}

#[tokio::test]
async fn a_forged_token_sent_again_is_refused_without_verifying_it_again() {
    let t = TestApp::demo().await;
    let bad = forged(&t.token_for(1, &["basic"]));
    let tokens = &t.app.state().tokens;
    let before = tokens.refusals.verifications();
    for _ in 0..5 {
        let res = get_with(&t, &bad, "192.0.2.10").await;
        assert_eq!(res.status, 401);
        assert!(res
            .header("www-authenticate")
            .contains("The token's signature is wrong."));
    }
    assert_eq!(tokens.refusals.verifications() - before, 1);
    // A good token from the same address still verifies and serves.
    let good = t.token_for(1, &["basic", "write"]);
    assert_eq!(get_with(&t, &good, "192.0.2.10").await.status, 200);
}

#[tokio::test]
async fn a_flood_of_new_forged_tokens_from_one_ip_is_refused_before_verification() {
    let t =
        TestApp::demo_with("[rate_limit]\nanonymous = { requests = 3, period = \"60s\" }\n").await;
    let tokens = &t.app.state().tokens;
    let before = tokens.refusals.verifications();
    let mut statuses = Vec::new();
    for n in 0..40 {
        // A fresh token each time: the refused-token memory cannot help.
        let bad = forged(&t.client_token(&[&format!("s{n}")]));
        statuses.push(get_with(&t, &bad, "192.0.2.20").await.status.as_u16());
    }
    assert!(statuses[..2].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
    let verified = tokens.refusals.verifications() - before;
    assert!(
        verified <= 4,
        "{verified} RSA verifications for 40 forged tokens once the allowance was spent"
    );
    // Another address is not affected: its valid token serves.
    let good = t.token_for(1, &["basic", "write"]);
    assert_eq!(get_with(&t, &good, "192.0.2.21").await.status, 200);
}

#[tokio::test]
async fn an_expired_token_of_ours_costs_its_sender_nothing_more() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let t =
        TestApp::demo_with("[rate_limit]\nanonymous = { requests = 3, period = \"60s\" }\n").await;
    let good = t.token_for(1, &["basic", "write"]);
    let kid = jsonwebtoken::decode_header(&good).unwrap().kid.unwrap();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid);
    h.typ = Some("at+jwt".into());
    let private = std::fs::read(crate::helpers::TEST_KEY).unwrap();
    let now = chrono::Utc::now().timestamp();
    let expired = jsonwebtoken::encode(
        &h,
        &serde_json::json!({
            "iss": "http://127.0.0.1:8080", "aud": "http://127.0.0.1:8080",
            "sub": "1", "uid": 1, "username": "stan", "client_id": "1",
            "scope": "basic write",
            "jti": format!("old.{}", t.app.state().tokens.keys.jti_tag("old", "1", now - 3600)),
            "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600,
        }),
        &EncodingKey::from_rsa_pem(&private).unwrap(),
    )
    .unwrap();
    // A client sends its expired token (signed here: not a forgery) …
    let res = get_with(&t, &expired, "192.0.2.30").await;
    assert_eq!(res.status, 401);
    assert!(res.header("www-authenticate").contains("expired"));
    // … then its fresh one: only the rate-limit step counts it, so the
    // address keeps what an expired token is worth, and no more.
    let before = t.app.state().tokens.refusals.verifications();
    assert_eq!(get_with(&t, &good, "192.0.2.30").await.status, 200);
    assert_eq!(t.app.state().tokens.refusals.verifications() - before, 1);
    assert!(!t
        .app
        .state()
        .tokens
        .refusals
        .failing("192.0.2.30".parse().ok()));
}

/// Forged tokens that claim this server's key but do not carry its `jti`
/// tag (an attacker cannot make one) are refused for the price of an HMAC,
/// without an RSA verification and without charging their address: a
/// flood of them from a NAT does not lock out a real user's fresh token
/// sent from the same address.
#[tokio::test]
async fn a_flood_without_the_jti_tag_costs_no_rsa_and_locks_no_one_out() {
    use base64::Engine;
    let t =
        TestApp::demo_with("[rate_limit]\nanonymous = { requests = 3, period = \"60s\" }\n").await;
    let real = t.token_for(1, &["basic"]);
    let mut parts = real.split('.');
    let (head, body, sig) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims: serde_json::Value = serde_json::from_slice(&b64.decode(body).unwrap()).unwrap();
    let tokens = &t.app.state().tokens;
    let before = tokens.refusals.verifications();
    for n in 0..40 {
        let mut c = claims.clone();
        c["jti"] = serde_json::json!(format!("forged-{n}.AAAAAAAAAAAAAAAAAAAAAA"));
        let forged = format!("{head}.{}.{sig}", b64.encode(c.to_string()));
        // 401, and 429 once the address's anonymous allowance is spent
        // (a refused credential makes a request anonymous, §9).
        let res = get_with(&t, &forged, "192.0.2.40").await;
        assert!(matches!(res.status.as_u16(), 401 | 429), "forgery {n}");
    }
    assert_eq!(tokens.refusals.verifications(), before, "an RSA check ran");
    // A user behind the same address signs in and is served.
    let fresh = t.token_for(2, &["basic"]);
    assert_eq!(get_with(&t, &fresh, "192.0.2.40").await.status, 200);
}
