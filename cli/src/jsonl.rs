//! Collections as JSON lines: one document per line, `{"_id": …, field: value, …}`.

use std::io::{BufRead, Write};

use tidemark_core::{ID_FIELD, Replica, Value};

use crate::client::{Client, ClientError};

/// Writes the live documents of `collection`, one JSON object per line, sorted by id.
pub fn export(replica: &Replica, collection: &str, out: &mut impl Write) -> std::io::Result<usize> {
    let mut count = 0;
    for doc in replica.documents(collection) {
        let mut object = match doc.to_json() {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        object.insert(ID_FIELD.into(), doc.id().into());
        serde_json::to_writer(&mut *out, &object)?;
        out.write_all(b"\n")?;
        count += 1;
    }
    Ok(count)
}

/// What an import did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Lines read.
    pub records: usize,
    /// Fields written.
    pub written: usize,
    /// Fields skipped: already present (preloaded by anyone, or edited since).
    pub skipped: usize,
}

/// Imports JSON lines into `collection` as a preload ([`tidemark_core::Writer::preload`]):
/// fields get content-derived stamps and fill only what is missing, so several devices
/// importing the same file converge without conflicts or duplicate uploads. Each line needs a
/// string `_id`. Lines are written in transactions of `batch`, each stored durably.
pub fn import(
    client: &mut Client,
    collection: &str,
    input: impl BufRead,
    batch: usize,
) -> Result<ImportReport, ClientError> {
    let mut report = ImportReport::default();
    let mut pending: Vec<(String, serde_json::Map<String, serde_json::Value>)> = Vec::new();
    for (number, line) in input.lines().enumerate() {
        let line = line.map_err(|source| ClientError::Io {
            path: "<import input>".into(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: &str| ClientError::Profile(format!("import line {}: {why}", number + 1));
        let serde_json::Value::Object(mut object) =
            serde_json::from_str(&line).map_err(|e| bad(&e.to_string()))?
        else {
            return Err(bad("not a JSON object"));
        };
        let Some(serde_json::Value::String(id)) = object.remove(ID_FIELD) else {
            return Err(bad("needs a string \"_id\""));
        };
        pending.push((id, object));
        report.records += 1;
        if pending.len() >= batch.max(1) {
            write_batch(client, collection, &mut pending, &mut report)?;
        }
    }
    write_batch(client, collection, &mut pending, &mut report)?;
    Ok(report)
}

fn write_batch(
    client: &mut Client,
    collection: &str,
    pending: &mut Vec<(String, serde_json::Map<String, serde_json::Value>)>,
    report: &mut ImportReport,
) -> Result<(), ClientError> {
    if pending.is_empty() {
        return Ok(());
    }
    let (mut written, mut skipped) = (0, 0);
    client.write(|w| {
        for (id, fields) in pending.iter() {
            for (field, value) in fields {
                if w.preload(collection, id, field, Value::from(value.clone()))? {
                    written += 1;
                } else {
                    skipped += 1;
                }
            }
        }
        Ok(())
    })?;
    report.written += written;
    report.skipped += skipped;
    pending.clear();
    Ok(())
}
