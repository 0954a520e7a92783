//! The delivery machine's invariants, fed synthetic watch events, checkpoints and outcomes.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::watcher::Event as Watch;
use kube_scim_crds::{
    CONDITION_READY, DirectoryRef, ScimDirectory, ScimDirectorySpec, ScimDirectoryStatus,
    ScimGroup, ScimGroupSpec, ScimGroupStatus, ScimUser, ScimUserSpec, ScimUserStatus, ScimWebhook,
    ScimWebhookSpec, labels,
};

use super::{Action, Batch, Checkpoint, GROUP_WAIT, Machine, Now};
use crate::webhook::outbox::{self, Outbox};
use crate::webhook::sender::Outcome;
use crate::webhook::settings::Settings;

fn settings(max_events: usize, max_backlog: usize) -> Settings {
    Settings {
        url: "https://receiver.example/hook".parse().unwrap(),
        events: kube_scim_crds::EVENT_TYPES
            .iter()
            .map(|s| s.to_string())
            .collect::<HashSet<_>>(),
        max_events,
        max_wait: Duration::from_secs(1),
        retry_for: Duration::from_secs(3600),
        max_backlog,
        timeout: Duration::from_secs(10),
        warn_after: Duration::from_secs(900),
    }
}

fn hook() -> ScimWebhook {
    let mut h = ScimWebhook::new(
        "hook",
        ScimWebhookSpec {
            directory_ref: DirectoryRef { name: "d".into() },
            url: "https://receiver.example/hook".into(),
            ..Default::default()
        },
    );
    h.metadata.namespace = Some("ns".into());
    h.metadata.uid = Some("hook-uid".into());
    h.metadata.generation = Some(1);
    h
}

fn machine(max_events: usize, max_backlog: usize, now: Now) -> Machine {
    Machine::new(
        settings(max_events, max_backlog),
        "ns/d".into(),
        &hook(),
        Outbox::default(),
        now.instant,
    )
}

fn directory(ready: bool) -> ScimDirectory {
    let mut d = ScimDirectory::new("d", ScimDirectorySpec::default());
    d.metadata.uid = Some("dir-uid".into());
    let at = Time("2026-12-01T00:00:00Z".parse().unwrap());
    d.metadata.creation_timestamp = Some(at.clone());
    d.status = Some(ScimDirectoryStatus {
        conditions: vec![Condition {
            type_: CONDITION_READY.into(),
            status: if ready { "True" } else { "False" }.into(),
            reason: "R".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: at,
        }],
        ..Default::default()
    });
    d
}

fn user(name: &str, title: &str, groups: &[&str]) -> ScimUser {
    let mut u = ScimUser::new(
        name,
        ScimUserSpec {
            directory_ref: DirectoryRef { name: "d".into() },
        },
    );
    u.metadata.uid = Some(format!("uid-{name}"));
    u.status = Some(ScimUserStatus {
        id: name.into(),
        user_name: format!("{name}@example.com"),
        active: true,
        title: Some(title.into()),
        ..Default::default()
    });
    let l: BTreeMap<String, String> = groups
        .iter()
        .map(|g| (labels::member_of(g), "true".to_string()))
        .collect();
    u.metadata.labels = Some(l);
    u
}

fn group(name: &str) -> ScimGroup {
    let mut g = ScimGroup::new(
        name,
        ScimGroupSpec {
            directory_ref: DirectoryRef { name: "d".into() },
            ..Default::default()
        },
    );
    g.metadata.uid = Some(format!("uid-{name}"));
    g.status = Some(ScimGroupStatus {
        id: name.into(),
        display_name: format!("Group {name}"),
        ..Default::default()
    });
    g
}

fn at(now: Now, secs: u64) -> Now {
    Now {
        instant: now.instant + Duration::from_secs(secs),
        wall: now.wall + jiff::SignedDuration::from_secs(secs as i64),
    }
}

/// Stores the outbox as the loop would, as if the Secret write succeeded.
fn store(m: &mut Machine) -> Outbox {
    match m.checkpoint() {
        Checkpoint::Write { encoded, pending } => {
            m.stored(pending);
            outbox::decode(&encoded).unwrap()
        }
        other => panic!("expected a write, got {other:?}"),
    }
}

