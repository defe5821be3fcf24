//! The hub's public key set: `GET /api/v1/keys`.
//!
//! Workers verify the tokens in action requests with the hub's Ed25519
//! public key. This endpoint serves it as a JSON Web Key Set (RFC 7517)
//! holding one OKP key (RFC 8037) whose `kid` is the `kid` the hub writes in
//! token headers: `auth.key_id` when set, else the RFC 7638 thumbprint from
//! [`crate::auth::key_id`]. It needs no token, because the key is public.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::DecodePublicKey as _;
use ed25519_dalek::VerifyingKey;
use serde_json::{json, Value};

use super::ApiState;
use crate::auth::TokenSigner;
use crate::{Error, Result};

/// Builds the key set of `signer`'s public key.
pub fn key_set(signer: &TokenSigner) -> Result<Value> {
    let public_key = VerifyingKey::from_public_key_pem(signer.public_pem())
        .map_err(|error| Error::SigningKey(format!("cannot read the public key: {error}")))?;
    Ok(json!({
        "keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(public_key.as_bytes()),
            "kid": signer.key_id(),
            "alg": "EdDSA",
            "use": "sig",
        }]
    }))
}

/// `GET /api/v1/keys`
pub async fn get_keys(State(state): State<ApiState>) -> Response {
    // Workers may cache the set for 5 minutes, so a new key reaches them
    // within that time.
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(state.key_set.as_ref().clone()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_set_names_the_token_kid() {
        let pair = crate::auth::generate_key_pair().unwrap();
        let signer = TokenSigner::from_pem(
            secrecy::ExposeSecret::expose_secret(&pair.private_pem),
            None,
            "event-hub".to_owned(),
        )
        .unwrap();
        let set = key_set(&signer).unwrap();
        let key = &set["keys"][0];
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(key["kid"], pair.key_id.as_str());
        let x = URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap();
        assert_eq!(x.len(), 32);
    }
}
