//! `EventSubscriptionService`: the gRPC edge of `crate::events` — resource names, conversions
//! between proto and domain subscriptions, update masks, and the event stream.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::pb;
use super::pb::event_subscription_service_server::EventSubscriptionService;
use super::services::offset_page;
use super::{names, status};
use crate::engine::FieldViolation;
use crate::events::store::StoredEvent;
use crate::events::subscription::{Destination, Subscription};
use crate::events::{EventHub, resume_token};
use crate::registry::Registry;
use crate::secrets::SecretRef;

/// The service's state.
#[derive(Clone, Debug)]
pub struct EventsApi {
    pub hub: Arc<EventHub>,
    pub registry: Arc<Registry>,
}

fn timestamp(unix: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: unix,
        nanos: 0,
    }
}

/// `connections/{c}/eventSubscriptions/{id}` → (connection, id).
fn subscription_name(name: &str, field: &str) -> Result<(String, String), Status> {
    match name.split('/').collect::<Vec<_>>().as_slice() {
        ["connections", c, "eventSubscriptions", id] if !c.is_empty() && !id.is_empty() => {
            Ok(((*c).to_owned(), (*id).to_owned()))
        }
        _ => Err(status::invalid_field(
            field,
            format!(
                "must look like connections/{{connection}}/eventSubscriptions/{{event_subscription}}, got {name:?}"
            ),
        )),
    }
}

fn to_proto(subscription: &Subscription, dead_letters: usize) -> pb::EventSubscription {
    let destination = match &subscription.destination {
        Destination::Stream => pb::event_subscription::Destination::Stream(true),
        Destination::Http {
            url,
            signing_secret,
        } => pb::event_subscription::Destination::HttpEndpoint(pb::HttpEndpoint {
            uri: url.clone(),
            signing_secret: Some(pb::SecretRef {
                secret: signing_secret.secret.clone(),
                version: signing_secret.version.clone(),
            }),
        }),
    };
    pb::EventSubscription {
        name: subscription.name(),
        description: subscription.description.clone(),
        event_types: subscription.event_types.clone(),
        destination: Some(destination),
        create_time: Some(timestamp(subscription.create_time)),
        update_time: Some(timestamp(subscription.update_time)),
        dead_letter_count: i32::try_from(dead_letters).unwrap_or(i32::MAX),
    }
}

fn destination_from(
    proto: Option<&pb::event_subscription::Destination>,
) -> Result<Destination, Status> {
    match proto {
        None | Some(pb::event_subscription::Destination::Stream(_)) => Ok(Destination::Stream),
        Some(pb::event_subscription::Destination::HttpEndpoint(endpoint)) => {
            let secret = endpoint
                .signing_secret
                .as_ref()
                .filter(|s| !s.secret.is_empty())
                .ok_or_else(|| {
                    status::invalid_field(
                        "http_endpoint.signing_secret",
                        "required: the secret the runtime signs deliveries with",
                    )
                })?;
            Ok(Destination::Http {
                url: endpoint.uri.clone(),
                signing_secret: SecretRef {
                    secret: secret.secret.clone(),
                    version: if secret.version.is_empty() {
                        crate::secrets::LATEST.to_owned()
                    } else {
                        secret.version.clone()
                    },
                },
            })
        }
    }
}

fn to_event(subscription: &str, event: StoredEvent) -> pb::Event {
    pb::Event {
        resume_token: resume_token(subscription, event.seq),
        id: event.id,
        r#type: event.event_type,
        create_time: Some(timestamp(event.created)),
        connection: format!("connections/{}", event.connection),
        entity_name: event.entity_name.unwrap_or_default(),
        payload: event.payload,
    }
}

impl EventsApi {
    fn connection_exists(&self, id: &str) -> Result<(), Status> {
        self.registry.get(id).map(|_| ()).ok_or_else(|| {
            Status::from(crate::engine::EngineError::ConnectionNotFound(
                id.to_owned(),
            ))
        })
    }

