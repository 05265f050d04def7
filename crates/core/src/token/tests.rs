//! Tests of the token validator, one or more per reason.

use super::*;
use super::{authorize::*, keys::*, reject::*};
use crate::jwks::parse_jwks;
use crate::jwks::tests::{jwks_of, EC1_JWK, RSA1_JWK, RSA2_JWK};
use crate::jwks::PublicKey;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

const RSA1: &str = include_str!("../../testdata/rsa1.pem");
const RSA2: &str = include_str!("../../testdata/rsa2.pem");
const EC1: &str = include_str!("../../testdata/ec1.pem");
const OID: &str = "6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b";
const TID: &str = "11111111-2222-3333-4444-555555555555";
const ISS: &str = "https://sts.windows.net/11111111-2222-3333-4444-555555555555/";
const AUD: &str = "https://ossrdbms-aad.database.windows.net";
const NOW: i64 = 1_900_000_000;

fn keys() -> Vec<PublicKey> {
    parse_jwks(jwks_of(&[RSA1_JWK, EC1_JWK]).as_bytes())
        .unwrap()
        .keys
}

fn policy() -> Policy {
    Policy {
        issuers: vec![ISS.into()],
        audiences: vec![AUD.into()],
        algorithms: vec![Alg::RS256, Alg::ES256],
        principal_claim: "oid".into(),
        clock_skew: 300,
        tenant_id: Some(TID.into()),
    }
}

fn label() -> Label {
    Label::parse(&format!("aadauth,oid={OID},type=user")).unwrap()
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "exp": NOW + 3600, "nbf": NOW - 60, "iat": NOW - 60,
               "tid": TID, "oid": OID, "upn": "alice@example.com", "amr": ["pwd"]})
}

fn sign_with(alg: jsonwebtoken::Algorithm, kid: &str, pem: &str, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    let key = match alg {
        jsonwebtoken::Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    };
    encode(&h, claims, &key).unwrap()
}

fn sign(claims: &Value) -> String {
    sign_with(jsonwebtoken::Algorithm::RS256, "rsa1", RSA1, claims)
}

fn check(token: &str) -> Result<Verified, Reject> {
    validate(
        token,
        keys().as_slice(),
        &NoDirectory,
        &policy(),
        &label(),
        NOW,
    )
}

fn with(f: impl FnOnce(&mut Map<String, Value>)) -> String {
    let mut c = claims();
    f(c.as_object_mut().unwrap());
    sign(&c)
}

/// A token with a hand-made header and claims, signed (or not) as given.
fn raw(header: &Value, claims_b64: &str, sig: &str) -> String {
    let h = URL_SAFE_NO_PAD.encode(header.to_string());
    format!("{h}.{claims_b64}.{sig}")
}

fn b64(v: &str) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

