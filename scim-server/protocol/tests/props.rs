//! Property tests: filter print/parse round-trip; the parsers never panic; PATCH never panics
//! and never yields a resource that fails validation.

use proptest::prelude::*;
use scim_protocol::schema::ResourceKind;
use scim_protocol::{
    AttrPath, CompareOp, Filter, Literal, PatchRequest, Resource, validate_create,
};
use serde_json::{Value, json};

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z][a-zA-Z0-9_-]{0,8}",
        Just("$ref".to_string()),
        Just("userName".to_string()),
        Just("emails".to_string()),
    ]
}

fn urn() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(None),
        1 => Just(Some("urn:ietf:params:scim:schemas:core:2.0:User".to_string())),
        1 => Just(Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_string())),
        1 => Just(Some("urn:ietf:params:scim:schemas:extension:Custom_1:2.0:User".to_string())),
    ]
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        any::<String>().prop_map(Literal::String),
        any::<i64>().prop_map(|n| Literal::Number(n.into())),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| Literal::Number(serde_json::Number::from_f64(f).unwrap())),
        any::<bool>().prop_map(Literal::Bool),
        Just(Literal::Null),
    ]
}

fn op() -> impl Strategy<Value = CompareOp> {
    prop_oneof![
        Just(CompareOp::Eq),
        Just(CompareOp::Ne),
        Just(CompareOp::Co),
        Just(CompareOp::Sw),
        Just(CompareOp::Ew),
        Just(CompareOp::Gt),
        Just(CompareOp::Ge),
        Just(CompareOp::Lt),
        Just(CompareOp::Le),
    ]
}

fn plain_path() -> impl Strategy<Value = AttrPath> {
    (urn(), name(), proptest::option::of(name())).prop_map(|(schema, attr, sub)| AttrPath {
        schema,
        attr,
        filter: None,
        sub_attr: sub,
    })
}

/// Filters without value paths (what may appear inside brackets).
fn simple_filter() -> impl Strategy<Value = Filter> {
    let leaf = prop_oneof![
        (plain_path(), op(), literal()).prop_map(|(path, op, value)| Filter::Compare {
            path,
            op,
            value
        }),
        plain_path().prop_map(Filter::Present),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Filter::And),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Filter::Or),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
}

fn filter() -> impl Strategy<Value = Filter> {
    let value_path = (urn(), name(), simple_filter()).prop_map(|(schema, attr, f)| {
        Filter::ValuePath(AttrPath {
            schema,
            attr,
            filter: Some(Box::new(f)),
            sub_attr: None,
        })
    });
    let value_path_cmp =
        (name(), simple_filter(), name(), op(), literal()).prop_map(|(attr, f, sub, op, value)| {
            Filter::Compare {
                path: AttrPath {
                    schema: None,
                    attr,
                    filter: Some(Box::new(f)),
                    sub_attr: Some(sub),
                },
                op,
                value,
            }
        });
    let leaf = prop_oneof![4 => simple_filter(), 1 => value_path, 1 => value_path_cmp];
    leaf.prop_recursive(3, 32, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Filter::And),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Filter::Or),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn filter_print_parse_round_trip(f in filter()) {
        let printed = f.to_string();
        prop_assume!(printed.len() <= scim_protocol::filter::MAX_FILTER_LEN);
        let parsed = Filter::parse(&printed);
        prop_assert!(parsed.is_ok(), "{printed}: {:?}", parsed.err());
        prop_assert_eq!(parsed.unwrap(), f, "{}", printed);
    }

    /// parse(print(parse(x))) == parse(x) for every accepted x, within the limits.
    #[test]
    fn accepted_filters_and_paths_print_and_reparse(s in token_soup(), rep in 1usize..400) {
        let max = scim_protocol::filter::MAX_FILTER_LEN;
        let factor = scim_protocol::filter::MAX_PRINT_EXPANSION;
        // Also long inputs: the same soup repeated as an `or` chain.
        for x in [s.clone(), vec![s.as_str(); rep].join(" or ")] {
            if let Ok(f) = Filter::parse(&x) {
                let printed = f.to_string();
                prop_assert!(printed.len() <= max && printed.len() <= factor * x.len(), "{x:?}");
                prop_assert_eq!(Filter::parse(&printed).ok(), Some(f), "{:?}", x);
            }
            if let Ok(p) = scim_protocol::filter::parse_path(&x) {
                let printed = p.to_string();
                prop_assert!(printed.len() <= max && printed.len() <= factor * x.len(), "{x:?}");
                prop_assert_eq!(scim_protocol::filter::parse_path(&printed).ok(), Some(p), "{:?}", x);
            }
        }
    }

    #[test]
    fn filter_parse_never_panics(s in "\\PC{0,80}") {
        let _ = Filter::parse(&s);
        let _ = scim_protocol::filter::parse_path(&s);
    }

    #[test]
    fn filter_parse_never_panics_on_filterish(s in "[a-z\\[\\]()\" .:]{0,60}( eq | and | or | pr|not \\()*[a-z\\[\\]()\" ]{0,30}") {
        if let Ok(f) = Filter::parse(&s) {
            let _ = f.matches(&base_user());
            let again = Filter::parse(&f.to_string()).unwrap();
            prop_assert_eq!(again, f);
        }
    }
}

