//! The shortest correct consumer, for an application whose actions are idempotent and keyed by
//! the SCIM id: it keeps no state. Every user listed or changed is brought to its current state
//! (`ensure`; a re-list repeats harmless actions), and every `SWEEP_SECONDS` (default 60) the
//! reflector's store, the directory's complete user list also after a re-list, names the only
//! accounts to keep: deletions are found there, including those made while the watch was down,
//! which no event reports. `user-sync-stateless <namespace> <directory>`.

use std::time::Duration;

use futures::StreamExt;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, ResourceExt};
use kube_scim_crds::{ScimUser, labels};
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [namespace, directory] = <[String; 2]>::try_from(args)
        .map_err(|_| anyhow::anyhow!("usage: user-sync-stateless <namespace> <directory>"))?;
    let sweep: u64 = std::env::var("SWEEP_SECONDS").map_or(Ok(60), |s| s.parse())?;
    let users: Api<ScimUser> = Api::namespaced(Client::try_default().await?, &namespace);
    let config = watcher::Config::default().labels(&format!("{}={directory}", labels::DIRECTORY));
    let (store, writer) = reflector::store();
    let changes = watcher(users, config)
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    tokio::spawn(changes.for_each(|change| async move {
        match change {
            // Idempotent, keyed by the SCIM id: a re-list repeats it harmlessly.
            Ok(user) => {
                let status = user.status.as_ref();
                let line = json!({
                    "action": "ensure",
                    "id": user.name_any(),
                    "userName": status.map(|s| &s.user_name),
                    "active": status.is_some_and(|s| s.active),
                });
                println!("{line}");
            }
            // A dropped watch, 410 Gone, an unreachable apiserver: it recovers after the backoff.
            Err(e) => eprintln!("user-sync-stateless: watch error, retrying: {e}"),
        }
    }));
    // Before its first complete list the store is empty, which would mean "keep nothing".
    store.wait_until_ready().await?;
    let mut sweeps = tokio::time::interval(Duration::from_secs(sweep));
    loop {
        sweeps.tick().await;
        let mut keep: Vec<String> = store.state().iter().map(|u| u.name_any()).collect();
        keep.sort();
        println!("{}", json!({"action": "keep-only", "ids": keep}));
    }
}
