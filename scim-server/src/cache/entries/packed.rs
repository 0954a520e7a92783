//! The cached form of a resource: its compact JSON text with the attribute names and values
//! that nearly every user repeats replaced by one byte each.
//!
//! serde_json escapes every control character inside strings, so the bytes 0x01..=0x1F never
//! occur in its output and can stand for dictionary words: decoding is a plain substitution and
//! gives back exactly the text that was encoded, whatever the values hold. Keys, the enterprise
//! URN and the common `type` values are most of a typical Entra user's text; the rest is data.

/// Words replaced by the byte `index + 1`; each starts with a quote, and where two could match
/// at one place the first listed wins. At most 31 words.
const WORDS: [&str; 31] = [
    "\"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User\":{",
    "\"phoneNumbers\":[{",
    "\"employeeNumber\":",
    "\"preferredLanguage\":",
    "\"displayName\":",
    "\"externalId\":",
    "\"familyName\":",
    "\"department\":",
    "\"givenName\":",
    "\"userName\":",
    "\"emails\":[{",
    "\"active\":true",
    "\"active\":false",
    "\"primary\":true",
    "\"type\":\"work\"",
    "\"type\":\"mobile\"",
    "\"title\":",
    "\"name\":{",
    "\"value\":",
    "\"formatted\":",
    "\"addresses\":[{",
    "\"streetAddress\":",
    "\"postalCode\":",
    "\"locality\":",
    "\"country\":",
    "\"region\":",
    "\"manager\":{",
    "\"costCenter\":",
    "\"division\":",
    "\"organization\":",
    "\"nickName\":",
];

/// Replaces the dictionary words of serde_json `text`, in one pass: every word starts with a
/// quote, so only the (few dozen) quotes of a resource are tried against the words.
pub fn encode(text: &str) -> Box<[u8]> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'"'
            && let Some(i) = WORDS
                .iter()
                .position(|w| bytes[at..].starts_with(w.as_bytes()))
        {
            out.push(i as u8 + 1);
            at += WORDS[i].len();
            continue;
        }
        out.push(bytes[at]);
        at += 1;
    }
    out.into_boxed_slice()
}

/// The text [`encode`] was given.
pub fn decode(packed: &[u8]) -> String {
    let mut out = String::with_capacity(packed.len() * 2);
    let mut run = 0;
    for (at, &b) in packed.iter().enumerate() {
        if (1..=31).contains(&b) {
            out.push_str(text_of(&packed[run..at]));
            out.push_str(WORDS[usize::from(b - 1)]);
            run = at + 1;
        }
    }
    out.push_str(text_of(&packed[run..]));
    out
}

/// A run between codes: UTF-8, as codes only replace whole ASCII words of valid text.
fn text_of(run: &[u8]) -> &str {
    std::str::from_utf8(run).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_gives_back_the_text_whatever_the_values_hold() {
        let v = serde_json::json!({
            "userName": "a@b", "active": true, "displayName": "\"userName\":\u{1} é \u{1f}",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "x"},
            "emails": [{"type": "work", "value": "\"type\":\"work\"", "primary": true}],
            "title": "", "nickName": "日本"
        });
        let text = serde_json::to_string(&v).unwrap();
        let packed = encode(&text);
        assert!(
            packed.len() < text.len() / 2,
            "{} of {}",
            packed.len(),
            text.len()
        );
        assert_eq!(decode(&packed), text);
        assert_eq!(decode(&encode("{}")), "{}");
        assert_eq!(decode(&encode("")), "");
    }

    #[test]
    fn words_are_distinct_and_free_of_code_bytes() {
        let set: std::collections::HashSet<_> = WORDS.iter().collect();
        assert_eq!(set.len(), WORDS.len());
        assert!(WORDS.iter().all(|w| w.bytes().all(|b| b >= 0x20)));
        assert!(WORDS.iter().all(|w| w.starts_with('"')));
    }
}
