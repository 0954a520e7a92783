//! Filter tests: every filter example of RFC 7644 §3.4.2.2, the filters Entra sends, and the
//! error details for bad input.

use scim_protocol::schema::ResourceKind;
use scim_protocol::{Filter, IndexHint, Resource, ScimError, validate_create};
use serde_json::json;

fn bjensen() -> Resource {
    let mut r = validate_create(
        ResourceKind::User,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "userName": "bjensen",
            "externalId": "bjensen-ext",
            "name": {"familyName": "O'Malley", "givenName": "Barbara"},
            "title": "Tour Guide",
            "userType": "Employee",
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "ims": [{"value": "someaimhandle", "type": "aim"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": "701984", "department": "Tour Operations"
            }
        }),
    )
    .unwrap();
    r.set_id("2819c223-7f76-453a-919d-413861904646");
    r.set_meta(&scim_protocol::Meta {
        created: "2010-01-23T04:56:22Z".into(),
        last_modified: "2011-05-13T04:42:34Z".into(),
        version: "3694e05e9dff591".into(),
        location: "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646".into(),
    });
    r
}

#[test]
fn rfc7644_filter_examples() {
    let r = bjensen();
    // (filter, expected match against bjensen)
    let table: &[(&str, bool)] = &[
        (r#"userName eq "bjensen""#, true),
        (r#"userName eq "BJensen""#, true), // caseExact false
        (r#"name.familyName co "O'Malley""#, true),
        (r#"userName sw "J""#, false),
        (r#"userName sw "b""#, true),
        (
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "B""#,
            true,
        ),
        (r#"title pr"#, true),
        (r#"nickName pr"#, false),
        (r#"meta.lastModified gt "2011-05-13T04:42:34Z""#, false),
        (r#"meta.lastModified ge "2011-05-13T04:42:34Z""#, true),
        (r#"meta.lastModified lt "2011-05-13T04:42:34Z""#, false),
        (r#"meta.lastModified le "2011-05-13T04:42:34Z""#, true),
        (r#"meta.lastModified gt "2011-05-13T06:42:34+03:00""#, true), // instants, not strings
        (r#"title pr and userType eq "Employee""#, true),
        (r#"title pr or userType eq "Intern""#, true),
        (
            r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
            true,
        ),
        (
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
            true,
        ),
        (
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            false,
        ),
        (
            r#"userType eq "Employee" and (emails.type eq "work")"#,
            true,
        ),
        (
            r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
            true,
        ),
        (
            r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
            true,
        ),
        (
            r#"emails[type eq "home" and value co "@example.com"]"#,
            false,
        ),
        (r#"externalId eq "BJENSEN-EXT""#, false), // externalId is caseExact
        (r#"externalId eq "bjensen-ext""#, true),
        (
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#,
            true,
        ),
        (
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq 701984"#,
            true,
        ),
        (r#"active eq true"#, true),
        (r#"active eq false"#, false),
        (r#"active ne false"#, true),
        (r#"nickName eq null"#, true),
        (r#"title ne "x""#, true),
        (
            r#"emails[type eq "work"].value eq "bjensen@example.com""#,
            true,
        ),
        (
            r#"emails[type eq "home"].value eq "bjensen@example.com""#,
            false,
        ),
        (
            r#"EMAILS[TYPE EQ "work"].VALUE EQ "BJENSEN@example.com""#,
            true,
        ),
        (r#"id eq "2819c223-7f76-453a-919d-413861904646""#, true),
        (r#"not (userName eq "bjensen")"#, false),
        (r#"((userName eq "x")) or ((title ew "guide"))"#, true),
    ];
    for (f, want) in table {
        let parsed = Filter::parse(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(parsed.matches(&r), *want, "{f}");
        // canonical print parses back to the same tree
        let printed = parsed.to_string();
        assert_eq!(Filter::parse(&printed).unwrap(), parsed, "{f} -> {printed}");
    }
}

#[test]
fn entra_filters_and_index_hints() {
    let r = bjensen();
    let table: &[(&str, bool, Vec<IndexHint>)] = &[
        (
            r#"userName eq "bjensen""#,
            true,
            vec![IndexHint::UserName("bjensen".into())],
        ),
        // Microsoft's docs show an unquoted value.
        (
            "externalId eq bjensen-ext",
            true,
            vec![IndexHint::ExternalId("bjensen-ext".into())],
        ),
        (
            r#"userName eq "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee""#,
            false,
            vec![IndexHint::UserName(
                "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee".into(),
            )],
        ),
        (
            r#"externalId eq "bjensen-ext" and userName eq "bjensen""#,
            true,
            vec![
                IndexHint::ExternalId("bjensen-ext".into()),
                IndexHint::UserName("bjensen".into()),
            ],
        ),
        (
            r#"emails[type eq "work"].value eq "bjensen@example.com""#,
            true,
            vec![IndexHint::WorkEmail("bjensen@example.com".into())],
        ),
        (
            r#"emails[type eq "work" and value eq "bjensen@example.com"]"#,
            true,
            vec![IndexHint::WorkEmail("bjensen@example.com".into())],
        ),
        (r#"userName eq "a" or userName eq "b""#, false, vec![]),
    ];
    for (f, want, hints) in table {
        let parsed = Filter::parse(f).unwrap();
        assert_eq!(parsed.matches(&r), *want, "{f}");
        assert_eq!(&parsed.index_hints(), hints, "{f}");
    }
    let g = Filter::parse(r#"displayName eq "Group1""#).unwrap();
    assert_eq!(
        g.index_hints(),
        vec![IndexHint::DisplayName("Group1".into())]
    );
    let m = Filter::parse(r#"members[value eq "abc"]"#).unwrap();
    assert_eq!(m.index_hints(), vec![IndexHint::MemberValue("abc".into())]);
}

#[test]
fn group_filters() {
    let g = validate_create(
        ResourceKind::Group,
        &json!({"displayName": "Tour Guides", "members": [{"value": "u1", "type": "User"}, {"value": "g2", "type": "Group"}]}),
    )
    .unwrap();
    for (f, want) in [
        (r#"displayName eq "tour guides""#, true),
        (r#"members[value eq "u1"]"#, true),
        (r#"members[value eq "U1"]"#, false), // member ids are case-exact
        (r#"members.value eq "g2""#, true),
        (r#"members[type eq "Group" and value eq "g2"]"#, true),
        (r#"members pr"#, true),
    ] {
        assert_eq!(Filter::parse(f).unwrap().matches(&g), want, "{f}");
    }
}

#[test]
fn filter_errors_are_invalid_filter_with_position() {
    let table: &[(&str, &str)] = &[
        ("", "empty"),
        ("userName", "position 8: expected an operator"),
        ("userName xx \"a\"", "position 9: expected an operator"),
        ("userName eq", "position 11: expected a value"),
        ("userName eq \"a", "unterminated string"),
        ("(userName eq \"a\"", "expected ')'"),
        ("userName eq \"a\")", "expected 'and', 'or' or the end"),
        ("emails[type eq \"work\"", "expected ']'"),
        ("emails[type eq \"work\"] eq \"x\"", "expected 'and', 'or'"),
        ("emails[ims[type eq \"x\"]]", "cannot be nested"),
        ("1abc eq \"x\"", "expected an attribute name"),
        ("a.b.c eq \"x\"", "sub-attribute"),
        ("foo:bar eq \"x\"", "schema URN"),
        ("userName eq \"a\" and", "expected an attribute name"),
    ];
    for (f, needle) in table {
        let e = Filter::parse(f).unwrap_err();
        assert_eq!(e.scim_type(), Some("invalidFilter"), "{f}");
        assert_eq!(e.status(), 400);
        assert!(e.detail().contains(needle), "{f}: {}", e.detail());
    }
}

#[test]
fn filter_limits() {
    let deep = format!(
        "{}userName eq \"a\"{}",
        "(".repeat(10_000),
        ")".repeat(10_000)
    );
    assert!(matches!(
        Filter::parse(&deep),
        Err(ScimError::InvalidFilter(_))
    ));
    let deep_not = "not (".repeat(100) + "a pr" + &")".repeat(100);
    assert!(
        Filter::parse(&deep_not)
            .unwrap_err()
            .detail()
            .contains("nests deeper")
    );
    let long = vec!["userName eq \"a\""; 2000].join(" and ");
    assert!(
        Filter::parse(&long)
            .unwrap_err()
            .detail()
            .contains("at most")
    );
    // A long flat chain within the limit is fine and does not nest.
    let ok = vec!["a eq 1"; 500].join(" or ");
    assert!(matches!(Filter::parse(&ok).unwrap(), Filter::Or(v) if v.len() == 500));
}

#[test]
fn filter_validate_rejects_bad_operators() {
    for f in [
        "active gt true",
        "active co \"t\"",
        "x509Certificates.value gt \"a\"",
    ] {
        let e = Filter::parse(f)
            .unwrap()
            .validate(ResourceKind::User)
            .unwrap_err();
        assert_eq!(e.scim_type(), Some("invalidFilter"), "{f}");
    }
    Filter::parse("userName gt \"a\"")
        .unwrap()
        .validate(ResourceKind::User)
        .unwrap();
}

#[test]
fn custom_extension_filter() {
    let r = validate_create(
        ResourceKind::User,
        &json!({"userName": "x", "urn:ietf:params:scim:schemas:extension:CustomExt:2.0:User:costCode": "AB-1"}),
    )
    .unwrap();
    let f = Filter::parse(
        r#"urn:ietf:params:scim:schemas:extension:CustomExt:2.0:User:costCode eq "ab-1""#,
    )
    .unwrap();
    assert!(f.matches(&r));
}