fn names(batch: &Batch) -> Vec<String> {
    batch.events.iter().map(|e| e.event.clone()).collect()
}

/// A machine whose directory is announced, stored and delivered.
fn announced(now: Now) -> Machine {
    let mut m = machine(1, 100, now);
    m.on_directory(Watch::Apply(directory(true)), now);
    store(&mut m);
    assert!(m.due(now));
    let batch = m.start().unwrap();
    assert_eq!(names(&batch), ["dsync.activated"]);
    m.settle(Outcome::Delivered, now, 0.5);
    store(&mut m);
    m.take_actions();
    m
}

#[test]
fn nothing_is_sent_before_it_is_stored() {
    let now = Now::current();
    let mut m = machine(1, 100, now);
    assert!(
        !m.active(),
        "users are not read before the directory is announced"
    );
    m.on_directory(Watch::Apply(directory(true)), now);
    assert_eq!(m.outbox().pending.len(), 1);
    assert!(!m.due(now), "derived but not checkpointed");
    assert!(m.start().is_none());

    // The checkpoint is asked for but its write failed: still nothing may be sent.
    assert!(matches!(m.checkpoint(), Checkpoint::Write { .. }));
    assert!(!m.due(now));

    let stored = store(&mut m);
    assert_eq!(stored.pending.len(), 1);
    assert!(m.due(now));
    assert!(m.active());
}

#[test]
fn events_derived_after_a_checkpoint_wait_for_the_next() {
    let now = Now::current();
    let mut m = announced(now);
    m.on_user(Watch::Apply(user("ada", "Eng", &[])), now);
    store(&mut m);
    m.on_user(Watch::Apply(user("ada", "Mgr", &[])), now);
    assert_eq!(m.outbox().pending.len(), 2);
    assert_eq!(m.checkpointed(), 1);

    let first = m.start().unwrap();
    assert_eq!(names(&first), ["dsync.user.created"]);
    m.settle(Outcome::Delivered, now, 0.5);
    assert!(!m.due(now), "the update is not stored yet");
    store(&mut m);
    assert!(m.due(now));
    assert_eq!(names(&m.start().unwrap()), ["dsync.user.updated"]);
}

#[test]
fn events_are_sent_in_order_one_request_at_a_time() {
    let now = Now::current();
    let mut m = announced(now);
    m.on_group(Watch::Apply(group("g1")), now);
    m.on_user(Watch::Apply(user("ada", "Eng", &["g1"])), now);
    m.on_user(Watch::Apply(user("ada", "Mgr", &["g1"])), now);
    store(&mut m);
    let mut sent = Vec::new();
    for _ in 0..10 {
        if !m.due(now) {
            break;
        }
        let batch = m.start().unwrap();
        assert!(
            m.start().is_none(),
            "a second request while one is under way"
        );
        assert!(!m.due(now));
        sent.extend(names(&batch));
        m.settle(Outcome::Delivered, now, 0.5);
    }
    assert_eq!(
        sent,
        [
            "dsync.group.created",
            "dsync.user.created",
            "dsync.group.user_added",
            "dsync.user.updated"
        ]
    );
    assert!(m.outbox().pending.is_empty());
}

#[test]
fn an_event_leaves_the_outbox_only_when_acknowledged() {
    let now = Now::current();
    let mut m = announced(now);
    m.on_user(Watch::Apply(user("ada", "Eng", &[])), now);
    store(&mut m);
    let batch = m.start().unwrap();
    let id = batch.events[0].id.clone();

    m.settle(
        Outcome::Failed {
            error: "503".into(),
            retry_after: Some(Duration::from_secs(30)),
        },
        now,
        0.5,
    );
    assert_eq!(m.outbox().pending.len(), 1);
    assert!(
        matches!(m.checkpoint(), Checkpoint::Unchanged),
        "a failure changes nothing stored"
    );
    assert!(!m.due(now), "the backoff holds the retry");
    assert!(matches!(
        m.take_actions().as_slice(),
        [Action::Failed { failures: 1, .. }]
    ));
    let status = m.status(&hook(), None, now);
    assert_eq!(status.conditions[0].reason, "ReceiverFailing");
    assert_eq!(status.consecutive_failures, Some(1));

    // The retry carries the same event; its acknowledgement is stored by the next checkpoint.
    let later = at(now, 3600);
    assert!(m.due(later));
    let retry = m.start().unwrap();
    assert_eq!(retry.events[0].id, id);
    m.settle(Outcome::Delivered, later, 0.5);
    assert_eq!(m.take_actions(), [Action::Delivered(1)]);
    let stored = store(&mut m);
    assert!(stored.pending.is_empty());
    assert_eq!(stored.last_delivered.as_deref(), Some(id.as_str()));
    assert_eq!(m.status(&hook(), None, later).conditions[0].status, "True");
}

