//! `alertpost publish`: the input is read twice, one document at a time:
//! once to check everything (a bad document publishes nothing, and nothing
//! touches the broker), then to publish it in chunks, so memory does not
//! grow with the input. Stdin is spooled to an unnamed temporary file for
//! the second reading.

use std::io::{Seek, SeekFrom};
use std::path::PathBuf;

use alertpost_event::Event;
use alertpost_event::normalize::{Documents, Format, NormalizeError, normalize};
use alertpost_producer::{Producer, ProducerError};
use anyhow::{Context, anyhow};

use crate::Failure;
use crate::cli::{Global, PublishArgs, process_name};

/// Events handed to the producer at once while publishing a stream: its
/// window a few times over, so memory stays that of a chunk whatever the
/// input's size, and the wait for a chunk's last confirms is a small share.
const CHUNK: usize = 2048;
/// And at most about this much input a chunk (large events: a chunk is
/// held about three times over, parsed, prepared and encoded).
const CHUNK_BYTES: usize = 2 << 20;
/// Invalid documents listed by a refused `publish`; the rest are counted.
const PROBLEMS_SHOWN: usize = 50;

/// `alertpost publish` (see the module docs).
pub async fn run(g: &Global, args: &PublishArgs) -> Result<(), Failure> {
    let format: Format = args
        .format
        .parse()
        .map_err(|e: alertpost_event::NormalizeError| Failure::Usage(anyhow!(e.reason)))?;
    let (name, mut input) = open_input(args.file.as_ref())?;

    let mut total = 0usize;
    let mut problems = Vec::new();
    let mut more = 0usize;
    let now = time::OffsetDateTime::now_utc();
    let mut docs = Documents::new(&input);
    while let Some((line, found)) = next_events(&mut docs, format) {
        // Prepared (ids, times, sizes checked) as it will be published.
        let checked = found.and_then(|mut found| {
            alertpost_event::prepare_all(&mut found, now)
                .map(|()| found.len())
                .map_err(|e| NormalizeError {
                    reason: e.source.to_string(),
                })
        });
        match checked {
            Ok(n) => total += n,
            Err(_) if problems.len() >= PROBLEMS_SHOWN => more += 1,
            Err(e) => problems.push(format!("{name}:{line}: {e}")),
        }
    }
    if !problems.is_empty() {
        let count = problems.len() + more;
        let rest = if more > 0 {
            format!("\n  ... and {more} more")
        } else {
            String::new()
        };
        return Err(Failure::Usage(anyhow!(
            "nothing published; {count} invalid document(s):\n  {}{rest}",
            problems.join("\n  ")
        )));
    }
    if total == 0 {
        return Err(Failure::Usage(anyhow!("{name}: no events in the input")));
    }

    input
        .seek(SeekFrom::Start(0))
        .with_context(|| format!("cannot read {name} again"))?;
    let producer = Producer::connect(&g.amqp, &g.prefix, &process_name("publish"))
        .await
        .map_err(|e| Failure::Runtime(e.into()))?;
    let result = publish_stream(&producer, format, &name, &input).await;
    producer.close().await;
    let published = result?;
    outln!("published {published} events");
    Ok(())
}

/// The second reading: every document normalized again and published,
/// [`CHUNK`] events at a time; the count confirmed.
async fn publish_stream(
    producer: &Producer,
    format: Format,
    name: &str,
    input: &std::fs::File,
) -> Result<usize, Failure> {
    let mut published = 0usize;
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut docs = Documents::new(input);
    let mut chunk_from = 0usize;
    loop {
        let next = next_events(&mut docs, format);
        let last = next.is_none();
        if let Some((line, found)) = next {
            // Checked a moment ago: only an input changed since fails now.
            let found = found.map_err(|e| {
                Failure::Runtime(anyhow!(
                    "{name}:{line}: {e} (the input changed while it was read); {published} events published before it"
                ))
            })?;
            chunk.extend(found);
        }
        let full = chunk.len() >= CHUNK || docs.bytes_read() - chunk_from >= CHUNK_BYTES;
        if full || (last && !chunk.is_empty()) {
            chunk_from = docs.bytes_read();
            let events = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            match producer.publish_all(events).await {
                Ok(sent) => published += sent.len(),
                Err(ProducerError::Unavailable {
                    confirmed, reason, ..
                }) => {
                    return Err(Failure::Runtime(anyhow!(
                        "RabbitMQ is unavailable: {reason}; {} events published before it",
                        published + confirmed
                    )));
                }
                Err(ProducerError::Refused {
                    confirmed, source, ..
                }) => {
                    return Err(Failure::Runtime(anyhow!(
                        "RabbitMQ refused an event: {source}; {} events published before it",
                        published + confirmed
                    )));
                }
                Err(e) => {
                    return Err(Failure::Runtime(anyhow!(
                        "{e}; {published} events published before it"
                    )));
                }
            }
        }
        if last {
            return Ok(published);
        }
    }
}

/// The next document's events: `alertpost.event.v1` documents taken as
/// bytes and decoded straight into events ([`Raw::events`]), on each of
/// the two readings; other formats read as values, as their normalizers
/// need (as bytes they would be parsed twice).
///
/// [`Raw::events`]: alertpost_event::normalize::Raw::events
fn next_events<R: std::io::Read>(
    docs: &mut Documents<R>,
    format: Format,
) -> Option<(usize, Result<Vec<Event>, NormalizeError>)> {
    if format == Format::Events {
        let (line, raw) = docs.next_raw()?;
        return Some((line, raw.and_then(|raw| raw.events(format))));
    }
    let (line, doc) = docs.next()?;
    Some((line, doc.and_then(|doc| normalize(format, doc))))
}

/// The input as a file that can be read twice: the named file if it is a
/// regular one; stdin, or a pipe or device named (`<(...)`, `/dev/stdin`),
/// copied to an unnamed temporary file (removed when closed).
fn open_input(file: Option<&PathBuf>) -> Result<(String, std::fs::File), Failure> {
    match file {
        Some(path) if path.as_os_str() != "-" => {
            let name = path.display().to_string();
            let mut f = std::fs::File::open(path)
                .with_context(|| format!("cannot read {name}"))
                .map_err(Failure::Usage)?;
            if f.metadata().is_ok_and(|m| m.is_file()) {
                return Ok((name, f));
            }
            let spooled = spool(&mut f, &name)?;
            Ok((name, spooled))
        }
        _ => {
            let spooled = spool(&mut std::io::stdin().lock(), "stdin")?;
            Ok(("stdin".to_owned(), spooled))
        }
    }
}

fn spool(input: &mut impl std::io::Read, name: &str) -> Result<std::fs::File, Failure> {
    let mut spool = tempfile::tempfile()
        .with_context(|| format!("cannot create a temporary file to read {name} into"))?;
    std::io::copy(input, &mut spool)
        .with_context(|| format!("cannot read {name} into a temporary file"))?;
    spool
        .seek(SeekFrom::Start(0))
        .with_context(|| format!("cannot read {name}'s temporary file"))?;
    Ok(spool)
}
