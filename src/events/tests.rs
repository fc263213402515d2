//! The hub: subscriptions persist, streams deliver in store order and resume after a token.

use std::sync::Arc;

use super::store::NewEvent;
use super::subscription::{Destination, Subscription};
use super::*;

fn hub(dir: &std::path::Path) -> Arc<EventHub> {
    let spec = crate::spec::stripe_shared().unwrap();
    EventHub::open(
        dir,
        spec,
        SecretResolver::new(None),
        EventsSettings::default(),
    )
    .unwrap()
}

fn stream_subscription(id: &str, types: &[&str]) -> Subscription {
    Subscription {
        id: id.to_owned(),
        connection: "stripe-a".to_owned(),
        event_types: types.iter().map(|t| (*t).to_owned()).collect(),
        destination: Destination::Stream,
        description: String::new(),
        create_time: 0,
        update_time: 0,
        start_seq: 0,
    }
}

fn event(id: &str, event_type: &str) -> NewEvent {
    NewEvent {
        id: id.to_owned(),
        connection: "stripe-a".to_owned(),
        event_type: event_type.to_owned(),
        created: unix_now(),
        entity_name: None,
        payload: format!(r#"{{"id":"{id}"}}"#),
        source: "webhook",
    }
}

#[tokio::test]
async fn a_stream_resumes_right_after_its_token_and_skips_other_types() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let name = hub
        .create(stream_subscription("paid", &["payment_intent.succeeded"]))
        .unwrap()
        .name();
    for i in 0..3 {
        hub.record(event(&format!("evt_{i}"), "payment_intent.succeeded"))
            .await
            .unwrap();
        hub.record(event(&format!("evt_other_{i}"), "charge.succeeded"))
            .await
            .unwrap();
    }
    let mut rx = hub.stream(&name, "").unwrap();
    let first = rx.recv().await.unwrap().unwrap();
    let second = rx.recv().await.unwrap().unwrap();
    assert_eq!((first.id.as_str(), second.id.as_str()), ("evt_0", "evt_1"));
    drop(rx);
    let mut rx = hub.stream(&name, &resume_token(&name, second.seq)).unwrap();
    assert_eq!(rx.recv().await.unwrap().unwrap().id, "evt_2");
    // New events reach an open stream.
    hub.record(event("evt_3", "payment_intent.succeeded"))
        .await
        .unwrap();
    assert_eq!(rx.recv().await.unwrap().unwrap().id, "evt_3");
}

#[tokio::test]
async fn tokens_of_another_subscription_or_forged_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let a = hub.create(stream_subscription("a", &["*"])).unwrap().name();
    let b = hub.create(stream_subscription("b", &["*"])).unwrap().name();
    assert!(matches!(
        hub.stream(&a, &resume_token(&b, 1)),
        Err(EventsError::BadResumeToken(_))
    ));
    assert!(matches!(
        hub.stream(&a, "!!not-base64!!"),
        Err(EventsError::BadResumeToken(_))
    ));
}

#[tokio::test]
async fn subscriptions_survive_a_restart_and_duplicates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let hub = hub(dir.path());
        hub.create(stream_subscription("billing", &["invoice.*"]))
            .unwrap();
        assert!(matches!(
            hub.create(stream_subscription("billing", &["*"])),
            Err(EventsError::AlreadyExists(_))
        ));
        hub.shutdown();
    }
    let hub = hub(dir.path());
    let listed = hub.list(Some("stripe-a"));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].event_types, ["invoice.*"]);
    hub.delete(&listed[0].name()).unwrap();
    assert!(hub.list(None).is_empty());
}

#[tokio::test]
async fn an_http_subscription_needs_a_resolvable_signing_secret() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let mut subscription = stream_subscription("hook", &["*"]);
    subscription.destination = Destination::Http {
        url: "http://127.0.0.1:9/hook".to_owned(),
        signing_secret: crate::secrets::SecretRef {
            secret: "env:CONNECTOR_RUNTIME_TEST_SURELY_UNSET_SECRET".to_owned(),
            version: "latest".to_owned(),
        },
    };
    match hub.create(subscription) {
        Err(EventsError::Invalid(problems)) => {
            assert_eq!(problems[0].0, "http_endpoint.signing_secret")
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}
