//! The console's tap: one live debug console stream (`GET /apps/{id}/console`, Server-Sent
//! Events) held open on the app over the measured phase, so that the figures show what an open
//! console costs the server.
//!
//! As the publishers do, it writes its signed request straight on the socket and reads the
//! answer itself: the head, then the body through the chunked transfer coding, then the `data:`
//! fields of the events. One task reads the stream as it comes, so that the server's queue for
//! this console drains as fast as the server fills it, and counts each line by type; of a
//! line's JSON only `type` and `count` are kept.

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Plan;
use crate::error::{BenchError, HttpError};
use crate::http::{Head, get_request, parse_head};

/// How long the stream may take to answer and send its first line: the `hello`, which the
/// server sends once the console is registered, so that every line after it is built.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Once the tap is stopped, the stream is read until it has been quiet this long, so that the
/// lines of the last publishes, built as they were answered, are counted too.
const SETTLE_QUIET: Duration = Duration::from_millis(100);

/// The longest the stream is read after the tap is stopped.
const SETTLE_MAX: Duration = Duration::from_secs(1);

/// Bytes read at a time.
const READ_SIZE: usize = 64 * 1024;

/// The longest chunk-size line accepted (hex digits and extensions).
const MAX_SIZE_LINE: usize = 1024;

/// What the console's stream brought over the run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConsoleReport {
    /// Lines received, of every type.
    pub lines: u64,
    /// Lines of type `event`: one per channel of each publish, and one per client event.
    pub events: u64,
    /// Lines the server dropped because this console's queue was full: the sum of the `count`
    /// of the `dropped` lines.
    pub dropped: u64,
    /// Whether the stream was still open when the tap stopped (false when the server closed it
    /// or it broke).
    pub connected: bool,
    /// Lines received, by type (`unreadable` for data that is no JSON object with a `type`).
    pub by_type: BTreeMap<String, u64>,
}

/// What the tap reads of a line's JSON; the other fields are skipped.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    /// The lines dropped, in a `dropped` line.
    count: Option<u64>,
}

impl ConsoleReport {
    /// Counts one line: the data of one event of the stream.
    fn count(&mut self, data: &[u8]) {
        self.lines += 1;
        let kind = match serde_json::from_slice::<Line<'_>>(data) {
            Ok(line) => {
                if line.kind == "dropped" {
                    self.dropped += line.count.unwrap_or(0);
                }
                line.kind
            }
            Err(_) => Cow::Borrowed("unreadable"),
        };
        if kind == "event" {
            self.events += 1;
        }
        match self.by_type.get_mut(kind.as_ref()) {
            Some(lines) => *lines += 1,
            None => {
                self.by_type.insert(kind.into_owned(), 1);
            }
        }
    }
}

/// One console stream open on the app, read on a task of its own until [`Tap::stop`] (or until
/// the tap is dropped).
pub(crate) struct Tap {
    stop: watch::Sender<bool>,
    task: JoinHandle<ConsoleReport>,
}

impl Tap {
    /// Opens the stream on the plan's first server and waits for its first line, so that the
    /// console is in place before anything is measured. Fails when the server answers another
    /// status than 200, or sends no line within [`OPEN_TIMEOUT`].
    pub(crate) async fn open(plan: &Plan) -> Result<Self, BenchError> {
        let server = *plan
            .servers
            .first()
            .ok_or_else(|| BenchError::Plan("a console without a server".into()))?;
        let (stream, reader) = tokio::time::timeout(OPEN_TIMEOUT, connect(plan, server))
            .await
            .map_err(|_| {
                BenchError::Console(format!("no first line within {} s", OPEN_TIMEOUT.as_secs()))
            })??;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(read(stream, reader, stopped));
        Ok(Self { stop, task })
    }