/// Filter-like text: keywords, names, values of every kind (quoted with escapes, unquoted,
/// numbers that print longer, backslashes), brackets, and raw control characters.
fn token_soup() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "a",
        "userName",
        "emails",
        "type",
        ".value",
        "urn:x:y:a",
        "eq",
        "EQ",
        "co",
        "or",
        "and",
        "AND",
        "not",
        "pr",
        "(",
        ")",
        "[",
        "]",
        "].value",
        " ",
        " ",
        "\t",
        "\n",
        "\"x\"",
        "\"\\u0000\\\\\"",
        "1e15",
        "-1e15",
        "1e16",
        "42",
        "true",
        "null",
        "\\",
        "x\\y",
        "\u{0}",
        "\u{19}",
        "\u{7f}",
        "é",
        "\u{2028}",
    ]);
    let soup = proptest::collection::vec(token, 0..48).prop_map(|v| v.concat());
    // Mostly well-formed clauses, so that many inputs are accepted.
    let value = prop::sample::select(vec![
        "\"x\"",
        "\"\\u0000\\\\\"",
        "1e15",
        "-1e15",
        "42",
        "true",
        "null",
        "\\",
        "x\\y",
        "jyoung",
        "\u{0}x",
        "a\u{7f}",
        "é",
    ]);
    let clause = (
        prop::sample::select(vec!["a", "userName", "emails.value", "urn:x:y:a"]),
        prop::sample::select(vec![" eq ", " EQ ", " gt ", "\teq\t"]),
        value,
        prop::sample::select(vec![
            " or ",
            " and ",
            " and (",
            ") or ",
            " or not (",
            ")",
            ") and emails[",
            "] or ",
        ]),
    )
        .prop_map(|(a, o, v, c)| format!("{a}{o}{v}{c}"));
    let clauses = proptest::collection::vec(clause, 1..12).prop_map(|v| {
        let s = v.concat();
        // Drop the trailing connector half of the time.
        let t = s.trim_end_matches([' ', '(', ')', '[', ']']);
        let t = t
            .strip_suffix(" or")
            .or_else(|| t.strip_suffix(" and"))
            .unwrap_or(t);
        let t = t.strip_suffix(" or not").unwrap_or(t);
        t.to_string()
    });
    prop_oneof![soup, clauses]
}

