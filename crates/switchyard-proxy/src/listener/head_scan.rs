//! A pure, incremental HTTP/1 head scanner: where a request head ends in bytes read in pieces,
//! and how it frames its body. No allocation; a fixed-size state.
//!
//! ```
//! use switchyard_proxy::listener::head_scan::{Framing, HeadScan};
//! let mut scan = HeadScan::default();
//! assert_eq!(scan.feed(b"POST / HTTP/1.1\r\nContent-Length: 5\r"), None);
//! assert_eq!(scan.feed(b"\n\r\nhello"), Some(2));
//! assert_eq!(scan.framing(), Framing::Length(5));
//! ```

/// Finds the end of a request head in bytes read in pieces: two line feeds in a row (CRLF CRLF,
/// or the bare LF LF that Pingora's parser also accepts), after at least one other byte (empty
/// lines before a request line do not end a head). On the way it notes how the head frames its
/// body, so that bytes after the head can be told apart from a pipelined next request.
#[derive(Debug, Default, Clone, Copy)]
pub struct HeadScan {
    seen_content: bool,
    newlines: u8,
    /// The start of the current line: enough for `content-length: ` and a 16-digit value.
    line: [u8; LINE_PREFIX],
    line_len: u8,
    /// The current line is longer than [`LINE_PREFIX`].
    line_cut: bool,
    framing: Framing,
}

/// How much of each head line [`HeadScan`] keeps to recognise the framing fields.
pub const LINE_PREFIX: usize = 32;

/// A request head's body framing, as far as [`HeadScan`] can tell.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No `Content-Length` and no `Transfer-Encoding`: no body.
    #[default]
    None,
    /// One `Content-Length` with this value.
    Length(u64),
    /// `Transfer-Encoding`, several or unreadable `Content-Length` fields: not known here.
    Unknown,
}

