//! The OAuth2 authorization server (§8.1–§8.3): token grants, JWT claims
//! checked with the JWKS, forged tokens refused, rotation and reuse
//! detection, revocation at once, introspection, key rotation, and RFC
//! 6749's error answers.

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use restkit::registry::Registry;
use serde_json::{json, Value};

use crate::helpers::{TestApp, TestResponse};

const FORM: &str = "application/x-www-form-urlencoded";
const CLIENT: &str = "Basic MTpwYXNzMg=="; // 1:pass2

async fn token(t: &TestApp, body: &str) -> TestResponse {
    t.post("/v1/access_token")
        .header("authorization", CLIENT)
        .raw(FORM, body)
        .send()
        .await
}

async fn password_grant(t: &TestApp) -> Value {
    let res = token(
        t,
        "grant_type=password&username=stan&password=pass&scope=basic%20write",
    )
    .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    res.json()
}

async fn me(t: &TestApp, access: &str) -> TestResponse {
    t.get("/v1/users/me")
        .header("authorization", &format!("Bearer {access}"))
        .send()
        .await
}

/// The JWKS's key for `kid`, as a standard JWT library reads it.
async fn jwks_key(t: &TestApp, kid: &str) -> DecodingKey {
    let jwks = t.get("/.well-known/jwks.json").send().await.json();
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("no key {kid} in {jwks}"));
    DecodingKey::from_rsa_components(key["n"].as_str().unwrap(), key["e"].as_str().unwrap())
        .unwrap()
}

#[tokio::test]
async fn the_password_grant_issues_an_rfc9068_token_the_jwks_verifies() {
    let t = TestApp::demo().await;
    let res = token(
        &t,
        "grant_type=password&username=stan&password=pass&scope=basic",
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("cache-control"), "no-store");
    let body = res.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "basic");
    let refresh = body["refresh_token"].as_str().unwrap();
    assert!(refresh.len() >= 43, "at least 256 bits");
    let access = body["access_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(access).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let key = jwks_key(&t, header.kid.as_deref().unwrap()).await;
    let mut v = Validation::new(Algorithm::RS256);
    v.set_issuer(&["http://127.0.0.1:8080"]);
    v.set_audience(&["http://127.0.0.1:8080"]);
    let claims = jsonwebtoken::decode::<Value>(access, &key, &v)
        .unwrap()
        .claims;
    for c in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "jti",
        "client_id",
        "scope",
    ] {
        assert!(claims.get(c).is_some(), "claim {c} missing: {claims}");
    }
    assert_eq!(claims["sub"], "1");
    assert_eq!(claims["client_id"], "1");
    assert_eq!(claims["scope"], "basic");
    // The token is a caller.
    let who = me(&t, access).await;
    assert_eq!(who.status, 200, "{}", String::from_utf8_lossy(&who.body));
    assert_eq!(who.json()["username"], "stan");
    // Client authentication in the body works the same.
    let res = t
        .post("/v1/access_token")
        .raw(
            FORM,
            "grant_type=password&username=ana&password=pass&client_id=1&client_secret=pass2",
        )
        .send()
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.json()["scope"],
        "basic write",
        "no scope: all the client's"
    );
}

#[tokio::test]
async fn client_credentials_speak_for_the_client_and_get_no_refresh_token() {
    let t = TestApp::demo().await;
    let res = token(&t, "grant_type=client_credentials&scope=basic").await;
    assert_eq!(res.status, 200);
    let body = res.json();
    assert!(body.get("refresh_token").is_none());
    let access = body["access_token"].as_str().unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(access.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "1");
    assert!(claims.get("uid").is_none(), "not user 1: {claims}");
    let who = me(&t, access).await;
    assert_eq!(who.status, 200);
    assert!(who.json()["id"].is_null(), "{}", who.json());
}

#[tokio::test]
async fn oauth_errors_are_rfc6749s() {
    let t = TestApp::demo().await;
    let cases: Vec<(TestResponse, u16, &str)> = vec![
        (
            t.post("/v1/access_token")
                .header("authorization", "Basic MTp3cm9uZw==")
                .raw(FORM, "grant_type=client_credentials")
                .send()
                .await,
            401,
            "invalid_client",
        ),
        (
            token(&t, "grant_type=password&username=stan&password=nope").await,
            400,
            "invalid_grant",
        ),
        (
            token(&t, "grant_type=magic").await,
            400,
            "unsupported_grant_type",
        ),
        (
            token(&t, "grant_type=client_credentials&scope=admin").await,
            400,
            "invalid_scope",
        ),
        (
            token(&t, "grant_type=client_credentials&grant_type=password").await,
            400,
            "invalid_request",
        ),
        (
            t.post("/v1/access_token")
                .header("authorization", CLIENT)
                .raw(FORM, "grant_type=client_credentials&client_secret=pass2")
                .send()
                .await,
            400,
            "invalid_request",
        ),
        (
            token(&t, "grant_type=refresh_token&refresh_token=made-up").await,
            400,
            "invalid_grant",
        ),
        (
            t.post("/v1/access_token")
                .raw(FORM, "grant_type=client_credentials&client_id=spa")
                .send()
                .await,
            400,
            "unauthorized_client",
        ),
        (
            t.post("/v1/access_token")
                .header("authorization", CLIENT)
                .json(json!({"grant_type": "client_credentials"}))
                .send()
                .await,
            400,
            "invalid_request",
        ),
    ];
    for (i, (res, status, error)) in cases.into_iter().enumerate() {
        assert_eq!(
            res.status,
            status,
            "case {i}: {}",
            String::from_utf8_lossy(&res.body)
        );
        assert_eq!(res.json()["error"], error, "case {i}");
        assert!(res.json()["error_description"].is_string());
        assert_eq!(res.header("cache-control"), "no-store");
        if status == 401 {
            assert!(res.header("www-authenticate").starts_with("Basic"));
        }
    }
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_kills_its_family() {
    let t = TestApp::demo().await;
    let first = password_grant(&t).await;
    let r1 = first["refresh_token"].as_str().unwrap();
    let rotated = token(&t, &format!("grant_type=refresh_token&refresh_token={r1}")).await;
    assert_eq!(rotated.status, 200);
    let second = rotated.json();
    let r2 = second["refresh_token"].as_str().unwrap();
    assert_ne!(r1, r2);
    let a2 = second["access_token"].as_str().unwrap();
    assert_eq!(me(&t, a2).await.status, 200);
    // A narrower scope may be asked for.
    // The old one again: refused, and the family dies with it.
    let reuse = token(&t, &format!("grant_type=refresh_token&refresh_token={r1}")).await;
    assert_eq!(reuse.status, 400);
    assert_eq!(reuse.json()["error"], "invalid_grant");
    let after = token(&t, &format!("grant_type=refresh_token&refresh_token={r2}")).await;
    assert_eq!(
        after.json()["error"],
        "invalid_grant",
        "the newest one is dead too"
    );
    let res = me(&t, a2).await;
    assert_eq!(res.status, 401, "access tokens of the family are revoked");
    assert!(res.header("www-authenticate").contains("invalid_token"));
    // The first access token came from the same family.
    assert_eq!(
        me(&t, first["access_token"].as_str().unwrap()).await.status,
        401
    );
}

#[tokio::test]
async fn revocation_takes_effect_at_once_and_introspection_tells() {
    let t = TestApp::demo().await;
    let issued = password_grant(&t).await;
    let access = issued["access_token"].as_str().unwrap();
    let introspect = |tok: String, auth: &'static str| {
        t.post("/v1/introspect")
            .header("authorization", auth)
            .raw(FORM, &format!("token={tok}"))
            .send()
    };
    let seen = introspect(access.to_string(), CLIENT).await.json();
    assert_eq!(seen["active"], true);
    assert_eq!(seen["username"], "stan");
    assert_eq!(seen["client_id"], "1");
    let refresh = issued["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(
        introspect(refresh.clone(), CLIENT).await.json()["active"],
        true
    );
    // Introspection needs an authenticated client.
    let res = t
        .post("/v1/introspect")
        .raw(FORM, &format!("token={access}"))
        .send()
        .await;
    assert_eq!(res.status, 401);

    let res = t
        .post("/v1/revoke")
        .header("authorization", CLIENT)
        .raw(
            FORM,
            &format!("token={access}&token_type_hint=access_token"),
        )
        .send()
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(
        me(&t, access).await.status,
        401,
        "refused on the next request"
    );
    assert_eq!(
        introspect(access.to_string(), CLIENT).await.json()["active"],
        false
    );
    // Revoking the refresh token kills its family.
    let res = t
        .post("/v1/revoke")
        .header("authorization", CLIENT)
        .raw(FORM, &format!("token={refresh}"))
        .send()
        .await;
    assert_eq!(res.status, 200);
    let res = token(
        &t,
        &format!("grant_type=refresh_token&refresh_token={refresh}"),
    )
    .await;
    assert_eq!(res.json()["error"], "invalid_grant");
    // Unknown tokens: still 200 (RFC 7009 §2.2).
    let res = t
        .post("/v1/revoke")
        .header("authorization", CLIENT)
        .raw(FORM, "token=whatever")
        .send()
        .await;
    assert_eq!(res.status, 200);
}