    /// Stops reading once the lines already on their way are in, and returns the counts.
    pub(crate) async fn stop(self) -> ConsoleReport {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// Sends the signed request on a connection of its own, refuses any answer but 200, and reads
/// the body up to its first line.
async fn connect(plan: &Plan, server: SocketAddr) -> Result<(TcpStream, Reader), BenchError> {
    let failed = |err: HttpError| BenchError::Console(err.to_string());
    let path = format!("/apps/{}/console", plan.app.id);
    let request = get_request(&plan.app, server, &path, &[]);
    let (mut stream, head, buf) = request_head(server, &request).await.map_err(failed)?;
    if head.status != 200 {
        return Err(BenchError::ConsoleRefused {
            status: head.status,
        });
    }
    let mut reader = Reader::new(head.chunked);
    reader.feed(&buf[head.size..]).map_err(failed)?;
    first_line(&mut stream, &mut reader).await.map_err(failed)?;
    Ok((stream, reader))
}

/// Connects to `server`, sends `request` and reads the answer's head; gives the bytes read so
/// far, which may hold the start of the body.
async fn request_head(
    server: SocketAddr,
    request: &[u8],
) -> Result<(TcpStream, Head, Vec<u8>), HttpError> {
    let mut stream = TcpStream::connect(server).await?;
    stream.set_nodelay(true)?;
    stream.write_all(request).await?;
    let mut buf = Vec::with_capacity(READ_SIZE);
    loop {
        if let Some(head) = parse_head(&buf)? {
            return Ok((stream, head, buf));
        }
        buf.reserve(READ_SIZE);
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(HttpError::Closed);
        }
    }
}

/// Reads until `reader` has counted a line.
async fn first_line(stream: &mut TcpStream, reader: &mut Reader) -> Result<(), HttpError> {
    let mut buf = Vec::with_capacity(READ_SIZE);
    while reader.report.lines == 0 {
        buf.clear();
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(HttpError::Closed);
        }
        reader.feed(&buf)?;
        if reader.ended() {
            return Err(HttpError::Closed);
        }
    }
    Ok(())
}

/// Reads the stream as it comes until `stop` turns true, then until it is quiet, and returns the
/// counts; ends early if the stream does.
async fn read(
    mut stream: TcpStream,
    mut reader: Reader,
    mut stop: watch::Receiver<bool>,
) -> ConsoleReport {
    let mut buf = Vec::with_capacity(READ_SIZE);
    let mut open = true;
    loop {
        buf.clear();
        let read = tokio::select! {
            biased;
            _ = stop.changed() => break,
            read = stream.read_buf(&mut buf) => read,
        };
        if !reader.take(read, &buf) {
            open = false;
            break;
        }
    }
    let settle_end = tokio::time::Instant::now() + SETTLE_MAX;
    while open && tokio::time::Instant::now() < settle_end {
        buf.clear();
        let Ok(read) = tokio::time::timeout(SETTLE_QUIET, stream.read_buf(&mut buf)).await else {
            break;
        };
        open = reader.take(read, &buf);
    }
    reader.report.connected = open;
    reader.report
}

/// The stream's body, read by read: undone from its transfer coding, split into events, and
/// each event's data counted.
pub(crate) struct Reader {
    /// The chunked transfer coding, when the body has it.
    chunks: Option<Chunked>,
    events: Events,
    pub(crate) report: ConsoleReport,
}

impl Reader {
    /// A reader of a body that comes in chunks when `chunked`, as it is otherwise.
    pub(crate) fn new(chunked: bool) -> Self {
        Self {
            chunks: chunked.then(Chunked::default),
            events: Events::default(),
            report: ConsoleReport {
                connected: true,
                ..ConsoleReport::default()
            },
        }
    }

    /// Counts the lines that `bytes`, the next bytes of the body, end.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<(), HttpError> {
        let Self {
            chunks,
            events,
            report,
        } = self;
        let mut body = |bytes: &[u8]| events.feed(bytes, |data| report.count(data));
        match chunks {
            Some(chunks) => chunks.feed(bytes, &mut body),
            None => {
                body(bytes);
                Ok(())
            }
        }
    }

    /// Whether the body is over (its last chunk came).
    pub(crate) fn ended(&self) -> bool {
        self.chunks.as_ref().is_some_and(Chunked::ended)
    }

    /// Feeds the bytes of one read that gave `read` into `buf`; whether the stream is still
    /// open after it.
    fn take(&mut self, read: std::io::Result<usize>, buf: &[u8]) -> bool {
        matches!(read, Ok(bytes) if bytes > 0) && self.feed(buf).is_ok() && !self.ended()
    }
}

/// Splits a Server-Sent Events stream into the data of its events, however the reads cut it:
/// the `data` fields of an event are joined by line breaks, a blank line ends the event, and
/// comments and other fields are skipped.
#[derive(Debug, Default)]
pub(crate) struct Events {
    /// The start of a line whose end has not come yet.
    partial: Vec<u8>,
    /// The data of the event being read.
    data: Vec<u8>,
    /// Whether the event being read has a `data` field (an empty one counts).
    has_data: bool,
}