impl HeadScan {
    /// Feeds `bytes`; once a head end has been seen, the index in `bytes` of its last byte.
    ///
    /// Line by line: `memchr` finds each line feed, and only the start of a line (up to
    /// [`LINE_PREFIX`] bytes) is copied, so a long header line costs a vectorised search rather
    /// than a step per byte.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        if self.may_take_the_rest_in_one_pass() {
            if let Some(end) = self.feed_whole_head(bytes) {
                return Some(end);
            }
        }
        let mut start = 0;
        while let Some(rest) = bytes.get(start..) {
            let Some(n) = memchr::memchr(b'\n', rest) else {
                self.take_line_bytes(rest);
                return None;
            };
            self.take_line_bytes(&rest[..n]);
            self.end_line();
            self.newlines = self.newlines.saturating_add(1);
            let end = start + n;
            if self.newlines >= 2 && self.seen_content {
                return Some(end);
            }
            start = end + 1;
        }
        None
    }

    /// Nothing fed since the head began, or only the start of a first line that cannot be a
    /// framing field (the byte or two the keep-alive wait and the HTTP/2 preface check read
    /// ahead): [`Self::feed_whole_head`] may take the rest.
    fn may_take_the_rest_in_one_pass(&self) -> bool {
        let first_line_started = match self.line.get(..usize::from(self.line_len)) {
            Some([]) => !self.seen_content,
            Some([first, ..]) => !matches!(first, b'c' | b'C' | b't' | b'T'),
            None => false,
        };
        first_line_started && self.newlines == 0 && !self.line_cut && self.framing == Framing::None
    }

    /// The common case in one pass (see [`Self::may_take_the_rest_in_one_pass`]): the rest of a
    /// head in `bytes` whose lines all end in CRLF and whose framing lines hold no other carriage
    /// return. Only a line that starts with `c`/`C` or `t`/`T` can be a framing field, so the
    /// others cost a line-feed search and no copy. `None` (the state untouched) when the piece is
    /// anything else: a partial head, a bare LF, a carriage return that the general scan would
    /// skip, leading empty lines — the general scan then reads the piece from the start.
    fn feed_whole_head(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut framing = Framing::None;
        let mut seen_content = self.seen_content;
        // The end of a line begun in an earlier piece: content (not a framing field), whatever
        // its own bytes.
        let mut continuing = self.line_len > 0;
        let mut start = 0;
        loop {
            let rest = bytes.get(start..)?;
            let n = memchr::memchr(b'\n', rest)?;
            let line = rest.get(..n)?;
            let end = start + n;
            start = end + 1;
            // Every line ends in CR LF here: its content is what precedes the CR.
            let content = line.strip_suffix(b"\r")?;
            if std::mem::take(&mut continuing) {
                continue;
            }
            match content.first() {
                None if seen_content => break,
                // A leading empty line, or a carriage return the general scan would skip.
                None | Some(b'\r') => return None,
                Some(b'c' | b'C' | b't' | b'T') => {
                    // Any other carriage return in the line is skipped by the general scan,
                    // which changes what it keeps of the line (and whether it is cut).
                    if memchr::memchr(b'\r', content).is_some() {
                        return None;
                    }
                    let cut = content.len() > LINE_PREFIX;
                    let kept = content.get(..LINE_PREFIX).unwrap_or(content);
                    framing = framing_after_line(framing, kept, cut);
                }
                Some(_) => {}
            }
            seen_content = true;
        }
        // The state the general scan leaves at a head's end.
        self.seen_content = true;
        self.newlines = 2;
        self.line_len = 0;
        self.framing = framing;
        Some(start - 1)
    }

    /// Takes bytes of the current line (no line feed among them): a carriage return is skipped
    /// wherever it stands; any other byte is content, kept while the line's prefix has room.
    fn take_line_bytes(&mut self, mut piece: &[u8]) {
        if usize::from(self.line_len) == LINE_PREFIX {
            // The prefix is full: only whether the piece has content matters.
            if piece.iter().any(|&b| b != b'\r') {
                self.seen_content = true;
                self.newlines = 0;
                self.line_cut = true;
            }
            return;
        }
        while !piece.is_empty() {
            let run = memchr::memchr(b'\r', piece).unwrap_or(piece.len());
            if run > 0 {
                self.seen_content = true;
                self.newlines = 0;
                let kept = usize::from(self.line_len);
                let room = LINE_PREFIX.saturating_sub(kept);
                let take = run.min(room);
                if let (Some(slot), Some(from)) =
                    (self.line.get_mut(kept..kept + take), piece.get(..take))
                {
                    slot.copy_from_slice(from);
                    // `take` ≤ LINE_PREFIX, which fits a u8.
                    self.line_len += take as u8;
                }
                if run > room {
                    self.line_cut = true;
                }
            }
            piece = piece.get(run + 1..).unwrap_or_default();
        }
    }

    /// Notes a framing field in the line just ended.
    fn end_line(&mut self) {
        let line = &self.line[..usize::from(self.line_len)];
        let cut = std::mem::take(&mut self.line_cut);
        self.line_len = 0;
        self.framing = framing_after_line(self.framing, line, cut);
    }
}

/// The framing after a head line whose first [`LINE_PREFIX`] content bytes are `line` (`cut`:
/// the line was longer), given the framing of the lines before it.
fn framing_after_line(framing: Framing, line: &[u8], cut: bool) -> Framing {
    let Some(colon) = line.iter().position(|&c| c == b':') else {
        return framing;
    };
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.eq_ignore_ascii_case(b"transfer-encoding") {
        Framing::Unknown
    } else if name.eq_ignore_ascii_case(b"content-length") {
        let length = std::str::from_utf8(value.trim_ascii())
            .ok()
            .filter(|_| !cut)
            .filter(|v| v.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|v| v.parse().ok());
        match (framing, length) {
            (Framing::None, Some(n)) => Framing::Length(n),
            _ => Framing::Unknown,
        }
    } else {
        framing
    }
}

/// True when `buf` starts a final (non-1xx) HTTP/1 response head.
pub fn is_final_response_head(buf: &[u8]) -> bool {
    buf.len() >= 12 && buf.starts_with(b"HTTP/1.") && buf[8] == b' ' && buf[9] != b'1'
}

