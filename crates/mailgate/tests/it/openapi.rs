//! The OpenAPI document matches the server it comes from, and its reference page is
//! self-contained. (schemathesis checks every operation against a live server in
//! scripts/api-conformance.sh.)

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.extend(v.as_str().map(str::to_string));
                }
                refs(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_describes_every_operation_the_server_answers() {
    let app = TestApp::spawn().await;
    let response = app.http.get(format!("{}/api/openapi.json", app.base)).send().await.expect("request");
    assert_eq!(response.status(), 200, "served without a key");
    assert!(response.headers()["content-type"].to_str().unwrap_or("").starts_with("application/json"));
    let doc: Value = response.json().await.expect("json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{}", doc["openapi"]);
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let mut all_refs = Vec::new();
    refs(&doc, &mut all_refs);
    for r in &all_refs {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected ref {r}"));
        assert!(schemas.contains_key(name), "dangling reference {r}");
    }
    assert!(schemas["Problem"]["required"].as_array().is_some_and(|r| r.contains(&json!("status"))));
    assert!(schemas["MailSubmission"]["example"].is_object(), "the submission has an example");
    assert_eq!(doc["components"]["securitySchemes"]["api_key"]["scheme"], "bearer");

    let mut ids = HashSet::new();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let Ok(method) = Method::from_bytes(method.to_uppercase().as_bytes()) else { continue };
            operations += 1;
            let id = op["operationId"].as_str().expect("operationId").to_string();
            assert!(ids.insert(id.clone()), "operationId {id} twice");
            let responses = op["responses"].as_object().expect("responses");
            if path.starts_with("/api/") {
                assert!(responses.contains_key("401"), "{method} {path} documents 401");
                assert!(responses.contains_key("500"), "{method} {path} documents 500");
                let problem = &responses["401"]["content"]["application/problem+json"]["schema"]["$ref"];
                assert_eq!(problem, "#/components/schemas/Problem", "{method} {path}");
            }
            // The route exists: an unknown id gives the API's own 404, not "no such endpoint".
            let concrete = path.replace("{id}", "does-not-exist").replace("{n}", "0");
            let (status, body) = app.call(method.clone(), &concrete, None).await;
            assert!(status != 405, "{method} {path}: {status} {body}");
            assert_ne!(body["detail"], "no such API endpoint", "{method} {path} is documented but not routed");
            assert!(status < 500, "{method} {path}: {status} {body}");
            let documented = responses.contains_key(&status.to_string());
            assert!(documented, "{method} {path} answered {status}, which it does not document: {body}");
        }
    }
    assert!(operations >= 39, "{operations} operations");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_page_loads_only_from_mailgate() {
    let app = TestApp::spawn().await;
    let page = app.http.get(format!("{}/api/docs", app.base)).send().await.expect("page");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().expect("csp").to_string();
    assert!(csp.contains("script-src 'self'") && !csp.contains("http"), "{csp}");
    let html = page.text().await.expect("html");
    assert!(!html.contains("http://") && !html.contains("https://"), "no remote loads: {html}");
    assert!(!html.contains("<script>"), "no inline script (the CSP would block it)");
    for (asset, kind, min_len) in [
        ("/api/docs/swagger-ui-bundle.js", "text/javascript", 1_000_000),
        ("/api/docs/swagger-ui.css", "text/css", 100_000),
        ("/api/docs/init.js", "text/javascript", 50),
    ] {
        assert!(html.contains(asset), "the page uses {asset}");
        let response = app.http.get(format!("{}{asset}", app.base)).send().await.expect("asset");
        assert_eq!(response.status(), 200, "{asset}");
        assert!(response.headers()["content-type"].to_str().unwrap_or("").starts_with(kind), "{asset}");
        let body = response.bytes().await.expect("body");
        assert!(body.len() >= min_len, "{asset}: {} bytes", body.len());
    }
    let init = app.http.get(format!("{}/api/docs/init.js", app.base)).send().await.expect("init").text().await.expect("text");
    assert!(init.contains("\"/api/openapi.json\""), "the page shows this server's document");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_document_forbids_the_server_refuses() {
    let app = TestApp::spawn().await;
    // A struct's fields given as an array are not an object.
    let (status, problem) = app.call(Method::POST, "/api/v1/inbox/claim", Some(json!([null, null]))).await;
    assert_eq!(status, 422, "{problem}");
    let (status, problem) = app.call(Method::POST, "/api/v1/api-keys", Some(json!(["x", true]))).await;
    assert_eq!(status, 422, "{problem}");
    for query in ["offset=-1", "limit=0", "offset=9223372036854775808", "status=", "status=lost"] {
        let (status, problem) = app.get(&format!("/api/v1/mails?{query}")).await;
        assert_eq!(status, 422, "{query}: {problem}");
    }
    let (status, page) = app.get("/api/v1/mails?limit=100000").await;
    assert_eq!((status, page["limit"].as_i64()), (200, Some(1000)), "large pages are capped: {page}");
    // A path segment of the wrong type is a problem, not plain text.
    let response = app.http.get(format!("{}/api/v1/inbox/x/attachments/minus-one", app.base)).bearer_auth(&app.key).send().await.expect("request");
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    // An optional body that is sent must be JSON.
    let response = app
        .http
        .post(format!("{}/api/v1/inbox/claim", app.base))
        .bearer_auth(&app.key)
        .header("content-type", "text/plain")
        .body("lease_secs=5")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 415);

    // The key making the request cannot revoke itself (it would lock the caller out).
    let (_, keys) = app.get("/api/v1/api-keys").await;
    let own = keys.as_array().and_then(|k| k.iter().find(|k| k["name"] == "test admin")).expect("own key")["id"].clone();
    let own = own.as_str().expect("id");
    let (status, problem) = app.call(Method::DELETE, &format!("/api/v1/api-keys/{own}"), None).await;
    assert_eq!(status, 409, "{problem}");
    let (status, other) = app.post("/api/v1/api-keys", json!({"name": "second admin", "admin": true})).await;
    assert_eq!(status, 201);
    crate::helpers::record_secret(other["key"].as_str().expect("key"));
    let other_key = other["key"].as_str().expect("key");
    let (status, _) = app.call_with_key(other_key, Method::DELETE, &format!("/api/v1/api-keys/{own}"), None).await;
    assert_eq!(status, 204, "another admin key can revoke it");
    let (status, _) = app.get("/api/v1/api-keys").await;
    assert_eq!(status, 401, "the revoked key no longer works");
}