impl Events {
    /// Reads `bytes`, the next bytes of the stream, calling `on_event` with the data of each
    /// event they end.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], mut on_event: impl FnMut(&[u8])) {
        while let Some(end) = bytes.iter().position(|&byte| byte == b'\n') {
            if self.partial.is_empty() {
                self.line(&bytes[..end], &mut on_event);
            } else {
                // The line began in an earlier read; its buffer is put back to keep its
                // capacity.
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&bytes[..end]);
                self.line(&line, &mut on_event);
                line.clear();
                self.partial = line;
            }
            bytes = &bytes[end + 1..];
        }
        self.partial.extend_from_slice(bytes);
    }

    /// Takes one whole line, without its line feed.
    fn line(&mut self, line: &[u8], on_event: &mut impl FnMut(&[u8])) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data {
                on_event(&self.data);
            }
            self.data.clear();
            self.has_data = false;
            return;
        }
        let (name, value) = match line.iter().position(|&byte| byte == b':') {
            Some(colon) => (&line[..colon], &line[colon + 1..]),
            None => (line, &[][..]),
        };
        // A comment (a line that starts with a colon) has an empty name, and so is skipped with
        // the fields other than `data`.
        if name != b"data" {
            return;
        }
        if self.has_data {
            self.data.push(b'\n');
        }
        self.data
            .extend_from_slice(value.strip_prefix(b" ").unwrap_or(value));
        self.has_data = true;
    }
}

/// Undoes HTTP/1.1's chunked transfer coding as the bytes come, however the reads cut them.
#[derive(Debug, Default)]
pub(crate) struct Chunked {
    state: ChunkState,
    /// The start of a chunk-size line whose end has not come yet.
    line: Vec<u8>,
}

/// Where [`Chunked`] is in the body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ChunkState {
    /// In a chunk-size line.
    #[default]
    Size,
    /// In a chunk's data, with this many bytes left.
    Data(u64),
    /// After a chunk's data, up to the end of its line.
    DataEnd,
    /// After the last chunk: the body is over, and trailers are skipped.
    Done,
}

impl Chunked {
    /// Reads `input`, the next bytes of the body, calling `out` with the data it holds.
    pub(crate) fn feed(
        &mut self,
        mut input: &[u8],
        mut out: impl FnMut(&[u8]),
    ) -> Result<(), HttpError> {
        while !input.is_empty() {
            match self.state {
                ChunkState::Size => {
                    let Some(end) = input.iter().position(|&byte| byte == b'\n') else {
                        self.line.extend_from_slice(input);
                        if self.line.len() > MAX_SIZE_LINE {
                            return Err(HttpError::Malformed("a chunk-size line too long"));
                        }
                        return Ok(());
                    };
                    self.line.extend_from_slice(&input[..end]);
                    input = &input[end + 1..];
                    let size = chunk_size(&self.line)?;
                    self.line.clear();
                    self.state = match size {
                        0 => ChunkState::Done,
                        size => ChunkState::Data(size),
                    };
                }
                ChunkState::Data(left) => {
                    let take =
                        usize::try_from(left).map_or(input.len(), |left| left.min(input.len()));
                    out(&input[..take]);
                    input = &input[take..];
                    self.state = match left - take as u64 {
                        0 => ChunkState::DataEnd,
                        left => ChunkState::Data(left),
                    };
                }
                ChunkState::DataEnd => match input.iter().position(|&byte| byte == b'\n') {
                    Some(end) => {
                        input = &input[end + 1..];
                        self.state = ChunkState::Size;
                    }
                    None => input = &[],
                },
                ChunkState::Done => return Ok(()),
            }
        }
        Ok(())
    }

    /// Whether the last chunk came.
    pub(crate) fn ended(&self) -> bool {
        self.state == ChunkState::Done
    }
}

/// The size a chunk-size line gives: hex digits, then perhaps `;` and extensions.
fn chunk_size(line: &[u8]) -> Result<u64, HttpError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line.split(|&byte| byte == b';').next().unwrap_or_default();
    std::str::from_utf8(digits)
        .ok()
        .map(str::trim)
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|digits| u64::from_str_radix(digits, 16).ok())
        .ok_or(HttpError::Malformed("a bad chunk size"))
}
