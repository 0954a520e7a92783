//! A group's `members` as a request sent them (the `display` validation drops).

use super::*;

pub(super) fn member_of(v: &Value) -> Option<MemberRef> {
    MemberRef::from_value(v)
}

/// Each member's `display` exactly as a request sent it, by member id: `members` is the value of
/// a `members` attribute (an array of member objects, or one), or a resource body holding one.
/// `display` is read-only (RFC 7643 §2.4), so validation drops it from the resource and from
/// [`MembershipDelta`] members; a server that keeps it for a client expecting that (Okta) reads
/// it here.
pub fn sent_member_displays(members: &Value) -> HashMap<String, String> {
    let list = match members {
        Value::Object(o) if !o.contains_key("value") => o
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("members"))
            .map(|(_, v)| v),
        other => Some(other),
    };
    let items: Vec<&Value> = match list {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v @ Value::Object(_)) => vec![v],
        _ => Vec::new(),
    };
    items
        .into_iter()
        .filter_map(|m| {
            let m = m.as_object()?;
            let field = |name: &str| {
                m.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .and_then(|(_, v)| v.as_str())
            };
            Some((field("value")?.to_string(), field("display")?.to_string()))
        })
        .collect()
}

/// `m` with the `display` the request sent for it, if any.
pub(super) fn with_sent_display(mut m: MemberRef, sent: &HashMap<String, String>) -> MemberRef {
    if let Some(d) = sent.get(&m.value) {
        m.display = Some(d.clone());
    }
    m
}
