//! Tests of the certificate credentials (Microsoft client assertions) and of Google service
//! accounts, against the shared stand-in, with JWTs signed here with ring.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::StatusCode as Status;
use ring::signature::{self, RsaKeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::{Value, json};

use super::tests::{assert_aad_error, decode_part, http, introspect, unique};
use super::*;
use crate::certs::{TestCertificate, google_service_account_key, self_signed_certificate};

const SCOPE: &str = "https://outlook.office365.com/.default";

/// Certificates shared by the tests of this binary (RSA key generation takes a moment).
struct Certs {
    valid: TestCertificate,
    other: TestCertificate,
    expired: TestCertificate,
}

fn certs() -> &'static Certs {
    static CERTS: OnceLock<Certs> = OnceLock::new();
    CERTS.get_or_init(|| Certs {
        valid: self_signed_certificate("mailgate test app", 365).expect("a certificate"),
        other: self_signed_certificate("another app", 365).expect("a certificate"),
        expired: self_signed_certificate("expired app", -1).expect("an expired certificate"),
    })
}

/// `header.claims.signature` signed with a PKCS#8 PEM key; `PS256` in `sign_alg` signs with
/// RSASSA-PSS, anything else with PKCS#1 v1.5 (the header is sent as given).
fn sign(key_pem: &str, sign_alg: &str, header: &Value, claims: &Value) -> String {
    let der = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes()).expect("a PKCS#8 key");
    let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).expect("an RSA key");
    let encoding: &'static dyn signature::RsaEncoding = if sign_alg == "PS256" {
        &signature::RSA_PSS_SHA256
    } else {
        &signature::RSA_PKCS1_SHA256
    };
    let mut jwt = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).expect("JSON"));
    jwt.push('.');
    jwt.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("JSON")));
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(encoding, &SystemRandom::new(), jwt.as_bytes(), &mut sig)
        .expect("sign");
    jwt.push('.');
    jwt.push_str(&URL_SAFE_NO_PAD.encode(&sig));
    jwt
}

