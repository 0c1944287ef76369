//! Secret values, the installation's content-hash key, and the keyed
//! content hash. Pure.

use std::collections::BTreeMap;
use std::fmt;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;

/// One value of a Secret: bytes that `Debug` shows as their length only,
/// zeroed when dropped.
#[derive(Clone)]
pub struct SecretValue(SecretSlice<u8>);

impl SecretValue {
    /// The bytes, for hashing and for the request that writes the copy.
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

impl From<Vec<u8>> for SecretValue {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes.into())
    }
}

impl From<&[u8]> for SecretValue {
    fn from(bytes: &[u8]) -> Self {
        Self(bytes.to_vec().into())
    }
}

impl PartialEq for SecretValue {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for SecretValue {}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.expose().len())
    }
}

/// A Secret's data: decoded values by key.
pub type SecretData = BTreeMap<String, SecretValue>;

/// The annotation holding [`content_hash`] of the data dualmesh wrote.
pub const CONTENT_HASH_ANNOTATION: &str = "dualmesh.io/content-hash";

/// The Secret holding the installation's [`HashKey`], in the namespace of
/// the MeshClusters (the operator's). dualmesh creates it when it is absent
/// (create-only: one that exists is never overwritten). Deleting it rotates
/// the key: a new one is made and every copy is rewritten once, since its
/// hash no longer matches.
pub const HASH_KEY_SECRET: &str = "dualmesh-content-hash-key";
/// The data key in [`HASH_KEY_SECRET`].
pub const HASH_KEY_DATA: &str = "key";
/// The key's length as dualmesh generates it, and the least it accepts.
pub const HASH_KEY_LEN: usize = 32;

/// The key of [`content_hash`]. `Debug` shows nothing of it.
#[derive(Clone)]
pub struct HashKey(SecretSlice<u8>);

impl HashKey {
    /// A key from bytes; `None` when shorter than [`HASH_KEY_LEN`].
    pub fn new(bytes: Vec<u8>) -> Option<Self> {
        (bytes.len() >= HASH_KEY_LEN).then(|| Self(bytes.into()))
    }

    /// The key held in the data of Secret [`HASH_KEY_SECRET`] (key
    /// [`HASH_KEY_DATA`]), or why it is unusable (the text names the Secret
    /// `secret_ref` and the rule, never data).
    pub fn from_secret(secret_ref: &str, data: &SecretData) -> Result<Self, String> {
        data.get(HASH_KEY_DATA)
            .and_then(|v| Self::new(v.expose().to_vec()))
            .ok_or_else(|| {
                format!(
                    "Secret {secret_ref} holds no usable content-hash key (key {HASH_KEY_DATA:?}, at least {HASH_KEY_LEN} bytes); delete it and dualmesh makes a new one"
                )
            })
    }
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey(<redacted>)")
    }
}

