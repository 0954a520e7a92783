//! Hot paths of an Entra provisioning cycle: the lookup filter, a user PATCH, serializing a user.

#[path = "../benches/fixture/mod.rs"]
mod fixture;

use fixture::{ENTRA_FILTER, entra_user, entra_user_patch};
use scim_protocol::{Filter, PatchRequest};
use std::hint::black_box;

fn main() {
    let which = std::env::args().nth(1).unwrap();
    let n: u32 = std::env::args().nth(2).unwrap().parse().unwrap();
    let user = entra_user();
    let filter = ENTRA_FILTER;
    let body = entra_user_patch();
    for _ in 0..n {
        match which.as_str() {
            "filter" => {
                black_box(Filter::parse(black_box(filter)).unwrap());
            }
            "patch" => {
                black_box(
                    PatchRequest::parse(black_box(&body))
                        .unwrap()
                        .apply(black_box(&user))
                        .unwrap(),
                );
            }
            "ser" => {
                black_box(black_box(&user).to_json_string());
            }
            _ => {}
        }
    }
}
