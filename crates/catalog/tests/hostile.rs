//! Hostile and malformed input to every parser of the crate: any string, and the
//! classic traps (empty, whitespace, unicode, huge numbers). Nothing panics, every
//! error names its source, and valid input round-trips exactly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use idempotency_catalog::{CatalogBuilder, CatalogKind, Digest, KeyOptions, Scope, env};
use proptest::prelude::*;

/// Any string, with the traps made likely: empty, whitespace, digits, signs, huge
/// numbers, hex, unicode and control characters.
fn nasty() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9]{0,30}",
        "[ \\t\\n+-]{0,3}[0-9]{1,25}[ \\t\\neE._]{0,3}[0-9]{0,3}",
        "[0-9a-fA-F]{60,68}",
        "\\PC{0,80}",
        Just(String::new()),
        Just("\u{0}".to_owned()),
        Just("١٢٣".to_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn digest_parsing_never_panics_and_accepts_only_64_lowercase_hex(s in nasty()) {
        match s.parse::<Digest>() {
            Ok(digest) => {
                prop_assert_eq!(digest.to_string(), s.clone());
                prop_assert!(s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            }
            Err(err) => prop_assert!(err.to_string().starts_with("invalid digest "), "{}", err),
        }
    }

    #[test]
    fn every_digest_round_trips_through_hex_and_serde(bytes in any::<[u8; 32]>()) {
        let digest = Digest::from_bytes(bytes);
        prop_assert_eq!(digest.to_string().parse::<Digest>().unwrap(), digest);
        prop_assert_eq!(digest.to_hex_string(), digest.to_string());
        let json = serde_json::to_string(&digest).unwrap();
        prop_assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), digest);
    }

    #[test]
    fn scope_and_kind_parsing_never_panic(s in nasty()) {
        prop_assert_eq!(s.parse::<Scope>().is_ok(), Scope::ALL.iter().any(|x| x.as_str() == s));
        prop_assert_eq!(s.parse::<CatalogKind>().is_ok(), CatalogKind::ALL.iter().any(|x| x.as_str() == s));
    }

    #[test]
    fn any_environment_value_is_accepted_exactly_or_named_in_the_error(var_index in 0usize..3, value in nasty()) {
        let var = [env::KIND, env::CAPACITY, env::MAX_CAPACITY][var_index];
        let result = CatalogBuilder::from_env_with(|name| (name == var).then(|| value.clone())).build();
        match result {
            Ok(catalog) => match var {
                env::KIND => prop_assert_eq!(catalog.kind().as_str(), value.as_str()),
                _ => {
                    // Only plain decimal digits get through, and they mean what they say.
                    prop_assert!(!value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()), "{:?}", value);
                    let n: usize = value.parse().unwrap();
                    if var == env::CAPACITY {
                        prop_assert_eq!(catalog.capacity(), Some(n));
                    }
                }
            },
            Err(err) => {
                let text = err.to_string();
                prop_assert!(text.starts_with(&format!("invalid {var} ")), "{}", text);
                // The value is shown, quoted and cut, never dumped whole.
                prop_assert!(text.chars().count() < 300, "{}", text);
            }
        }
    }

    #[test]
    fn key_options_round_trip_any_key_and_scope(key in any::<String>(), s in 0usize..3) {
        let options = KeyOptions::new(&key, Scope::ALL[s]);
        prop_assert_eq!(options.key(), key.as_str());
        prop_assert_eq!(options.scope(), Scope::ALL[s]);
        let json = serde_json::to_string(&options).unwrap();
        prop_assert_eq!(serde_json::from_str::<KeyOptions>(&json).unwrap(), options);
    }

    #[test]
    fn key_options_from_arbitrary_json_never_panic(json in any::<String>()) {
        let _ = serde_json::from_str::<KeyOptions>(&json);
    }
}

#[test]
fn huge_and_edge_capacities_are_exact_or_refused() {
    let max = usize::MAX.to_string();
    let over = "18446744073709551616"; // usize::MAX + 1
    let cases: [(&str, bool); 6] =
        [("1", true), (max.as_str(), true), (over, false), ("0", false), ("00", false), ("007", true)];
    for (value, ok) in cases {
        let result = CatalogBuilder::from_env_with(|name| (name == env::CAPACITY).then(|| value.to_owned())).build();
        assert_eq!(result.is_ok(), ok, "{value}");
    }
    // A huge capacity costs nothing until it is used, and a huge reservation is not
    // allocated up front.
    let catalog = CatalogBuilder::new().capacity(1).max_capacity(usize::MAX).build().unwrap();
    let room = catalog.reserve(usize::MAX);
    assert_eq!(catalog.capacity(), Some(usize::MAX));
    // The reservation's entries are held apart from the free ones: the whole ceiling
    // is there for it.
    assert_eq!(room.shortfall(), 0);
    drop(room);
    assert_eq!(catalog.capacity(), Some(1));
}