/// Overwrites (or with `null`, removes) members of a JSON object.
fn merged(base: &Value, changes: &Value) -> Value {
    let mut out = base.clone();
    if let (Some(out), Some(changes)) = (out.as_object_mut(), changes.as_object()) {
        for (k, v) in changes {
            if v.is_null() {
                out.remove(k);
            } else {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Microsoft certificate credentials

/// A tenant and a client with a certificate (and no secret unless `change` sets one).
struct CertApp {
    admin: IdpAdmin,
    tenant: String,
    domain: String,
    client: String,
}

async fn new_cert_app(certificate_pem: &str, change: impl FnOnce(&mut ClientSpec)) -> CertApp {
    let admin = FakeIdp::shared().admin();
    let tenant = uuid::Uuid::new_v4().to_string();
    let domain = format!("{}.onmicrosoft.com", unique("contoso"));
    admin
        .register_tenant(TenantSpec::new(&tenant, "example.test").with_domain(&domain))
        .await
        .expect("register the tenant");
    let client = uuid::Uuid::new_v4().to_string();
    let mut spec = ClientSpec {
        certificate_pem: Some(certificate_pem.to_owned()),
        secret: String::new(),
        ..ClientSpec::new(&tenant, &client, "")
    };
    change(&mut spec);
    admin
        .register_client(spec)
        .await
        .expect("register the client");
    CertApp {
        admin,
        tenant,
        domain,
        client,
    }
}

impl CertApp {
    fn token_url(&self) -> String {
        FakeIdp::shared().token_url(&self.tenant)
    }

    /// Claims Microsoft's documentation asks for, valid now.
    fn claims(&self) -> Value {
        let now = unix_now();
        json!({
            "aud": self.token_url(),
            "iss": self.client,
            "sub": self.client,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + 600,
        })
    }

    /// An assertion by `cert` with header and claim changes (`null` removes a member).
    fn assertion(&self, cert: &TestCertificate, header: Value, claims: Value) -> String {
        let base = json!({"alg": "RS256", "typ": "JWT", "x5t#S256": cert.sha256_thumbprint_b64url});
        let header = merged(&base, &header);
        let alg = header["alg"].as_str().unwrap_or("RS256").to_owned();
        sign(
            &cert.key_pem,
            &alg,
            &header,
            &merged(&self.claims(), &claims),
        )
    }

    async fn post(&self, tenant: &str, assertion: &str) -> (Status, String) {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client.as_str()),
            ("scope", SCOPE),
            ("client_assertion_type", assertion::JWT_BEARER),
            ("client_assertion", assertion),
        ];
        post_form(&FakeIdp::shared().token_url(tenant), &form).await
    }
}

async fn post_form(url: &str, form: &[(&str, &str)]) -> (Status, String) {
    let response = http()
        .post(url)
        .form(form)
        .send()
        .await
        .expect("the token endpoint answers");
    let status = response.status();
    (status, response.text().await.expect("a body"))
}

#[track_caller]
fn access_token(status: Status, body: &str) -> String {
    assert_eq!(status, Status::OK, "{body}");
    let body: Value = serde_json::from_str(body).expect("JSON");
    body["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}

fn description(body: &Value) -> &str {
    body["error_description"].as_str().unwrap_or("")
}

#[tokio::test]
async fn a_signed_assertion_gets_the_same_app_token_as_a_secret() {
    let certs = certs();
    let app = new_cert_app(&certs.valid.cert_pem, |_| {}).await;
    let cases = [
        ("RS256 with x5t#S256", json!({})),
        ("PS256 with x5t#S256", json!({"alg": "PS256"})),
        (
            "RS256 with the legacy SHA-1 x5t",
            json!({"x5t#S256": null, "x5t": certs.valid.sha1_thumbprint_b64url}),
        ),
        (
            "PS256 with x5t as padded standard base64",
            json!({"alg": "PS256", "x5t#S256": null, "x5t": STANDARD.encode(
                URL_SAFE_NO_PAD.decode(&certs.valid.sha1_thumbprint_b64url).expect("base64url"))}),
        ),
    ];
    for (what, header) in cases {
        let assertion = app.assertion(&certs.valid, header, json!({}));
        let (status, body) = app.post(&app.tenant, &assertion).await;
        let token = access_token(status, &body);
        let claims = decode_part(token.split('.').nth(1).expect("claims"));
        assert_eq!(claims["appid"], app.client, "{what}");
        assert_eq!(claims["tid"], app.tenant, "{what}");
        assert_eq!(claims["idtyp"], "app", "{what}");
        assert_eq!(claims["roles"], json!([ROLE_SMTP, ROLE_IMAP]), "{what}");
        assert_eq!(
            introspect("smtp", &token).await,
            json!({"active": true, "username": "app@example.test"}),
            "{what}"
        );
    }

    // Sent to the tenant's domain name, the assertion's aud names that URL.
    let domain_url = FakeIdp::shared().token_url(&app.domain);
    let assertion = app.assertion(&certs.valid, json!({}), json!({"aud": domain_url}));
    let (status, body) = app.post(&app.domain, &assertion).await;
    access_token(status, &body);

    let stats = app.admin.stats(&app.client).await.expect("stats");
    assert_eq!(
        stats,
        IdpStats {
            token_requests: 5,
            tokens_issued: 5,
            introspections_active: 4,
            introspections_rejected: 0,
        }
    );
}

#[tokio::test]
async fn each_bad_assertion_gets_microsofts_error_in_the_documented_order() {
    let certs = certs();
    let app = new_cert_app(&certs.valid.cert_pem, |_| {}).await;
    let now = unix_now();
    let sha1_hex = |cert: &TestCertificate| {
        jose::hex_upper(
            &URL_SAFE_NO_PAD
                .decode(&cert.sha1_thumbprint_b64url)
                .expect("b64"),
        )
    };
    let other_sha256_hex = jose::hex_upper(
        &URL_SAFE_NO_PAD
            .decode(&certs.other.sha256_thumbprint_b64url)
            .expect("b64"),
    );
    let valid = &certs.valid;
    // (what, assertion, HTTP status, error, AADSTS, text in the description)
    let cases: Vec<(&str, String, u16, &str, u64, String)> = vec![
        (
            "not a JWT",
            "not-a-jwt".to_owned(),
            400,
            "invalid_request",
            50027,
            "JWT token is invalid or malformed.".to_owned(),
        ),
        (
            "an HMAC algorithm",
            app.assertion(valid, json!({"alg": "HS256"}), json!({})),
            400,
            "invalid_request",
            5002730,
            "Unsupported key for the signing algorithm".to_owned(),
        ),
        (
            "no thumbprint in the header",
            app.assertion(valid, json!({"x5t#S256": null}), json!({})),
            400,
            "invalid_request",
            50027,
            "No certificate thumbprint specified in token header".to_owned(),
        ),
        (
            "a certificate that is not registered",
            app.assertion(&certs.other, json!({}), json!({})),
            401,
            "invalid_client",
            700027,
            format!(
                "Client assertion contains an invalid signature. [Reason - The key was not found., \
                 Thumbprint of key used by client: '{other_sha256_hex}'"
            ),
        ),
        (
            "a legacy x5t that is not registered",
            app.assertion(
                &certs.other,
                json!({"x5t#S256": null, "x5t": certs.other.sha1_thumbprint_b64url}),
                json!({}),
            ),
            401,
            "invalid_client",
            700027,
            format!("Thumbprint of key used by client: '{}'", sha1_hex(&certs.other)),
        ),
        (
            "the registered thumbprint, signed by another key",
            sign(
                &certs.other.key_pem,
                "RS256",
                &json!({"alg": "RS256", "typ": "JWT", "x5t#S256": valid.sha256_thumbprint_b64url}),
                &app.claims(),
            ),
            401,
            "invalid_client",
            700027,
            "[Reason - The provided signature value did not match the expected signature value."
                .to_owned(),
        ),
        (
            "PS256 in the header, PKCS#1 v1.5 signature",
            sign(
                &valid.key_pem,
                "RS256",
                &json!({"alg": "PS256", "typ": "JWT", "x5t#S256": valid.sha256_thumbprint_b64url}),
                &app.claims(),
            ),
            401,
            "invalid_client",
            700027,
            "did not match the expected signature value".to_owned(),
        ),
        (
            "the audience of another tenant",
            app.assertion(
                valid,
                json!({}),
                json!({"aud": FakeIdp::shared().token_url("other-tenant")}),
            ),
            401,
            "invalid_client",
            700023,
            "Client assertion audience claim does not match Realm issuer.".to_owned(),
        ),
        (
            "Microsoft's real token URL as audience",
            app.assertion(
                valid,
                json!({}),
                json!({"aud": format!("https://login.microsoftonline.com/{}/oauth2/v2.0/token", app.tenant)}),
            ),
            401,
            "invalid_client",
            700023,
            "does not match Realm issuer".to_owned(),
        ),
        (
            "no audience",
            app.assertion(valid, json!({}), json!({"aud": null})),
            401,
            "invalid_client",
            700023,
            "does not match Realm issuer".to_owned(),
        ),
        (
            "an audience array",
            app.assertion(valid, json!({}), json!({"aud": [app.token_url()]})),
            400,
            "invalid_request",
            50027,
            "JWT token is invalid or malformed.".to_owned(),
        ),
        (
            "another issuer",
            app.assertion(valid, json!({}), json!({"iss": "someone-else"})),
            401,
            "invalid_client",
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter."
                .to_owned(),
        ),
        (
            "another subject",
            app.assertion(valid, json!({}), json!({"sub": "someone-else"})),
            401,
            "invalid_client",
            700021,
            "doesn't match 'client_id' parameter".to_owned(),
        ),
        (
            "no exp",
            app.assertion(valid, json!({}), json!({"exp": null})),
            401,
            "invalid_client",
            700024,
            "Client assertion is not within its valid time range.".to_owned(),
        ),
        (
            "expired two minutes ago",
            app.assertion(valid, json!({}), json!({"nbf": now - 420, "iat": now - 420, "exp": now - 120})),
            401,
            "invalid_client",
            700024,
            "expiry time of assertion".to_owned(),
        ),
        (
            "valid from in two minutes",
            app.assertion(valid, json!({}), json!({"nbf": now + 120, "exp": now + 600})),
            401,
            "invalid_client",
            700024,
            "not within its valid time range".to_owned(),
        ),
        (
            "valid for more than ten minutes",
            app.assertion(valid, json!({}), json!({"nbf": now, "iat": now, "exp": now + 601})),
            401,
            "invalid_client",
            700024,
            "not within its valid time range".to_owned(),
        ),
        (
            "no jti",
            app.assertion(valid, json!({}), json!({"jti": null})),
            400,
            "invalid_request",
            50013,
            "Assertion failed signature validation. [Reason - The JWT token has no 'jti' claim]"
                .to_owned(),
        ),
    ];
    let count = cases.len();
    for (what, assertion, status, error, code, text) in cases {
        let (got, body) = app.post(&app.tenant, &assertion).await;
        let body = assert_aad_error(got, &body, status, error, code);
        assert!(description(&body).contains(&text), "{what}: {body}");
    }

    // Within the 60 s skew: still accepted.
    let assertion = app.assertion(
        valid,
        json!({}),
        json!({"nbf": now + 30, "iat": now + 30, "exp": now + 600}),
    );
    let (status, body) = app.post(&app.tenant, &assertion).await;
    access_token(status, &body);
    // Without nbf and iat, the ten minutes count from now.
    let assertion = app.assertion(valid, json!({}), json!({"nbf": null, "iat": null}));
    let (status, body) = app.post(&app.tenant, &assertion).await;
    access_token(status, &body);

    let stats = app.admin.stats(&app.client).await.expect("stats");
    assert_eq!(stats.token_requests, count as u64 + 2);
    assert_eq!(stats.tokens_issued, 2);
}

#[tokio::test]
async fn the_assertion_type_must_be_jwt_bearer_and_come_with_an_assertion() {
    let certs = certs();
    let app = new_cert_app(&certs.valid.cert_pem, |_| {}).await;
    let assertion = app.assertion(&certs.valid, json!({}), json!({}));
    let url = app.token_url();
    let base = [
        ("grant_type", "client_credentials"),
        ("client_id", app.client.as_str()),
        ("scope", SCOPE),
    ];
    let with = |extra: &[(&'static str, &str)]| {
        let mut form: Vec<(&str, String)> =
            base.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        form.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        form
    };
    let send = |form: Vec<(&'static str, String)>| {
        let url = url.clone();
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post_form(&url, &form).await
        }
    };
    let (status, body) = send(with(&[
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
        ),
        ("client_assertion", &assertion),
    ]))
    .await;
    let body = assert_aad_error(status, &body, 400, "invalid_request", 90011);
    assert!(
        description(&body).contains("Unexpected client assertion type."),
        "{body}"
    );

    let (status, body) = send(with(&[("client_assertion", &assertion)])).await;
    assert_aad_error(status, &body, 400, "invalid_request", 90011);

    let (status, body) = send(with(&[("client_assertion_type", assertion::JWT_BEARER)])).await;
    let body = assert_aad_error(status, &body, 400, "invalid_request", 900144);
    assert!(description(&body).contains("'client_assertion'"), "{body}");

    // The assertion is the credential; a client_secret beside it is ignored.
    let (status, body) = send(with(&[
        ("client_assertion_type", assertion::JWT_BEARER),
        ("client_assertion", &assertion),
        ("client_secret", "whatever"),
    ]))
    .await;
    access_token(status, &body);
}

#[tokio::test]
async fn a_replayed_jti_is_refused_per_client() {
    let certs = certs();
    let app = new_cert_app(&certs.valid.cert_pem, |_| {}).await;
    let twin = new_cert_app(&certs.valid.cert_pem, |_| {}).await;
    let jti = uuid::Uuid::new_v4().to_string();
    let assertion = app.assertion(&certs.valid, json!({}), json!({"jti": jti}));
    let (status, body) = app.post(&app.tenant, &assertion).await;
    access_token(status, &body);

    let (status, body) = app.post(&app.tenant, &assertion).await;
    let body = assert_aad_error(status, &body, 400, "invalid_request", 50013);
    assert!(
        description(&body).starts_with(
            "AADSTS50013: Assertion failed signature validation. [Reason - The JWT token has been used before]"
        ),
        "{body}"
    );
    // A new assertion with the same jti is a replay too.
    let again = app.assertion(&certs.valid, json!({"alg": "PS256"}), json!({"jti": jti}));
    let (status, body) = app.post(&app.tenant, &again).await;
    assert_aad_error(status, &body, 400, "invalid_request", 50013);
    // Another client may use the same jti once.
    let theirs = twin.assertion(&certs.valid, json!({}), json!({"jti": jti}));
    let (status, body) = twin.post(&twin.tenant, &theirs).await;
    access_token(status, &body);
    // A refused assertion does not use up its jti.
    let fresh = uuid::Uuid::new_v4().to_string();
    let wrong_aud = app.assertion(&certs.valid, json!({}), json!({"jti": fresh, "aud": "x"}));
    let (status, body) = app.post(&app.tenant, &wrong_aud).await;
    assert_aad_error(status, &body, 401, "invalid_client", 700023);
    let right = app.assertion(&certs.valid, json!({}), json!({"jti": fresh}));
    let (status, body) = app.post(&app.tenant, &right).await;
    access_token(status, &body);
}

#[tokio::test]
async fn an_expired_certificate_is_refused_with_microsofts_reason() {
    let certs = certs();
    let app = new_cert_app(&certs.expired.cert_pem, |_| {}).await;
    let assertion = app.assertion(&certs.expired, json!({}), json!({}));
    let (status, body) = app.post(&app.tenant, &assertion).await;
    let body = assert_aad_error(status, &body, 401, "invalid_client", 700027);
    let text = description(&body);
    assert!(
        text.starts_with(
            "AADSTS700027: Client assertion contains an invalid signature. [Reason - The key used is expired."
        ),
        "{text}"
    );
    assert!(text.contains("Found key 'Start="), "{text}");
    // A bad signature is reported before the expiry.
    let forged = sign(
        &certs.other.key_pem,
        "RS256",
        &json!({"alg": "RS256", "x5t#S256": certs.expired.sha256_thumbprint_b64url}),
        &app.claims(),
    );
    let (status, body) = app.post(&app.tenant, &forged).await;
    let body = assert_aad_error(status, &body, 401, "invalid_client", 700027);
    assert!(description(&body).contains("did not match"), "{body}");
}

#[tokio::test]
async fn a_certificate_only_client_refuses_secrets_and_a_client_may_have_both() {
    let certs = certs();
    let app = new_cert_app(&certs.valid.cert_pem, |_| {}).await;
    let form = |secret: Option<&'static str>| {
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", app.client.as_str()),
            ("scope", SCOPE),
        ];
        if let Some(secret) = secret {
            form.push(("client_secret", secret));
        }
        form
    };
    let (status, body) = post_form(&app.token_url(), &form(Some("a-guess"))).await;
    assert_aad_error(status, &body, 401, "invalid_client", 7000215);
    let (status, body) = post_form(&app.token_url(), &form(None)).await;
    assert_aad_error(status, &body, 401, "invalid_client", 7000218);

    // ClientSpec::with_certificate keeps the secret.
    let both = new_cert_app("", |spec| {
        *spec = ClientSpec::new(&spec.tenant_id, &spec.client_id, "s3cret")
            .with_certificate(&certs.valid.cert_pem);
    })
    .await;
    let (status, body) = post_form(
        &both.token_url(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", both.client.as_str()),
            ("client_secret", "s3cret"),
            ("scope", SCOPE),
        ],
    )
    .await;
    access_token(status, &body);
    let assertion = both.assertion(&certs.valid, json!({}), json!({}));
    let (status, body) = both.post(&both.tenant, &assertion).await;
    access_token(status, &body);
    // A secret-only client knows no certificate.
    let secret_only = new_cert_app("", |spec| spec.certificate_pem = None).await;
    let assertion = secret_only.assertion(&certs.valid, json!({}), json!({}));
    let (status, body) = secret_only.post(&secret_only.tenant, &assertion).await;
    let body = assert_aad_error(status, &body, 401, "invalid_client", 700027);
    assert!(
        description(&body).contains("The key was not found."),
        "{body}"
    );
}

#[tokio::test]
async fn a_patched_certificate_replaces_the_old_one_and_an_empty_one_removes_it() {
    let certs = certs();
    let app = new_cert_app(&certs.valid.cert_pem, |_| {}).await;
    let change = ClientPatch {
        certificate_pem: Some(certs.other.cert_pem.clone()),
        ..ClientPatch::default()
    };
    app.admin
        .update_client(&app.client, change)
        .await
        .expect("patch");
    let old = app.assertion(&certs.valid, json!({}), json!({}));
    let (status, body) = app.post(&app.tenant, &old).await;
    assert_aad_error(status, &body, 401, "invalid_client", 700027);
    let new = app.assertion(&certs.other, json!({}), json!({}));
    let (status, body) = app.post(&app.tenant, &new).await;
    access_token(status, &body);

    // A bundle of two certificates: either key works.
    let bundle = format!("{}{}", certs.valid.cert_pem, certs.other.cert_pem);
    let change = ClientPatch {
        certificate_pem: Some(bundle),
        ..ClientPatch::default()
    };
    app.admin
        .update_client(&app.client, change)
        .await
        .expect("patch");
    for cert in [&certs.valid, &certs.other] {
        let assertion = app.assertion(cert, json!({}), json!({}));
        let (status, body) = app.post(&app.tenant, &assertion).await;
        access_token(status, &body);
    }

    let change = ClientPatch {
        certificate_pem: Some(String::new()),
        ..ClientPatch::default()
    };
    app.admin
        .update_client(&app.client, change)
        .await
        .expect("patch");
    let assertion = app.assertion(&certs.other, json!({}), json!({}));
    let (status, body) = app.post(&app.tenant, &assertion).await;
    assert_aad_error(status, &body, 401, "invalid_client", 700027);
}

#[tokio::test]
async fn the_admin_endpoints_refuse_certificates_they_cannot_use() {
    let admin = FakeIdp::shared().admin();
    let tenant = uuid::Uuid::new_v4().to_string();
    admin
        .register_tenant(TenantSpec::new(&tenant, "example.test"))
        .await
        .expect("tenant");
    let client = unique("client");
    let error = admin
        .register_client(ClientSpec::new(&tenant, &client, "").with_certificate("not a PEM"))
        .await
        .expect_err("no certificate in it");
    assert!(format!("{error:#}").contains("400"), "{error:#}");
    let error = admin
        .register_client(
            ClientSpec::new(&tenant, &client, "").with_certificate(certs().valid.key_pem.clone()),
        )
        .await
        .expect_err("a key is no certificate");
    assert!(
        format!("{error:#}").contains("BEGIN CERTIFICATE"),
        "{error:#}"
    );
    admin
        .register_client(ClientSpec::new(&tenant, &client, "s"))
        .await
        .expect("a client without a certificate");
    let change = ClientPatch {
        certificate_pem: Some(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_owned(),
        ),
        ..ClientPatch::default()
    };
    let error = admin
        .update_client(&client, change)
        .await
        .expect_err("not a certificate");
    assert!(format!("{error:#}").contains("X.509"), "{error:#}");
}

// ---------------------------------------------------------------------------------------------
// Google service accounts

/// One key file shared by the tests (each registers it under its own e-mail and key id).
fn google_key() -> &'static (String, GoogleServiceAccountSpec) {
    static KEY: OnceLock<(String, GoogleServiceAccountSpec)> = OnceLock::new();
    KEY.get_or_init(|| {
        google_service_account_key(
            "shared@mailgate-test.iam.gserviceaccount.com",
            &FakeIdp::shared().google_token_url(),
            "example.test",
        )
        .expect("a Google key")
    })
}