#[test]
fn a_checkpoint_during_a_request_keeps_the_request_events() {
    let now = Now::current();
    let mut m = announced(now);
    m.on_user(Watch::Apply(user("ada", "Eng", &[])), now);
    store(&mut m);
    let batch = m.start().unwrap();
    m.on_user(Watch::Apply(user("bob", "Eng", &[])), now);
    let stored = store(&mut m);
    assert_eq!(
        stored.pending[0].id, batch.events[0].id,
        "not yet acknowledged"
    );
    m.settle(Outcome::Delivered, now, 0.5);
    assert_eq!(m.checkpointed(), 1);
    let next = m.start().unwrap();
    assert_eq!(next.events[0].resource, "uid-bob");
}

#[test]
fn a_user_waits_for_the_group_it_names() {
    let now = Now::current();
    let mut m = announced(now);
    m.on_user(Watch::Apply(user("ada", "Eng", &["g1"])), now);
    assert!(m.outbox().pending.is_empty(), "g1 not seen yet");
    m.on_group(Watch::Apply(group("g1")), now);
    let pending: Vec<&str> = m
        .outbox()
        .pending
        .iter()
        .map(|e| e.event.as_str())
        .collect();
    assert_eq!(
        pending,
        [
            "dsync.group.created",
            "dsync.user.created",
            "dsync.group.user_added"
        ]
    );
    assert_eq!(m.outbox().pending[2].data["group"]["name"], "Group g1");
}

#[test]
fn a_user_waits_for_a_group_never_seen_only_so_long() {
    let now = Now::current();
    let mut m = announced(now);
    m.on_user(Watch::Apply(user("ada", "Eng", &["gone"])), now);
    m.release_awaiting(at(now, 1));
    assert!(m.outbox().pending.is_empty());
    m.release_awaiting(at(now, GROUP_WAIT.as_secs()));
    assert_eq!(m.outbox().pending.len(), 2);
    assert_eq!(m.outbox().pending[1].data["group"]["id"], "gone");
}

#[test]
fn a_user_deleted_while_waiting_gives_every_state() {
    let now = Now::current();
    let mut m = announced(now);
    m.on_user(Watch::Apply(user("ada", "Eng", &["g1"])), now);
    m.on_user(Watch::Delete(user("ada", "Eng", &["g1"])), now);
    let pending: Vec<&str> = m
        .outbox()
        .pending
        .iter()
        .map(|e| e.event.as_str())
        .collect();
    assert_eq!(
        pending,
        [
            "dsync.user.created",
            "dsync.group.user_added",
            "dsync.user.deleted"
        ]
    );
}

#[test]
fn reading_stops_at_the_backlog_bound() {
    let now = Now::current();
    let mut m = Machine::new(
        settings(1, 2),
        "ns/d".into(),
        &hook(),
        Outbox::default(),
        now.instant,
    );
    m.on_directory(Watch::Apply(directory(true)), now);
    assert!(m.active());
    m.on_user(Watch::Apply(user("ada", "Eng", &[])), now);
    assert!(!m.can_read() && !m.active(), "two pending: full");
    store(&mut m);
    m.start().unwrap();
    m.settle(Outcome::Delivered, now, 0.5);
    assert!(m.active(), "an acknowledgement makes room");
}

#[test]
fn nothing_follows_the_directory_deletion() {
    let now = Now::current();
    let mut m = announced(now);
    m.on_user(Watch::Apply(user("ada", "Eng", &[])), now);
    m.on_directory(Watch::Delete(directory(true)), now);
    assert!(!m.active());
    let pending: Vec<&str> = m
        .outbox()
        .pending
        .iter()
        .map(|e| e.event.as_str())
        .collect();
    assert_eq!(pending, ["dsync.user.created", "dsync.deleted"]);
    let status = m.status(&hook(), None, now);
    assert_eq!(status.conditions[0].reason, "DirectoryNotReady");
}

