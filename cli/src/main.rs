//! `tidemark`: a native Tidemark device on the command line.

use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tidemark_cli::client::parse_join;
use tidemark_cli::inspect::{Verdict, inspect};
use tidemark_cli::{Client, ClientError, ClientOptions, Storage, jsonl};
use tidemark_core::sync::SyncEvent;
use tidemark_core::{DeviceId, SpaceKey};

/// A Tidemark device on the command line: join a space, read and write documents, sync
/// through the space's object storage.
#[derive(Debug, Parser)]
#[command(name = "tidemark", version)]
struct Cli {
    /// The device's folder (profile, key, local replica).
    #[arg(
        long,
        env = "TIDEMARK_DIR",
        default_value = "tidemark-device",
        global = true
    )]
    dir: PathBuf,
    /// Longest a sync may take before giving up, in seconds.
    #[arg(long, default_value_t = 120, global = true)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Join a space with an invite link (`https://host/#join=tmi_…`) or code (with --server).
    Join {
        /// The join link or invite code.
        invite: String,
        /// The server, when only a code is given.
        #[arg(long)]
        server: Option<String>,
        /// A name for this device, shown to admins.
        #[arg(long, default_value = "tidemark-cli")]
        name: String,
        /// The space key (64 hex digits) for end-to-end encryption.
        #[arg(long, env = "TIDEMARK_SPACE_KEY")]
        space_key: Option<String>,
    },
    /// Write fields of a document (a JSON object), merged into it.
    Put {
        /// Collection.
        collection: String,
        /// Document id.
        id: String,
        /// Fields, a JSON object.
        fields: String,
        /// Only write locally; sync later.
        #[arg(long)]
        offline: bool,
    },
    /// Print a document as JSON.
    Get {
        /// Collection.
        collection: String,
        /// Document id.
        id: String,
    },
    /// Delete a document.
    Delete {
        /// Collection.
        collection: String,
        /// Document id.
        id: String,
        /// Only write locally; sync later.
        #[arg(long)]
        offline: bool,
    },
    /// Add to a counter field.
    Incr {
        /// Collection.
        collection: String,
        /// Document id.
        id: String,
        /// Field.
        field: String,
        /// Amount (negative to count down).
        #[arg(allow_hyphen_values = true)]
        by: i64,
        /// Only write locally; sync later.
        #[arg(long)]
        offline: bool,
    },
    /// Sync once: push pending writes, read every device's changes.
    Sync {
        /// Also sync these collections from now on.
        #[arg(long = "collection")]
        collections: Vec<String>,
    },
    /// Sync continuously, printing changed documents as JSON lines, until interrupted.
    Watch {
        /// Also sync these collections from now on.
        #[arg(long = "collection")]
        collections: Vec<String>,
    },
    /// Print a collection as JSON lines (`{"_id": …, …}`).
    Export {
        /// Collection.
        collection: String,
    },
    /// Preload JSON lines (from a file or stdin) into a collection: content-derived stamps,
    /// fills only missing fields, never conflicts with other devices importing the same data.
    Import {
        /// Collection.
        collection: String,
        /// The file (stdin when absent).
        file: Option<PathBuf>,
    },
    /// Read the space's packs from object storage and check them.
    Inspect {
        /// Only this device's packs.
        #[arg(long)]
        device: Option<DeviceId>,
    },
    /// Show this device and its sync state.
    Status,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tidemark: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), ClientError> {
    let limit = Duration::from_secs(cli.timeout);
    let open = || Client::open(&cli.dir, ClientOptions::default());
    let mut stdout = std::io::stdout().lock();
    let out_err = |source| ClientError::Io {
        path: "<stdout>".into(),
        source,
    };
    match cli.command {
        Command::Join {
            invite,
            server,
            name,
            space_key,
        } => {
            let (server, code) = parse_join(&invite, server.as_deref())?;
            let space_key = space_key.map(|k| parse_space_key(&k)).transpose()?;
            let client = Client::join(
                Storage::Dir(cli.dir.clone()),
                &server,
                &code,
                &name,
                space_key,
                ClientOptions::default(),
            )
            .await?;
            println!(
                "joined space {:?} as device {} (user {}); its folder is {}",
                client.profile().space,
                client.device(),
                client.profile().user,
                cli.dir.display()
            );
        }
        Command::Put {
            collection,
            id,
            fields,
            offline,
        } => {
            let fields: serde_json::Value = serde_json::from_str(&fields)
                .map_err(|e| ClientError::Profile(format!("fields: {e}")))?;
            let mut client = open()?;
            client.write(|w| w.upsert_json(&collection, &id, &fields))?;
            finish_write(&mut client, offline, limit).await?;
        }
        Command::Get { collection, id } => {
            let client = open()?;
            match client.engine().replica().get(&collection, &id) {
                Some(doc) => println!("{}", doc.to_json()),
                None => {
                    return Err(ClientError::Profile(format!(
                        "no document {id:?} in {collection:?}"
                    )));
                }
            }
        }
        Command::Delete {
            collection,
            id,
            offline,
        } => {
            let mut client = open()?;
            client.write(|w| w.delete(&collection, &id))?;
            finish_write(&mut client, offline, limit).await?;
        }
        Command::Incr {
            collection,
            id,
            field,
            by,
            offline,
        } => {
            let mut client = open()?;
            client.write(|w| w.increment(&collection, &id, &field, by))?;
            finish_write(&mut client, offline, limit).await?;
        }
        Command::Sync { collections } => {
            let mut client = open()?;
            for collection in &collections {
                client.subscribe(collection)?;
            }
            client.sync(limit).await?;
            report_sync(&mut client);
        }
        Command::Watch { collections } => {
            let mut client = open()?;
            for collection in &collections {
                client.subscribe(collection)?;
            }
            eprintln!(
                "watching space {:?}; Ctrl-C to stop",
                client.profile().space
            );
            let stop = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            client
                .watch(stop, |engine, event| match event {
                    SyncEvent::Changed(changed) => {
                        for (collection, id) in changed.iter() {
                            let doc = engine.replica().get_any(collection, id);
                            let line = serde_json::json!({
                                "collection": collection,
                                "_id": id,
                                "deleted": doc.as_ref().is_none_or(|d| d.is_deleted()),
                                "doc": doc.map(|d| d.to_json()),
                            });
                            println!("{line}");
                        }
                    }
                    SyncEvent::Rejected { error, .. } | SyncEvent::Problem(error) => {
                        eprintln!("tidemark: {error} ({})", error.code());
                    }
                    _ => {}
                })
                .await?;
        }
        Command::Export { collection } => {
            let client = open()?;
            let count = jsonl::export(client.engine().replica(), &collection, &mut stdout)
                .map_err(out_err)?;
            eprintln!("exported {count} documents");
        }
        Command::Import { collection, file } => {
            let mut client = open()?;
            let report = match &file {
                Some(path) => {
                    let input = std::fs::File::open(path).map_err(|source| ClientError::Io {
                        path: path.clone(),
                        source,
                    })?;
                    jsonl::import(&mut client, &collection, BufReader::new(input), 1_000)?
                }
                None => jsonl::import(&mut client, &collection, std::io::stdin().lock(), 1_000)?,
            };
            eprintln!(
                "imported {} records: {} fields written, {} already present",
                report.records, report.written, report.skipped
            );
            finish_write(&mut client, false, limit).await?;
        }
        Command::Inspect { device } => {
            let client = open()?;
            writeln!(
                stdout,
                "{:<16} {:<16} {:>5} {:>10} {:>10} {:>8} {:>9}  verdict",
                "device", "collection", "level", "bytes", "generation", "docs", "registers"
            )
            .map_err(out_err)?;
            for report in inspect(&client, device).await? {
                let device = report.device.to_string();
                let (generation, docs, registers, verdict) = match &report.verdict {
                    Verdict::Valid {
                        generation,
                        documents,
                        registers,
                        encrypted,
                    } => (
                        generation.to_string(),
                        documents.to_string(),
                        registers.to_string(),
                        if *encrypted { "ok, encrypted" } else { "ok" }.to_string(),
                    ),
                    Verdict::Sealed { generation } => (
                        generation.to_string(),
                        "-".into(),
                        "-".into(),
                        "signature ok, encrypted (no space key)".into(),
                    ),
                    Verdict::Invalid(why) => ("-".into(), "-".into(), "-".into(), why.clone()),
                };
                writeln!(
                    stdout,
                    "{:<16} {:<16} {:>5} {:>10} {:>10} {:>8} {:>9}  {verdict}",
                    &device[..16],
                    report.collection,
                    format!("L{}", report.level),
                    report.bytes,
                    generation,
                    docs,
                    registers
                )
                .map_err(out_err)?;
            }
        }
        Command::Status => {
            let client = open()?;
            let status = client.engine().status();
            let profile = client.profile();
            println!("server:      {}", profile.server);
            println!("space:       {}", profile.space);
            println!("device:      {}", client.device());
            println!("user:        {}", profile.user);
            println!("collections: {}", profile.collections.join(", "));
            println!("encrypted:   {}", profile.space_key.is_some());
            println!("pending:     {} write transactions", status.pending_writes);
            println!(
                "documents:   {}",
                client.engine().replica().state().document_count()
            );
        }
    }
    Ok(())
}