    fn view(&self, subscription: &Subscription) -> pb::EventSubscription {
        let dead = match subscription.destination {
            Destination::Stream => 0,
            Destination::Http { .. } => self
                .hub
                .dead_letters(&subscription.name())
                .map(|d| d.len())
                .unwrap_or_default(),
        };
        to_proto(subscription, dead)
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl EventSubscriptionService for EventsApi {
    async fn create_event_subscription(
        &self,
        request: Request<pb::CreateEventSubscriptionRequest>,
    ) -> Result<Response<pb::EventSubscription>, Status> {
        let r = request.into_inner();
        let connection = names::connection(&r.parent, "parent")?;
        self.connection_exists(&connection)?;
        let proto = r.event_subscription.unwrap_or_default();
        let subscription = Subscription {
            id: r.event_subscription_id,
            connection,
            event_types: proto.event_types,
            destination: destination_from(proto.destination.as_ref())?,
            description: proto.description,
            create_time: 0,
            update_time: 0,
            start_seq: 0,
        };
        let created = self.hub.create(subscription)?;
        tracing::info!(subscription = %created.name(), types = ?created.event_types, "event subscription created");
        Ok(Response::new(self.view(&created)))
    }

    async fn get_event_subscription(
        &self,
        request: Request<pb::GetEventSubscriptionRequest>,
    ) -> Result<Response<pb::EventSubscription>, Status> {
        let name = &request.get_ref().name;
        subscription_name(name, "name")?;
        let subscription = self.hub.get(name)?;
        Ok(Response::new(self.view(&subscription)))
    }

    async fn list_event_subscriptions(
        &self,
        request: Request<pb::ListEventSubscriptionsRequest>,
    ) -> Result<Response<pb::ListEventSubscriptionsResponse>, Status> {
        let r = request.into_inner();
        let connection = names::connection(&r.parent, "parent")?;
        self.connection_exists(&connection)?;
        let all = self.hub.list(Some(&connection));
        let (page, next) = offset_page(&all, r.page_size, &r.page_token, 50, 1000, &r.parent)?;
        Ok(Response::new(pb::ListEventSubscriptionsResponse {
            event_subscriptions: page.iter().map(|s| self.view(s)).collect(),
            next_page_token: next,
        }))
    }

    async fn update_event_subscription(
        &self,
        request: Request<pb::UpdateEventSubscriptionRequest>,
    ) -> Result<Response<pb::EventSubscription>, Status> {
        let r = request.into_inner();
        let proto = r.event_subscription.unwrap_or_default();
        subscription_name(&proto.name, "event_subscription.name")?;
        let mut subscription = self.hub.get(&proto.name)?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let wants = |path: &str| paths.is_empty() || paths.iter().any(|p| p == path);
        let unknown: Vec<FieldViolation> = paths
            .iter()
            .filter(|p| {
                !matches!(
                    p.as_str(),
                    "description" | "event_types" | "destination" | "stream" | "http_endpoint"
                )
            })
            .map(|p| {
                FieldViolation::new(
                    "update_mask",
                    format!("unknown or immutable field path {p:?}"),
                )
            })
            .collect();
        if !unknown.is_empty() {
            return Err(status::invalid_argument("invalid update_mask", &unknown));
        }
        if wants("description") {
            subscription.description = proto.description;
        }
        if wants("event_types") {
            subscription.event_types = proto.event_types;
        }
        if wants("destination") || wants("stream") || wants("http_endpoint") {
            subscription.destination = destination_from(proto.destination.as_ref())?;
        }
        let updated = self.hub.update(subscription)?;
        tracing::info!(subscription = %updated.name(), "event subscription updated");
        Ok(Response::new(self.view(&updated)))
    }

    async fn delete_event_subscription(
        &self,
        request: Request<pb::DeleteEventSubscriptionRequest>,
    ) -> Result<Response<()>, Status> {
        let name = &request.get_ref().name;
        subscription_name(name, "name")?;
        self.hub.delete(name)?;
        tracing::info!(subscription = %name, "event subscription deleted");
        Ok(Response::new(()))
    }

    async fn retry_event_subscription(
        &self,
        request: Request<pb::RetryEventSubscriptionRequest>,
    ) -> Result<Response<pb::RetryEventSubscriptionResponse>, Status> {
        let name = &request.get_ref().name;
        subscription_name(name, "name")?;
        let count = self.hub.retry(name)?;
        Ok(Response::new(pb::RetryEventSubscriptionResponse {
            redelivering: i32::try_from(count).unwrap_or(i32::MAX),
        }))
    }

    type StreamEventsStream = EventStream;

    async fn stream_events(
        &self,
        request: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let r = request.into_inner();
        subscription_name(&r.subscription, "subscription")?;
        let events = self.hub.stream(&r.subscription, &r.resume_token)?;
        let name = r.subscription;
        let stream = ReceiverStream::new(events).map(move |item| match item {
            Ok(event) => Ok(to_event(&name, event)),
            Err(error) => Err(Status::from(error)),
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
