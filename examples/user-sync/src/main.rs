//! An application's side of kube-scim: watch the ScimUsers of one directory and turn every change
//! into an account action. It prints one JSON line per action; a real application would create,
//! update, lock or delete accounts there instead.
//!
//! `user-sync [--state <file>] <namespace> <directory>` (Kubernetes access from KUBECONFIG or the
//! pod's account; it needs only get/list/watch on scimusers). The state file (also
//! `USER_SYNC_STATE`) holds the accounts the application has acted on, so a restart re-provisions
//! nobody and deprovisions users deleted while it was down; without it the state lives in memory.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use kube_scim_crds::{ScimUser, labels};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// What the application remembers of an account, to tell creation, change, deactivation and
/// deletion apart (also of a user it will never see again).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Account {
    user_name: String,
    external_id: Option<String>,
    email: Option<String>,
    active: bool,
    groups: BTreeSet<String>,
}

fn account_of(user: &ScimUser) -> Account {
    let status = user.status.as_ref();
    Account {
        user_name: status.map(|s| s.user_name.clone()).unwrap_or_default(),
        external_id: status.and_then(|s| s.external_id.clone()),
        email: status.and_then(|s| {
            s.emails
                .iter()
                .find(|e| e.kind.as_deref() == Some("work"))
                .and_then(|e| e.value.clone())
        }),
        active: status.is_some_and(|s| s.active),
        // Group membership is a label per group on the member: member.kubescim.io/<group-id>.
        groups: user
            .labels()
            .keys()
            .filter_map(|k| k.strip_prefix(labels::MEMBER_OF_PREFIX))
            .map(str::to_string)
            .collect(),
    }
}

/// The accounts acted on, by ScimUser name (the SCIM id), optionally kept in a file.
struct Accounts {
    known: BTreeMap<String, Account>,
    file: Option<PathBuf>,
    /// Names seen since the watcher's `Init`, while it re-lists; `None` outside a re-list.
    relisted: Option<HashSet<String>>,
}

impl Accounts {
    fn load(file: Option<PathBuf>) -> anyhow::Result<Self> {
        let known = match &file {
            Some(path) if path.exists() => {
                let text = std::fs::read(path).with_context(|| format!("reading {path:?}"))?;
                serde_json::from_slice(&text).with_context(|| format!("parsing {path:?}"))?
            }
            _ => BTreeMap::new(),
        };
        Ok(Accounts {
            known,
            file,
            relisted: None,
        })
    }

    /// Writes the state atomically: a crash leaves the old file or the new one, never half of
    /// one. An action taken just before a crash is taken again after it, so actions must be
    /// idempotent (they are keyed by the SCIM id).
    fn save(&self) -> anyhow::Result<()> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let tmp = path.with_extension("tmp");
        let mut out = std::fs::File::create(&tmp).with_context(|| format!("writing {tmp:?}"))?;
        out.write_all(&serde_json::to_vec_pretty(&self.known)?)?;
        out.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming {tmp:?} to {path:?}"))?;
        Ok(())
    }

    fn act(&mut self, action: &str, id: &str, account: Option<Account>) -> anyhow::Result<()> {
        let shown = account.as_ref().or(self.known.get(id));
        let line = json!({
            "action": action,
            "id": id,
            "userName": shown.map(|a| &a.user_name),
            "externalId": shown.and_then(|a| a.external_id.as_ref()),
            "email": shown.and_then(|a| a.email.as_ref()),
            "groups": shown.map(|a| &a.groups),
        });
        println!("{line}");
        match account {
            Some(account) => self.known.insert(id.to_string(), account),
            None => self.known.remove(id),
        };
        self.save()
    }

    fn apply(&mut self, user: &ScimUser) -> anyhow::Result<()> {
        let id = user.name_any();
        if let Some(seen) = &mut self.relisted {
            seen.insert(id.clone());
        }
        let account = account_of(user);
        let action = match self.known.get(&id) {
            None if account.active => "provision",
            None => "provision-disabled",
            Some(previous) if previous == &account => return Ok(()),
            Some(previous) if previous.active && !account.active => "deprovision",
            Some(previous) if !previous.active && account.active => "reactivate",
            Some(_) => "update",
        };
        self.act(action, &id, Some(account))
    }

    fn delete(&mut self, id: &str) -> anyhow::Result<()> {
        if self.known.contains_key(id) {
            self.act("delete", id, None)?;
        }
        Ok(())
    }

    /// A re-list is complete: an account whose user was not listed was deleted while the watch
    /// was down (or the application was), and no `Delete` event will ever say so.
    fn relist_done(&mut self) -> anyhow::Result<()> {
        let seen = self.relisted.take().unwrap_or_default();
        let gone: Vec<String> = self
            .known
            .keys()
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            self.delete(&id)?;
        }
        Ok(())
    }
}

fn parse_args() -> anyhow::Result<(Option<PathBuf>, String, String)> {
    let mut state = std::env::var_os("USER_SYNC_STATE").map(PathBuf::from);
    let mut positional = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--state" => state = Some(args.next().context("--state needs a file")?.into()),
            _ => positional.push(arg),
        }
    }
    let [namespace, directory] = <[String; 2]>::try_from(positional).map_err(|_| {
        anyhow::anyhow!("usage: user-sync [--state <file>] <namespace> <directory>")
    })?;
    Ok((state, namespace, directory))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (state, namespace, directory) = parse_args()?;
    let mut accounts = Accounts::load(state)?;
    let users: Api<ScimUser> = Api::namespaced(Client::try_default().await?, &namespace);
    // Select the directory's users by label; the apiserver filters, the app sees only its users.
    let config = watcher::Config::default().labels(&format!("{}={directory}", labels::DIRECTORY));
    // The watcher lists first (`Init`, `InitApply` per user, `InitDone`) and lists again whenever
    // the watch cannot resume; each list is compared with the accounts known. It reports every
    // dropped watch, 410 Gone or unreachable apiserver as an error and recovers on the next
    // poll: the backoff spaces those polls, and an error is logged, never a reason to exit.
    let mut stream = std::pin::pin!(watcher::watcher(users, config).default_backoff());
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                eprintln!("user-sync: watch error, retrying: {e}");
                continue;
            }
        };
        match event {
            Event::Init => accounts.relisted = Some(HashSet::new()),
            Event::InitApply(user) | Event::Apply(user) => accounts.apply(&user)?,
            Event::Delete(user) => accounts.delete(&user.name_any())?,
            Event::InitDone => {
                accounts.relist_done()?;
                eprintln!("user-sync: list done, watching");
            }
        }
    }
    Ok(())
}
