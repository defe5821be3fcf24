//! Signed, expiring tokens for the auth context of action requests.
//!
//! The hub signs one JWT per execution with an Ed25519 key (`EdDSA`). The
//! token names the action's service account (`sub`), the action topic's
//! `<flavor>.<subtype>` (`aud`) and the execution id (`jti`), and expires
//! after the action's auth window. The header carries a `kid`, the RFC 7638
//! thumbprint of the public key, so workers can hold several public keys
//! across a rotation and pick the right one.

use std::collections::HashMap;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::AuthSettings;
use crate::{Error, Result};

/// Claims of an action request token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer, `auth.issuer` (default `event-hub`).
    pub iss: String,
    /// The action's service account.
    pub sub: String,
    /// `<flavor>.<subtype>` of the action: a worker accepts only its own.
    pub aud: String,
    /// The execution id, so a token cannot be replayed for another execution.
    pub jti: String,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expiry, seconds since the epoch: `iat` plus the action's auth window.
    pub exp: i64,
}

/// A freshly generated key pair, PEM-encoded.
pub struct KeyPair {
    /// PKCS#8 private key; keep it secret.
    pub private_pem: SecretString,
    /// SubjectPublicKeyInfo public key, for workers.
    pub public_pem: String,
    /// Key id of the pair.
    pub key_id: String,
}

/// Generates a new Ed25519 key pair from the operating system's RNG.
pub fn generate_key_pair() -> Result<KeyPair> {
    let signing_key = SigningKey::generate(&mut rand::rngs::OsRng);
    let private_pem = signing_key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|error| Error::SigningKey(error.to_string()))?;
    let public_pem = signing_key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|error| Error::SigningKey(error.to_string()))?;
    Ok(KeyPair {
        private_pem: SecretString::from(private_pem.to_string()),
        public_pem,
        key_id: key_id(&signing_key.verifying_key()),
    })
}