fn base_user() -> Resource {
    let mut r = validate_create(
        ResourceKind::User,
        &json!({
            "userName": "bjensen", "active": true,
            "name": {"givenName": "B"},
            "emails": [{"value": "b@x.org", "type": "work", "primary": true}, {"value": "c@x.org", "type": "home"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": {"value": "m"}},
            "urn:ietf:params:scim:schemas:extension:Custom:2.0:User": {"k": "v"}
        }),
    )
    .unwrap();
    r.set_id("1");
    r
}

fn base_group() -> Resource {
    let mut g = validate_create(
        ResourceKind::Group,
        &json!({"displayName": "g", "members": [{"value": "a"}, {"value": "b", "type": "Group"}]}),
    )
    .unwrap();
    g.set_id("2");
    g
}

fn path_pool() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        Just("userName".to_string()),
        Just("active".to_string()),
        Just("displayName".to_string()),
        Just("name".to_string()),
        Just("name.givenName".to_string()),
        Just("emails".to_string()),
        Just("emails.value".to_string()),
        Just("emails[type eq \"work\"].value".to_string()),
        Just("emails[type eq \"work\"]".to_string()),
        Just("emails[value co \"x\"].primary".to_string()),
        Just("phoneNumbers[type eq \"mobile\"].value".to_string()),
        Just("addresses[type eq \"work\"].postalCode".to_string()),
        Just("members".to_string()),
        Just("members[value eq \"a\"]".to_string()),
        Just("members[type eq \"Group\"].display".to_string()),
        Just("roles".to_string()),
        Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_string()),
        Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager".to_string()),
        Just(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager[value eq \"m\"]"
                .to_string()
        ),
        Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department".to_string()),
        Just("urn:ietf:params:scim:schemas:extension:Custom:2.0:User:k".to_string()),
        Just("urn:ietf:params:scim:schemas:extension:Custom:2.0:User:k.sub".to_string()),
        Just("groups".to_string()),
        Just("id".to_string()),
        Just("password".to_string()),
        "[a-zA-Z.\\[\\] \"]{1,12}",
    ])
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        prop_oneof![
            Just("True".to_string()),
            Just("work".to_string()),
            Just("a".to_string()),
            Just("".to_string()),
            "\\PC{0,6}"
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("value".to_string()),
                        Just("type".to_string()),
                        Just("primary".to_string()),
                        Just("givenName".to_string()),
                        Just("emails".to_string()),
                        Just("members".to_string()),
                        Just("name.familyName".to_string()),
                        Just("active".to_string()),
                        Just("userName".to_string()),
                        Just(
                            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"
                                .to_string()
                        ),
                        Just(
                            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
                                .to_string()
                        ),
                        "[a-zA-Z]{1,6}"
                    ],
                    inner
                ),
                0..4
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn patch_op() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("add"), Just("Replace"), Just("remove"), Just("REMOVE")],
        path_pool(),
        proptest::option::of(json_value()),
    )
        .prop_map(|(op, path, value)| {
            let mut o = serde_json::Map::new();
            o.insert("op".into(), json!(op));
            if let Some(p) = path {
                o.insert("path".into(), json!(p));
            }
            if let Some(v) = value {
                o.insert("value".into(), v);
            }
            Value::Object(o)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn patch_never_panics_and_results_validate(ops in proptest::collection::vec(patch_op(), 1..6), is_group in any::<bool>()) {
        let r = if is_group { base_group() } else { base_user() };
        let body = json!({"Operations": ops});
        if let Ok(req) = PatchRequest::parse(&body) {
            match req.apply(&r) {
                Ok(out) => {
                    prop_assert!(out.resource.validate().is_ok(), "{body} -> {:?}: {:?}", out.resource, out.resource.validate());
                    // the output reloads as the same resource
                    let back = Resource::from_stored(r.kind(), &out.resource.to_json()).unwrap();
                    prop_assert_eq!(back.attributes(), out.resource.attributes());
                    if !is_group {
                        prop_assert!(out.membership.is_empty());
                    }
                }
                Err(e) => {
                    prop_assert!(e.status() >= 400 && e.status() < 500, "{e}");
                }
            }
        }
    }
}
