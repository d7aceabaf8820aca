//! Splitting an input into JSON documents: one document, or several
//! separated by whitespace (NDJSON), as the input is read.
//!
//! The input is read in blocks and each document parsed from the block
//! in memory: serde_json's reader-based parser takes one byte at a time
//! through `Read`, which cost `alertpost publish` about 49 000
//! instructions per document (callgrind), against about 13 000 here.
//! [`Documents::next_raw`] finds a document's end without building it and
//! hands out its bytes, which [`Raw::events`] decodes straight into events
//! where it can: only its syntax is checked then (what else building a value
//! refuses, a string's UTF-8, a number's range, nesting past 128 levels, is
//! left to that reader, and the split goes on past it).

use std::io::Read;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value;

use super::{Format, NormalizeError, SliceError, normalize_slice};
use crate::event::Event;

/// Bytes asked of the reader at a time; for a document longer than what is
/// held, as much again as is held, so a large one is parsed a few times,
/// not once per block.
const BLOCK: usize = 64 * 1024;

/// Every document of `input`, each with the line it starts on.
pub fn documents(input: &[u8]) -> Vec<(usize, Result<Value, NormalizeError>)> {
    Documents::new(input).collect()
}

/// [`documents`] as it reads: one document at a time from `R`, so an input
/// of any size takes the memory of its largest document (up to twice over,
/// while it is read) and a block (`alertpost publish` of a file or stdin).
/// Each read waits for a block or the end, which suits files; a slow pipe
/// hands its documents on a block at a time. After a document that is not
/// valid JSON it ends: the rest of the input cannot be split reliably.
pub struct Documents<R: Read> {
    input: R,
    /// Read and not yet dropped; `buf[pos..]` is not yet taken.
    buf: Vec<u8>,
    pos: usize,
    /// Bytes dropped from the front of `buf` so far.
    dropped: usize,
    /// The line (1-based) of `buf[pos]`, and the bytes before it on it.
    line: usize,
    column: usize,
    eof: bool,
    /// A read failed after others had brought bytes: reported once those
    /// are taken.
    failed: Option<std::io::Error>,
    done: bool,
    /// [`BLOCK`], but in tests.
    block: usize,
}

impl<R: Read> Documents<R> {
    pub fn new(input: R) -> Documents<R> {
        Documents::with_block(input, BLOCK)
    }

    fn with_block(input: R, block: usize) -> Documents<R> {
        Documents {
            block,
            input,
            buf: Vec::new(),
            pos: 0,
            dropped: 0,
            line: 1,
            column: 0,
            eof: false,
            failed: None,
            done: false,
        }
    }

    /// Bytes of the input taken by the documents so far.
    pub fn bytes_read(&self) -> usize {
        self.dropped + self.pos
    }

    /// Takes `n` more bytes, counting lines.
    fn advance(&mut self, n: usize) {
        let taken = &self.buf[self.pos..self.pos + n];
        match taken.iter().rposition(|&b| b == b'\n') {
            Some(last) => {
                self.line += taken.iter().filter(|&&b| b == b'\n').count();
                self.column = n - last - 1;
            }
            None => self.column += n,
        }
        self.pos += n;
    }

    /// Drops what was taken and reads a block more, or as much again as is
    /// held if that is more (a long document), or to the end.
    fn fill(&mut self) -> std::io::Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.buf.drain(..self.pos);
        self.dropped += self.pos;
        self.pos = 0;
        let held = self.buf.len();
        let want = self.block.max(held);
        // A long document's buffer is not kept for the short ones after it.
        if self.buf.capacity() > 4 * self.block && held + want < self.buf.capacity() / 2 {
            self.buf.shrink_to(held + want);
        }
        self.buf.resize(held + want, 0);
        let mut got = held;
        while got < self.buf.len() {
            match self.input.read(&mut self.buf[got..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if got > held => {
                    self.failed = Some(e);
                    break;
                }
                Err(e) => {
                    self.buf.truncate(held);
                    return Err(e);
                }
            }
        }
        self.buf.truncate(got);
        Ok(())
    }

