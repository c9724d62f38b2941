"""Every OAuth2 flow restkit serves, driven by a standard client library
(Authlib), against a running server: RFC 8414 metadata validation, the
password, client_credentials, refresh_token and authorization_code (PKCE
S256) grants, JWT verification against the JWKS, code replay.

All of it under the default rate limits: the token tier's burst holds a
whole flow; past it, the 429 is an error Authlib reports by its RFC 6749
code.

Usage: python3 authlib_flows.py http://127.0.0.1:PORT   (exit 0: all good)
"""
import re
import secrets
import sys
import urllib.parse
import warnings

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

warnings.simplefilter("ignore")
from authlib.jose import JsonWebKey, jwt  # noqa: E402

base = sys.argv[1].rstrip("/")
tok_url = base + "/v1/access_token"
callback = "http://127.0.0.1:9999/callback"


def check(cond, what):
    if not cond:
        print("FAILED:", what)
        sys.exit(1)
    print("ok:", what)


meta = requests.get(base + "/.well-known/oauth-authorization-server").json()
AuthorizationServerMetadata(meta).validate()
check(True, "metadata passes Authlib's RFC 8414 validation")

s = OAuth2Session("1", "pass2", scope="basic write")
t = s.fetch_token(tok_url, grant_type="password", username="stan", password="pass")
check(t["token_type"] == "Bearer" and "refresh_token" in t, "password grant")
jwks = JsonWebKey.import_key_set(requests.get(base + "/.well-known/jwks.json").json())
claims = jwt.decode(t["access_token"], jwks)
claims.validate()
check(claims["client_id"] == "1" and claims["scope"] == "basic write", "JWT verifies with the JWKS")
check(s.get(base + "/v1/users/me").json()["username"] == "stan", "the token is a caller")
t2 = s.refresh_token(tok_url, refresh_token=t["refresh_token"])
check(t2["refresh_token"] != t["refresh_token"], "refresh token rotates")

cc = OAuth2Session("1", "pass2", scope="basic").fetch_token(tok_url, grant_type="client_credentials")
check("refresh_token" not in cc, "client_credentials: no refresh token")

verifier = secrets.token_urlsafe(48)
spa = OAuth2Session("spa", redirect_uri=callback, scope="basic", code_challenge_method="S256")
url, state = spa.create_authorization_url(base + "/v1/authorize", code_verifier=verifier)
browser = requests.Session()
page = browser.get(url)
csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
form = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(url).query))
form.update(csrf=csrf, username="stan", password="pass", decision="approve")
r = browser.post(base + "/v1/authorize", data=form, allow_redirects=False)
loc = r.headers["Location"]
t3 = spa.fetch_token(tok_url, authorization_response=loc, code_verifier=verifier)
check("refresh_token" in t3, "authorization code with PKCE (public client)")
t4 = spa.refresh_token(tok_url, refresh_token=t3["refresh_token"])
check(t4["refresh_token"] != t3["refresh_token"], "the public client refreshes its token")
t3 = t4
try:
    spa.fetch_token(tok_url, authorization_response=loc, code_verifier=verifier)
    check(False, "a replayed code is refused")
except Exception as e:  # Authlib raises OAuthError
    check("invalid_grant" in str(e), "a replayed code is refused")
me = requests.get(base + "/v1/users/me", headers={"Authorization": "Bearer " + t3["access_token"]})
check(me.status_code == 401, "the replay revoked the code's tokens")

# Past the token tier's burst: a 429 that Authlib reports as an OAuth2 error.
from authlib.integrations.base_client.errors import OAuthError  # noqa: E402

refused = None
for _ in range(6):
    try:
        OAuth2Session("1", "pass2", scope="basic").fetch_token(tok_url, grant_type="client_credentials")
    except OAuthError as e:
        refused = e
        break
check(
    refused is not None
    and refused.error == "temporarily_unavailable"
    and "retry in" in (refused.description or ""),
    "past the burst, Authlib reports the 429 with its reason",
)