/// Returns the RFC 7638 JWK thumbprint of an Ed25519 public key.
pub fn key_id(public_key: &VerifyingKey) -> String {
    let x = URL_SAFE_NO_PAD.encode(public_key.as_bytes());
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Signs action request tokens with the hub's private key.
#[derive(Clone)]
pub struct TokenSigner {
    encoding_key: EncodingKey,
    key_id: String,
    issuer: String,
    public_pem: String,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TokenSigner")
            .field("key_id", &self.key_id)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// Builds a signer from a PKCS#8 PEM private key.
    pub fn from_pem(
        private_pem: &str,
        key_id_override: Option<String>,
        issuer: String,
    ) -> Result<Self> {
        let signing_key = SigningKey::from_pkcs8_pem(private_pem).map_err(|error| {
            Error::SigningKey(format!("not an Ed25519 PKCS#8 PEM private key: {error}"))
        })?;
        let verifying_key = signing_key.verifying_key();
        let public_pem = verifying_key
            .to_public_key_pem(LineEnding::LF)
            .map_err(|error| Error::SigningKey(error.to_string()))?;
        Ok(Self {
            encoding_key: EncodingKey::from_ed_pem(private_pem.as_bytes())?,
            key_id: key_id_override.unwrap_or_else(|| key_id(&verifying_key)),
            issuer,
            public_pem,
        })
    }

    /// Builds the signer configured in `auth`: the inline key if set, else the key file.
    pub fn from_settings(settings: &AuthSettings) -> Result<Self> {
        let pem = match (&settings.signing_key, &settings.signing_key_file) {
            (Some(inline), _) => inline.clone(),
            (None, Some(path)) => read_private_key(path)?,
            (None, None) => {
                return Err(Error::Config(
                    "auth.signing_key_file: required to sign action requests; \
                     create a key pair with `event-hub keys generate`"
                        .to_owned(),
                ))
            }
        };
        Self::from_pem(
            pem.expose_secret(),
            settings.key_id.clone(),
            settings.issuer.clone(),
        )
    }

    /// Returns the key id written in each token header.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Returns the public key matching the signing key, PEM-encoded.
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// Signs a token for `execution_id`, valid from `issued_at` for `window`.
    pub fn sign(
        &self,
        service_account: &str,
        audience: &str,
        execution_id: Uuid,
        issued_at: DateTime<Utc>,
        window: Duration,
    ) -> Result<(String, DateTime<Utc>)> {
        let expires_at = issued_at + window;
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: service_account.to_owned(),
            aud: audience.to_owned(),
            jti: execution_id.to_string(),
            iat: issued_at.timestamp(),
            exp: expires_at.timestamp(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.key_id.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding_key)?;
        Ok((token, expires_at))
    }
}

/// Reads a private key file, naming the file in the error.
fn read_private_key(path: &Path) -> Result<SecretString> {
    std::fs::read_to_string(path)
        .map(SecretString::from)
        .map_err(|error| {
            Error::Config(format!(
                "auth.signing_key_file: cannot read {}: {error}",
                path.display()
            ))
        })
}

/// Verifies action request tokens against a set of public keys, by `kid`.
#[derive(Clone, Default)]
pub struct TokenVerifier {
    keys: HashMap<String, DecodingKey>,
    issuer: Option<String>,
}

impl TokenVerifier {
    /// Creates a verifier that accepts tokens of `issuer` only, when given.
    pub fn new(issuer: Option<String>) -> Self {
        Self {
            keys: HashMap::new(),
            issuer,
        }
    }

    /// Adds a public key (SubjectPublicKeyInfo PEM) under its thumbprint key id.
    pub fn add_public_pem(&mut self, public_pem: &str) -> Result<String> {
        let verifying_key = VerifyingKey::from_public_key_pem(public_pem).map_err(|error| {
            Error::SigningKey(format!("not an Ed25519 PEM public key: {error}"))
        })?;
        let kid = key_id(&verifying_key);
        self.keys.insert(
            kid.clone(),
            DecodingKey::from_ed_pem(public_pem.as_bytes())?,
        );
        Ok(kid)
    }

    /// Verifies `token`'s signature, expiry, issuer and audience, returning its claims.
    pub fn verify(&self, token: &str, audience: &str) -> Result<Claims> {
        let header = jsonwebtoken::decode_header(token)?;
        if header.alg != Algorithm::EdDSA {
            return Err(Error::SigningKey(format!(
                "token algorithm {:?} is not EdDSA",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| Error::SigningKey("token header has no kid".to_owned()))?;
        let key = self
            .keys
            .get(&kid)
            .ok_or_else(|| Error::SigningKey(format!("no public key with kid {kid}")))?;

        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "sub", "aud", "jti"]);
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        Ok(jsonwebtoken::decode::<Claims>(token, key, &validation)?.claims)
    }
}

// ---------------------------------------------------------------------------
// Public key sets (JWKS)
// ---------------------------------------------------------------------------

/// A public key of the hub with the key id (`kid`) of the tokens it verifies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    /// The `kid` that tokens signed with the matching private key carry.
    pub key_id: String,
    /// The Ed25519 public key.
    pub key: VerifyingKey,
}

impl PublicKey {
    /// Parses a SubjectPublicKeyInfo PEM public key; the key id defaults to
    /// its RFC 7638 thumbprint.
    pub fn from_pem(public_pem: &str, key_id_override: Option<String>) -> Result<Self> {
        let key = VerifyingKey::from_public_key_pem(public_pem).map_err(|error| {
            Error::SigningKey(format!("not an Ed25519 PEM public key: {error}"))
        })?;
        Ok(Self {
            key_id: key_id_override.unwrap_or_else(|| key_id(&key)),
            key,
        })
    }

    /// Parses an OKP/Ed25519 JWK: `kty`, `crv` and `x` are required, `kid`
    /// defaults to the thumbprint.
    pub fn from_jwk(jwk: &serde_json::Value) -> Result<Self> {
        let field = |name: &str| jwk.get(name).and_then(serde_json::Value::as_str);
        if field("kty") != Some("OKP") || field("crv") != Some("Ed25519") {
            return Err(Error::SigningKey(format!(
                "JWK has kty {:?} and crv {:?}; expected OKP and Ed25519",
                field("kty").unwrap_or("(missing)"),
                field("crv").unwrap_or("(missing)")
            )));
        }
        let x = field("x").ok_or_else(|| Error::SigningKey("JWK has no x".to_owned()))?;
        let bytes: [u8; 32] = URL_SAFE_NO_PAD
            .decode(x)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| {
                Error::SigningKey("JWK x is not 32 bytes of unpadded base64url".to_owned())
            })?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|error| Error::SigningKey(format!("JWK x is not an Ed25519 key: {error}")))?;
        Ok(Self {
            key_id: field("kid").map_or_else(|| key_id(&key), str::to_owned),
            key,
        })
    }

    /// Returns the key as an OKP/Ed25519 JWK (RFC 8037) with `kid`,
    /// `alg: EdDSA` and `use: sig`.
    pub fn to_jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.key.as_bytes()),
            "kid": self.key_id,
            "alg": "EdDSA",
            "use": "sig",
        })
    }
}

