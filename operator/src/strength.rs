//! Whether a secret a user brings is strong enough to accept: today the bring-your-own bearer
//! token (`spec.token.secretRef`), and the same rule applies to OAuth client secrets once they
//! exist. A generated token (256 random bits) always passes.
//!
//! The rule, on the secret's characters (Unicode scalar values), refuses what is obviously weak:
//!
//! 1. fewer than [`MIN_LENGTH`] (32) characters;
//! 2. fewer than [`MIN_DISTINCT`] (8) different characters (`aaaa…`, `0101…`);
//! 3. one piece repeated: every character equals the one `p` places before it, for some
//!    `p` up to half the length (`Welcome2026!Welcome2026!Welcome2026!`);
//! 4. more than half of the adjacent pairs repeat a character or step by one code point
//!    (`abcdefgh…`, `12345678…`, `aabbccdd…`).
//!
//! Random secrets pass: `openssl rand -base64 32` (44 characters), `openssl rand -hex 32`
//! (64 hex digits) and even `openssl rand -hex 16` (32 hex digits; refused with a probability
//! below one in a million). Passing the rule does not make a secret strong (a long passphrase of
//! dictionary words passes); that is why verifiers are also keyed (see
//! `kube_scim_runtime::verifier`).

use std::collections::HashSet;
use std::fmt;

/// Fewest characters a user-supplied secret may have.
pub const MIN_LENGTH: usize = 32;

/// Fewest different characters a user-supplied secret may have.
pub const MIN_DISTINCT: usize = 8;

/// How to make a good secret, for messages.
pub const HOW_TO_MAKE_ONE: &str = "openssl rand -base64 32";

/// Why a secret is refused. Never carries any part of the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weakness {
    /// Fewer than [`MIN_LENGTH`] characters.
    TooShort { length: usize },
    /// Fewer than [`MIN_DISTINCT`] different characters.
    FewDistinct { distinct: usize },
    /// A piece of `period` characters repeated.
    Repeated { period: usize },
    /// Mostly runs (`abcd`, `4321`) and repeated characters.
    Sequential,
}

/// The message names the rule broken, never a measure of the secret (its length, its number of
/// different characters, the length of its repeated piece): the message goes to the directory's
/// status and events, read by more people than the Secret (issue 27).
impl fmt::Display for Weakness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Weakness::TooShort { .. } => write!(f, "it is shorter than {MIN_LENGTH} characters"),
            Weakness::FewDistinct { .. } => {
                write!(f, "it has fewer than {MIN_DISTINCT} different characters")
            }
            Weakness::Repeated { .. } => write!(f, "it is one piece repeated"),
            Weakness::Sequential => write!(
                f,
                "most of it runs in sequence (like abcd or 1234) or repeats characters"
            ),
        }
    }
}

/// Why `secret` is too weak to accept, or `None` if it passes the rule of this module.
pub fn weakness(secret: &str) -> Option<Weakness> {
    let chars: Vec<char> = secret.chars().collect();
    let length = chars.len();
    if length < MIN_LENGTH {
        return Some(Weakness::TooShort { length });
    }
    let distinct = chars.iter().collect::<HashSet<_>>().len();
    if distinct < MIN_DISTINCT {
        return Some(Weakness::FewDistinct { distinct });
    }
    if let Some(period) = (1..=length / 2).find(|&p| (p..length).all(|i| chars[i] == chars[i - p]))
    {
        return Some(Weakness::Repeated { period });
    }
    let pairs = length - 1;
    let runs = chars
        .windows(2)
        .filter(|w| (i64::from(u32::from(w[1])) - i64::from(u32::from(w[0]))).abs() <= 1)
        .count();
    if runs * 2 > pairs {
        return Some(Weakness::Sequential);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obviously_weak_secrets_are_refused_with_the_reason() {
        let cases = [
            ("Welcome2026!", Weakness::TooShort { length: 12 }),
            ("", Weakness::TooShort { length: 0 }),
            ("my-own-token-from-vault", Weakness::TooShort { length: 23 }),
            // 31 characters: one short of the rule.
            (
                "Xk9#mQ2$vL7@pR4!tW8&zB3*nF6^hJ1",
                Weakness::TooShort { length: 31 },
            ),
            (
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                Weakness::FewDistinct { distinct: 1 },
            ),
            (
                "0101010101010101010101010101010101",
                Weakness::FewDistinct { distinct: 2 },
            ),
            (
                "Welcome2026!Welcome2026!Welcome2026!",
                Weakness::Repeated { period: 12 },
            ),
            (
                "Welcome2026!Welcome2026!Welcome2026!Welc",
                Weakness::Repeated { period: 12 },
            ),
            ("abcdefghijklmnopqrstuvwxyz0123456789", Weakness::Sequential),
            ("zyxwvutsrqponmlkjihgfedcba9876543210", Weakness::Sequential),
            ("aabbccddeeffgghhiijjkkllmmnnooppqq", Weakness::Sequential),
        ];
        for (secret, expected) in cases {
            assert_eq!(weakness(secret), Some(expected), "{secret:?}");
        }
        // Length counts characters, not bytes.
        assert_eq!(
            weakness(&"é".repeat(20)),
            Some(Weakness::TooShort { length: 20 })
        );
    }

    #[test]
    fn messages_say_what_is_wrong_and_never_show_the_secret() {
        let secret = "Welcome2026!Welcome2026!Welcome2026!";
        let message = weakness(secret).unwrap().to_string();
        assert_eq!(message, "it is one piece repeated");
        assert!(!message.contains("Welcome") && !message.contains("12"));
        // The rule, never the secret's length.
        assert_eq!(
            weakness("short").unwrap().to_string(),
            "it is shorter than 32 characters"
        );
        assert_eq!(
            weakness("abababababababababababababababababab")
                .unwrap()
                .to_string(),
            "it has fewer than 8 different characters"
        );
    }

    #[test]
    fn strong_secrets_pass() {
        for secret in [
            // openssl rand -base64 32
            "q9VJ0m3Wk2mIuX0lqY3xE8cZ1bJtR4nA6sP7dF5gH2k=",
            // openssl rand -hex 32
            "3f7a9c2e5b8d1f4a6c0e9b3d7f2a5c8e1b4d6f9a2c5e8b0d3f6a9c1e4b7d0f2a",
            // a UUID pair, a generated token, a long passphrase
            "c3e1f0a2-7b54-4d2e-9f1a-8e6b3c2d1a0f",
            "Zm9vYmFyLWJhei1xdXV4LTAxMjM0NTY3ODlhYmNkZWY",
            "correct horse battery staple, twice removed",
        ] {
            assert_eq!(weakness(secret), None, "{secret:?}");
        }
    }

    /// Random secrets of the kinds the docs suggest pass (a deterministic generator, so the test
    /// never flakes): 20,000 each of 32 hex digits, 64 hex digits and 43 base64url characters.
    #[test]
    fn random_secrets_of_the_suggested_kinds_pass() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let hex = b"0123456789abcdef";
        let base64url = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for (alphabet, length) in [(&hex[..], 32), (&hex[..], 64), (&base64url[..], 43)] {
            for _ in 0..20_000 {
                let secret: String = (0..length)
                    .map(|_| alphabet[(next() >> 33) as usize % alphabet.len()] as char)
                    .collect();
                assert_eq!(weakness(&secret), None, "{secret:?}");
            }
        }
    }
}
