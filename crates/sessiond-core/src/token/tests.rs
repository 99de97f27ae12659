use super::*;

fn ring() -> KeyRing {
    KeyRing::single(KeyId(7), SigningKey::generate())
}

#[test]
fn minted_tokens_verify_and_have_the_documented_shape() {
    let r = ring();
    let t = r.mint();
    let s = t.expose();
    assert!(s.starts_with(TOKEN_PREFIX));
    assert_eq!(s.len(), TOKEN_LEN);
    assert!(s[TOKEN_PREFIX.len()..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "URL-safe");
    let v = r.verify(s).expect("verifies");
    assert_eq!(v.hash(), t.hash());
    assert_eq!(v.key_id(), KeyId(7));
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let r = ring();
    let t = r.mint();
    let text = t.expose().to_owned();
    let raw = URL_SAFE_NO_PAD.decode(&text[TOKEN_PREFIX.len()..]).expect("b64");
    for byte in 0..raw.len() {
        for bit in 0..8 {
            let mut m = raw.clone();
            m[byte] ^= 1 << bit;
            let forged = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(&m));
            assert!(r.verify(&forged).is_err(), "flip of byte {byte} bit {bit} accepted");
        }
    }
}

#[test]
fn foreign_keys_and_unknown_key_ids_are_rejected() {
    let a = ring();
    let b = ring(); // same key id 7, different key
    assert!(b.verify(a.mint().expose()).is_err());
    let c = KeyRing::single(KeyId(8), SigningKey::generate());
    assert!(a.verify(c.mint().expose()).is_err());
}

#[test]
fn key_rotation_keeps_old_tokens_valid() {
    let k1 = SigningKey::from_bytes([1; 32]);
    let k2 = SigningKey::from_bytes([2; 32]);
    let before = KeyRing::single(KeyId(1), k1.clone());
    let old = before.mint();
    let after = KeyRing::new(KeyId(2), [(KeyId(1), k1), (KeyId(2), k2)]).expect("ring");
    let v = after.verify(old.expose()).expect("old token still verifies");
    assert_eq!(v.hash(), old.hash(), "the lookup hash does not depend on the key");
    let new = after.mint();
    assert_eq!(after.verify(new.expose()).expect("new").key_id(), KeyId(2));
    assert!(before.verify(new.expose()).is_err(), "a ring without key 2 refuses its tokens");
    assert!(KeyRing::new(KeyId(3), [(KeyId(1), SigningKey::generate())]).is_err());
}

#[test]
fn secrets_never_print() {
    let r = ring();
    let t = r.mint();
    let text = t.expose().to_owned();
    let secret_part = &text[TOKEN_PREFIX.len() + 8..TOKEN_PREFIX.len() + 40];
    for shown in [format!("{t:?}"), format!("{t}"), format!("{:?}", r.verify(&text).expect("v")), format!("{r:?}")] {
        assert!(!shown.contains(secret_part), "secret leaked in {shown}");
    }
    let key = SigningKey::from_bytes([0xAB; 32]);
    assert_eq!(format!("{key:?}"), "SigningKey(<redacted>)");
    assert!(!format!("{:?}", t.hash()).contains(&t.hash().to_hex()), "Debug shows only a prefix of the hash");
}

#[test]
fn csrf_tokens_bind_to_the_session() {
    let r = ring();
    let a = crate::id::SessionId::from_bytes([1; 16]);
    let b = crate::id::SessionId::from_bytes([2; 16]);
    let t = r.csrf_token(&a);
    assert!(r.verify_csrf(&a, &t));
    assert!(!r.verify_csrf(&b, &t));
    assert!(!r.verify_csrf(&a, ""));
    assert!(!r.verify_csrf(&a, &t[1..]));
    assert!(!ring().verify_csrf(&a, &t));
}

#[test]
fn sealed_successor_opens_only_with_the_predecessor() {
    let r = ring();
    let old = r.mint();
    let old_v = r.verify(old.expose()).expect("v");
    let new = r.mint();
    let sealed = KeyRing::seal(&new, &old_v);
    assert_eq!(r.unseal(&sealed, &old_v).expose(), new.expose());
    let other_v = r.verify(r.mint().expose()).expect("v");
    assert_ne!(r.unseal(&sealed, &other_v).expose(), new.expose());
    assert_ne!(sealed.secret, [0u8; 32]);
}

