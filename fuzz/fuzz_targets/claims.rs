//! Claims the fuzzer writes, signed with the fixed EC key: every rule past the signature
//! (times, issuer, audience, tenant, principal, groups, MFA), for a user and a group label.
#![no_main]
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use pgaadauth_core::label::Label;
use pgaadauth_core::token::{validate, Membership};
use std::sync::OnceLock;

/// A directory that knows one membership and fails for everything else.
struct Directory;
impl Membership for Directory {
    fn is_member(&self, member: &str, group: &str) -> Result<bool, String> {
        match (member, group) {
            (pgaadauth_fuzz::OID, "0a7a0000-1111-4222-8333-000000000001") => Ok(true),
            _ => Err("the directory did not answer".into()),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    static KEYS: OnceLock<Vec<pgaadauth_core::jwks::PublicKey>> = OnceLock::new();
    static SIGNER: OnceLock<EncodingKey> = OnceLock::new();
    let keys = KEYS.get_or_init(pgaadauth_fuzz::keys);
    let signer = SIGNER
        .get_or_init(|| EncodingKey::from_ec_pem(pgaadauth_fuzz::EC1_PEM.as_bytes()).unwrap());
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","kid":"ec1","typ":"JWT"}"#);
    let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(data));
    let signature =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), signer, Algorithm::ES256).unwrap();
    let token = format!("{signing_input}.{signature}");
    let policy = pgaadauth_fuzz::policy();
    for label in [
        format!("aadauth,oid={},type=user,mfa", pgaadauth_fuzz::OID),
        "aadauth,oid=0a7a0000-1111-4222-8333-000000000001,type=group".to_string(),
    ] {
        let label = Label::parse(&label).unwrap();
        match validate(
            &token,
            keys.as_slice(),
            &Directory,
            &policy,
            &label,
            pgaadauth_fuzz::NOW,
        ) {
            Ok(verified) => {
                // Only a principal free of control characters is ever accepted.
                assert!(!verified.principal.chars().any(char::is_control));
            }
            Err(reject) => assert!(!reject.to_string().contains('\n')),
        }
    }
});