impl HeadScan {
    /// The body framing of the head scanned so far.
    pub fn framing(&self) -> Framing {
        self.framing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_scan_finds_crlf_and_bare_lf_ends_across_pieces() {
        let mut s = HeadScan::default();
        assert_eq!(s.feed(b"GET / HTTP/1.1\r\nHost: a\r"), None);
        assert_eq!(s.feed(b"\n\r"), None);
        assert_eq!(s.feed(b"\n"), Some(0));
        let mut s = HeadScan::default();
        assert_eq!(s.feed(b"GET / HTTP/1.1\nHost: a\n\n"), Some(23));
    }

    #[test]
    fn head_scan_ignores_leading_empty_lines() {
        let mut s = HeadScan::default();
        assert_eq!(s.feed(b"\r\n\r\n\r\n\n\n"), None);
        assert_eq!(s.feed(b"G"), None);
        assert_eq!(s.feed(b"ET / HTTP/1.1\r\n"), None);
        assert_eq!(s.feed(b"\r\n"), Some(1));
    }

    #[test]
    fn head_scan_reads_the_body_framing() {
        let framing = |head: &[u8]| {
            let mut s = HeadScan::default();
            assert!(s.feed(head).is_some());
            s.framing
        };
        assert_eq!(framing(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Framing::None);
        assert_eq!(
            framing(b"POST / HTTP/1.1\r\nContent-Length:  12 \r\n\r\n"),
            Framing::Length(12)
        );
        assert_eq!(
            framing(b"POST / HTTP/1.1\r\ncontent-LENGTH: 0\r\n\r\n"),
            Framing::Length(0)
        );
        for head in [
            &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 123456789012345678901234\r\n\r\n",
        ] {
            assert_eq!(
                framing(head),
                Framing::Unknown,
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn head_scan_says_where_a_head_ends_in_a_pipelined_read() {
        let mut s = HeadScan::default();
        let two = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n";
        let end = s.feed(two).expect("first head ends");
        assert_eq!(&two[..=end], b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(end + 1 < two.len(), "bytes of the next request follow");
    }

    /// The byte-at-a-time scanner `feed` replaced: the reference its results are compared with.
    #[derive(Default)]
    struct ByteScan {
        inner: HeadScan,
    }

    impl ByteScan {
        fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
            let s = &mut self.inner;
            for (i, &b) in bytes.iter().enumerate() {
                match b {
                    b'\n' => {
                        s.end_line();
                        s.newlines = s.newlines.saturating_add(1);
                        if s.newlines >= 2 && s.seen_content {
                            return Some(i);
                        }
                    }
                    b'\r' => {}
                    _ => {
                        s.seen_content = true;
                        s.newlines = 0;
                        match s.line.get_mut(usize::from(s.line_len)) {
                            Some(slot) => {
                                *slot = b;
                                s.line_len += 1;
                            }
                            None => s.line_cut = true,
                        }
                    }
                }
            }
            None
        }
    }

    /// A small deterministic generator (xorshift) from `seed`: the same heads on every run.
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// Heads built from pieces that stress the scanner: carriage returns inside lines, bare line
    /// feeds, framing fields at the prefix's edge (a value of 15 to 17 digits), long lines,
    /// leading empty lines.
    fn tricky_heads() -> Vec<Vec<u8>> {
        let pieces: [&[u8]; 14] = [
            b"GET / HTTP/1.1",
            b"\r\n",
            b"\n",
            b"\r",
            b"Host: a",
            b"Content-Length: 5",
            b"content-length:123456789012345",
            b"Content-Length: 1234567890123456",
            b"Content-Length: 12345678901234567",
            b"Transfer-Encoding: chunked",
            b"X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            b"Cont\rent-Length: 7",
            b"Content-Length:\r 9\r",
            b"",
        ];
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        (0..400)
            .map(|_| {
                let n = 1 + next() % 12;
                (0..n)
                    .flat_map(|_| pieces[(next() % pieces.len() as u64) as usize].to_vec())
                    .collect()
            })
            .collect()
    }

    /// Heads of CRLF-terminated lines, as clients send them (the one-pass path's case), some
    /// with framing fields of every spelling and length, some followed by a pipelined request.
    fn crlf_heads() -> Vec<Vec<u8>> {
        let lines: [&[u8]; 12] = [
            b"Host: a",
            b"Content-Length: 5",
            b"content-length:123456789012345",
            b"CONTENT-LENGTH: 12345678901234567",
            b"Content-Length: 5, 5",
            b"Transfer-Encoding: chunked",
            b"te: trailers",
            b"Connection: keep-alive",
            b"Cookie: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            b"content-length : 5",
            b"C",
            b"transfer-encoding:",
        ];
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        (0..300)
            .map(|_| {
                let mut head = b"POST / HTTP/1.1\r\n".to_vec();
                for _ in 0..next() % 6 {
                    head.extend_from_slice(lines[(next() % lines.len() as u64) as usize]);
                    head.extend_from_slice(b"\r\n");
                }
                head.extend_from_slice(b"\r\n");
                if next().is_multiple_of(3) {
                    head.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
                }
                head
            })
            .collect()
    }

    #[test]
    fn whole_crlf_heads_take_the_one_pass_path() {
        for head in crlf_heads() {
            let mut s = HeadScan::default();
            let end = s.feed_whole_head(&head);
            assert!(end.is_some(), "{:?}", String::from_utf8_lossy(&head));
            assert_eq!(end, ByteScan::default().feed(&head));
        }
        // Not this path: a partial head, a bare LF, a leading empty line, a CR inside a framing
        // line; the state stays fresh for the general scan.
        for piece in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n"[..],
            b"GET / HTTP/1.1\nHost: a\r\n\r\n",
            b"\r\nGET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length:\r 5\r\n\r\n",
            // 32 bytes of content, then carriage returns: not cut for the general scan.
            b"GET / HTTP/1.1\r\nContent-Length: 5               \r\r\r\n\r\n",
        ] {
            let mut s = HeadScan::default();
            assert_eq!(s.feed_whole_head(piece), None);
            assert!(s.may_take_the_rest_in_one_pass());
        }
    }

    #[test]
    fn the_rest_of_a_head_after_its_first_bytes_takes_the_one_pass_path() {
        for head in crlf_heads() {
            for split in 1..3 {
                let (a, b) = head.split_at(split);
                let mut s = HeadScan::default();
                assert_eq!(s.feed(a), None);
                assert!(s.may_take_the_rest_in_one_pass());
                let end = s.feed_whole_head(b);
                assert!(end.is_some(), "{:?}", String::from_utf8_lossy(&head));
                assert_eq!(end, ByteScan::default().feed(&head).map(|e| e - split));
            }
        }
        // A first line begun with what could be a framing field's name is left to the general
        // scan, as is a line that ends right after the piece that began it.
        let mut s = HeadScan::default();
        assert_eq!(s.feed(b"Content-Le"), None);
        assert!(!s.may_take_the_rest_in_one_pass());
        let mut s = HeadScan::default();
        assert_eq!(s.feed(b"GET / HTTP/1.1"), None);
        assert_eq!(s.feed_whole_head(b"\r\nHost: a\r\n\r\n"), Some(12));
    }

    #[test]
    fn head_scan_by_lines_agrees_with_the_byte_scanner_at_every_split() {
        for head in tricky_heads().into_iter().chain(crlf_heads()) {
            for split in 0..=head.len() {
                let (a, b) = head.split_at(split);
                let (mut fast, mut slow) = (HeadScan::default(), ByteScan::default());
                let got = (fast.feed(a), (!b.is_empty()).then(|| fast.feed(b)));
                let want = (slow.feed(a), (!b.is_empty()).then(|| slow.feed(b)));
                assert_eq!(
                    got,
                    want,
                    "{:?} split at {split}",
                    String::from_utf8_lossy(&head)
                );
                let state = |s: &HeadScan| {
                    (
                        s.framing,
                        s.newlines,
                        s.seen_content,
                        s.line_cut,
                        s.line_len,
                        // The bytes kept of the current line (those past it are stale).
                        s.line[..usize::from(s.line_len)].to_vec(),
                    )
                };
                assert_eq!(
                    state(&fast),
                    state(&slow.inner),
                    "{:?} split at {split}",
                    head
                );
            }
        }
    }

    #[test]
    fn head_scan_survives_many_leading_empty_lines() {
        let mut s = HeadScan::default();
        assert_eq!(s.feed(&[b'\n'; 600]), None);
        assert_eq!(s.feed(b"GET / HTTP/1.1\r\n\r\n"), Some(17));
    }

    #[test]
    fn final_response_heads_only() {
        assert!(is_final_response_head(b"HTTP/1.1 200 OK\r\n"));
        assert!(is_final_response_head(
            b"HTTP/1.0 503 Service Unavailable\r\n"
        ));
        assert!(!is_final_response_head(b"HTTP/1.1 100 Continue\r\n"));
        assert!(!is_final_response_head(
            b"HTTP/1.1 101 Switching Protocols\r\n"
        ));
        assert!(!is_final_response_head(b"hello"));
    }
}
