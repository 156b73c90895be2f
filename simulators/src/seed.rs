//! Values derived from a scenario's seed: every random choice of a run comes from the seed, mixed
//! with what names the choice, so that two devices of one run differ (README, "Determinism").

/// FNV-1a, 64 bits, of `label` (the FNV hash, IETF draft-eastlake-fnv, §2): mixed into the seed so
/// that two devices of one run, which differ only by name, draw different values.
pub fn label_hash(label: &str) -> u64 {
    label.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_hash_is_fnv1a_64() {
        // Test vectors of the FNV reference implementation.
        assert_eq!(label_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(label_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(label_hash("foobar"), 0x8594_4171_f739_67e8);
    }
}
