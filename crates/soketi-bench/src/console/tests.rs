use super::{Chunked, ConsoleReport, Events, Reader};

/// A stream of the shape the server sends, with what a Server-Sent Events reader must also
/// take: a comment, a field other than `data`, an event of two `data` lines, an empty `data`,
/// and lines ended by CR LF.
const STREAM: &str = "data: {\"type\":\"hello\",\"app_id\":\"app-id\"}\n\n\
    : a comment\n\n\
    event: ignored\ndata: {\"type\":\"event\",\"data\":\"a: b\"}\n\n\
    data: first\ndata:second\n\n\
    data\n\n\
    data: {\"type\":\"dropped\",\"count\":7}\r\n\r\n";

/// The data of the events of [`STREAM`].
const EVENTS: &[&str] = &[
    "{\"type\":\"hello\",\"app_id\":\"app-id\"}",
    "{\"type\":\"event\",\"data\":\"a: b\"}",
    "first\nsecond",
    "",
    "{\"type\":\"dropped\",\"count\":7}",
];

/// The events that `pieces`, fed in turn to one reader, end.
fn events(pieces: &[&[u8]]) -> Vec<String> {
    let mut events = Events::default();
    let mut found = Vec::new();
    for piece in pieces {
        events.feed(piece, |data| {
            found.push(String::from_utf8(data.to_vec()).expect("UTF-8 data"));
        });
    }
    found
}

#[test]
fn splits_events_however_the_reads_cut_them() {
    let bytes = STREAM.as_bytes();
    assert_eq!(events(&[bytes]), EVENTS);
    for cut in 0..=bytes.len() {
        let (head, tail) = bytes.split_at(cut);
        assert_eq!(events(&[head, tail]), EVENTS, "cut at {cut}");
    }
    let one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(events(&one_by_one), EVENTS);
    // An event whose blank line has not come yet is not over.
    assert_eq!(events(&[b"data: x\n"]), Vec::<String>::new());
}

/// `body` in the chunked transfer coding, `size` bytes a chunk, then the last chunk and a
/// trailer.
fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for (index, chunk) in body.chunks(size).enumerate() {
        // An extension on some chunks, which a reader skips.
        let extension = if index % 2 == 1 { ";name=value" } else { "" };
        out.extend_from_slice(format!("{:X}{extension}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\nTrailer: x\r\n\r\n");
    out
}

#[test]
fn undoes_chunks_however_the_reads_cut_them() {
    let body = STREAM.as_bytes();
    for size in [1, 7, 40, body.len()] {
        let coded = chunked(body, size);
        for cut in 0..=coded.len() {
            let mut chunks = Chunked::default();
            let mut out = Vec::new();
            for piece in [&coded[..cut], &coded[cut..]] {
                chunks
                    .feed(piece, |data| out.extend_from_slice(data))
                    .expect("a valid chunked body");
            }
            assert_eq!(out, body, "chunks of {size}, cut at {cut}");
            assert!(chunks.ended(), "chunks of {size}, cut at {cut}");
        }
    }
    let mut chunks = Chunked::default();
    assert!(chunks.feed(b"zz\r\n", |_| {}).is_err());
}

#[test]
fn counts_lines_by_type_and_sums_the_dropped() {
    let mut body = STREAM.as_bytes().to_vec();
    body.extend_from_slice(
        b"data: {\"type\":\"event\"}\n\ndata: {\"type\":\"dropped\",\"count\":3}\n\n",
    );
    let coded = chunked(&body, 13);
    for cut in [0, 1, 20, coded.len() / 2, coded.len()] {
        let mut reader = Reader::new(true);
        reader.feed(&coded[..cut]).expect("a valid body");
        reader.feed(&coded[cut..]).expect("a valid body");
        assert!(reader.ended());
        let ConsoleReport {
            lines,
            events,
            dropped,
            connected,
            by_type,
        } = reader.report;
        assert_eq!((lines, events, dropped, connected), (7, 2, 10, true));
        let by_type: Vec<(&str, u64)> = by_type
            .iter()
            .map(|(kind, lines)| (kind.as_str(), *lines))
            .collect();
        assert_eq!(
            by_type,
            [
                ("dropped", 2),
                ("event", 2),
                ("hello", 1),
                ("unreadable", 2)
            ]
        );
    }
    // A body without chunks is read as it comes.
    let mut reader = Reader::new(false);
    reader.feed(&body).expect("a plain body");
    assert_eq!((reader.report.lines, reader.ended()), (7, false));
}
