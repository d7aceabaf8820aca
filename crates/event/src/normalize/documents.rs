//! Splitting an input into JSON documents: one document, or several
//! separated by whitespace (NDJSON), as the input is read.
//!
//! The input is read in blocks and each document parsed from the block
//! in memory: serde_json's reader-based parser takes one byte at a time
//! through `Read`, which cost `alertpost publish` about 50 000
//! instructions per document (callgrind), against a few thousand here.

use std::io::Read;

use serde_json::Value;

use super::NormalizeError;

/// Bytes asked of the reader at a time; a document longer than what is
/// held doubles the next read, so a large one is parsed a few times, not
/// once per block.
const BLOCK: usize = 64 * 1024;

/// Every document of `input`, each with the line it starts on.
pub fn documents(input: &[u8]) -> Vec<(usize, Result<Value, NormalizeError>)> {
    Documents::new(input).collect()
}

/// [`documents`] as it reads: one document at a time from `R`, so an input
/// of any size takes the memory of its largest document and a block
/// (`alertpost publish` of a file or stdin). After an invalid document it
/// ends: the rest of the input cannot be split reliably.
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

    /// Drops what was taken and reads `want` more bytes, or to the end.
    fn fill(&mut self, want: usize) -> std::io::Result<()> {
        self.buf.drain(..self.pos);
        self.dropped += self.pos;
        self.pos = 0;
        let goal = self.buf.len() + want;
        while self.buf.len() < goal {
            let held = self.buf.len();
            self.buf.resize(goal, 0);
            let read = self.input.read(&mut self.buf[held..]);
            self.buf.truncate(held + *read.as_ref().unwrap_or(&0));
            match read {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn fail(&mut self, reason: String) -> Option<(usize, Result<Value, NormalizeError>)> {
        self.done = true;
        Some((self.line, Err(NormalizeError::new(reason))))
    }
}

impl<R: Read> Iterator for Documents<R> {
    type Item = (usize, Result<Value, NormalizeError>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut want = self.block;
        loop {
            let blank = self.buf[self.pos..]
                .iter()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
            self.advance(blank);
            if self.pos == self.buf.len() {
                if self.eof {
                    self.done = true;
                    return None;
                }
                if let Err(e) = self.fill(self.block) {
                    return self.fail(format!("cannot read the input: {e}"));
                }
                continue;
            }
            let rest = &self.buf[self.pos..];
            let mut stream = serde_json::Deserializer::from_slice(rest).into_iter::<Value>();
            let parsed = stream.next();
            let used = stream.byte_offset();
            // A document that reaches the end of what is held may go on
            // (a number) or be cut short: read more, unless the input ended.
            let cut = match &parsed {
                Some(Ok(_)) => used >= rest.len(),
                Some(Err(e)) => e.is_eof(),
                None => true,
            };
            if cut && !self.eof {
                if let Err(e) = self.fill(want) {
                    return self.fail(format!("cannot read the input: {e}"));
                }
                want = want.saturating_mul(2);
                continue;
            }
            return match parsed {
                Some(Ok(doc)) => {
                    let line = self.line;
                    self.advance(used);
                    Some((line, Ok(doc)))
                }
                Some(Err(e)) => {
                    let reason = self.invalid(&e);
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

impl<R: Read> Documents<R> {
    /// serde_json's error, with its line and column counted from the start
    /// of the input rather than of the document.
    fn invalid(&self, e: &serde_json::Error) -> String {
        let text = e.to_string();
        if e.line() == 0 {
            return format!("invalid JSON: {text}");
        }
        let what = text
            .strip_suffix(&format!(" at line {} column {}", e.line(), e.column()))
            .unwrap_or(&text);
        let line = self.line + e.line() - 1;
        let column = if e.line() == 1 {
            self.column + e.column()
        } else {
            e.column()
        };
        format!("invalid JSON: {what} at line {line} column {column}")
    }
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
}