    fn fail<U>(&mut self, reason: String) -> Option<(usize, Result<U, NormalizeError>)> {
        self.done = true;
        Some((self.line, Err(NormalizeError::new(reason))))
    }

    /// The next document as its bytes, with where it starts: its syntax
    /// checked (its end found without building it), not parsed.
    pub fn next_raw(&mut self) -> Option<(usize, Result<Raw, NormalizeError>)> {
        self.take::<IgnoredAny, _>(|_, bytes, line, column| Raw {
            bytes: bytes.to_vec(),
            line,
            column,
        })
    }

    /// The next document parsed as `T`; `keep` is given it, its bytes, and
    /// the line and column it starts at, and makes the item.
    fn take<T: DeserializeOwned, U>(
        &mut self,
        keep: impl FnOnce(T, &[u8], usize, usize) -> U,
    ) -> Option<(usize, Result<U, NormalizeError>)> {
        if self.done {
            return None;
        }
        loop {
            // JSON's whitespace (not the form feed `is_ascii_whitespace` adds).
            let blank = self.buf[self.pos..]
                .iter()
                .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
                .count();
            self.advance(blank);
            if self.pos == self.buf.len() {
                if self.eof {
                    self.done = true;
                    return None;
                }
                if let Err(e) = self.fill() {
                    return self.fail(format!("cannot read the input: {e}"));
                }
                continue;
            }
            let rest = &self.buf[self.pos..];
            let mut stream = serde_json::Deserializer::from_slice(rest).into_iter::<T>();
            let parsed = match stream.next() {
                // Worded and placed as a value's parse has them (`IgnoredAny`
                // words a few differently), so the refusals are the same
                // whatever `T` is. Only errors pay for the second parse.
                Some(Err(e)) => Some(Err(value_error(rest).unwrap_or(e))),
                other => other,
            };
            let used = stream.byte_offset();
            // A document that reaches the end of what is held may go on
            // (a number) or be cut short: read more, unless the input ended.
            // An error at the very end may be a cut too (a number's digits
            // out of range until its exponent arrives).
            let cut = match &parsed {
                Some(Ok(_)) => used >= rest.len(),
                Some(Err(e)) => {
                    e.is_eof()
                        || (e.line() > 0 && offset_of(rest, e.line(), e.column()) >= rest.len())
                }
                None => true,
            };
            if cut && !self.eof {
                if let Err(e) = self.fill() {
                    return self.fail(format!("cannot read the input: {e}"));
                }
                continue;
            }
            return match parsed {
                Some(Ok(doc)) => {
                    let line = self.line;
                    let bytes = &self.buf[self.pos..self.pos + used];
                    let kept = keep(doc, bytes, line, self.column);
                    self.advance(used);
                    Some((line, Ok(kept)))
                }
                Some(Err(e)) => {
                    let reason = located(&e, self.line, self.column);
                    self.fail(reason)
                }
                None => {
                    self.done = true;
                    None
                }
            };
        }
    }
}

impl<R: Read> Iterator for Documents<R> {
    type Item = (usize, Result<Value, NormalizeError>);

    fn next(&mut self) -> Option<Self::Item> {
        self.take::<Value, _>(|doc, _, _, _| doc)
    }
}

/// A document's bytes, and where in the input it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw {
    pub bytes: Vec<u8>,
    /// Its line (1-based).
    pub line: usize,
    /// The bytes before it on its line.
    pub column: usize,
}

impl Raw {
    /// Its events, as `format` reads them ([`normalize_slice`]); what is
    /// not JSON is refused with its place in the input.
    pub fn events(&self, format: Format) -> Result<Vec<Event>, NormalizeError> {
        normalize_slice(format, &self.bytes).map_err(|e| match e {
            SliceError::Json(e) => NormalizeError::new(located(&e, self.line, self.column)),
            SliceError::Normalize(e) => e,
        })
    }
}

