//! The three gRPC services. Thin: parse names, call the engine or registry, map results and errors.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{self, struct_or_empty, to_proto_struct};
use super::pb::action_service_server::ActionService;
use super::pb::entity_service_server::EntityService;
use super::{deadline, names, pb, spec_view, status};
use crate::engine::paging::{PageToken, fingerprint};
use crate::engine::{Engine, EntityId, EntityRecord, ListQuery};
use crate::registry::Registry;
use crate::telemetry;

/// What every service shares.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub engine: Engine,
    pub registry: Arc<Registry>,
}

/// Offset paging over a static list (entity types, actions, connections).
pub(crate) fn offset_page<T: Clone>(
    items: &[T],
    page_size: i32,
    page_token: &str,
    default_size: usize,
    max_size: usize,
    scope: &str,
) -> Result<(Vec<T>, String), Status> {
    let size = match page_size {
        n if n < 0 => return Err(status::invalid_field("page_size", "must not be negative")),
        0 => default_size,
        n => (n as usize).min(max_size),
    };
    let scope_print = fingerprint(&[scope]);
    let start = if page_token.is_empty() {
        0
    } else {
        let token =
            PageToken::decode(page_token).map_err(|e| status::invalid_field("page_token", e))?;
        if token.fingerprint != scope_print {
            return Err(status::invalid_field(
                "page_token",
                "was issued for a different request",
            ));
        }
        token.after.parse::<usize>().map_err(|_| {
            status::invalid_field("page_token", "is not a token this service issued")
        })?
    };
    let end = start.saturating_add(size).min(items.len());
    let page = items.get(start..end).map(<[T]>::to_vec).unwrap_or_default();
    let next = if end < items.len() {
        PageToken {
            after: end.to_string(),
            fingerprint: scope_print,
            key: None,
            page: None,
        }
        .encode()
    } else {
        String::new()
    };
    Ok((page, next))
}

pub(crate) fn entity_message(
    connection: &str,
    entity_type: &str,
    record: EntityRecord,
) -> pb::Entity {
    message(
        connection,
        entity_type,
        &record.id,
        convert::into_proto_struct(record.fields),
        record.request_id,
    )
}

fn message(
    connection: &str,
    entity_type: &str,
    id: &EntityId,
    fields: prost_types::Struct,
    request_id: Option<String>,
) -> pb::Entity {
    let mut metadata = prost_types::Struct::default();
    if let Some(request_id) = request_id {
        metadata.fields.insert(
            "RequestId".to_owned(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue(request_id)),
            },
        );
    }
    pb::Entity {
        name: names::entity_name(connection, entity_type, &id.to_string()),
        fields: Some(fields),
        metadata: Some(metadata),
    }
}

fn is_full(view: i32) -> bool {
    view == pb::View::Full as i32
}

impl ApiState {
    /// NOT_FOUND unless the connection exists (ready or not).
    fn require_connection(&self, id: &str) -> Result<(), Status> {
        match self.registry.get(id) {
            Some(_) => {
                telemetry::note_connection(id);
                Ok(())
            }
            None => Err(Status::from(
                crate::engine::EngineError::ConnectionNotFound(id.to_owned()),
            )),
        }
    }

    /// The runtime serving a connection, or its error as a status.
    fn runtime(
        &self,
        id: &str,
    ) -> Result<std::sync::Arc<crate::engine::ConnectionRuntime>, Status> {
        let runtime = self.registry.runtime(id)?;
        telemetry::note_connection(id);
        Ok(runtime)
    }
}

