//! `connector-runtime export ENTITY_TYPE`: runs ExportEntities against a running service and
//! writes NDJSON or CSV (columns from the entity type's schema) to a file or standard output.
//!
//! Progress shows as a bar on a terminal and as a plain line about once a second otherwise. With
//! `--output FILE` a checkpoint (`FILE.checkpoint`) is saved at every progress message: the bytes
//! of output written so far and, per partition, whether it finished and the last id received.
//! `--resume` truncates the output to that length and asks the service for the unfinished
//! partitions after those ids, so nothing is written twice. The checkpoint is removed when the
//! export completes.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use super::client::{Session, describe, with_auth};
use super::convert::from_proto_struct;
use super::names;
use super::pb;
use super::pb::entity_service_client::EntityServiceClient;
use super::pb::export_entities_response::Item;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object of fields per line.
    Ndjson,
    /// A header of the entity type's fields, then one row per entity.
    Csv,
}

/// The export subcommand's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// Entity type, e.g. Customer.
    pub entity_type: String,
    /// Filter clause, as in ListEntities, e.g. "Email LIKE '%@example.com'".
    #[arg(long, default_value = "")]
    pub conditions: String,
    #[arg(long, value_enum, default_value_t = Format::Ndjson)]
    pub format: Format,
    /// Output file; standard output when absent.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Continues an interrupted export of --output from its checkpoint, without duplicates.
    #[arg(long, requires = "output")]
    pub resume: bool,
    /// Partitions read at once; 0 lets the service choose.
    #[arg(long, default_value_t = 0)]
    pub parallelism: i32,
}

/// One partition's state in a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartitionState {
    index: i32,
    created_gte: i64,
    created_lte: i64,
    starting_after: String,
    finished: bool,
}

/// What `--resume` needs to continue.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Checkpoint {
    entity_type: String,
    conditions: String,
    format: Format,
    /// Bytes of output that belong to the export so far.
    output_bytes: u64,
    entities: u64,
    partitions: Vec<PartitionState>,
}

fn checkpoint_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".checkpoint");
    PathBuf::from(name)
}

impl Checkpoint {
    fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the checkpoint {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Written whole to a temporary file and renamed, so a crash leaves the old or the new one.
    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let temporary = path.with_extension("checkpoint.tmp");
        std::fs::write(&temporary, serde_json::to_vec(self)?)?;
        std::fs::rename(&temporary, path)?;
        Ok(())
    }

    /// The service's plan: every partition unfinished, from its start.
    fn plan(&mut self, plan: &pb::ExportPlan) {
        self.partitions = plan
            .partitions
            .iter()
            .map(|p| PartitionState {
                index: p.index,
                created_gte: p.created_gte,
                created_lte: p.created_lte,
                starting_after: p.starting_after.clone(),
                finished: false,
            })
            .collect();
    }

    /// One more entity written, `id` the last of `partition`.
    fn received(&mut self, partition: i32, id: &str) {
        self.entities += 1;
        if let Some(state) = self.partitions.iter_mut().find(|p| p.index == partition) {
            state.starting_after = id.to_owned();
        }
    }

    /// Marks the partitions the service reports finished.
    fn finished(&mut self, indexes: &[i32]) {
        for state in &mut self.partitions {
            if indexes.contains(&state.index) {
                state.finished = true;
            }
        }
    }

    fn resume_partitions(&self) -> Vec<pb::ExportPartition> {
        self.partitions
            .iter()
            .filter(|p| !p.finished)
            .map(|p| pb::ExportPartition {
                index: p.index,
                created_gte: p.created_gte,
                created_lte: p.created_lte,
                starting_after: p.starting_after.clone(),
            })
            .collect()
    }
}

/// Where rows go, counting the bytes written.
struct Sink {
    out: Box<dyn Write>,
    bytes: u64,
}

impl Sink {
    fn write_line(&mut self, line: &str) -> anyhow::Result<()> {
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.bytes += line.len() as u64 + 1;
        Ok(())
    }
}