/// What parsing the document at the start of `rest` as a value refuses.
fn value_error(rest: &[u8]) -> Option<serde_json::Error> {
    match serde_json::Deserializer::from_slice(rest)
        .into_iter::<Value>()
        .next()
    {
        Some(Err(e)) => Some(e),
        _ => None,
    }
}

/// serde_json's error in a document that starts at `line`, `column` of
/// the input, with its place counted from the start of the input.
fn located(e: &serde_json::Error, line: usize, column: usize) -> String {
    let text = e.to_string();
    if e.line() == 0 {
        return format!("invalid JSON: {text}");
    }
    let what = text
        .strip_suffix(&format!(" at line {} column {}", e.line(), e.column()))
        .unwrap_or(&text);
    let at_line = line + e.line() - 1;
    let at_column = if e.line() == 1 {
        column + e.column()
    } else {
        e.column()
    };
    format!("invalid JSON: {what} at line {at_line} column {at_column}")
}

/// Where serde_json's `line` and `column` (as it counts them for a slice)
/// fall in `text`, as a byte offset.
fn offset_of(text: &[u8], line: usize, column: usize) -> usize {
    let start = match line {
        0 | 1 => 0,
        _ => text
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(line - 2)
            .map_or(text.len(), |(i, _)| i + 1),
    };
    start + column
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_one_or_many() {
        let one = documents(
            br#"{"a": [1,
            2]}"#,
        );
        assert_eq!(one.len(), 1);
        let many = documents(b"{\"a\":1}\n{\"a\":2}\n\n{\"a\":3}\n");
        let lines: Vec<usize> = many.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [1, 2, 4]);
        let bad = documents(b"{\"a\":1}\n{\"a\":");
        assert_eq!(bad[1].0, 2);
        assert!(
            bad[1].1.as_ref().unwrap_err().reason.contains("line 2"),
            "{bad:?}"
        );
        // Multi-line documents move the count on too.
        let spread = documents(b"{\"a\":\n1}\n\n{\"b\":\n\n2}\n{\"c\":3}");
        let lines: Vec<usize> = spread.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [1, 4, 7]);
        // Scalars (normalizing refuses them, with their line), adjacent
        // objects, leading blank lines.
        let mixed = documents(b"\n\n1\n\"x\"\n{}{\"b\":1}\n  [1,\n2]\n");
        let lines: Vec<usize> = mixed.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [3, 4, 5, 5, 6], "{mixed:?}");
        assert!(mixed.iter().all(|(_, d)| d.is_ok()));
    }

    #[test]
    fn splitting_is_linear_in_the_input() {
        // 20 000 documents took 23 s (quadratic); a guard, not a benchmark.
        let input = "{\"source\":\"s\",\"status\":\"firing\",\"title\":\"t\"}\n".repeat(20_000);
        let started = std::time::Instant::now();
        let docs = documents(input.as_bytes());
        assert_eq!(docs.len(), 20_000);
        assert_eq!(docs[19_999].0, 20_000);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    /// A reader that hands out at most `step` bytes a call: every split
    /// of a document between reads.
    struct Trickle<'a> {
        input: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.input.len());
            buf[..n].copy_from_slice(&self.input[..n]);
            self.input = &self.input[n..];
            Ok(n)
        }
    }

    fn shown(docs: Vec<(usize, Result<Value, NormalizeError>)>) -> Vec<(usize, String)> {
        docs.into_iter()
            .map(|(l, d)| (l, d.map_or_else(|e| e.reason, |v| v.to_string())))
            .collect()
    }

    #[test]
    fn reads_split_anywhere_give_the_same_documents() {
        let input: &[u8] =
            b"12\n 345 {\"a\": \"\xc3\xa9\\u00e9\"}\n[1,\n2.5e3]true null\n\"x\"\n{\"b\":";
        let whole = shown(documents(input));
        assert_eq!(whole.len(), 8, "{whole:?}");
        assert_eq!(whole[0], (1, "12".to_owned()));
        assert_eq!(whole[1], (2, "345".to_owned()));
        for step in 1..8 {
            for block in 1..8 {
                let split = shown(Documents::with_block(Trickle { input, step }, block).collect());
                assert_eq!(split, whole, "reads of {step} bytes, blocks of {block}");
            }
        }
    }

    #[test]
    fn an_error_names_the_line_and_column_in_the_input() {
        let docs = documents(b"{\"a\":1}\n\n  {\"b\": tru }\n{}");
        assert_eq!(docs.len(), 2, "it stops at the invalid one");
        let (line, err) = &docs[1];
        assert_eq!(*line, 3);
        let reason = &err.as_ref().unwrap_err().reason;
        assert!(reason.ends_with("at line 3 column 12"), "{reason}");
        let docs = documents(b"{}\n{\"b\":\n  x}");
        let reason = &docs[1].1.as_ref().unwrap_err().reason;
        assert!(reason.ends_with("at line 3 column 3"), "{reason}");
    }

    #[test]
    fn a_document_longer_than_a_block_is_read_whole() {
        let big = format!("{{\"k\":\"{}\"}}", "x".repeat(5 * BLOCK));
        let input = format!("{{}}\n{big}\n{{\"after\":1}}\n");
        let docs = documents(input.as_bytes());
        let lines: Vec<usize> = docs.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [1, 2, 3]);
        assert_eq!(
            docs[1].1.as_ref().unwrap()["k"].as_str().unwrap().len(),
            5 * BLOCK
        );
        // The long document's buffer is given back for the short ones after.
        let input = format!("{big}\n{}", "{\"a\":1}\n".repeat(3 * BLOCK / 8));
        let mut docs = Documents::new(input.as_bytes());
        let mut count = 0;
        for (_, d) in docs.by_ref() {
            d.unwrap();
            count += 1;
        }
        assert_eq!(count, 1 + 3 * BLOCK / 8);
        assert!(docs.buf.capacity() <= 4 * BLOCK, "{}", docs.buf.capacity());
    }

    /// Hands out `first`, then fails.
    struct Failing<'a> {
        first: &'a [u8],
    }

    impl Read for Failing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.first.is_empty() {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = self.first.len().min(buf.len());
            buf[..n].copy_from_slice(&self.first[..n]);
            self.first = &self.first[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_failed_read_comes_after_the_documents_read_before_it() {
        let docs = shown(
            Documents::new(Failing {
                first: b"{}\n[1]\n",
            })
            .collect(),
        );
        assert_eq!(docs.len(), 3, "{docs:?}");
        assert_eq!(docs[0], (1, "{}".to_owned()));
        assert_eq!(docs[1], (2, "[1]".to_owned()));
        assert_eq!(docs[2].0, 3);
        assert!(docs[2].1.contains("disk on fire"), "{docs:?}");
    }

    #[test]
    fn a_number_is_read_whole_wherever_a_block_ends() {
        // Its digits alone are out of range; with the exponent, 1e10.
        let input = format!("1{}e-300\n[2]", "0".repeat(310));
        let whole = shown(documents(input.as_bytes()));
        assert_eq!(whole.len(), 2, "{whole:?}");
        assert!(whole[0].1.starts_with("100000000"), "{whole:?}");
        for block in [7, 64, 300, 311, 312, 313] {
            let split = shown(Documents::with_block(input.as_bytes(), block).collect());
            assert_eq!(split, whole, "blocks of {block}");
        }
    }

    #[test]
    fn only_json_whitespace_separates_documents() {
        let docs = documents(b"{}\x0c{}");
        assert_eq!(docs.len(), 2);
        assert!(docs[1].1.is_err(), "{docs:?}");
    }

    #[test]
    fn memory_is_that_of_a_block_and_a_document() {
        let input = "{\"source\":\"s\",\"status\":\"firing\",\"title\":\"t\"}\n".repeat(50_000);
        let mut docs = Documents::new(input.as_bytes());
        let mut held = 0;
        while let Some((_, d)) = docs.next() {
            d.unwrap();
            held = held.max(docs.buf.capacity());
        }
        assert_eq!(docs.bytes_read(), input.len());
        assert!(held <= 3 * BLOCK, "held {held} bytes of {}", input.len());
    }

    #[test]
    fn raw_documents_split_as_values_do_and_keep_their_bytes_and_place() {
        let input = b"{\"a\": 1}\n  [1,\n2]\n\n  {\"b\":\n 1e400}\n{\"c\":3}";
        for block in [3, 8, 64, BLOCK] {
            let mut docs = Documents::with_block(&input[..], block);
            let mut raws = Vec::new();
            while let Some((line, raw)) = docs.next_raw() {
                let raw = raw.unwrap();
                assert_eq!(line, raw.line);
                raws.push(raw);
            }
            let texts: Vec<(usize, usize, &str)> = raws
                .iter()
                .map(|r| (r.line, r.column, std::str::from_utf8(&r.bytes).unwrap()))
                .collect();
            assert_eq!(
                texts,
                [
                    (1, 0, "{\"a\": 1}"),
                    (2, 2, "[1,\n2]"),
                    (5, 2, "{\"b\":\n 1e400}"),
                    (7, 0, "{\"c\":3}"),
                ],
                "blocks of {block}"
            );
            // The same documents as the splitter that builds them, up to the
            // one only building finds wrong...
            let values = documents(input);
            for (raw, (line, value)) in raws.iter().zip(&values[..2]) {
                assert_eq!(raw.line, *line);
                let value = value.as_ref().unwrap();
                assert_eq!(serde_json::from_slice::<Value>(&raw.bytes).unwrap(), *value);
            }
            assert!(values[2].1.is_err(), "{values:?}");
            // ...which is placed in the input.
            let e = raws[2].events(Format::Events).unwrap_err().reason;
            assert!(e.contains("out of range at line 6 column"), "{e}");
        }
        // A place on the document's first line counts the bytes before it,
        // as the value splitter counts them.
        let input = b"{\"x\":1} {\"n\": 1e400}";
        let mut docs = Documents::new(&input[..]);
        docs.next_raw().unwrap().1.unwrap();
        let (_, raw) = docs.next_raw().unwrap();
        let e = raw.unwrap().events(Format::Events).unwrap_err().reason;
        assert_eq!(e, documents(input)[1].1.as_ref().unwrap_err().reason);
        assert!(e.ends_with("at line 1 column 19"), "{e}");
    }

    #[test]
    fn raw_documents_are_refused_and_split_as_values_are() {
        // Bad JSON ends the split where, and with the words with which, the
        // value splitter ends it (`IgnoredAny` words some differently).
        for input in [
            &b"{}\n{\"a\":"[..],
            b"{}\n[1,]",
            b"{}\n  {\"a\":1,}",
            b"{}\n1.",
            b"{}\n{\"a\" 1}",
        ] {
            let values = documents(input);
            let mut docs = Documents::new(input);
            assert!(docs.next_raw().unwrap().1.is_ok());
            let (line, bad) = docs.next_raw().unwrap();
            assert_eq!(line, values[1].0);
            assert_eq!(
                bad.unwrap_err().reason,
                values[1].1.as_ref().unwrap_err().reason,
                "{}",
                String::from_utf8_lossy(input)
            );
            assert!(docs.next_raw().is_none());
        }
        // Wherever the blocks end, the same documents.
        let input = b"{\"a\": [1, 2.5e3, \"x\\\"y\"]}\n123456789\n[{\"b\":\n{}}]  -0.25e-2\n\"s\"";
        let raw = |block: usize| -> Vec<Vec<u8>> {
            let mut docs = Documents::with_block(&input[..], block);
            std::iter::from_fn(|| docs.next_raw().map(|(_, r)| r.unwrap().bytes)).collect()
        };
        let whole = raw(BLOCK);
        assert_eq!(whole.len(), 5, "{whole:?}");
        for block in 1..12 {
            assert_eq!(raw(block), whole, "blocks of {block}");
        }
    }
}
