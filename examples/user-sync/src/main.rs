//! An application's side of kube-scim: watch the ScimUsers of one directory and turn every change
//! into an account action. It prints one JSON line per action; a real application would create,
//! update, lock or delete accounts there instead.
//!
//! `user-sync <namespace> <directory>` (Kubernetes access from KUBECONFIG or the pod's account;
//! it needs only get/list/watch on scimusers).

use std::collections::{BTreeSet, HashMap};

use futures::TryStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use kube_scim_crds::{ScimUser, labels};
use serde_json::json;

/// What the application remembers of an account, to tell creation, change and deactivation apart.
#[derive(PartialEq)]
struct Account {
    active: bool,
    groups: BTreeSet<String>,
}

fn account_of(user: &ScimUser) -> Account {
    Account {
        active: user.status.as_ref().is_some_and(|s| s.active),
        // Group membership is a label per group on the member: member.kubescim.io/<group-id>.
        groups: user
            .labels()
            .keys()
            .filter_map(|k| k.strip_prefix(labels::MEMBER_OF_PREFIX))
            .map(str::to_string)
            .collect(),
    }
}

fn emit(action: &str, user: &ScimUser, account: Option<&Account>) {
    let status = user.status.as_ref();
    let line = json!({
        "action": action,
        "id": user.name_any(),
        "userName": status.map(|s| s.user_name.as_str()),
        "externalId": status.and_then(|s| s.external_id.as_deref()),
        "email": status.and_then(|s| s.emails.iter().find(|e| e.kind.as_deref() == Some("work")).and_then(|e| e.value.as_deref())),
        "groups": account.map(|a| a.groups.iter().collect::<Vec<_>>()),
    });
    println!("{line}");
}

fn reconcile(known: &mut HashMap<String, Account>, user: &ScimUser) {
    let account = account_of(user);
    let action = match known.get(&user.name_any()) {
        None if account.active => "provision",
        None => "provision-disabled",
        Some(previous) if previous == &account => return,
        Some(previous) if previous.active && !account.active => "deprovision",
        Some(previous) if !previous.active && account.active => "reactivate",
        Some(_) => "update",
    };
    emit(action, user, Some(&account));
    known.insert(user.name_any(), account);
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(namespace), Some(directory)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: user-sync <namespace> <directory>");
    };
    let users: Api<ScimUser> = Api::namespaced(Client::try_default().await?, &namespace);
    // Select the directory's users by label; the apiserver filters, the app sees only its users.
    let config = watcher::Config::default().labels(&format!("{}={directory}", labels::DIRECTORY));
    let mut known = HashMap::new();
    let mut stream = std::pin::pin!(watcher::watcher(users, config));
    while let Some(event) = stream.try_next().await? {
        match event {
            Event::Apply(user) | Event::InitApply(user) => reconcile(&mut known, &user),
            Event::Delete(user) => {
                known.remove(&user.name_any());
                emit("delete", &user, None);
            }
            Event::Init => {}
            Event::InitDone => eprintln!("user-sync: initial list done, watching"),
        }
    }
    Ok(())
}
