//! Hot paths of an Entra provisioning cycle: the lookup filter, a user PATCH, serializing a user.

mod fixture;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use fixture::{ENTRA_FILTER, entra_user, entra_user_patch};
use scim_protocol::{Filter, PatchRequest};

fn benches(c: &mut Criterion) {
    let filter = ENTRA_FILTER;
    c.bench_function("filter_parse_entra_username_eq", |b| {
        b.iter(|| Filter::parse(black_box(filter)).unwrap())
    });
    let user = entra_user();
    let parsed = Filter::parse(filter).unwrap();
    c.bench_function("filter_match_entra_username_eq", |b| {
        b.iter(|| black_box(&parsed).matches(black_box(&user)))
    });

    let body = entra_user_patch();
    c.bench_function("patch_parse_and_apply_entra_user", |b| {
        b.iter(|| {
            PatchRequest::parse(black_box(&body))
                .unwrap()
                .apply(black_box(&user))
                .unwrap()
        })
    });

    c.bench_function("serialize_user_to_string", |b| {
        b.iter(|| black_box(&user).to_json_string())
    });
    c.bench_function("serialize_user_via_value", |b| {
        b.iter(|| serde_json::to_string(&black_box(&user).to_json()).unwrap())
    });
}

criterion_group!(hot, benches);
criterion_main!(hot);