#[test]
fn token_hash_hex_round_trips() {
    let h = ring().mint().hash().to_owned();
    assert_eq!(TokenHash::from_hex(&h.to_hex()), Some(h));
    assert_eq!(TokenHash::from_hex("zz"), None);
    assert_eq!(TokenHash::from_hex(&"g".repeat(64)), None);
}

/// Checklist §7.3 step 2 and 3: 20,000 tokens, zero duplicates, fixed length and alphabet,
/// and per-bit-position FIPS monobit bounds (9,725 < ones < 10,275) over the 256 secret bits;
/// fail if 2 or more positions are out of bounds. Plus a chi-square per character position of
/// the secret's base64url text: each position must use the whole alphabet.
#[test]
fn token_randomness_gates() {
    let r = ring();
    const N: usize = 20_000;
    let mut seen = std::collections::HashSet::with_capacity(N);
    let mut ones = [0u32; 256];
    let mut char_counts = vec![[0u32; 64]; 40];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for _ in 0..N {
        let t = r.mint();
        let text = t.expose();
        assert_eq!(text.len(), TOKEN_LEN);
        assert!(seen.insert(text.to_owned()), "duplicate token");
        let raw = URL_SAFE_NO_PAD.decode(&text[TOKEN_PREFIX.len()..]).expect("b64");
        let secret = &raw[5..5 + SECRET_LEN];
        for (i, byte) in secret.iter().enumerate() {
            for bit in 0..8 {
                ones[i * 8 + bit] += u32::from((byte >> bit) & 1);
            }
        }
        // Characters 8..48 of the body encode only secret bits (bytes 6..36).
        for (pos, c) in text.as_bytes()[TOKEN_PREFIX.len() + 8..TOKEN_PREFIX.len() + 48].iter().enumerate() {
            let idx = alphabet.iter().position(|a| a == c).expect("alphabet");
            char_counts[pos][idx] += 1;
        }
    }
    let out_of_bounds = ones.iter().filter(|&&n| !(9_725 < n && n < 10_275)).count();
    assert!(out_of_bounds < 2, "{out_of_bounds} bit positions fail the monobit bounds: {ones:?}");
    // Chi-square with 63 degrees of freedom; p = 1e-4 critical value is about 117.
    let expected = N as f64 / 64.0;
    // As with the monobit gate, fail on two or more positions out of bounds: one position by
    // chance is a 4e-5 event per position (40 positions: ~0.2 % of runs), two are ~1e-6.
    let mut chi_fail = Vec::new();
    for (pos, counts) in char_counts.iter().enumerate() {
        assert!(counts.iter().all(|&c| c > 0), "position {pos} does not use the whole alphabet");
        let chi: f64 = counts.iter().map(|&c| (f64::from(c) - expected).powi(2) / expected).sum();
        if chi >= 117.0 {
            chi_fail.push((pos, chi));
        }
    }
    assert!(chi_fail.len() < 2, "character positions fail the chi-square gate: {chi_fail:?}");
}

/// Checklist §7.3 step 7, the code gate: token, key and id randomness come only from the OS
/// CSPRNG. This test reads the crate's sources and fails if any other generator appears, or
/// if `getrandom` is called anywhere but `os_random`.
#[test]
fn only_the_os_csprng_generates_secrets() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read src") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("token/tests.rs") {
                files.push(p);
            }
        }
    }
    assert!(files.len() > 5);
    let banned =
        ["thread_rng", "rand::", "SmallRng", "StdRng", "seed_from_u64", "fastrand", "Uuid::new_v4", "SystemTime::now"];
    let mut getrandom_calls = 0;
    for f in &files {
        let src = std::fs::read_to_string(f).expect("read");
        for b in banned {
            if f.ends_with("time.rs") && b == "SystemTime::now" {
                continue; // the one sanctioned clock read, in SystemClock
            }
            assert!(!src.contains(b), "{} uses {b}", f.display());
        }
        getrandom_calls += src.matches("getrandom::").count();
        if src.contains("getrandom::") {
            assert!(f.ends_with("token/mod.rs"), "{} calls getrandom directly", f.display());
        }
    }
    assert_eq!(getrandom_calls, 1, "exactly one getrandom call site (os_random)");
    let token_src = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/token/mod.rs"))
        .expect("read");
    assert!(token_src.contains("Secret(os_random::<SECRET_LEN>())"), "mint must draw the secret from os_random");
    assert!(token_src.contains("Self(os_random::<32>())"), "keys must come from os_random");
}
