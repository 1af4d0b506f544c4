//! Stable hashing of request keys.

/// Hashes a request key (a header value, a cookie, a client IP, a path) for
/// [`crate::Snapshot::pick`]'s `key`.
///
/// The function is **XXH3-64 with seed 0** (`xxhash-rust`'s `xxh3_64`), a published,
/// versioned algorithm: the same bytes give the same `u64` in every process, on every machine
/// and with every Rust version, so every gateway of a fleet sends a key to the same server.
/// (`std`'s `DefaultHasher` promises none of that.) It is fast for long keys (URIs) too.
///
/// ```
/// use switchyard_balance::hash_key;
/// // The XXH3-64 reference value of the empty input.
/// assert_eq!(hash_key(b""), 0x2D06_8005_38D3_94C2);
/// assert_eq!(hash_key(b"user-42"), hash_key(b"user-42"));
/// assert_ne!(hash_key(b"user-42"), hash_key(b"user-43"));
/// ```
#[inline]
pub fn hash_key(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}