/// Returns the public keys the hub publishes: the signing key's first, when
/// one is configured, then those of `auth.public_key_files`, without
/// repeating a key id.
///
/// Fails when a file cannot be read or parsed, or when no key is configured
/// at all.
pub fn public_keys(settings: &AuthSettings) -> Result<Vec<PublicKey>> {
    let mut keys: Vec<PublicKey> = Vec::new();
    if settings.signing_key.is_some() || settings.signing_key_file.is_some() {
        let signer = TokenSigner::from_settings(settings)?;
        keys.push(PublicKey::from_pem(
            signer.public_pem(),
            Some(signer.key_id().to_owned()),
        )?);
    }
    for path in &settings.public_key_files {
        let pem = std::fs::read_to_string(path).map_err(|error| {
            Error::Config(format!(
                "auth.public_key_files: cannot read {}: {error}",
                path.display()
            ))
        })?;
        let key = PublicKey::from_pem(&pem, None).map_err(|error| {
            Error::Config(format!(
                "auth.public_key_files: {}: {error}",
                path.display()
            ))
        })?;
        if keys.iter().all(|known| known.key_id != key.key_id) {
            keys.push(key);
        }
    }
    if keys.is_empty() {
        return Err(Error::Config(
            "auth.signing_key_file: no public key to publish; set auth.signing_key_file \
             or auth.public_key_files"
                .to_owned(),
        ));
    }
    Ok(keys)
}

/// Returns `keys` as a JSON Web Key Set, `{"keys": [...]}`.
///
/// This is the one place that renders the hub's JWKS: `event-hub keys
/// export` writes it and the HTTP API serves it.
pub fn jwks(keys: &[PublicKey]) -> serde_json::Value {
    let keys: Vec<serde_json::Value> = keys.iter().map(PublicKey::to_jwk).collect();
    serde_json::json!({ "keys": keys })
}

impl TokenVerifier {
    /// Adds a public key under its key id and returns that id.
    pub fn add_public_key(&mut self, key: &PublicKey) -> Result<String> {
        let x = URL_SAFE_NO_PAD.encode(key.key.as_bytes());
        self.keys
            .insert(key.key_id.clone(), DecodingKey::from_ed_components(&x)?);
        Ok(key.key_id.clone())
    }