/// HMAC-SHA256 with `key`, lowercase hex, of a Secret's data encoded as:
/// for each entry in key order, the key's byte length in decimal, NUL, the
/// key, the value's byte length in decimal, NUL, the value. Length-prefixed,
/// so no two different maps encode the same.
pub fn content_hash(key: &HashKey, data: &SecretData) -> String {
    let mut h = <Hmac<Sha256> as Mac>::new_from_slice(key.0.expose_secret())
        .expect("HMAC takes keys of any length");
    for (k, v) in data {
        let v = v.expose();
        h.update(k.len().to_string().as_bytes());
        h.update(&[0]);
        h.update(k.as_bytes());
        h.update(v.len().to_string().as_bytes());
        h.update(&[0]);
        h.update(v);
    }
    h.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
/// Fixtures of the secret-sync tests.
pub(super) mod testing {
    use super::*;

    pub const CA_PEM: &[u8] = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    pub const TLS_KEY: &[u8] =
        b"-----BEGIN PRIVATE KEY-----\nrelay-server-key\n-----END PRIVATE KEY-----\n";
    pub const TOKEN: &[u8] = b"relay-bootstrap-token";
    /// The key of the tests' hashes.
    pub const TEST_KEY: &[u8] = b"dualmesh-test-key-0123456789abcdef";
    /// `content_hash` under `TEST_KEY` of `{ca.crt: CA_PEM, token: TOKEN}`,
    /// computed independently (Python `hmac.new(key, encoding, sha256)` over
    /// the documented encoding).
    pub const GOLDEN: &str = "c4fbe985dd1097c626ecb62fd13f9537f82adcc8d374e030319769f2505886f7";
    /// `content_hash` under `TEST_KEY` of `{token: TOKEN}`, likewise.
    pub const TOKEN_HASH: &str = "72ce1e7e99d16006b8b540074c699ea7509ca2fcc3f128df2e646557a0e47677";
    /// Plain SHA-256 of the same encodings (`hashlib.sha256`): what the
    /// hash must not be.
    pub const UNKEYED_GOLDEN: &str =
        "c9f70735904f56ee4c6ef148c7e8c46fcc8779b5bbcc772ca17d022a86c6305c";
    pub const UNKEYED_TOKEN_HASH: &str =
        "663b7c574e714226198ea974e8979b7753c482e88208814e87cf2dda1d777f8b";

    pub fn test_key() -> HashKey {
        HashKey::new(TEST_KEY.to_vec()).unwrap()
    }

    pub fn secret(m: &BTreeMap<String, Vec<u8>>) -> SecretData {
        m.iter()
            .map(|(k, v)| (k.clone(), SecretValue::from(v.clone())))
            .collect()
    }

    /// `content_hash` under `TEST_KEY` of plain bytes.
    pub fn hash(m: &BTreeMap<String, Vec<u8>>) -> String {
        content_hash(&test_key(), &secret(m))
    }

    pub fn data(entries: &[(&str, &[u8])]) -> SecretData {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), SecretValue::from(*v)))
            .collect()
    }

    pub fn bytes(entries: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn content_hash_is_stable() {
        assert_eq!(
            content_hash(&test_key(), &data(&[("token", TOKEN), ("ca.crt", CA_PEM)])),
            GOLDEN
        );
        assert_eq!(
            content_hash(&test_key(), &BTreeMap::new()),
            "a2156226ee49da016fb36852c9812cfffc47b2af11dde65d955535fa967eb82b"
        );
    }

    #[test]
    fn content_hash_is_keyed() {
        // Not the plain SHA-256 anyone could recompute from a guess.
        let token = data(&[("token", TOKEN)]);
        assert_eq!(content_hash(&test_key(), &token), TOKEN_HASH);
        assert_ne!(TOKEN_HASH, UNKEYED_TOKEN_HASH);
        assert_ne!(GOLDEN, UNKEYED_GOLDEN);
        // Another key, another hash: rotating the key changes every hash.
        let other = HashKey::new(b"another-installation-key-32bytes!".to_vec()).unwrap();
        assert_ne!(content_hash(&other, &token), TOKEN_HASH);
    }

    #[test]
    fn hash_keys_are_at_least_32_bytes_and_never_shown() {
        assert!(HashKey::new(vec![7; 31]).is_none());
        assert!(HashKey::new(vec![7; 32]).is_some());
        let refused = "Secret dualmesh-system/dualmesh-content-hash-key holds no usable content-hash key (key \"key\", at least 32 bytes); delete it and dualmesh makes a new one";
        let at = "dualmesh-system/dualmesh-content-hash-key";
        for d in [
            data(&[]),
            data(&[("key", b"short-key-s3cr3t")]),
            data(&[("other", TEST_KEY)]),
        ] {
            assert_eq!(HashKey::from_secret(at, &d).unwrap_err(), refused);
        }
        let key = HashKey::from_secret(at, &data(&[("key", TEST_KEY)])).unwrap();
        assert_eq!(content_hash(&key, &data(&[("token", TOKEN)])), TOKEN_HASH);
        assert_eq!(format!("{key:?}"), "HashKey(<redacted>)");
        assert_eq!(
            format!("{:?}", data(&[("key", TEST_KEY)])),
            "{\"key\": <34 bytes>}"
        );
    }

    #[test]
    fn content_hash_tells_apart_moved_boundaries() {
        type Entries<'a> = &'a [(&'a str, &'a [u8])];
        let pairs: [(Entries, Entries); 3] = [
            (&[("a", b"bc")], &[("ab", b"c")]),
            (&[("a", b""), ("b", b"")], &[("a", b"1\x00b0\x00")]),
            (&[("k", b"")], &[("k", b"\x00")]),
        ];
        for (x, y) in pairs {
            assert_ne!(hash(&bytes(x)), hash(&bytes(y)));
        }
    }

    /// Secret keys, short so that maps collide often.
    const KEY: &str = "[-._a-zA-Z0-9]{1,6}";
    /// Values, short for the same reason.
    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..8)
    }

    proptest! {
        #[test]
        fn different_data_gives_different_hashes(
            a in prop::collection::btree_map(KEY, value(), 0..4),
            b in prop::collection::btree_map(KEY, value(), 0..4),
        ) {
            prop_assume!(a != b);
            prop_assert_ne!(hash(&a), hash(&b));
        }

        #[test]
        fn near_misses_give_different_hashes(
            a in prop::collection::btree_map(KEY, value(), 1..4),
            pick in any::<prop::sample::Index>(),
            how in 0..4u8,
        ) {
            // One small edit of one entry: a byte more, a byte less, the key's
            // last character moved into the value, or the entry dropped.
            let (k, v) = a.iter().nth(pick.index(a.len())).map(|(k, v)| (k.clone(), v.clone())).unwrap();
            let mut b = a.clone();
            match how {
                0 => { b.get_mut(&k).unwrap().push(0); }
                1 => { b.get_mut(&k).unwrap().pop(); }
                2 if k.len() > 1 => {
                    b.remove(&k);
                    let mut moved = vec![*k.as_bytes().last().unwrap()];
                    moved.extend(&v);
                    b.insert(k[..k.len() - 1].to_string(), moved);
                }
                _ => { b.remove(&k); }
            }
            prop_assume!(a != b);
            prop_assert_ne!(hash(&a), hash(&b));
        }
    }
}