struct GoogleApp {
    admin: IdpAdmin,
    email: String,
    kid: String,
    /// PKCS#8 PEM.
    private_key: String,
}

async fn new_google_app(change: impl FnOnce(&mut GoogleServiceAccountSpec)) -> GoogleApp {
    let (json, spec) = google_key();
    let file: Value = serde_json::from_str(json).expect("JSON");
    let mut spec = GoogleServiceAccountSpec {
        client_email: format!("{}@mailgate-test.iam.gserviceaccount.com", unique("sa")),
        private_key_id: uuid::Uuid::new_v4().simple().to_string(),
        ..spec.clone()
    };
    change(&mut spec);
    let admin = FakeIdp::shared().admin();
    admin
        .register_google_service_account(spec.clone())
        .await
        .expect("register the service account");
    GoogleApp {
        admin,
        email: spec.client_email,
        kid: spec.private_key_id,
        private_key: file["private_key"]
            .as_str()
            .expect("private_key")
            .to_owned(),
    }
}

impl GoogleApp {
    /// Claims as Google's client libraries send them, acting as alice@example.test.
    fn claims(&self) -> Value {
        let now = unix_now();
        json!({
            "iss": self.email,
            "scope": "https://mail.google.com/",
            "aud": FakeIdp::shared().google_token_url(),
            "exp": now + 3600,
            "iat": now,
            "sub": "alice@example.test",
        })
    }

