//! Fake OAuth2 token endpoints for the credential tests: Google's JWT-bearer
//! grant (the assertion's signature checked against the service account's
//! public key) and Entra ID's client-credentials grant.

use std::path::Path;

use crate::fake_http::{FakeServer, Reply};

/// A fresh RSA key pair made by openssl: (private PKCS#8 PEM, public PEM).
pub fn rsa_key_pair(dir: &Path) -> (String, String) {
    let private = dir.join("key.pem");
    let public = dir.join("key.pub.pem");
    let openssl = |args: &[&str]| {
        let status =
            std::process::Command::new("openssl").args(args).status().expect("openssl runs (apt install openssl)");
        assert!(status.success(), "openssl {args:?}");
    };
    let (private_path, public_path) = (crate::path_str(&private), crate::path_str(&public));
    openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", private_path]);
    openssl(&["pkey", "-pubout", "-in", private_path, "-out", public_path]);
    (std::fs::read_to_string(private).expect("private key"), std::fs::read_to_string(public).expect("public key"))
}

/// Google's token endpoint: a JWT signed by the key whose public half is
/// `public_pem` gets `token`; anything else gets `invalid_grant`.
pub fn google_token_server(public_pem: String, token: String) -> FakeServer {
    FakeServer::start(move |request| {
        let assertion = request.form_field("assertion").unwrap_or_default();
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(public_pem.as_bytes()).expect("a public key");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.validate_aud = false;
        match jsonwebtoken::decode::<serde_json::Value>(&assertion, &key, &validation) {
            Ok(_) => Reply::json(
                200,
                serde_json::json!({ "access_token": token, "expires_in": 3599, "token_type": "Bearer" }),
            ),
            Err(error) => Reply::json(
                400,
                serde_json::json!({ "error": "invalid_grant", "error_description": error.to_string() }),
            ),
        }
    })
}

/// A service-account key file for `private_pem`, whose token endpoint is `token_uri`.
pub fn google_key_file(private_pem: &str, token_uri: &str) -> String {
    serde_json::json!({
        "type": "service_account",
        "project_id": "my-project",
        "private_key_id": "key-1",
        "private_key": private_pem,
        "client_email": "stepbox-test@my-project.iam.gserviceaccount.com",
        "token_uri": token_uri,
    })
    .to_string()
}

/// Entra ID's token endpoint: `client_secret` gets `token`, anything else `invalid_client`.
pub fn azure_token_server(client_secret: &'static str, token: String) -> FakeServer {
    FakeServer::start(move |request| match request.form_field("client_secret") {
        Some(secret) if secret == client_secret => Reply::json(
            200,
            serde_json::json!({ "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token }),
        ),
        _ => Reply::json(
            401,
            serde_json::json!({ "error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided." }),
        ),
    })
}