#[test]
fn a_relist_forgets_what_it_did_not_show() {
    let now = Now::current();
    let mut m = announced(now);
    m.on_user(Watch::Apply(user("ada", "Eng", &[])), now);
    m.on_user(Watch::Apply(user("bob", "Eng", &[])), now);
    m.on_user(Watch::Init, now);
    m.on_user(Watch::InitApply(user("bob", "Eng", &[])), now);
    m.on_user(Watch::InitDone, now);
    let last = m.outbox().pending.back().unwrap();
    assert_eq!(
        (last.event.as_str(), last.resource.as_str()),
        ("dsync.user.deleted", "uid-ada")
    );
    assert_eq!(m.outbox().pending.len(), 3, "bob listed again unchanged");
}

#[test]
fn a_batch_waits_to_fill_then_goes() {
    let now = Now::current();
    let mut m = machine(10, 100, now);
    m.on_directory(Watch::Apply(directory(true)), now);
    store(&mut m);
    assert!(!m.due(now), "one event, a batch of ten, max_wait not over");
    assert!(m.wake_at(now) > now.instant);
    let later = at(now, 2);
    assert!(m.due(later));
    assert!(m.start().unwrap().batched);
}

#[test]
fn events_past_retry_for_are_dropped_and_reported() {
    let now = Now::current();
    let mut m = announced(now);
    m.on_user(Watch::Apply(user("ada", "Eng", &[])), now);
    store(&mut m);
    assert!(!m.due(at(now, 7200)), "the only event expired");
    let actions = m.take_actions();
    assert!(matches!(
        actions.as_slice(),
        [Action::Dropped { count: 1, .. }]
    ));
    let stored = store(&mut m);
    assert_eq!((stored.pending.len(), stored.dropped), (0, 1));
}

#[test]
fn a_receiver_failing_for_warn_after_is_warned_once() {
    let now = Now::current();
    let mut m = announced(now);
    m.on_user(Watch::Apply(user("ada", "Eng", &[])), now);
    store(&mut m);
    let failed = || Outcome::Failed {
        error: "timeout".into(),
        retry_after: None,
    };
    let mut warnings = 0;
    for minute in 0..30 {
        let t = at(now, minute * 60);
        m.start().unwrap();
        m.settle(failed(), t, 0.5);
        warnings += m
            .take_actions()
            .iter()
            .filter(|a| matches!(a, Action::ReceiverFailing { .. }))
            .count();
        if minute < 15 {
            assert_eq!(warnings, 0, "minute {minute}");
        }
    }
    assert_eq!(warnings, 1);
}

#[test]
fn the_signing_key_blocks_until_readable() {
    let now = Now::current();
    let mut m = announced(now);
    m.on_user(Watch::Apply(user("ada", "Eng", &[])), now);
    store(&mut m);
    assert!(m.due(now));
    m.keys_unavailable("Secret k not found".into(), now);
    assert!(!m.due(now));
    let status = m.status(&hook(), None, now);
    assert_eq!(status.conditions[0].reason, "SigningKeyUnavailable");
    let later = at(now, 5);
    assert!(m.due(later));
    m.start().unwrap();
    assert_eq!(
        m.status(&hook(), None, later).conditions[0].status,
        "True",
        "the keys were read"
    );
}

#[test]
fn a_restart_resumes_from_the_stored_outbox() {
    let now = Now::current();
    let mut m = announced(now);
    m.on_user(Watch::Apply(user("ada", "Eng", &[])), now);
    let stored = store(&mut m);
    let mut again = Machine::new(
        settings(1, 100),
        "ns/d".into(),
        &hook(),
        stored,
        now.instant,
    );
    assert!(again.active(), "the directory was announced");
    assert!(again.due(now));
    assert_eq!(names(&again.start().unwrap()), ["dsync.user.created"]);
    again.on_user(Watch::Apply(user("ada", "Eng", &[])), now);
    assert_eq!(
        again.outbox().pending.len(),
        1,
        "an unchanged user gives nothing"
    );
}