    fn assertion(&self, header: Value, claims: Value) -> String {
        let header = merged(
            &json!({"alg": "RS256", "typ": "JWT", "kid": self.kid}),
            &header,
        );
        sign(
            &self.private_key,
            "RS256",
            &header,
            &merged(&self.claims(), &claims),
        )
    }
}

async fn post_google(assertion: &str) -> (Status, String) {
    post_form(
        &FakeIdp::shared().google_token_url(),
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion),
        ],
    )
    .await
}

#[track_caller]
fn assert_google_error(status: Status, body: &str, want_status: u16, error: &str, text: &str) {
    assert_eq!(status.as_u16(), want_status, "{body}");
    let body: Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(
        body,
        json!({"error": error, "error_description": text}),
        "{body}"
    );
}

#[tokio::test]
async fn a_google_service_account_gets_an_opaque_token_good_for_imap_and_smtp() {
    let app = new_google_app(|_| {}).await;
    let (status, body) = post_google(&app.assertion(json!({}), json!({}))).await;
    assert_eq!(status, Status::OK, "{body}");
    let keys = ["\"access_token\":", "\"expires_in\":", "\"token_type\":"];
    let positions: Vec<usize> = keys.iter().map(|k| body.find(k).expect("a key")).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "Google's order: {body}"
    );
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer.as_object().map(|o| o.len()), Some(3), "{answer}");
    assert_eq!(answer["expires_in"], 3599);
    assert_eq!(answer["token_type"], "Bearer");
    let token = answer["access_token"].as_str().expect("a token");
    let opaque = token.strip_prefix("ya29.").expect("a ya29. token");
    assert_eq!(opaque.len(), 180);
    assert!(
        opaque
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{token}"
    );
    assert!(!opaque.contains('.'), "not a JWT");

    for service in ["imap", "smtp"] {
        assert_eq!(
            introspect(service, token).await,
            json!({"active": true, "username": "alice@example.test"}),
            "{service}"
        );
    }
    // Another mailbox of the domain gets its own token.
    let (status, body) =
        post_google(&app.assertion(json!({}), json!({"sub": "Bob@Example.Test"}))).await;
    let bob = access_token(status, &body);
    assert_ne!(bob, token);
    assert_eq!(
        introspect("imap", &bob).await["username"],
        "Bob@Example.Test"
    );

    app.admin.revoke(&app.email).await.expect("revoke");
    assert_eq!(introspect("imap", token).await, json!({"active": false}));
    let (status, body) = post_google(&app.assertion(json!({}), json!({}))).await;
    let after = access_token(status, &body);
    assert_eq!(introspect("smtp", &after).await["active"], true);

    let stats = app.admin.stats(&app.email).await.expect("stats");
    assert_eq!(
        stats,
        IdpStats {
            token_requests: 3,
            tokens_issued: 3,
            introspections_active: 4,
            introspections_rejected: 1,
        }
    );
}