/// After a write: sync, unless asked not to. The write is already stored locally either way.
async fn finish_write(
    client: &mut Client,
    offline: bool,
    limit: Duration,
) -> Result<(), ClientError> {
    if offline {
        eprintln!("saved locally; run `tidemark sync` to push it");
        return Ok(());
    }
    match client.sync(limit).await {
        Ok(()) => {
            report_sync(client);
            Ok(())
        }
        Err(error) => {
            eprintln!("saved locally, not synced yet ({error}); run `tidemark sync` later");
            Ok(())
        }
    }
}

fn report_sync(client: &mut Client) {
    for event in client.take_events() {
        if let SyncEvent::Rejected {
            device,
            collection,
            level,
            error,
        } = event
        {
            eprintln!(
                "refused pack {collection}/L{level} of device {device}: {error} ({})",
                error.code()
            );
        }
    }
    let status = client.engine().status();
    eprintln!(
        "synced: {} documents, {} write transactions pending",
        client.engine().replica().state().document_count(),
        status.pending_writes
    );
}

fn parse_space_key(hex_key: &str) -> Result<SpaceKey, ClientError> {
    hex::decode(hex_key.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(SpaceKey::from_bytes)
        .ok_or_else(|| ClientError::Profile("--space-key must be 64 hex digits".into()))
}