fn sign(claims: &Value, kid: &str, pem: &[u8]) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.to_string());
    h.typ = Some("at+jwt".into());
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_rsa_pem(pem).unwrap()).unwrap()
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let t = TestApp::demo().await;
    let issued = password_grant(&t).await;
    let good = issued["access_token"].as_str().unwrap().to_string();
    let kid = jsonwebtoken::decode_header(&good).unwrap().kid.unwrap();
    let private = std::fs::read(crate::helpers::TEST_KEY).unwrap();
    let now = chrono::Utc::now().timestamp();
    let claims = |patch: Value| {
        let mut c = json!({
            "iss": "http://127.0.0.1:8080", "aud": "http://127.0.0.1:8080",
            "sub": "1", "uid": 1, "username": "stan", "client_id": "1",
            "scope": "basic write", "jti": uuid::Uuid::new_v4().to_string(),
            "iat": now, "nbf": now, "exp": now + 600,
        });
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        // The jti carries the tag this server's tokens carry, so that each
        // forgery is refused for the one way it differs.
        if let Some(id) = c["jti"].as_str().map(str::to_string) {
            let keys = &t.app.state().tokens.keys;
            let tag = keys.jti_tag(
                &id,
                c["sub"].as_str().unwrap_or_default(),
                c["exp"].as_i64().unwrap_or_default(),
            );
            c["jti"] = json!(format!("{id}.{tag}"));
        }
        c
    };
    // A correctly made token is accepted: the forgeries differ in one way.
    assert_eq!(
        me(&t, &sign(&claims(json!({})), &kid, &private))
            .await
            .status,
        200
    );
    let parts: Vec<&str> = good.split('.').collect();
    let public_pem = {
        let jwks = t.get("/.well-known/jwks.json").send().await.json();
        jwks["keys"][0]["n"].as_str().unwrap().to_string()
    };
    let hs256 = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(kid.clone());
        h.typ = Some("at+jwt".into());
        jsonwebtoken::encode(
            &h,
            &claims(json!({})),
            &EncodingKey::from_secret(public_pem.as_bytes()),
        )
        .unwrap()
    };
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "at+jwt", "kid": kid})),
        b64(&claims(json!({})))
    );
    let altered = format!(
        "{}.{}.{}",
        parts[0],
        b64(&claims(json!({"scope": "basic write admin"}))),
        parts[2]
    );
    let previous = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/jwt-previous-private.pem"
    ))
    .unwrap();
    let forged = [
        ("alg none", none),
        ("HS256 with the public key", hs256),
        ("altered payload", altered),
        (
            "expired",
            sign(
                &claims(json!({"exp": now - 60, "iat": now - 700, "nbf": now - 700})),
                &kid,
                &private,
            ),
        ),
        (
            "not yet valid",
            sign(&claims(json!({"nbf": now + 600})), &kid, &private),
        ),
        (
            "wrong issuer",
            sign(
                &claims(json!({"iss": "https://evil.example"})),
                &kid,
                &private,
            ),
        ),
        (
            "wrong audience",
            sign(
                &claims(json!({"aud": "https://other.example"})),
                &kid,
                &private,
            ),
        ),
        (
            "unknown kid",
            sign(&claims(json!({})), "not-a-kid", &private),
        ),
        (
            "signed by an unknown key",
            sign(&claims(json!({})), &kid, &previous),
        ),
        (
            "no jti",
            sign(&claims(json!({"jti": null})), &kid, &private),
        ),
        ("not a JWT", "abc".to_string()),
        (
            "signed with our key, without the jti tag",
            sign(
                &{
                    let mut c = claims(json!({}));
                    c["jti"] = json!(uuid::Uuid::new_v4().to_string());
                    c
                },
                &kid,
                &private,
            ),
        ),
    ];
    for (what, tok) in forged {
        let res = me(&t, &tok).await;
        assert_eq!(
            res.status,
            401,
            "{what}: {}",
            String::from_utf8_lossy(&res.body)
        );
        assert!(
            res.header("www-authenticate").contains("invalid_token"),
            "{what}"
        );
    }
}