fn csv_cell(value: Option<&Value>) -> String {
    let text = match value {
        None | Some(Value::Null) => return String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn row(format: Format, columns: &[String], fields: &Map<String, Value>) -> String {
    match format {
        Format::Ndjson => Value::Object(fields.clone()).to_string(),
        Format::Csv => columns
            .iter()
            .map(|c| csv_cell(fields.get(c)))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Shows progress: a bar on a terminal, a line about once a second otherwise.
struct Display {
    bar: Option<indicatif::ProgressBar>,
    last_line: Instant,
}

impl Display {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} partitions, {msg}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Self {
            bar,
            last_line: Instant::now(),
        }
    }

    fn show(&mut self, entities: u64, done: u64, total: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(total);
                bar.set_position(done);
                bar.set_message(format!("{entities} entities"));
            }
            None if self.last_line.elapsed() >= Duration::from_secs(1) || done == total => {
                eprintln!("exported {entities} entities, {done}/{total} partitions");
                self.last_line = Instant::now();
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

async fn columns(
    entities: &mut EntityServiceClient<Channel>,
    auth: &Option<MetadataValue<tonic::metadata::Ascii>>,
    parent: &str,
) -> anyhow::Result<Vec<String>> {
    let entity_type = entities
        .get_entity_type(with_auth(
            auth,
            pb::GetEntityTypeRequest {
                name: parent.to_owned(),
            },
        ))
        .await
        .map_err(|s| describe(&s))?
        .into_inner();
    Ok(entity_type.fields.into_iter().map(|f| f.name).collect())
}

/// Runs the export; returns a one-line summary.
pub async fn run(
    addr: &str,
    token: Option<&str>,
    connection: &str,
    args: ExportArgs,
) -> anyhow::Result<String> {
    let session = Session::connect(addr, token, connection).await?;
    let auth = session.auth;
    let mut entities = EntityServiceClient::new(session.channel);
    let parent = names::entity_type_name(connection, &args.entity_type);
    let columns = match args.format {
        Format::Csv => columns(&mut entities, &auth, &parent).await?,
        Format::Ndjson => Vec::new(),
    };
    let checkpoint_file = args.output.as_deref().map(checkpoint_path);
    let (checkpoint, sink) = open(&args, &columns, checkpoint_file.as_deref())?;
    let resuming = !checkpoint.partitions.is_empty();
    if resuming && checkpoint.resume_partitions().is_empty() {
        // Every partition had finished; only the checkpoint's removal was missed.
        return finish(&args, &checkpoint, checkpoint_file.as_deref());
    }

    let request = pb::ExportEntitiesRequest {
        parent,
        conditions: args.conditions.clone(),
        max_parallelism: args.parallelism,
        resume: checkpoint.resume_partitions(),
    };
    let mut stream = entities
        .export_entities(with_auth(&auth, request))
        .await
        .map_err(|s| describe(&s))?
        .into_inner();
    let mut export = Export {
        format: args.format,
        columns,
        checkpoint,
        checkpoint_file,
        sink,
        display: Display::new(),
        resuming,
    };
    while let Some(message) = stream.next().await {
        if let Some(item) = message.map_err(|s| describe(&s))?.item {
            export.receive(item)?;
        }
    }
    export.sink.out.flush()?;
    export.display.finish();
    finish(&args, &export.checkpoint, export.checkpoint_file.as_deref())
}

/// An export under way: where its rows go and what a resume would need.
struct Export {
    format: Format,
    columns: Vec<String>,
    checkpoint: Checkpoint,
    checkpoint_file: Option<PathBuf>,
    sink: Sink,
    display: Display,
    /// The partitions are the checkpoint's, not the service's new plan.
    resuming: bool,
}

impl Export {
    fn receive(&mut self, item: Item) -> anyhow::Result<()> {
        match item {
            Item::Plan(plan) if !self.resuming => self.checkpoint.plan(&plan),
            Item::Plan(_) => {}
            Item::Entity(exported) => self.entity(exported)?,
            Item::Progress(progress) => self.progress(&progress)?,
        }
        Ok(())
    }

    /// Writes the entity's row and moves its partition's cursor past it.
    fn entity(&mut self, exported: pb::ExportedEntity) -> anyhow::Result<()> {
        let entity = exported.entity.unwrap_or_default();
        let fields = entity
            .fields
            .as_ref()
            .map(from_proto_struct)
            .unwrap_or_default();
        self.sink
            .write_line(&row(self.format, &self.columns, &fields))?;
        let id = entity.name.rsplit('/').next().unwrap_or_default();
        self.checkpoint.received(exported.partition, id);
        Ok(())
    }

    /// Marks finished partitions, saves the checkpoint with the output flushed up to it, and
    /// shows how far the export is.
    fn progress(&mut self, progress: &pb::ExportProgress) -> anyhow::Result<()> {
        self.checkpoint.finished(&progress.finished);
        self.sink.out.flush()?;
        self.checkpoint.output_bytes = self.sink.bytes;
        if let Some(path) = &self.checkpoint_file {
            self.checkpoint.save(path)?;
        }
        let done = self.checkpoint.partitions.iter().filter(|p| p.finished);
        self.display.show(
            self.checkpoint.entities,
            done.count() as u64,
            self.checkpoint.partitions.len() as u64,
        );
        Ok(())
    }
}

/// Removes the checkpoint of a completed export; the summary line.
fn finish(
    args: &ExportArgs,
    checkpoint: &Checkpoint,
    checkpoint_file: Option<&Path>,
) -> anyhow::Result<String> {
    if let Some(path) = checkpoint_file {
        let _ = std::fs::remove_file(path);
    }
    let target = args
        .output
        .as_ref()
        .map_or_else(|| "standard output".to_owned(), |p| p.display().to_string());
    Ok(format!(
        "exported {} {} entities to {target}",
        checkpoint.entities, args.entity_type
    ))
}

/// The checkpoint and output to continue from: a fresh one, or the saved one with the output
/// cut back to what the checkpoint covers.
fn open(
    args: &ExportArgs,
    columns: &[String],
    checkpoint_file: Option<&Path>,
) -> anyhow::Result<(Checkpoint, Sink)> {
    if args.resume {
        let (Some(output), Some(path)) = (&args.output, checkpoint_file) else {
            bail!("--resume needs --output");
        };
        let checkpoint = Checkpoint::load(path)?;
        if checkpoint.entity_type != args.entity_type
            || checkpoint.conditions != args.conditions
            || checkpoint.format != args.format
        {
            bail!(
                "the checkpoint {} is of another export ({} where {:?}, {:?})",
                path.display(),
                checkpoint.entity_type,
                checkpoint.conditions,
                checkpoint.format
            );
        }
        let file = OpenOptions::new()
            .write(true)
            .open(output)
            .with_context(|| format!("opening {}", output.display()))?;
        file.set_len(checkpoint.output_bytes)?;
        let mut file = file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))?;
        let sink = Sink {
            out: Box::new(std::io::BufWriter::new(file)),
            bytes: checkpoint.output_bytes,
        };
        return Ok((checkpoint, sink));
    }
    let out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let mut sink = Sink { out, bytes: 0 };
    if args.format == Format::Csv {
        let header: Vec<String> = columns
            .iter()
            .map(|c| csv_cell(Some(&Value::String(c.clone()))))
            .collect();
        sink.write_line(&header.join(","))?;
    }
    let checkpoint = Checkpoint {
        entity_type: args.entity_type.clone(),
        conditions: args.conditions.clone(),
        format: args.format,
        output_bytes: sink.bytes,
        entities: 0,
        partitions: Vec::new(),
    };
    Ok((checkpoint, sink))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_rows_quote_what_needs_quoting_and_flatten_objects_to_json() {
        let columns = vec![
            "Id".to_owned(),
            "Name".to_owned(),
            "Metadata".to_owned(),
            "Phone".to_owned(),
        ];
        let fields = json!({"Id": "cus_1", "Name": "Rosen, \"Jen\"", "Metadata": {"plan": "pro"}})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(
            row(Format::Csv, &columns, &fields),
            r#"cus_1,"Rosen, ""Jen""","{""plan"":""pro""}","#
        );
        assert_eq!(
            row(Format::Ndjson, &columns, &fields),
            r#"{"Id":"cus_1","Name":"Rosen, \"Jen\"","Metadata":{"plan":"pro"}}"#
        );
    }

    #[test]
    fn checkpoints_resume_only_unfinished_partitions_after_their_last_id() {
        let checkpoint = Checkpoint {
            entity_type: "Customer".to_owned(),
            conditions: String::new(),
            format: Format::Ndjson,
            output_bytes: 10,
            entities: 2,
            partitions: vec![
                PartitionState {
                    index: 0,
                    created_gte: 10,
                    created_lte: 20,
                    starting_after: "cus_b".to_owned(),
                    finished: false,
                },
                PartitionState {
                    index: 1,
                    created_gte: 0,
                    created_lte: 9,
                    starting_after: "cus_a".to_owned(),
                    finished: true,
                },
            ],
        };
        let resume = checkpoint.resume_partitions();
        assert_eq!(resume.len(), 1);
        assert_eq!(resume[0].starting_after, "cus_b");
        assert_eq!(
            checkpoint_path(Path::new("/tmp/c.ndjson")),
            PathBuf::from("/tmp/c.ndjson.checkpoint")
        );
    }
}
