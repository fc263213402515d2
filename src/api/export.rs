//! ExportEntities over gRPC: turns the engine's export events into the server stream, and the
//! wire's resume partitions into the engine's. Dropping the stream (the client cancelled) drops
//! the engine's receiver, which stops every upstream read.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::pb;
use crate::engine::export::{ExportEvent, ExportRequest, Partition};
use crate::engine::{ConnectionRuntime, Engine, EngineError};

/// The server stream of ExportEntities.
pub type ExportStream =
    Pin<Box<dyn Stream<Item = Result<pb::ExportEntitiesResponse, Status>> + Send + 'static>>;

fn partition_message(partition: &Partition) -> pb::ExportPartition {
    pb::ExportPartition {
        index: partition.index,
        created_gte: partition.created_gte,
        created_lte: partition.created_lte,
        starting_after: partition.starting_after.clone().unwrap_or_default(),
    }
}

fn partition_of(message: &pb::ExportPartition) -> Partition {
    Partition {
        index: message.index,
        created_gte: message.created_gte,
        created_lte: message.created_lte,
        starting_after: Some(message.starting_after.clone()).filter(|s| !s.is_empty()),
    }
}

/// Starts the export of `entity_type` and streams it.
pub fn export_entities(
    engine: &Engine,
    runtime: Arc<ConnectionRuntime>,
    connection: String,
    entity_type: String,
    request: pb::ExportEntitiesRequest,
) -> Result<ExportStream, Status> {
    let export = ExportRequest {
        conditions: request.conditions,
        max_parallelism: usize::try_from(request.max_parallelism)
            .map_err(|_| EngineError::invalid("max_parallelism", "must not be negative"))?,
        resume: request.resume.iter().map(partition_of).collect(),
    };
    let export = engine.export(runtime, &entity_type, export)?;
    let stream = ReceiverStream::new(export.events).map(move |event| {
        let item = match event? {
            ExportEvent::Plan(partitions) => {
                pb::export_entities_response::Item::Plan(pb::ExportPlan {
                    partitions: partitions.iter().map(partition_message).collect(),
                })
            }
            ExportEvent::Entity { record, partition } => {
                pb::export_entities_response::Item::Entity(pb::ExportedEntity {
                    entity: Some(super::services::entity_message(
                        &connection,
                        &entity_type,
                        *record,
                    )),
                    partition,
                })
            }
            ExportEvent::Progress(progress) => {
                pb::export_entities_response::Item::Progress(pb::ExportProgress {
                    entities: i64::try_from(progress.entities).unwrap_or(i64::MAX),
                    partitions_done: i32::try_from(progress.partitions_done).unwrap_or(i32::MAX),
                    partitions_total: i32::try_from(progress.partitions_total).unwrap_or(i32::MAX),
                    finished: progress.finished,
                })
            }
        };
        Ok(pb::ExportEntitiesResponse { item: Some(item) })
    });
    Ok(Box::pin(stream))
}