#[tokio::test]
async fn tokens_signed_before_a_rotation_verify_with_the_previous_key() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let settings = format!(
        "[auth]\nprivate_key = \"{dir}/tests/fixtures/jwt-private.pem\"\nprevious_public_keys = [\"{dir}/tests/fixtures/jwt-previous-public.pem\"]\n"
    );
    let text = restkit::demo::DEMO_TOML.replace("[auth]\n", &settings);
    let t = TestApp::with(&text, "", Registry::builtin()).await;
    let jwks = t.get("/.well-known/jwks.json").send().await.json();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let old_kid = keys[1]["kid"].as_str().unwrap();
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "iss": "http://127.0.0.1:8080", "aud": "http://127.0.0.1:8080",
        "sub": "2", "uid": 2, "username": "ana", "client_id": "1", "scope": "basic",
        "jti": "rotated-1", "iat": now, "nbf": now, "exp": now + 600,
    });
    let previous = std::fs::read(format!("{dir}/tests/fixtures/jwt-previous-private.pem")).unwrap();
    let res = me(&t, &sign(&claims, old_kid, &previous)).await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["username"], "ana");
    // New tokens are signed with the current key.
    let issued = password_grant(&t).await;
    let kid = jsonwebtoken::decode_header(issued["access_token"].as_str().unwrap())
        .unwrap()
        .kid
        .unwrap();
    assert_eq!(kid, keys[0]["kid"].as_str().unwrap());
}