#[tokio::test]
async fn an_expired_google_token_is_inactive() {
    let app = new_google_app(|spec| spec.lifetime_secs = 0).await;
    let (status, body) = post_google(&app.assertion(json!({}), json!({}))).await;
    assert_eq!(status, Status::OK, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["expires_in"], 0);
    let token = answer["access_token"].as_str().expect("a token");
    assert_eq!(introspect("imap", token).await, json!({"active": false}));
    assert_eq!(
        introspect("smtp", "ya29.unknown").await,
        json!({"active": false})
    );
    let stats = app.admin.stats(&app.email).await.expect("stats");
    assert_eq!(stats.introspections_rejected, 1);
}

#[tokio::test]
async fn each_bad_google_assertion_gets_googles_error() {
    let app = new_google_app(|_| {}).await;
    let neighbour = new_google_app(|_| {}).await;
    let stranger = self_signed_certificate("stranger", 30).expect("a certificate");
    let now = unix_now();
    const SIGNATURE: &str = "Invalid JWT Signature.";
    const TIMEFRAME: &str = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a \
                             reasonable timeframe. Check your iat and exp values in the JWT claim.";
    const UNAUTHORIZED: &str = "Client is unauthorized to retrieve access tokens using this \
                                method, or client not authorized for any of the scopes requested.";
    // (what, assertion, HTTP status, error, description)
    let cases: Vec<(&str, String, u16, &str, &str)> = vec![
        (
            "not a JWT",
            "garbage".to_owned(),
            400,
            "invalid_grant",
            SIGNATURE,
        ),
        (
            "PS256",
            app.assertion(json!({"alg": "PS256"}), json!({})),
            400,
            "invalid_grant",
            SIGNATURE,
        ),
        (
            "an unknown kid",
            app.assertion(json!({"kid": "0123456789abcdef"}), json!({})),
            400,
            "invalid_grant",
            SIGNATURE,
        ),
        (
            "no kid",
            app.assertion(json!({"kid": null}), json!({})),
            400,
            "invalid_grant",
            SIGNATURE,
        ),
        (
            "the right kid, another key",
            sign(
                &stranger.key_pem,
                "RS256",
                &json!({"alg": "RS256", "kid": app.kid}),
                &app.claims(),
            ),
            400,
            "invalid_grant",
            SIGNATURE,
        ),
        (
            "an unknown issuer",
            app.assertion(
                json!({}),
                json!({"iss": "nobody@x.iam.gserviceaccount.com"}),
            ),
            401,
            "invalid_client",
            "The OAuth client was not found.",
        ),
        (
            "another account's key",
            app.assertion(json!({}), json!({"iss": neighbour.email})),
            400,
            "invalid_grant",
            SIGNATURE,
        ),
        (
            "Google's real token URL as audience",
            app.assertion(
                json!({}),
                json!({"aud": "https://oauth2.googleapis.com/token"}),
            ),
            400,
            "invalid_grant",
            "Invalid JWT: Failed audience check.",
        ),
        (
            "no audience",
            app.assertion(json!({}), json!({"aud": null})),
            400,
            "invalid_grant",
            "Invalid JWT: Failed audience check.",
        ),
        (
            "longer than an hour",
            app.assertion(json!({}), json!({"iat": now, "exp": now + 3601})),
            400,
            "invalid_grant",
            TIMEFRAME,
        ),
        (
            "expired",
            app.assertion(json!({}), json!({"iat": now - 3000, "exp": now - 10})),
            400,
            "invalid_grant",
            TIMEFRAME,
        ),
        (
            "issued in the future",
            app.assertion(json!({}), json!({"iat": now + 600, "exp": now + 1200})),
            400,
            "invalid_grant",
            TIMEFRAME,
        ),
        (
            "no iat",
            app.assertion(json!({}), json!({"iat": null})),
            400,
            "invalid_grant",
            TIMEFRAME,
        ),
        (
            "no scope",
            app.assertion(json!({}), json!({"scope": null})),
            400,
            "invalid_scope",
            "Empty or missing scope not allowed.",
        ),
        (
            "only a Gmail API scope",
            app.assertion(
                json!({}),
                json!({"scope": "https://www.googleapis.com/auth/gmail.send"}),
            ),
            400,
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.",
        ),
        (
            "no subject",
            app.assertion(json!({}), json!({"sub": null})),
            401,
            "unauthorized_client",
            UNAUTHORIZED,
        ),
        (
            "a subject outside the domain",
            app.assertion(json!({}), json!({"sub": "mallory@elsewhere.example"})),
            401,
            "unauthorized_client",
            UNAUTHORIZED,
        ),
        (
            "a subdomain is another domain",
            app.assertion(json!({}), json!({"sub": "eve@sub.example.test"})),
            401,
            "unauthorized_client",
            UNAUTHORIZED,
        ),
    ];
    let count = cases.len();
    for (what, assertion, status, error, text) in cases {
        let (got, body) = post_google(&assertion).await;
        assert_eq!(got.as_u16(), status, "{what}: {body}");
        assert_google_error(got, &body, status, error, text);
    }

    // Several scopes, the mail scope among them: accepted.
    let assertion = app.assertion(
        json!({}),
        json!({"scope": "https://www.googleapis.com/auth/gmail.send https://mail.google.com/"}),
    );
    let (status, body) = post_google(&assertion).await;
    access_token(status, &body);

    let url = FakeIdp::shared().google_token_url();
    let assertion = app.assertion(json!({}), json!({}));
    let (status, body) = post_form(
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("assertion", &assertion),
        ],
    )
    .await;
    assert_google_error(
        status,
        &body,
        400,
        "unsupported_grant_type",
        "Invalid grant_type: client_credentials",
    );
    let (status, body) = post_form(
        &url,
        &[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")],
    )
    .await;
    assert_google_error(
        status,
        &body,
        400,
        "invalid_request",
        "Missing required parameter: assertion",
    );

    let stats = app.admin.stats(&app.email).await.expect("stats");
    // Every case but "not a JWT" and "an unknown issuer" names this account as iss; the
    // neighbour's case counts for the neighbour; plus the accepted one and the wrong grant.
    assert_eq!(stats.token_requests, count as u64 - 3 + 2);
    assert_eq!(stats.tokens_issued, 1);
    assert_eq!(
        neighbour
            .admin
            .stats(&neighbour.email)
            .await
            .expect("stats")
            .token_requests,
        1
    );
}

