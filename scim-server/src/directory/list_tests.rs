//! The directory service, lists: indexes and paging; against the in-memory store.

use super::fixtures::*;

#[tokio::test]
async fn lists_use_the_indexes_and_page() {
    let s = service();
    for n in ["a", "b", "c"] {
        user(&s, n).await;
    }
    let q = ListQuery::from_query_pairs([("filter", r#"userName eq "B""#)]).unwrap();
    let v = s.list(DIR, &[ResourceKind::User], &q, &at()).unwrap();
    assert_eq!(v["totalResults"], 1);
    assert_eq!(v["Resources"][0]["userName"], "b");
    let q = ListQuery::from_query_pairs([("startIndex", "2"), ("count", "1")]).unwrap();
    let v = s.list(DIR, &[ResourceKind::User], &q, &at()).unwrap();
    assert_eq!(
        (v["totalResults"].as_u64(), v["itemsPerPage"].as_u64()),
        (Some(3), Some(1))
    );
}