#[tokio::test]
async fn metadata_names_every_endpoint_under_the_issuer() {
    let t = TestApp::demo().await;
    let m = t
        .get("/.well-known/oauth-authorization-server")
        .send()
        .await
        .json();
    let issuer = m["issuer"].as_str().unwrap();
    for key in [
        "token_endpoint",
        "authorization_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
        "jwks_uri",
    ] {
        assert!(m[key].as_str().unwrap().starts_with(issuer), "{key}: {m}");
    }
    assert_eq!(m["token_endpoint"], format!("{issuer}/v1/access_token"));
    assert!(m["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("password")));
    assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
    assert!(m["scopes_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("basic")));
}

#[tokio::test]
async fn credentials_sent_two_ways_are_400() {
    let t = TestApp::demo().await;
    let access = password_grant(&t).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let res = t
        .get(&format!("/v1/users/me?access-token={access}"))
        .anonymous()
        .send()
        .await;
    assert_eq!(res.status, 200, "the query parameter alone works");
    let res = t
        .get(&format!("/v1/users/me?access-token={access}"))
        .header("authorization", &format!("Bearer {access}"))
        .send()
        .await;
    assert_eq!(res.status, 400);
    let res = t
        .get("/v1/users/me")
        .anonymous()
        .header("authorization", &format!("Bearer {access}"))
        .header("authorization", "Basic c3RhbjpwYXNz")
        .send()
        .await;
    assert_eq!(res.status, 400);
}

const CALLBACK: &str = "http://127.0.0.1:9999/callback";

fn pkce() -> (String, String) {
    use sha2::Digest;
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".to_string();
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&verifier));
    (verifier, challenge)
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// GET /authorize with `query`, then POST the form back as stan with
/// `decision`: the final response (a redirect, or a page).
async fn authorize(t: &TestApp, query: &str, decision: &str) -> TestResponse {
    let page = t
        .get(&format!("/v1/authorize?{query}"))
        .anonymous()
        .send()
        .await;
    assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
    let html = String::from_utf8(page.body.clone()).unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    let cookie = page
        .header("set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(page.header("set-cookie").contains("HttpOnly"));
    assert!(page.header("set-cookie").contains("SameSite=Strict"));
    let body = format!("{query}&csrf={csrf}&username=stan&password=pass&decision={decision}");
    t.post("/v1/authorize")
        .anonymous()
        .header("cookie", &cookie)
        .raw(FORM, &body)
        .send()
        .await
}

fn location_param(res: &TestResponse, name: &str) -> Option<String> {
    let loc = res.header("location");
    let params = loc.split_once(['?', '#'])?.1;
    form_urlencoded::parse(params.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn the_code_flow_with_pkce_for_a_public_client() {
    let t = TestApp::demo().await;
    let (verifier, challenge) = pkce();
    let query = format!(
        "response_type=code&client_id=spa&redirect_uri={}&scope=basic&state=xyz&code_challenge={challenge}&code_challenge_method=S256",
        enc(CALLBACK)
    );
    let res = authorize(&t, &query, "approve").await;
    assert_eq!(res.status, 302, "{}", String::from_utf8_lossy(&res.body));
    assert!(res.header("location").starts_with(CALLBACK));
    assert_eq!(location_param(&res, "state").as_deref(), Some("xyz"));
    let code = location_param(&res, "code").unwrap();
    let exchange = |verifier: String| {
        t.post("/v1/access_token").anonymous().raw(
            FORM,
            &format!(
                "grant_type=authorization_code&code={code}&redirect_uri={}&client_id=spa&code_verifier={verifier}",
                enc(CALLBACK)
            ),
        )
        .send()
    };
    let res = exchange(verifier.clone()).await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let issued = res.json();
    let access = issued["access_token"].as_str().unwrap().to_string();
    assert_eq!(issued["scope"], "basic");
    assert!(issued["refresh_token"].is_string());
    assert_eq!(me(&t, &access).await.json()["username"], "stan");
    // The code again: refused, and what it issued is revoked.
    let replay = exchange(verifier).await;
    assert_eq!(replay.json()["error"], "invalid_grant");
    assert_eq!(
        me(&t, &access).await.status,
        401,
        "a replayed code revokes its tokens"
    );
    let refresh = issued["refresh_token"].as_str().unwrap();
    let res = t
        .post("/v1/access_token")
        .anonymous()
        .raw(
            FORM,
            &format!("grant_type=refresh_token&refresh_token={refresh}&client_id=spa"),
        )
        .send()
        .await;
    assert_eq!(res.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn pkce_and_redirect_rules() {
    let t = TestApp::demo().await;
    let (_, challenge) = pkce();
    let cb = enc(CALLBACK);
    // A wrong verifier.
    let q = format!("response_type=code&client_id=spa&redirect_uri={cb}&code_challenge={challenge}&code_challenge_method=S256");
    let code = location_param(&authorize(&t, &q, "approve").await, "code").unwrap();
    let res = t
        .post("/v1/access_token")
        .anonymous()
        .raw(
            FORM,
            &format!("grant_type=authorization_code&code={code}&redirect_uri={cb}&client_id=spa&code_verifier={}", "x".repeat(43)),
        )
        .send()
        .await;
    assert_eq!(res.json()["error"], "invalid_grant");
    // Errors that go back to the client: no PKCE for a public client,
    // plain, an unknown response type, a scope beyond the client's.
    for (query, error) in [
        (format!("response_type=code&client_id=spa&redirect_uri={cb}&state=s1"), "invalid_request"),
        (format!("response_type=code&client_id=spa&redirect_uri={cb}&code_challenge={challenge}&code_challenge_method=plain&state=s1"), "invalid_request"),
        (format!("response_type=magic&client_id=spa&redirect_uri={cb}&state=s1"), "unsupported_response_type"),
        (format!("response_type=code&client_id=1&redirect_uri={cb}&scope=admin&state=s1"), "invalid_scope"),
        (format!("response_type=token&client_id=spa&redirect_uri={cb}&state=s1"), "unauthorized_client"),
    ] {
        let res = t.get(&format!("/v1/authorize?{query}")).anonymous().send().await;
        assert_eq!(res.status, 302, "{query}");
        assert_eq!(location_param(&res, "error").as_deref(), Some(error), "{query}");
        assert_eq!(location_param(&res, "state").as_deref(), Some("s1"), "{query}");
    }
    // Errors shown on the page, never redirected: unknown client, a
    // redirect URI not registered.
    for query in [
        format!("response_type=code&client_id=nobody&redirect_uri={cb}"),
        format!(
            "response_type=code&client_id=1&redirect_uri={}",
            enc("https://evil.example/cb")
        ),
        format!(
            "response_type=code&client_id=1&redirect_uri={}",
            enc("http://127.0.0.1:9999/callback/")
        ),
    ] {
        let res = t
            .get(&format!("/v1/authorize?{query}"))
            .anonymous()
            .send()
            .await;
        assert_eq!(res.status, 400, "{query}");
        assert!(res.headers.get("location").is_none(), "{query}");
        assert!(res.header("content-type").starts_with("text/html"));
    }
    // Denied.
    let q = format!("response_type=code&client_id=1&redirect_uri={cb}&state=d");
    let res = authorize(&t, &q, "deny").await;
    assert_eq!(
        location_param(&res, "error").as_deref(),
        Some("access_denied")
    );
    // A confidential client without PKCE; the token request must name the
    // same redirect URI.
    let res = authorize(&t, &q, "approve").await;
    let code = location_param(&res, "code").unwrap();
    let res = token(&t, &format!("grant_type=authorization_code&code={code}")).await;
    assert_eq!(res.json()["error"], "invalid_grant", "redirect_uri missing");
    let res = authorize(&t, &q, "approve").await;
    let code = location_param(&res, "code").unwrap();
    let res = token(
        &t,
        &format!("grant_type=authorization_code&code={code}&redirect_uri={cb}"),
    )
    .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
}

#[tokio::test]
async fn implicit_puts_the_token_in_the_fragment() {
    let t = TestApp::demo().await;
    let q = format!(
        "response_type=token&client_id=1&redirect_uri={}&scope=basic&state=i",
        enc(CALLBACK)
    );
    let res = authorize(&t, &q, "approve").await;
    assert_eq!(res.status, 302);
    let loc = res.header("location").to_string();
    assert!(loc.starts_with(&format!("{CALLBACK}#")), "{loc}");
    let access = location_param(&res, "access_token").unwrap();
    assert_eq!(
        location_param(&res, "token_type").as_deref(),
        Some("Bearer")
    );
    assert_eq!(location_param(&res, "state").as_deref(), Some("i"));
    assert!(location_param(&res, "refresh_token").is_none());
    assert_eq!(me(&t, &access).await.status, 200);
}

#[tokio::test]
async fn the_authorize_form_is_csrf_safe_and_escapes_what_it_echoes() {
    let t = TestApp::demo().await;
    let evil = "<script>alert(1)</script>\"";
    let q = format!(
        "response_type=code&client_id=1&redirect_uri={}&state={}",
        enc(CALLBACK),
        enc(evil)
    );
    let page = t
        .get(&format!("/v1/authorize?{q}"))
        .anonymous()
        .send()
        .await;
    let html = String::from_utf8(page.body.clone()).unwrap();
    assert!(!html.contains("<script"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;"));
    assert!(page
        .header("content-security-policy")
        .contains("frame-ancestors 'none'"));
    assert_eq!(page.header("x-frame-options"), "DENY");
    // Without the cookie (a cross-site post), the form is refused.
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let res = t
        .post("/v1/authorize")
        .anonymous()
        .raw(
            FORM,
            &format!("{q}&csrf={csrf}&username=stan&password=pass&decision=approve"),
        )
        .send()
        .await;
    assert_eq!(res.status, 403);
    assert!(res.headers.get("location").is_none());
    // A wrong password shows the form again, with no redirect.
    let cookie = page
        .header("set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let res = t
        .post("/v1/authorize")
        .anonymous()
        .header("cookie", &cookie)
        .raw(
            FORM,
            &format!("{q}&csrf={csrf}&username=stan&password=wrong&decision=approve"),
        )
        .send()
        .await;
    assert_eq!(res.status, 401);
    assert!(res.headers.get("location").is_none());
    assert!(String::from_utf8_lossy(&res.body).contains("Wrong username or password"));
}

#[tokio::test]
async fn every_demo_resource_needs_a_token_and_restkits_own_endpoints_stay_public() {
    let t = TestApp::demo().await;
    for path in [
        "/v1/books",
        "/v1/books/3",
        "/v2/books",
        "/v1/users/me",
        "/v1/shelves",
        "/v1/books/3/reviews",
    ] {
        let res = t.get(path).anonymous().send().await;
        assert_eq!(res.status, 401, "{path}");
        let challenge = res.header("www-authenticate");
        assert!(
            challenge.starts_with("Bearer realm=\"restkit\""),
            "{path}: {challenge}"
        );
        assert!(challenge.contains("Basic realm="), "{path}: {challenge}");
    }
    for path in [
        "/health",
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
    ] {
        assert_eq!(t.get(path).anonymous().send().await.status, 200, "{path}");
    }
    // Reading needs basic, writing needs write.
    let reader = t.token_for(1, &["basic"]);
    let res = t
        .post("/v1/books")
        .header("authorization", &format!("Bearer {reader}"))
        .json(json!({"title": "t", "author": "a"}))
        .send()
        .await;
    assert_eq!(res.status, 403);
    assert!(res
        .header("www-authenticate")
        .contains("insufficient_scope"));
    let res = t
        .get("/v1/books/3")
        .header("authorization", &format!("Bearer {reader}"))
        .send()
        .await;
    assert_eq!(res.status, 200);
    // An in-process caller may still put an Identity in the request (§2.2).
    let res = t
        .get("/v1/users/me")
        .with_identity(restkit::Identity::user(2, "ana", &["basic"]))
        .send()
        .await;
    assert_eq!(res.json()["username"], "ana");
}

#[tokio::test]
async fn a_client_credentials_token_is_not_a_user() {
    let t = TestApp::demo().await;
    let auth = format!("Bearer {}", t.client_token(&["basic", "write"]));
    // Private, owner-scoped shelves: 403 for a caller without a user.
    for res in [
        t.get("/v1/shelves")
            .header("authorization", &auth)
            .send()
            .await,
        t.get("/v1/shelves/1")
            .header("authorization", &auth)
            .send()
            .await,
        t.post("/v1/shelves")
            .header("authorization", &auth)
            .json(json!({"name": "mine"}))
            .send()
            .await,
    ] {
        assert_eq!(res.status, 403, "{}", String::from_utf8_lossy(&res.body));
    }
    // Reviews: everyone with basic reads; creating one needs a user.
    let res = t
        .get("/v1/books/3/reviews")
        .header("authorization", &auth)
        .send()
        .await;
    assert_eq!(res.status, 200);
    let res = t
        .post("/v1/books/3/reviews")
        .header("authorization", &auth)
        .json(json!({"rating": 5}))
        .send()
        .await;
    assert_eq!(res.status, 403, "{}", String::from_utf8_lossy(&res.body));
    // Client 1 is not user 1: stan's shelf stays stan's.
    let res = t
        .post("/v1/shelves")
        .by_user(1)
        .json(json!({"name": "stan's"}))
        .send()
        .await;
    let id = res.json()["id"].as_i64().unwrap();
    let res = t
        .get(&format!("/v1/shelves/{id}"))
        .header("authorization", &auth)
        .send()
        .await;
    assert_eq!(res.status, 403);
}

/// Two modules: `/open` takes Basic only, `/keys` API keys only.
pub const TWO_MODULES: &str = r#"
[[module]]
prefix = "/open"
credentials = ["basic"]
[[module.resource]]
name = "notes"
[module.resource.fields]
id   = { type = "integer", primary_key = true }
text = { type = "string" }

[[module]]
prefix = "/keys"
credentials = ["api_key"]
[[module.resource]]
name = "memos"
[module.resource.fields]
id   = { type = "integer", primary_key = true }
text = { type = "string" }
"#;

#[tokio::test]
async fn each_module_accepts_its_own_credential_kinds() {
    let t = TestApp::with(TWO_MODULES, "", Registry::builtin()).await;
    restkit::auth::users::add(&t.app.state().store, "stan", "pass")
        .await
        .unwrap();
    let bearer = format!("Bearer {}", t.token_for(1, &["basic", "write"]));
    // /open takes Basic only: a token is refused, and the challenge says so.
    let res = t
        .get("/open/notes")
        .header("authorization", &bearer)
        .send()
        .await;
    assert_eq!(res.status, 401);
    assert_eq!(res.header("www-authenticate"), "Basic realm=\"restkit\"");
    let res = t
        .get("/open/notes")
        .header("authorization", "Basic c3RhbjpwYXNz")
        .send()
        .await;
    assert_eq!(res.status, 200);
    let res = t.get("/open/notes").anonymous().send().await;
    assert_eq!(res.header("www-authenticate"), "Basic realm=\"restkit\"");
    // /keys takes API keys only, from the address they were issued to.
    let res = t
        .post("/v1/authenticate")
        .anonymous()
        .sent_from("127.0.0.1")
        .json(json!({"username": "stan", "password": "pass"}))
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let body = res.json();
    assert_eq!(body["ip"], "127.0.0.1");
    let key = body["api_key"].as_str().unwrap().to_string();
    let with_key = |ip: &'static str| {
        t.get("/keys/memos")
            .anonymous()
            .sent_from(ip)
            .header("x-api-key", &key)
            .send()
    };
    assert_eq!(with_key("127.0.0.1").await.status, 200);
    let res = with_key("10.0.0.7").await;
    assert_eq!(res.status, 401, "another address");
    let res = t
        .get("/keys/memos")
        .header("authorization", &bearer)
        .send()
        .await;
    assert_eq!(res.status, 401);
    assert!(
        res.header("www-authenticate").starts_with("ApiKey"),
        "{}",
        res.header("www-authenticate")
    );
    // A wrong password gets no key.
    let res = t
        .post("/v1/authenticate")
        .anonymous()
        .sent_from("127.0.0.1")
        .json(json!({"username": "stan", "password": "nope"}))
        .send()
        .await;
    assert_eq!(res.status, 401);
    // An unknown kind stops start-up, naming the place.
    let bad = TWO_MODULES.replace("[\"basic\"]", "[\"cookie\"]");
    let err = restkit::model::toml::parse(&bad).unwrap_err();
    assert!(err.to_string().contains("credentials"), "{err}");
}

#[tokio::test]
async fn the_demo_has_no_api_keys() {
    let t = TestApp::demo().await;
    let res = t
        .post("/v1/authenticate")
        .sent_from("127.0.0.1")
        .json(json!({"username": "stan", "password": "pass"}))
        .send()
        .await;
    assert_eq!(res.status, 404);
    let res = t
        .get("/v1/books/1")
        .anonymous()
        .header("x-api-key", "abc")
        .send()
        .await;
    assert_eq!(res.status, 401);
}

#[tokio::test]
async fn a_revocation_holds_in_a_new_process_whatever_came_before_it() {
    let t = TestApp::demo().await;
    // Many revocations already on record (more than one page of them).
    let far = chrono::Utc::now().timestamp() + 86400;
    t.fill(
        "restkit_revocations",
        &["kind", "value", "expires_at", "created_at"],
        2500,
        |n| {
            vec![
                "jti".into(),
                format!("old-{n}").into(),
                far.into(),
                "2026-01-01T00:00:00.000000Z".into(),
            ]
        },
    )
    .await;
    let issued = password_grant(&t).await;
    let access = issued["access_token"].as_str().unwrap().to_string();
    let res = t
        .post("/v1/revoke")
        .header("authorization", CLIENT)
        .raw(FORM, &format!("token={access}"))
        .send()
        .await;
    assert_eq!(res.status, 200);
    // Another process over the same database: it learns of the
    // revocation, after 2,500 others, before it accepts the token.
    let settings = crate::helpers::settings(restkit::demo::DEMO_TOML, &t.url);
    let model = restkit::model::toml::parse(restkit::demo::DEMO_TOML).unwrap();
    let other = restkit::open(model, settings, &Registry::builtin())
        .await
        .unwrap();
    let other = TestApp::from_app(other);
    let r = me(&other, &access).await;
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    // A fresh token of the same user still works there.
    let fresh = password_grant(&t).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(me(&other, &fresh).await.status, 200);
}

#[tokio::test]
async fn a_narrowed_refresh_keeps_the_granted_scope_for_the_next_one() {
    let t = TestApp::demo().await;
    let first = password_grant(&t).await;
    let r1 = first["refresh_token"].as_str().unwrap();
    let narrow = token(
        &t,
        &format!("grant_type=refresh_token&refresh_token={r1}&scope=basic"),
    )
    .await;
    assert_eq!(narrow.json()["scope"], "basic");
    let r2 = narrow.json()["refresh_token"].as_str().unwrap().to_string();
    let again = token(&t, &format!("grant_type=refresh_token&refresh_token={r2}")).await;
    assert_eq!(again.json()["scope"], "basic write", "RFC 6749 §6");
    let r3 = again.json()["refresh_token"].as_str().unwrap().to_string();
    let empty = token(
        &t,
        &format!("grant_type=refresh_token&refresh_token={r3}&scope=%20"),
    )
    .await;
    assert_eq!(empty.json()["error"], "invalid_scope");
}

#[tokio::test]
async fn a_redirect_uri_left_out_of_authorize_may_be_left_out_of_the_token_request() {
    let t = TestApp::demo().await;
    // Client 1 has one registered redirect URI: authorize may omit it.
    let res = authorize(&t, "response_type=code&client_id=1&state=o", "approve").await;
    assert_eq!(res.status, 302);
    assert!(res.header("location").starts_with(CALLBACK));
    let code = location_param(&res, "code").unwrap();
    let res = token(&t, &format!("grant_type=authorization_code&code={code}")).await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
}

/// A raw connection to the test app's database, to install faults.
async fn raw_db(t: &TestApp) -> crate::db::Raw {
    crate::db::Raw::connect(&t.url).await
}

async fn fail_inserts(raw: &crate::db::Raw, table: &str) {
    raw.fail_inserts(table).await;
}

async fn heal(raw: &crate::db::Raw, table: &str) {
    raw.heal(table).await;
}

async fn used_refresh_tokens(raw: &crate::db::Raw) -> i64 {
    raw.scalar("SELECT count(*) FROM restkit_refresh_tokens WHERE used")
        .await
}

#[tokio::test]
async fn a_rotation_that_fails_half_way_leaves_the_old_refresh_token_live() {
    let t = TestApp::demo().await;
    let first = password_grant(&t).await;
    let r1 = first["refresh_token"].as_str().unwrap();
    let raw = raw_db(&t).await;
    // The successor cannot be written: the exchange fails …
    fail_inserts(&raw, "restkit_refresh_tokens").await;
    let failed = token(&t, &format!("grant_type=refresh_token&refresh_token={r1}")).await;
    assert!(
        failed.status.is_server_error(),
        "{} {}",
        failed.status,
        String::from_utf8_lossy(&failed.body)
    );
    heal(&raw, "restkit_refresh_tokens").await;
    // … having written nothing: the old token is not marked used …
    assert_eq!(used_refresh_tokens(&raw).await, 0);
    // … so the client's retry is an exchange, not a reuse.
    let retry = token(&t, &format!("grant_type=refresh_token&refresh_token={r1}")).await;
    assert_eq!(
        retry.status,
        200,
        "{}",
        String::from_utf8_lossy(&retry.body)
    );
    let access = retry.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(me(&t, &access).await.status, 200, "the family lives");
    assert_eq!(
        me(&t, first["access_token"].as_str().unwrap()).await.status,
        200
    );
}

#[tokio::test]
async fn a_refused_refresh_consumes_nothing() {
    let t = TestApp::demo().await;
    let res = token(
        &t,
        "grant_type=password&username=stan&password=pass&scope=basic",
    )
    .await;
    let r1 = res.json()["refresh_token"].as_str().unwrap().to_string();
    // A wider scope than granted: refused …
    let wider = token(
        &t,
        &format!("grant_type=refresh_token&refresh_token={r1}&scope=basic%20write"),
    )
    .await;
    assert_eq!(wider.json()["error"], "invalid_scope");
    // … an empty one, and another client presenting it: refused too …
    let empty = token(
        &t,
        &format!("grant_type=refresh_token&refresh_token={r1}&scope=%20"),
    )
    .await;
    assert_eq!(empty.json()["error"], "invalid_scope");
    let other = t
        .post("/v1/access_token")
        .anonymous()
        .raw(
            FORM,
            &format!("grant_type=refresh_token&refresh_token={r1}&client_id=spa"),
        )
        .send()
        .await;
    assert_eq!(other.json()["error"], "invalid_grant");
    // … and none of it counted: the token still exchanges, once.
    let retry = token(&t, &format!("grant_type=refresh_token&refresh_token={r1}")).await;
    assert_eq!(
        retry.status,
        200,
        "{}",
        String::from_utf8_lossy(&retry.body)
    );
    let access = retry.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(me(&t, &access).await.status, 200, "the family lives");
}

#[tokio::test]
async fn a_revocation_that_fails_half_way_revokes_nothing() {
    let t = TestApp::demo().await;
    let first = password_grant(&t).await;
    let r1 = first["refresh_token"].as_str().unwrap();
    let raw = raw_db(&t).await;
    fail_inserts(&raw, "restkit_revocations").await;
    let revoke = |token: String| {
        t.post("/v1/revoke")
            .header("authorization", CLIENT)
            .raw(FORM, &format!("token={token}"))
            .send()
    };
    let failed = revoke(r1.to_string()).await;
    assert!(failed.status.is_server_error(), "{}", failed.status);
    heal(&raw, "restkit_revocations").await;
    assert_eq!(
        used_refresh_tokens(&raw).await,
        0,
        "the family's tokens were not marked without the revocation row"
    );
    // The retry revokes it whole.
    assert_eq!(revoke(r1.to_string()).await.status, 200);
    let after = token(&t, &format!("grant_type=refresh_token&refresh_token={r1}")).await;
    assert_eq!(after.json()["error"], "invalid_grant");
    assert_eq!(
        me(&t, first["access_token"].as_str().unwrap()).await.status,
        401
    );
}

#[tokio::test]
async fn a_password_change_that_cannot_cut_sessions_off_changes_nothing() {
    let t = TestApp::demo().await;
    let first = password_grant(&t).await;
    let store = &t.app.state().store;
    let live = std::time::Duration::from_secs(3600);
    let raw = raw_db(&t).await;
    fail_inserts(&raw, "restkit_revocations").await;
    let changed = restkit::auth::users::set_password(store, "stan", "new-pass", live).await;
    assert!(changed.is_err());
    heal(&raw, "restkit_revocations").await;
    // The old password still works and the new one does not; the session
    // that could not be cut off was not half cut off.
    password_grant(&t).await;
    let new = token(
        &t,
        "grant_type=password&username=stan&password=new-pass&scope=basic",
    )
    .await;
    assert_eq!(new.json()["error"], "invalid_grant");
    assert_eq!(used_refresh_tokens(&raw).await, 0);
    // Once it can, the change and the cut-off happen together.
    assert!(
        restkit::auth::users::set_password(store, "stan", "new-pass", live)
            .await
            .unwrap()
    );
    assert_eq!(
        me(&t, first["access_token"].as_str().unwrap()).await.status,
        401
    );
    let r1 = first["refresh_token"].as_str().unwrap();
    let after = token(&t, &format!("grant_type=refresh_token&refresh_token={r1}")).await;
    assert_eq!(after.json()["error"], "invalid_grant");
}

/// The consent form for `query` as a browser gets it: (csrf field, cookie).
async fn consent_form(t: &TestApp, query: &str) -> (String, String) {
    let page = t
        .get(&format!("/v1/authorize?{query}"))
        .anonymous()
        .send()
        .await;
    assert_eq!(page.status, 200);
    let html = String::from_utf8(page.body.clone()).unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    let cookie = page.header("set-cookie").split(';').next().unwrap();
    (csrf, cookie.to_string())
}

async fn post_consent(
    t: &TestApp,
    query: &str,
    cookie: &str,
    csrf: &str,
    headers: &[(&str, &str)],
) -> TestResponse {
    let mut call = t.post("/v1/authorize").anonymous().header("cookie", cookie);
    for (k, v) in headers {
        call = call.header(k, v);
    }
    call.raw(
        FORM,
        &format!("{query}&csrf={csrf}&username=stan&password=pass&decision=approve"),
    )
    .send()
    .await
}

#[tokio::test]
async fn a_planted_csrf_pair_gets_no_code() {
    let t = TestApp::demo().await;
    let q = format!(
        "response_type=code&client_id=1&redirect_uri={}&state=s",
        enc(CALLBACK)
    );
    // A pair the attacker made up (a cookie planted from a sibling
    // domain, the same value in the form), plain or shaped like ours.
    for planted in ["planted", "99999999999.bm9uY2U.bWFj"] {
        let res = post_consent(&t, &q, &format!("restkit_csrf={planted}"), planted, &[]).await;
        assert_eq!(res.status, 403, "{planted}");
        assert!(res.headers.get("location").is_none());
    }
    // A genuine token shown for another client does not carry over.
    let spa = format!(
        "response_type=code&client_id=spa&redirect_uri={}&code_challenge={}&code_challenge_method=S256",
        enc(CALLBACK),
        pkce().1
    );
    let (csrf, cookie) = consent_form(&t, &spa).await;
    let res = post_consent(&t, &q, &cookie, &csrf, &[]).await;
    assert_eq!(res.status, 403);
}

#[tokio::test]
async fn a_cross_site_consent_post_is_refused_and_a_same_site_one_gets_a_code() {
    let t = TestApp::demo().await;
    let q = format!(
        "response_type=code&client_id=1&redirect_uri={}&state=s",
        enc(CALLBACK)
    );
    let (csrf, cookie) = consent_form(&t, &q).await;
    for headers in [
        &[("origin", "https://evil.example")][..],
        &[("origin", "null")][..],
        &[("origin", "http://api.test.evil.example")][..],
        &[("sec-fetch-site", "cross-site")][..],
        &[
            ("sec-fetch-site", "same-site"),
            ("origin", "http://api.test"),
        ][..],
    ] {
        let res = post_consent(&t, &q, &cookie, &csrf, headers).await;
        assert_eq!(res.status, 403, "{headers:?}");
        assert!(res.headers.get("location").is_none());
    }
    // The genuine flow, as a browser sends it: a code.
    let res = post_consent(
        &t,
        &q,
        &cookie,
        &csrf,
        &[
            ("origin", "http://api.test"),
            ("sec-fetch-site", "same-origin"),
        ],
    )
    .await;
    assert_eq!(res.status, 302, "{}", String::from_utf8_lossy(&res.body));
    assert!(location_param(&res, "code").is_some());
}

async fn own_rows(raw: &crate::db::Raw, table: &str) -> i64 {
    raw.scalar(&format!("SELECT count(*) FROM {table}")).await
}

#[tokio::test]
async fn a_prune_pass_deletes_expired_own_rows_in_batches_and_keeps_live_ones() {
    use restkit::auth::prune::{prune, PRUNE_GRACE};
    let t = TestApp::demo().await;
    let raw = raw_db(&t).await;
    // Five codes (ten minutes each), a refresh token (days), and a revoked
    // access token (an hour).
    for _ in 0..5 {
        let res = authorize(&t, "response_type=code&client_id=1&state=o", "approve").await;
        assert_eq!(res.status, 302);
    }
    let issued = password_grant(&t).await;
    let access = issued["access_token"].as_str().unwrap();
    let revoked = t
        .post("/v1/revoke")
        .header("authorization", CLIENT)
        .raw(FORM, &format!("token={access}"))
        .send()
        .await;
    assert_eq!(revoked.status, 200);
    assert_eq!(me(&t, access).await.status, 401);
    let state = t.app.state();
    let (store, tokens) = (&state.store, &state.tokens);
    assert_eq!(tokens.revocations.len(), 1);
    let now = restkit::auth::tokens::now();
    // Now: nothing has expired, nothing goes.
    let nothing = prune(store, tokens, now, 2).await.unwrap();
    assert_eq!(nothing.total(), 0);
    // Past the codes' ten minutes (and the grace), in batches of two: the
    // codes go, the refresh token and the revocation stay …
    let later = now + 600 + PRUNE_GRACE + 1;
    let pass = prune(store, tokens, later, 2).await.unwrap();
    assert_eq!(pass.codes, 5);
    assert_eq!(own_rows(&raw, "restkit_auth_codes").await, 0);
    assert_eq!(own_rows(&raw, "restkit_refresh_tokens").await, 1);
    assert_eq!(own_rows(&raw, "restkit_revocations").await, 1);
    assert_eq!(tokens.revocations.len(), 1);
    assert_eq!(me(&t, access).await.status, 401, "a live revocation holds");
    // … and once those have expired too, they go, from the database and
    // from the in-process set.
    let much_later = now + 3600 * 24 * 365;
    let pass = prune(store, tokens, much_later, 2).await.unwrap();
    assert_eq!((pass.refresh_tokens, pass.revocations), (1, 1));
    assert_eq!(own_rows(&raw, "restkit_refresh_tokens").await, 0);
    assert_eq!(own_rows(&raw, "restkit_revocations").await, 0);
    assert!(tokens.revocations.is_empty());
}

#[tokio::test]
async fn the_server_prunes_expired_own_rows_on_its_own() {
    let t = TestApp::demo().await;
    let raw = raw_db(&t).await;
    password_grant(&t).await;
    // A refresh token that expired an hour ago, as a long-running server
    // would have accumulated.
    raw.execute(&format!(
        "UPDATE restkit_refresh_tokens SET expires_at = {} - 3600",
        raw.now_secs()
    ))
    .await;
    password_grant(&t).await;
    assert_eq!(own_rows(&raw, "restkit_refresh_tokens").await, 2);
    let (_addr, stop) = t.listen().await;
    let mut left = 2;
    for _ in 0..100 {
        left = own_rows(&raw, "restkit_refresh_tokens").await;
        if left == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(left, 1, "the expired token is pruned, the live one kept");
    drop(stop);
}

/// The browsable API's sign-in, as a browser would go through it: the
/// built-in client's authorization-code + PKCE flow run by the server, the
/// token kept in an HttpOnly session cookie (never in a URL), pages read
/// with it, writes only from the server's own origin, sign-out revokes.
/// The session cookie is named for the address the browser uses (what
/// the sign-in set it for), not for the tokens' issuer: an https issuer in
/// front of a server reached over http (no public_url) must not make the
/// server look for a `__Host-` cookie it never set; and over an https
/// public address the page sees the `__Host-` cookie as signed in.
#[tokio::test]
async fn the_session_cookie_is_named_for_the_public_address_not_the_issuer() {
    let open = |public_url: &str| {
        let public_url = public_url.to_string();
        async move {
            let db = crate::db::TestDb::new().await;
            let mut settings = crate::helpers::settings(restkit::demo::DEMO_TOML, &db.url);
            settings.auth.issuer = "https://id.example".into();
            settings.server.public_url = public_url;
            let model = restkit::model::toml::parse(restkit::demo::DEMO_TOML).unwrap();
            TestApp::from_model(model, settings, restkit::registry::Registry::builtin(), db).await
        }
    };
    let t = open("").await;
    let token = t.bearer();
    let token = token.trim_start_matches("Bearer ");
    let res = t
        .get("/v1/books/3")
        .anonymous()
        .header("cookie", &format!("restkit-session={token}"))
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));

    let t = open("https://api.example").await;
    let token = t.bearer();
    let token = token.trim_start_matches("Bearer ");
    let page = t
        .get("/v1/books?limit=2")
        .anonymous()
        .header("accept", "text/html")
        .header("cookie", &format!("__Host-restkit-session={token}"))
        .send()
        .await;
    assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
    assert!(String::from_utf8_lossy(&page.body).contains("Sign out"));
}

#[tokio::test]
async fn a_person_signs_in_to_the_browsable_pages_and_out_again() {
    // The issuer (and the built-in client's redirect URI) is the address
    // the browser uses.
    let db = crate::db::TestDb::new().await;
    let mut settings = crate::helpers::settings(restkit::demo::DEMO_TOML, &db.url);
    settings.server.public_url = "http://api.test".into();
    let model = restkit::model::toml::parse(restkit::demo::DEMO_TOML).unwrap();
    let t = TestApp::from_model(model, settings, restkit::registry::Registry::builtin(), db).await;
    let cookie_of = |res: &TestResponse, name: &str| -> String {
        res.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|c| c.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} cookie in {:?}", res.headers))
    };
    // A page that needs a token offers to sign in, and says where it goes.
    let page = t
        .get("/v1/books?limit=2")
        .anonymous()
        .header("accept", "text/html")
        .send()
        .await;
    assert_eq!(page.status, 401);
    let html = String::from_utf8_lossy(&page.body).to_string();
    let href = "/_restkit/sign-in?next=%2Fv1%2Fbooks%3Flimit%3D2";
    assert!(html.contains(&format!("href=\"{href}\"")), "{html}");

    let start = t.get(href).anonymous().send().await;
    assert_eq!(start.status, 303);
    let flow = cookie_of(&start, "restkit-sign-in");
    assert!(flow.contains("HttpOnly"), "{flow}");
    let flow = flow.split(';').next().unwrap().to_string();
    let location = start.header("location").to_string();
    let query = location
        .strip_prefix("http://api.test/v1/authorize?")
        .unwrap_or_else(|| panic!("{location}"))
        .to_string();
    assert!(query.contains("client_id=restkit-browser") && query.contains("code_challenge="));
    let back = authorize(&t, &query, "approve").await;
    assert_eq!(back.status, 302, "{}", String::from_utf8_lossy(&back.body));
    let to = back.header("location").to_string();
    let to = to.strip_prefix("http://api.test").unwrap().to_string();
    assert!(to.starts_with("/_restkit/signed-in?code="), "{to}");

    // The state must be the one the flow started with.
    let forged = to.replace("state=", "state=x");
    let res = t
        .get(&forged)
        .anonymous()
        .header("cookie", &flow)
        .send()
        .await;
    assert_eq!(res.status, 400);
    let done = t.get(&to).anonymous().header("cookie", &flow).send().await;
    assert_eq!(done.status, 303, "{}", String::from_utf8_lossy(&done.body));
    assert_eq!(done.header("location"), "/v1/books?limit=2");
    let session = cookie_of(&done, "restkit-session");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(
        session.contains("Max-Age=3600"),
        "gone with the session or the token: {session}"
    );
    let session = session.split(';').next().unwrap().to_string();

    // Pages read with the cookie, and offer to sign out.
    let page = t
        .get("/v1/books?limit=2")
        .anonymous()
        .header("accept", "text/html")
        .header("cookie", &session)
        .send()
        .await;
    assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
    assert!(String::from_utf8_lossy(&page.body).contains("Sign out"));
    // Writes count it only from the server's own origin.
    let book = json!({"title": "Signed in", "author": "A"});
    let res = t
        .post("/v1/books")
        .anonymous()
        .header("cookie", &session)
        .json(book.clone())
        .send()
        .await;
    assert_eq!(res.status, 401, "no Origin: the cookie does not count");
    let res = t
        .post("/v1/books")
        .anonymous()
        .header("cookie", &session)
        .header("origin", "http://evil.test")
        .json(book.clone())
        .send()
        .await;
    assert_eq!(res.status, 401, "another origin");
    let res = t
        .post("/v1/books")
        .anonymous()
        .header("cookie", &session)
        .header("origin", "http://api.test")
        .json(book)
        .send()
        .await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));

    // Sign-out: only from the server's pages; it revokes the token.
    let res = t
        .post("/_restkit/sign-out")
        .anonymous()
        .header("cookie", &session)
        .send()
        .await;
    assert_eq!(res.status, 403);
    let out = t
        .post("/_restkit/sign-out?next=%2Fv1%2Fbooks%3Flimit%3D2")
        .anonymous()
        .header("cookie", &session)
        .header("origin", "http://api.test")
        .send()
        .await;
    assert_eq!(out.status, 303);
    assert_eq!(
        out.header("location"),
        "/v1/books?limit=2",
        "back to the page"
    );
    assert!(cookie_of(&out, "restkit-session").contains("Max-Age=0"));
    let res = t
        .get("/v1/books/3")
        .anonymous()
        .header("cookie", &session)
        .send()
        .await;
    assert_eq!(res.status, 401, "the token was revoked");
    // A stale session is no credential, not a 401 everywhere: the public
    // index still answers.
    let res = t
        .get("/")
        .anonymous()
        .header("cookie", &session)
        .send()
        .await;
    assert_eq!(res.status, 200);
    // The code is spent (and a replay would revoke what it issued).
    let again = t.get(&to).anonymous().header("cookie", &flow).send().await;
    assert_eq!(again.status, 400);
    // Only local paths are returned to.
    let res = t
        .get("/_restkit/sign-in?next=//evil.test/x")
        .anonymous()
        .send()
        .await;
    let flow = cookie_of(&res, "restkit-sign-in");
    let next = flow.split(';').next().unwrap().rsplit('.').next().unwrap();
    assert_eq!(next, "Lw", "base64url of /");
}