#[test]
fn crit_header_is_refused() {
    let mut h = Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = Some("rsa1".into());
    let mut header = serde_json::to_value(&h).unwrap();
    header["crit"] = json!(["exp-ext"]);
    header["exp-ext"] = json!(true);
    let t = raw(&header, &b64(&claims().to_string()), "c2ln");
    assert_eq!(
        check(&t),
        Err(Reject::CritNotUnderstood(r#"["exp-ext"]"#.into()))
    );
}

#[test]
fn non_numeric_time_claims_are_refused() {
    for name in ["nbf", "iat", "exp"] {
        for bad in [json!("1900000000"), json!(null), json!([1]), json!(true)] {
            let t = with(|c| {
                c.insert(name.into(), bad.clone());
            });
            assert_eq!(
                check(&t),
                Err(Reject::TimeClaimNotNumeric(name)),
                "{name}={bad}"
            );
        }
    }
}

#[test]
fn duplicate_members_are_refused() {
    // Claims naming "oid" twice, properly signed: which oid counts is ambiguous.
    let other = "00000000-0000-4000-8000-000000000000";
    let c = claims().to_string();
    let dup = format!("{},\"oid\":\"{other}\"}}", &c[..c.len() - 1]);
    let header = json!({"alg": "RS256", "kid": "rsa1", "typ": "JWT"}).to_string();
    let signing_input = format!("{}.{}", b64(&header), b64(&dup));
    let key = EncodingKey::from_rsa_pem(RSA1.as_bytes()).unwrap();
    let sig = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &key,
        jsonwebtoken::Algorithm::RS256,
    )
    .unwrap();
    let t = format!("{signing_input}.{sig}");
    assert_eq!(
        check(&t),
        Err(Reject::DuplicateMember {
            part: "claims",
            name: "oid".into()
        })
    );
    let dup_header = r#"{"alg":"RS256","kid":"rsa1","alg":"RS256"}"#;
    let t = format!("{}.{}.{sig}", b64(dup_header), b64(&c));
    assert_eq!(
        check(&t),
        Err(Reject::DuplicateMember {
            part: "header",
            name: "alg".into()
        })
    );
}

#[test]
fn valid_rs256_token_is_accepted() {
    let v = check(&sign(&claims())).unwrap();
    assert_eq!(v.principal, OID);
    assert_eq!(v.upn.as_deref(), Some("alice@example.com"));
    assert_eq!(v.kid, "rsa1");
}

#[test]
fn valid_es256_token_is_accepted() {
    let t = sign_with(jsonwebtoken::Algorithm::ES256, "ec1", EC1, &claims());
    assert!(check(&t).is_ok());
}

#[test]
fn at_jwt_type_and_upper_case_oid_are_accepted() {
    let mut h = Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = Some("rsa1".into());
    h.typ = Some("at+jwt".into());
    let mut c = claims();
    c["oid"] = json!(OID.to_uppercase());
    let t = encode(&h, &c, &EncodingKey::from_rsa_pem(RSA1.as_bytes()).unwrap()).unwrap();
    assert!(check(&t).is_ok());
}

#[test]
fn not_three_base64url_parts() {
    let good = sign(&claims());
    let two = good.rsplit_once('.').unwrap().0.to_string();
    for bad in [
        "".to_string(),
        "hunter2".into(),
        two,
        format!("{good}.x"),
        good.replacen('.', ".+", 1),
        format!("{good}=="),
    ] {
        assert_eq!(check(&bad), Err(Reject::NotCompactJws), "{bad:?}");
    }
}

#[test]
fn too_long() {
    let t = "a".repeat(MAX_TOKEN_LEN + 1);
    assert_eq!(check(&t), Err(Reject::TooLong(MAX_TOKEN_LEN + 1)));
}

#[test]
fn bad_json() {
    let t = raw(
        &json!({"alg":"RS256","kid":"rsa1"}),
        &b64("{not json"),
        "c2ln",
    );
    assert_eq!(check(&t), Err(Reject::ClaimsNotJson));
    let t = format!("{}.{}.c2ln", b64("[1,2]"), b64("{}"));
    assert_eq!(check(&t), Err(Reject::HeaderNotJson));
}

#[test]
fn alg_none_and_hmac_are_never_accepted() {
    let body = b64(&claims().to_string());
    for sig in ["", "c2ln"] {
        let t = raw(&json!({"alg":"none","kid":"rsa1"}), &body, sig);
        assert_eq!(check(&t), Err(Reject::AlgNeverAccepted("none".into())));
    }
    // An empty signature with a real algorithm is a bad signature, not a parse error.
    let good = sign(&claims());
    let unsigned = format!("{}.", good.rsplit_once('.').unwrap().0);
    assert_eq!(check(&unsigned), Err(Reject::BadSignature("rsa1".into())));
    // HS256 "signed" with the public key as the HMAC secret: the classic confusion attack.
    let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = Some("rsa1".into());
    let t = encode(
        &h,
        &claims(),
        &EncodingKey::from_secret(RSA1_JWK.as_bytes()),
    )
    .unwrap();
    assert_eq!(check(&t), Err(Reject::AlgNeverAccepted("HS256".into())));
}

#[test]
fn alg_not_in_allowed_algorithms() {
    let t = sign_with(jsonwebtoken::Algorithm::RS384, "rsa1", RSA1, &claims());
    assert_eq!(check(&t), Err(Reject::AlgNotAllowed("RS384".into())));
}

#[test]
fn alg_must_match_key_type() {
    // ES256 header naming the RSA key.
    let t = sign_with(jsonwebtoken::Algorithm::ES256, "rsa1", EC1, &claims());
    assert!(matches!(
        check(&t),
        Err(Reject::AlgKeyMismatch { kty: "RSA", .. })
    ));
    // PS256 is RSA, but the JWK pins RS256.
    let mut p = policy();
    p.algorithms.push(Alg::PS256);
    let t = sign_with(jsonwebtoken::Algorithm::PS256, "rsa1", RSA1, &claims());
    assert!(matches!(
        validate(&t, keys().as_slice(), &NoDirectory, &p, &label(), NOW),
        Err(Reject::AlgNotKeyAlg {
            key_alg: Alg::RS256,
            ..
        })
    ));
}

#[test]
fn missing_and_unknown_kid() {
    let t = encode(
        &Header::new(jsonwebtoken::Algorithm::RS256),
        &claims(),
        &EncodingKey::from_rsa_pem(RSA1.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(check(&t), Err(Reject::MissingKid));
    let t = sign_with(jsonwebtoken::Algorithm::RS256, "rsa2", RSA2, &claims());
    assert_eq!(check(&t), Err(Reject::UnknownKid("rsa2".into())));
}

#[test]
fn bad_signature() {
    // Signed by rsa2's private key but claiming to be rsa1.
    let t = sign_with(jsonwebtoken::Algorithm::RS256, "rsa1", RSA2, &claims());
    assert_eq!(check(&t), Err(Reject::BadSignature("rsa1".into())));
    // A claims part swapped after signing.
    let good = sign(&claims());
    let mut forged: Vec<&str> = good.split('.').collect();
    let other = b64(&json!({"iss": ISS, "oid": "someone-else"}).to_string());
    forged[1] = &other;
    assert_eq!(
        check(&forged.join(".")),
        Err(Reject::BadSignature("rsa1".into()))
    );
    // The rsa2 key set cannot verify rsa1's signatures either.
    let set = parse_jwks(jwks_of(&[&RSA2_JWK.replace("rsa2", "rsa1")]).as_bytes()).unwrap();
    assert_eq!(
        validate(
            &good,
            set.keys.as_slice(),
            &NoDirectory,
            &policy(),
            &label(),
            NOW
        ),
        Err(Reject::BadSignature("rsa1".into()))
    );
}

#[test]
fn issuer() {
    let t = with(|c| {
        c.insert("iss".into(), json!("https://evil.example/"));
    });
    assert_eq!(
        check(&t),
        Err(Reject::IssuerNotAccepted("https://evil.example/".into()))
    );
    let t = with(|c| {
        c.remove("iss");
    });
    assert_eq!(check(&t), Err(Reject::MissingIssuer));
}

/// Two issuers' key sets, each publishing a different key under the same kid "rsa1".
struct Colliding {
    first: &'static str,
    second: &'static str,
    second_expired: Option<i64>,
}
impl KeyLookup for Colliding {
    fn keys(&self, kid: &str) -> Result<Vec<CachedKey>, Reject> {
        let rsa1 = keys()[0].clone();
        let mut rsa2 = parse_jwks(jwks_of(&[RSA2_JWK]).as_bytes()).unwrap().keys[0].clone();
        rsa2.kid = "rsa1".into();
        if kid != "rsa1" {
            return Err(Reject::UnknownKid(kid.into()));
        }
        Ok(vec![
            CachedKey {
                key: rsa1,
                issuer: Some(self.first.into()),
                expired: None,
            },
            CachedKey {
                key: rsa2,
                issuer: Some(self.second.into()),
                expired: self.second_expired,
            },
        ])
    }
}

/// Two issuers whose key sets publish the same kid: each one's tokens verify with its own
/// key, and neither can lock the other out.
#[test]
fn issuers_sharing_a_kid_each_log_in() {
    const OTHER: &str = "https://login.microsoftonline.com/other/v2.0";
    let mut p = policy();
    p.issuers.push(OTHER.into());
    p.tenant_id = None;
    let lookup = Colliding {
        first: ISS,
        second: OTHER,
        second_expired: None,
    };
    let run = |t: &str, keys: &Colliding| validate(t, keys, &NoDirectory, &p, &label(), NOW);
    // Issuer 1 signs with rsa1's private key, issuer 2 with rsa2's, both naming kid rsa1.
    let first = sign(&claims());
    let mut c = claims();
    c["iss"] = json!(OTHER);
    let second = sign_with(jsonwebtoken::Algorithm::RS256, "rsa1", RSA2, &c);
    assert!(run(&first, &lookup).is_ok());
    assert!(run(&second, &lookup).is_ok());
    // The same key pairs listed the other way round.
    let swapped = Colliding {
        first: OTHER,
        second: ISS,
        second_expired: None,
    };
    assert_eq!(
        run(&first, &swapped),
        Err(Reject::BadSignature("rsa1".into()))
    );
    // A token of issuer 2 signed by issuer 1's key is not accepted as issuer 2's.
    let cross = sign_with(jsonwebtoken::Algorithm::RS256, "rsa1", RSA1, &c);
    assert_eq!(
        run(&cross, &lookup),
        Err(Reject::BadSignature("rsa1".into()))
    );
    // Only issuer 2's source is past max_stale: issuer 1 is unaffected.
    let stale = Colliding {
        first: ISS,
        second: OTHER,
        second_expired: Some(999),
    };
    assert!(run(&first, &stale).is_ok());
    assert!(matches!(
        run(&second, &stale),
        Err(Reject::KeysExpired {
            failing_for: 999,
            ..
        })
    ));
}

/// Keys from an issuer's own discovery document verify only that issuer's tokens.
#[test]
fn key_only_serves_its_sources_issuer() {
    struct FromOtherIssuer(Vec<PublicKey>);
    impl KeyLookup for FromOtherIssuer {
        fn keys(&self, kid: &str) -> Result<Vec<CachedKey>, Reject> {
            let mut k = self.0.as_slice().keys(kid)?;
            k[0].issuer = Some("https://other.example/".into());
            Ok(k)
        }
    }
    let mut p = policy();
    p.issuers.push("https://other.example/".into());
    let t = sign(&claims());
    assert!(matches!(
        validate(
            &t,
            &FromOtherIssuer(keys()),
            &NoDirectory,
            &p,
            &label(),
            NOW
        ),
        Err(Reject::IssuerNotServedByKey { .. })
    ));
    let t = with(|c| {
        c.insert("iss".into(), json!("https://other.example/"));
    });
    assert!(validate(
        &t,
        &FromOtherIssuer(keys()),
        &NoDirectory,
        &p,
        &label(),
        NOW
    )
    .is_ok());
}

#[test]
fn audience_string_or_array() {
    let t = with(|c| {
        c.insert("aud".into(), json!("api://other"));
    });
    assert!(matches!(check(&t), Err(Reject::AudienceNotAccepted(_))));
    let t = with(|c| {
        c.insert("aud".into(), json!(["api://other", "api://more"]));
    });
    assert!(matches!(check(&t), Err(Reject::AudienceNotAccepted(_))));
    let t = with(|c| {
        c.insert("aud".into(), json!(["api://other", AUD]));
    });
    assert!(check(&t).is_ok());
    let t = with(|c| {
        c.remove("aud");
    });
    assert_eq!(check(&t), Err(Reject::MissingAudience));
}

#[test]
fn expiry_and_skew() {
    let t = with(|c| {
        c.remove("exp");
    });
    assert_eq!(check(&t), Err(Reject::MissingExp));
    let t = with(|c| {
        c.insert("exp".into(), json!("tomorrow"));
    });
    assert_eq!(check(&t), Err(Reject::TimeClaimNotNumeric("exp")));
    let t = with(|c| {
        c.insert("exp".into(), json!(NOW - 301));
    });
    assert_eq!(
        check(&t),
        Err(Reject::Expired {
            exp: NOW - 301,
            now: NOW
        })
    );
    let t = with(|c| {
        c.insert("exp".into(), json!(NOW - 299));
    });
    assert!(check(&t).is_ok(), "expired within clock_skew");
}

#[test]
fn nbf_and_iat_in_the_future() {
    let t = with(|c| {
        c.insert("nbf".into(), json!(NOW + 301));
    });
    assert_eq!(
        check(&t),
        Err(Reject::NotYetValid {
            nbf: NOW + 301,
            now: NOW
        })
    );
    let t = with(|c| {
        c.insert("iat".into(), json!(NOW + 301));
    });
    assert_eq!(
        check(&t),
        Err(Reject::IssuedInFuture {
            iat: NOW + 301,
            now: NOW
        })
    );
    let t = with(|c| {
        c.insert("nbf".into(), json!(NOW + 299));
        c.insert("iat".into(), json!(NOW + 299));
    });
    assert!(check(&t).is_ok(), "in the future within clock_skew");
}

#[test]
fn tenant() {
    let other = "99999999-2222-3333-4444-555555555555";
    let t = with(|c| {
        c.insert("tid".into(), json!(other));
    });
    assert!(matches!(check(&t), Err(Reject::TenantMismatch { .. })));
    let t = with(|c| {
        c.remove("tid");
    });
    assert_eq!(check(&t), Err(Reject::TenantMissing));
    // Without pgaadauth.tenant_id any tenant is accepted, unless the label pins one.
    let mut p = policy();
    p.tenant_id = None;
    let t = with(|c| {
        c.insert("tid".into(), json!(other));
    });
    assert!(validate(&t, keys().as_slice(), &NoDirectory, &p, &label(), NOW).is_ok());
    let pinned = Label::parse(&format!("aadauth,oid={OID},type=user,tid={TID}")).unwrap();
    assert!(matches!(
        validate(&t, keys().as_slice(), &NoDirectory, &p, &pinned, NOW),
        Err(Reject::TenantMismatch { .. })
    ));
}

#[test]
fn principal_claim() {
    let t = with(|c| {
        c.remove("oid");
    });
    assert_eq!(check(&t), Err(Reject::PrincipalMissing("oid".into())));
    let t = with(|c| {
        c.insert("oid".into(), json!("00000000-0000-0000-0000-000000000000"));
    });
    assert!(matches!(
        check(&t),
        Err(Reject::PrincipalMismatch {
            want_is_appid: false,
            ..
        })
    ));
    // A role labelled with the token's application id: the refusal says so and names the
    // object id to use instead.
    let label_oid = claims()["oid"].as_str().unwrap().to_string();
    let t = with(|c| {
        c.insert("oid".into(), json!("00000000-0000-0000-0000-0000000000a1"));
        c.insert("appid".into(), json!(label_oid.to_uppercase()));
    });
    let e = check(&t).unwrap_err();
    assert!(matches!(
        e,
        Reject::PrincipalMismatch {
            want_is_appid: true,
            ..
        }
    ));
    assert!(e.to_string().contains("application (client) id"), "{e}");
    // A user's token through that application (delegated scopes): no such hint, which would
    // name the user.
    let t = with(|c| {
        c.insert("oid".into(), json!("00000000-0000-0000-0000-0000000000a1"));
        c.insert("appid".into(), json!(label_oid));
        c.insert("scp".into(), json!("user_impersonation"));
    });
    assert!(matches!(
        check(&t),
        Err(Reject::PrincipalMismatch {
            want_is_appid: false,
            ..
        })
    ));
    assert!(
        e.to_string()
            .contains("\"00000000-0000-0000-0000-0000000000a1\", instead"),
        "{e}"
    );
    // Another principal claim: `sub`, as an OIDC provider would use.
    let mut p = policy();
    p.principal_claim = "sub".into();
    let t = with(|c| {
        c.insert("sub".into(), json!(OID));
        c.remove("oid");
    });
    assert!(validate(&t, keys().as_slice(), &NoDirectory, &p, &label(), NOW).is_ok());
}

#[test]
fn a_principal_with_a_control_character_is_refused() {
    let mut p = policy();
    p.principal_claim = "upn".into();
    for bad in [
        "ann@contoso.com\nLOG:  forged",
        "ann\r@contoso.com",
        "ann\u{1b}[31m",
        "ann\u{85}",
        "ann\u{2028}x",
        "\u{7f}",
        "nna\u{202e}@contoso.com",
        "ann\u{200b}@contoso.com",
    ] {
        let t = with(|c| {
            c.insert("upn".into(), json!(bad));
        });
        let refused = validate(&t, keys().as_slice(), &NoDirectory, &p, &label(), NOW);
        assert_eq!(
            refused,
            Err(Reject::PrincipalUnsafe("upn".into())),
            "{bad:?}"
        );
        assert_eq!(refused.unwrap_err().code(), "principal");
    }
    // Spaces and non-ASCII letters are not control characters.
    let t = with(|c| {
        c.insert("upn".into(), json!("ann zoë@contoso.com"));
    });
    assert!(!matches!(
        validate(&t, keys().as_slice(), &NoDirectory, &p, &label(), NOW),
        Err(Reject::PrincipalUnsafe(_))
    ));
}

#[test]
fn service_principal_matches_like_a_user() {
    let sp = Label::parse(&format!("aadauth,oid={OID},type=service")).unwrap();
    assert!(validate(
        &sign(&claims()),
        keys().as_slice(),
        &NoDirectory,
        &policy(),
        &sp,
        NOW
    )
    .is_ok());
}

#[test]
fn mfa() {
    let mfa = Label::parse(&format!("aadauth,oid={OID},type=user,mfa")).unwrap();
    let t = sign(&claims());
    assert_eq!(
        validate(&t, keys().as_slice(), &NoDirectory, &policy(), &mfa, NOW),
        Err(Reject::MfaRequired)
    );
    let t = with(|c| {
        c.insert("amr".into(), json!(["pwd", "mfa"]));
    });
    assert!(validate(&t, keys().as_slice(), &NoDirectory, &policy(), &mfa, NOW).is_ok());
}

/// A directory that knows one membership, and counts how often it is asked.
struct FakeDirectory(std::cell::Cell<u32>, Result<bool, String>);

impl Membership for FakeDirectory {
    fn is_member(&self, member: &str, group: &str) -> Result<bool, String> {
        self.0.set(self.0.get() + 1);
        assert_eq!((member, group), (OID, GROUP));
        self.1.clone()
    }
}

const GROUP: &str = "0e0e0e0e-1111-4222-8333-444455556666";

fn group_login(
    f: impl FnOnce(&mut Map<String, Value>),
    dir: &FakeDirectory,
) -> Result<Verified, Reject> {
    let g = Label::parse(&format!("aadauth,oid={GROUP},type=group")).unwrap();
    validate(&with(f), keys().as_slice(), dir, &policy(), &g, NOW)
}

#[test]
fn groups_entries_that_are_not_guids_never_name_the_group() {
    let dir = FakeDirectory(0.into(), Ok(false));
    for entry in [
        format!("{{{GROUP}}}"),
        format!(" {GROUP}"),
        format!("{GROUP}\u{0}"),
        format!("{GROUP}x"),
        GROUP.replace('-', ""),
    ] {
        let r = group_login(
            |c| {
                c.insert("groups".into(), json!([entry]));
            },
            &dir,
        );
        assert!(
            matches!(r, Err(Reject::NotGroupMember { .. })),
            "{entry:?}: {r:?}"
        );
    }
}

#[test]
fn group_member_by_claim() {
    let dir = FakeDirectory(0.into(), Ok(false));
    let v = group_login(
        |c| {
            c.insert("groups".into(), json!(["x", GROUP.to_uppercase()]));
        },
        &dir,
    )
    .unwrap();
    assert_eq!(
        (v.principal.as_str(), v.via_group.as_deref()),
        (OID, Some(GROUP))
    );
    assert_eq!(dir.0.get(), 0, "the claim suffices");
    let r = group_login(
        |c| {
            c.insert("groups".into(), json!(["x"]));
        },
        &dir,
    );
    assert!(matches!(
        r,
        Err(Reject::NotGroupMember {
            by: "the token's groups claim",
            ..
        })
    ));
    assert_eq!(
        dir.0.get(),
        0,
        "a complete groups claim is not second-guessed"
    );
}

#[test]
fn group_overage_or_no_claim_asks_the_directory() {
    let overage = |c: &mut Map<String, Value>| {
        c.insert("_claim_names".into(), json!({"groups": "src1"}));
        c.insert(
            "_claim_sources".into(),
            json!({"src1": {"endpoint": "https://graph"}}),
        );
    };
    let yes = FakeDirectory(0.into(), Ok(true));
    assert!(group_login(overage, &yes).is_ok());
    assert!(group_login(|_| {}, &yes).is_ok(), "no groups claim at all");
    assert_eq!(yes.0.get(), 2);
    let no = FakeDirectory(0.into(), Ok(false));
    assert!(matches!(
        group_login(overage, &no),
        Err(Reject::NotGroupMember {
            by: "the directory",
            ..
        })
    ));
    let down = FakeDirectory(0.into(), Err("HTTP status 503".into()));
    let r = group_login(overage, &down).unwrap_err();
    assert!(
        r.to_string()
            .contains("could not be learned from the directory: HTTP status 503"),
        "{r}"
    );
    let r = group_login(overage, &FakeDirectory(0.into(), Ok(true)));
    assert!(r.is_ok());
    let none = group_login(
        overage,
        &FakeDirectory(
            0.into(),
            Err(NoDirectory.is_member(OID, GROUP).unwrap_err()),
        ),
    );
    assert!(matches!(none, Err(Reject::MembershipUnknown { .. })));
}

#[test]
fn group_label_with_mfa() {
    let g = Label::parse(&format!("aadauth,oid={GROUP},type=group,mfa")).unwrap();
    let t = with(|c| {
        c.insert("groups".into(), json!([GROUP]));
    });
    let dir = FakeDirectory(0.into(), Ok(false));
    assert_eq!(
        validate(&t, keys().as_slice(), &dir, &policy(), &g, NOW),
        Err(Reject::MfaRequired)
    );
}

#[test]
fn bad_typ() {
    let mut h = Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = Some("rsa1".into());
    h.typ = Some("id+jwt".into());
    let t = encode(
        &h,
        &claims(),
        &EncodingKey::from_rsa_pem(RSA1.as_bytes()).unwrap(),
    )
    .unwrap();
    assert!(matches!(check(&t), Err(Reject::TypeNotAccepted(_))));
}

#[test]
fn every_code_is_listed() {
    use Reject::*;
    let all = [
        TooLong(1),
        NotCompactJws,
        HeaderNotJson,
        ClaimsNotJson,
        DuplicateMember {
            part: "header",
            name: String::new(),
        },
        CritNotUnderstood(String::new()),
        TimeClaimNotNumeric("nbf"),
        TypeNotAccepted(String::new()),
        AlgNeverAccepted(String::new()),
        AlgNotAllowed(String::new()),
        MissingKid,
        UnknownKid(String::new()),
        KeysExpired {
            kid: String::new(),
            failing_for: 0,
        },
        IssuerNotServedByKey {
            iss: String::new(),
            kid: String::new(),
            served: String::new(),
        },
        AlgKeyMismatch {
            alg: Alg::RS256,
            kid: String::new(),
            kty: "RSA",
        },
        AlgNotKeyAlg {
            alg: Alg::RS256,
            kid: String::new(),
            key_alg: Alg::RS384,
        },
        BadSignature(String::new()),
        MissingIssuer,
        IssuerNotAccepted(String::new()),
        MissingAudience,
        AudienceNotAccepted(vec![]),
        MissingExp,
        Expired { exp: 0, now: 0 },
        NotYetValid { nbf: 0, now: 0 },
        IssuedInFuture { iat: 0, now: 0 },
        TenantMissing,
        TenantMismatch {
            tid: String::new(),
            want: String::new(),
        },
        PrincipalMissing(String::new()),
        PrincipalMismatch {
            claim: String::new(),
            got: String::new(),
            want: String::new(),
            want_is_appid: true,
        },
        MfaRequired,
        NotGroupMember {
            member: String::new(),
            group: String::new(),
            by: "",
        },
        MembershipUnknown {
            member: String::new(),
            group: String::new(),
            why: String::new(),
        },
        Revoked {
            iat: None,
            revoked_before: 0,
        },
        RevocationsUnknown(String::new()),
    ];
    for r in &all {
        assert!(REASON_CODES.contains(&r.code()), "{r:?}");
    }
    let used: std::collections::HashSet<&str> = all.iter().map(Reject::code).collect();
    assert_eq!(
        used.len(),
        REASON_CODES.len(),
        "a listed code no variant uses"
    );
}

#[test]
fn warm_up_vectors_verify() {
    assert!(warm_up());
}

#[test]
fn reasons_never_contain_the_token() {
    let t = sign_with(jsonwebtoken::Algorithm::RS256, "rsa1", RSA2, &claims());
    let sig = t.rsplit('.').next().unwrap();
    let text = check(&t).unwrap_err().to_string();
    assert!(!text.contains(sig) && !text.contains(&t));
}