#[tokio::test]
async fn a_service_account_key_may_be_registered_as_a_certificate() {
    let cert = &certs().other;
    let app = new_google_app(|spec| spec.public_key_pem = cert.cert_pem.clone()).await;
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": app.kid});
    let (status, body) = post_google(&sign(&cert.key_pem, "RS256", &header, &app.claims())).await;
    let token = access_token(status, &body);
    assert_eq!(introspect("smtp", &token).await["active"], true);
    // The key file's own key no longer fits this registration.
    let (status, body) = post_google(&app.assertion(json!({}), json!({}))).await;
    assert_google_error(
        status,
        &body,
        400,
        "invalid_grant",
        "Invalid JWT Signature.",
    );
}

#[tokio::test]
async fn the_google_admin_endpoint_refuses_unusable_keys() {
    let admin = FakeIdp::shared().admin();
    let spec = GoogleServiceAccountSpec::new(
        format!("{}@x.iam.gserviceaccount.com", unique("sa")),
        "kid",
        "not a key",
        "example.test",
    );
    let error = admin
        .register_google_service_account(spec.clone())
        .await
        .expect_err("no key");
    assert!(
        format!("{error:#}").contains("BEGIN PUBLIC KEY"),
        "{error:#}"
    );
    let error = admin
        .register_google_service_account(GoogleServiceAccountSpec {
            private_key_id: String::new(),
            ..spec
        })
        .await
        .expect_err("no key id");
    assert!(format!("{error:#}").contains("private_key_id"), "{error:#}");
}