fn request_id(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

#[tonic::async_trait]
impl EntityService for ApiState {
    async fn list_entity_types(
        &self,
        request: Request<pb::ListEntityTypesRequest>,
    ) -> Result<Response<pb::ListEntityTypesResponse>, Status> {
        let r = request.into_inner();
        let connection = names::connection(&r.parent, "parent")?;
        self.require_connection(&connection)?;
        let entities = &self.engine.spec().entities;
        let (page, next) = offset_page(entities, r.page_size, &r.page_token, 25, 1000, &r.parent)?;
        let full = is_full(r.view);
        Ok(Response::new(pb::ListEntityTypesResponse {
            types: page
                .iter()
                .map(|e| spec_view::entity_type(&connection, e, full))
                .collect(),
            next_page_token: next,
            unsupported_type_names: Vec::new(),
        }))
    }

    async fn get_entity_type(
        &self,
        request: Request<pb::GetEntityTypeRequest>,
    ) -> Result<Response<pb::EntityType>, Status> {
        let r = request.into_inner();
        let (connection, entity_type) = names::entity_type(&r.name, "name")?;
        telemetry::note_entity_type(&entity_type);
        self.require_connection(&connection)?;
        let entity = self.engine.entity(&entity_type)?;
        Ok(Response::new(spec_view::entity_type(
            &connection,
            entity,
            true,
        )))
    }

    type ExportEntitiesStream = super::export::ExportStream;

    async fn export_entities(
        &self,
        request: Request<pb::ExportEntitiesRequest>,
    ) -> Result<Response<Self::ExportEntitiesStream>, Status> {
        let r = request.into_inner();
        let (connection, entity_type) = names::entity_type(&r.parent, "parent")?;
        let runtime = self.runtime(&connection)?;
        super::export::export_entities(&self.engine, runtime, connection, entity_type, r)
            .map(Response::new)
    }

    async fn list_entities(
        &self,
        request: Request<pb::ListEntitiesRequest>,
    ) -> Result<Response<pb::ListEntitiesResponse>, Status> {
        let deadline = deadline::of(&request);
        let r = request.into_inner();
        let (connection, entity_type) = names::entity_type(&r.parent, "parent")?;
        telemetry::note_entity_type(&entity_type);
        let runtime = self.runtime(&connection)?;
        let query = ListQuery {
            page_size: r.page_size,
            page_token: r.page_token,
            conditions: r.conditions,
            sort_by: r.sort_by,
            sort_order: r.sort_order,
            consistency: convert::consistency(r.consistency),
            tier: None,
        };
        let page = self
            .engine
            .list(&runtime, &entity_type, &query, deadline)
            .await?;
        Ok(Response::new(pb::ListEntitiesResponse {
            entities: page
                .entities
                .into_iter()
                .map(|e| entity_message(&connection, &entity_type, e))
                .collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn get_entity(
        &self,
        request: Request<pb::GetEntityRequest>,
    ) -> Result<Response<pb::Entity>, Status> {
        let deadline = deadline::of(&request);
        let r = request.into_inner();
        let (connection, entity_type, id) = names::entity(&r.name, "name")?;
        telemetry::note_entity_type(&entity_type);
        let runtime = self.runtime(&connection)?;
        // Decoded from the upstream's JSON straight into protobuf values.
        let record = self
            .engine
            .get_decoded::<prost_types::Value>(&runtime, &entity_type, &id, deadline)
            .await?;
        Ok(Response::new(message(
            &connection,
            &entity_type,
            &record.id,
            prost_types::Struct {
                fields: record.fields,
            },
            record.request_id,
        )))
    }

    async fn create_entity(
        &self,
        request: Request<pb::CreateEntityRequest>,
    ) -> Result<Response<pb::Entity>, Status> {
        let deadline = deadline::of(&request);
        let r = request.into_inner();
        let (connection, entity_type) = names::entity_type(&r.parent, "parent")?;
        telemetry::note_entity_type(&entity_type);
        let runtime = self.runtime(&connection)?;
        let fields = struct_or_empty(r.entity.as_ref().and_then(|e| e.fields.as_ref()));
        let record = self
            .engine
            .create(
                &runtime,
                &entity_type,
                fields,
                request_id(&r.request_id),
                deadline,
            )
            .await?;
        Ok(Response::new(entity_message(
            &connection,
            &entity_type,
            record,
        )))
    }

    async fn update_entity(
        &self,
        request: Request<pb::UpdateEntityRequest>,
    ) -> Result<Response<pb::Entity>, Status> {
        let deadline = deadline::of(&request);
        let r = request.into_inner();
        let entity = r
            .entity
            .ok_or_else(|| status::invalid_field("entity", "is required"))?;
        let (connection, entity_type, id) = names::entity(&entity.name, "entity.name")?;
        telemetry::note_entity_type(&entity_type);
        let runtime = self.runtime(&connection)?;
        let fields = struct_or_empty(entity.fields.as_ref());
        let record = self
            .engine
            .update(
                &runtime,
                &entity_type,
                &id,
                fields,
                request_id(&r.request_id),
                deadline,
            )
            .await?;
        Ok(Response::new(entity_message(
            &connection,
            &entity_type,
            record,
        )))
    }

    async fn delete_entity(
        &self,
        request: Request<pb::DeleteEntityRequest>,
    ) -> Result<Response<()>, Status> {
        let deadline = deadline::of(&request);
        let r = request.into_inner();
        let (connection, entity_type, id) = names::entity(&r.name, "name")?;
        telemetry::note_entity_type(&entity_type);
        let runtime = self.runtime(&connection)?;
        self.engine
            .delete(
                &runtime,
                &entity_type,
                &id,
                request_id(&r.request_id),
                deadline,
            )
            .await?;
        Ok(Response::new(()))
    }

    async fn update_entities_with_conditions(
        &self,
        request: Request<pb::UpdateEntitiesWithConditionsRequest>,
    ) -> Result<Response<pb::UpdateEntitiesWithConditionsResponse>, Status> {
        let deadline = deadline::of(&request);
        let r = request.into_inner();
        let (connection, entity_type) = names::entity_type(&r.entity_type, "entity_type")?;
        telemetry::note_entity_type(&entity_type);
        let runtime = self.runtime(&connection)?;
        let fields = struct_or_empty(r.entity.as_ref().and_then(|e| e.fields.as_ref()));
        let ids = self
            .engine
            .update_with_conditions(&runtime, &entity_type, &r.conditions, fields, deadline)
            .await?;
        let mut response = serde_json::Map::new();
        response.insert(
            "UpdatedCount".to_owned(),
            serde_json::Value::from(ids.len()),
        );
        response.insert("Ids".to_owned(), serde_json::Value::from(ids));
        Ok(Response::new(pb::UpdateEntitiesWithConditionsResponse {
            response: Some(to_proto_struct(&response)),
        }))
    }

    async fn delete_entities_with_conditions(
        &self,
        request: Request<pb::DeleteEntitiesWithConditionsRequest>,
    ) -> Result<Response<()>, Status> {
        let deadline = deadline::of(&request);
        let r = request.into_inner();
        let (connection, entity_type) = names::entity_type(&r.entity_type, "entity_type")?;
        telemetry::note_entity_type(&entity_type);
        let runtime = self.runtime(&connection)?;
        self.engine
            .delete_with_conditions(&runtime, &entity_type, &r.conditions, deadline)
            .await?;
        Ok(Response::new(()))
    }
}

#[tonic::async_trait]
impl ActionService for ApiState {
    async fn list_actions(
        &self,
        request: Request<pb::ListActionsRequest>,
    ) -> Result<Response<pb::ListActionsResponse>, Status> {
        let r = request.into_inner();
        let connection = names::connection(&r.parent, "parent")?;
        self.require_connection(&connection)?;
        let actions = &self.engine.spec().actions;
        let (page, next) = offset_page(actions, r.page_size, &r.page_token, 25, 1000, &r.parent)?;
        let full = is_full(r.view);
        Ok(Response::new(pb::ListActionsResponse {
            actions: page
                .iter()
                .map(|a| spec_view::action(&connection, a, full))
                .collect(),
            next_page_token: next,
            unsupported_action_names: Vec::new(),
        }))
    }

    async fn get_action(
        &self,
        request: Request<pb::GetActionRequest>,
    ) -> Result<Response<pb::Action>, Status> {
        let r = request.into_inner();
        let (connection, action) = names::action(&r.name, "name")?;
        telemetry::note_action(&action);
        self.require_connection(&connection)?;
        let spec = self.engine.action(&action)?;
        Ok(Response::new(spec_view::action(&connection, spec, true)))
    }

    async fn execute_action(
        &self,
        request: Request<pb::ExecuteActionRequest>,
    ) -> Result<Response<pb::ExecuteActionResponse>, Status> {
        let deadline = deadline::of(&request);
        let r = request.into_inner();
        let (connection, action) = names::action(&r.name, "name")?;
        telemetry::note_action(&action);
        let native = match pb::ResultFormat::try_from(r.result_format) {
            Ok(pb::ResultFormat::Native) => true,
            Ok(_) => false,
            Err(_) => {
                return Err(status::invalid_field(
                    "result_format",
                    format!("unknown value {}", r.result_format),
                ));
            }
        };
        let runtime = self.runtime(&connection)?;
        let parameters = struct_or_empty(r.parameters.as_ref());
        let rows = self
            .engine
            .execute(
                &runtime,
                &action,
                parameters,
                request_id(&r.request_id),
                native,
                deadline,
            )
            .await?;
        Ok(Response::new(pb::ExecuteActionResponse {
            results: rows.iter().map(to_proto_struct).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_pages_walk_the_list_and_survive_forged_tokens() {
        let items: Vec<u32> = (0..5).collect();
        let (first, token) = offset_page(&items, 2, "", 25, 1000, "scope").unwrap();
        assert_eq!(first, vec![0, 1]);
        let (second, _) = offset_page(&items, 2, &token, 25, 1000, "scope").unwrap();
        assert_eq!(second, vec![2, 3]);
        assert!(offset_page(&items, 2, &token, 25, 1000, "other scope").is_err());
        assert!(offset_page(&items, -1, "", 25, 1000, "scope").is_err());
        let forged = PageToken {
            after: usize::MAX.to_string(),
            fingerprint: fingerprint(&["scope"]),
            key: None,
            page: None,
        }
        .encode();
        let (page, next) = offset_page(&items, 2, &forged, 25, 1000, "scope").unwrap();
        assert!(page.is_empty() && next.is_empty());
    }
}