    /// Adds every OKP/Ed25519 key of a JWKS and returns their key ids.
    ///
    /// Keys of other types are skipped, since a key set may serve other
    /// purposes too. Fails when the set has no usable key.
    pub fn add_jwks(&mut self, jwks: &serde_json::Value) -> Result<Vec<String>> {
        let entries = jwks
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| Error::SigningKey("JWKS has no \"keys\" array".to_owned()))?;
        let mut added = Vec::new();
        for entry in entries {
            if entry.get("kty").and_then(serde_json::Value::as_str) != Some("OKP") {
                continue;
            }
            added.push(self.add_public_key(&PublicKey::from_jwk(entry)?)?);
        }
        if added.is_empty() {
            return Err(Error::SigningKey(
                "JWKS contains no OKP/Ed25519 key".to_owned(),
            ));
        }
        Ok(added)
    }

    /// Builds a verifier from a JWKS file, such as the output of `event-hub
    /// keys export`.
    pub fn from_jwks_file(path: &Path, issuer: Option<String>) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            Error::SigningKey(format!("cannot read JWKS file {}: {error}", path.display()))
        })?;
        let jwks: serde_json::Value = serde_json::from_str(&text).map_err(|error| {
            Error::SigningKey(format!("JWKS file {} is not JSON: {error}", path.display()))
        })?;
        let mut verifier = Self::new(issuer);
        verifier.add_jwks(&jwks)?;
        Ok(verifier)
    }

    /// Returns the key ids this verifier accepts, sorted.
    pub fn key_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer_and_verifier() -> (TokenSigner, TokenVerifier) {
        let pair = generate_key_pair().unwrap();
        let signer =
            TokenSigner::from_pem(pair.private_pem.expose_secret(), None, "event-hub".into())
                .unwrap();
        let mut verifier = TokenVerifier::new(Some("event-hub".into()));
        let kid = verifier.add_public_pem(&pair.public_pem).unwrap();
        assert_eq!(kid, pair.key_id);
        assert_eq!(signer.key_id(), pair.key_id);
        (signer, verifier)
    }

    #[test]
    fn token_round_trip_carries_claims() {
        let (signer, verifier) = signer_and_verifier();
        let execution = Uuid::new_v4();
        let now = Utc::now();
        let (token, expires_at) = signer
            .sign(
                "sa-ci",
                "builtin.pipeline_run",
                execution,
                now,
                Duration::minutes(60),
            )
            .unwrap();

        let claims = verifier.verify(&token, "builtin.pipeline_run").unwrap();
        assert_eq!(claims.sub, "sa-ci");
        assert_eq!(claims.jti, execution.to_string());
        assert_eq!(claims.exp - claims.iat, 3600);
        assert_eq!(expires_at.timestamp(), claims.exp);
    }

    #[test]
    fn tampered_token_fails() {
        let (signer, verifier) = signer_and_verifier();
        let (token, _) = signer
            .sign(
                "sa-ci",
                "a.b",
                Uuid::new_v4(),
                Utc::now(),
                Duration::minutes(5),
            )
            .unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        claims["sub"] = "admin".into();
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        assert!(verifier.verify(&parts.join("."), "a.b").is_err());
    }

    #[test]
    fn wrong_audience_and_expired_fail() {
        let (signer, verifier) = signer_and_verifier();
        let (token, _) = signer
            .sign(
                "sa",
                "a.b",
                Uuid::new_v4(),
                Utc::now(),
                Duration::minutes(5),
            )
            .unwrap();
        assert!(verifier.verify(&token, "other.subtype").is_err());

        let (expired, _) = signer
            .sign(
                "sa",
                "a.b",
                Uuid::new_v4(),
                Utc::now() - Duration::hours(2),
                Duration::minutes(5),
            )
            .unwrap();
        assert!(verifier.verify(&expired, "a.b").is_err());
    }

    #[test]
    fn other_key_fails() {
        let (signer, _) = signer_and_verifier();
        let (_, verifier) = signer_and_verifier();
        let (token, _) = signer
            .sign(
                "sa",
                "a.b",
                Uuid::new_v4(),
                Utc::now(),
                Duration::minutes(5),
            )
            .unwrap();
        assert!(verifier.verify(&token, "a.b").is_err());
    }

    #[test]
    fn jwks_round_trip_verifies_tokens() {
        let (signer, _) = signer_and_verifier();
        let key = PublicKey::from_pem(signer.public_pem(), None).unwrap();
        assert_eq!(key.key_id, signer.key_id());
        let set = jwks(std::slice::from_ref(&key));
        assert_eq!(set["keys"][0]["kty"], "OKP");
        assert_eq!(set["keys"][0]["crv"], "Ed25519");
        assert_eq!(set["keys"][0]["kid"], signer.key_id());

        let mut verifier = TokenVerifier::new(Some("event-hub".into()));
        assert_eq!(verifier.add_jwks(&set).unwrap(), vec![key.key_id.clone()]);
        let (token, _) = signer
            .sign(
                "sa",
                "a.b",
                Uuid::new_v4(),
                Utc::now(),
                Duration::minutes(5),
            )
            .unwrap();
        assert!(verifier.verify(&token, "a.b").is_ok());
    }

    #[test]
    fn jwks_with_overridden_kid_verifies() {
        let pair = generate_key_pair().unwrap();
        let signer = TokenSigner::from_pem(
            pair.private_pem.expose_secret(),
            Some("key-2026".into()),
            "event-hub".into(),
        )
        .unwrap();
        let key = PublicKey::from_pem(signer.public_pem(), Some("key-2026".into())).unwrap();
        let mut verifier = TokenVerifier::new(None);
        verifier.add_jwks(&jwks(&[key])).unwrap();
        let (token, _) = signer
            .sign(
                "sa",
                "a.b",
                Uuid::new_v4(),
                Utc::now(),
                Duration::minutes(5),
            )
            .unwrap();
        assert!(verifier.verify(&token, "a.b").is_ok());
    }

    #[test]
    fn public_keys_lists_signing_key_then_files() {
        let directory = tempfile::tempdir().unwrap();
        let current = generate_key_pair().unwrap();
        let previous = generate_key_pair().unwrap();
        let previous_path = directory.path().join("previous.pub.pem");
        std::fs::write(&previous_path, &previous.public_pem).unwrap();
        let current_public_path = directory.path().join("current.pub.pem");
        std::fs::write(&current_public_path, &current.public_pem).unwrap();

        let settings = AuthSettings {
            signing_key_file: None,
            signing_key: Some(current.private_pem.clone()),
            key_id: None,
            issuer: "event-hub".into(),
            public_key_files: vec![current_public_path, previous_path],
        };
        let ids: Vec<String> = public_keys(&settings)
            .unwrap()
            .into_iter()
            .map(|key| key.key_id)
            .collect();
        assert_eq!(ids, vec![current.key_id, previous.key_id]);
    }

    #[test]
    fn public_keys_without_any_key_fails() {
        let settings = AuthSettings {
            signing_key_file: None,
            signing_key: None,
            key_id: None,
            issuer: "event-hub".into(),
            public_key_files: Vec::new(),
        };
        let error = public_keys(&settings).unwrap_err();
        assert!(
            error.to_string().contains("auth.public_key_files"),
            "{error}"
        );
    }

    #[test]
    fn jwk_of_wrong_type_is_rejected() {
        let error = PublicKey::from_jwk(&serde_json::json!({"kty": "RSA", "n": "x", "e": "AQAB"}))
            .unwrap_err();
        assert!(error.to_string().contains("OKP"), "{error}");
        let mut verifier = TokenVerifier::new(None);
        let error = verifier
            .add_jwks(&serde_json::json!({"keys": [{"kty": "RSA"}]}))
            .unwrap_err();
        assert!(error.to_string().contains("no OKP"), "{error}");
    }
}
