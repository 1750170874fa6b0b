//! Follows HTTP/1 request framing over the bytes a connection reads, so that the
//! connection's timers know when the head of a next request started, even when hyper
//! read it into its buffer while the previous request was being served.
//!
//! It keeps a few bytes of each header line, enough to read `Content-Length`, and counts
//! body bytes. A `Transfer-Encoding` header (chunked bodies), a `CONNECT` request or a
//! `Content-Length` it cannot read make it give up for the rest of the connection
//! ([`FrameTracker::is_lost`]); the connection's timers then only see that bytes arrived.

/// Bytes of each line kept to recognise `Content-Length` and `Transfer-Encoding`.
const LINE_KEEP: usize = 64;

/// Where the byte stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between requests, where blank lines are allowed.
    Gap,
    /// In a request head, up to its blank line.
    Head,
    /// In a body, with this many bytes still to come.
    Body(u64),
    /// Framing it cannot follow; no more reports.
    Lost,
}

/// What the bytes of one read did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Step {
    /// Request heads that ended (blank line seen) in these bytes.
    pub(super) heads_ended: u32,
    /// A head started in these bytes and is still open at their end.
    pub(super) head_opened: bool,
    /// A head (started here or before) is open at the end of these bytes.
    pub(super) head_open: bool,
    /// Bytes other than blank lines between requests arrived.
    pub(super) request_bytes: bool,
}

/// An incremental follower of HTTP/1 request framing with constant memory.
#[derive(Debug)]
pub(super) struct FrameTracker {
    state: State,
    line: [u8; LINE_KEEP],
    /// Length of the current line so far; only the first [`LINE_KEEP`] bytes are kept.
    line_len: usize,
    /// The current line is the request line.
    request_line: bool,
    content_length: Option<u64>,
}

impl Default for FrameTracker {
    fn default() -> Self {
        Self {
            state: State::Gap,
            line: [0; LINE_KEEP],
            line_len: 0,
            request_line: true,
            content_length: None,
        }
    }
}

impl FrameTracker {
    /// True once the framing could not be followed; [`FrameTracker::feed`] then
    /// reports nothing.
    pub(super) fn is_lost(&self) -> bool {
        self.state == State::Lost
    }

    /// Follows `bytes`, the next bytes read from the connection.
    pub(super) fn feed(&mut self, mut bytes: &[u8]) -> Step {
        let mut step = Step::default();
        while let Some((&b, rest)) = bytes.split_first() {
            match self.state {
                State::Lost => break,
                State::Gap => {
                    bytes = rest;
                    if b != b'\r' && b != b'\n' {
                        self.state = State::Head;
                        self.request_line = true;
                        self.content_length = None;
                        self.line_len = 0;
                        self.push(b);
                        step.head_opened = true;
                        step.request_bytes = true;
                    }
                }
                State::Body(left) => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    bytes = &bytes[take..];
                    step.request_bytes = true;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::Gap
                    } else {
                        State::Body(left)
                    };
                }
                State::Head => {
                    bytes = rest;
                    step.request_bytes = true;
                    if b == b'\n' {
                        self.end_line(&mut step);
                    } else {
                        self.push(b);
                    }
                }
            }
        }
        step.head_open = self.state == State::Head;
        step.head_opened &= step.head_open;
        step
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.line.get_mut(self.line_len) {
            *slot = b;
        }
        self.line_len = self.line_len.saturating_add(1);
    }

    fn end_line(&mut self, step: &mut Step) {
        let len = self.line_len;
        self.line_len = 0;
        let kept = &self.line[..len.min(LINE_KEEP)];
        let whole = len <= LINE_KEEP;
        let text = kept.strip_suffix(b"\r").filter(|_| whole).unwrap_or(kept);
        if text.is_empty() && whole {
            step.heads_ended += 1;
            self.state = match self.content_length.take() {
                None | Some(0) => State::Gap,
                Some(n) => State::Body(n),
            };
            self.request_line = true;
            return;
        }
        if self.request_line {
            self.request_line = false;
            if text.starts_with(b"CONNECT ") {
                self.state = State::Lost;
            }
            return;
        }
        if starts_with_ignore_case(text, b"transfer-encoding:") {
            self.state = State::Lost;
        } else if starts_with_ignore_case(text, b"content-length:") {
            let value = whole
                .then(|| parse_length(&text[b"content-length:".len()..]))
                .flatten();
            match value {
                Some(n) if self.content_length.is_none_or(|c| c == n) => {
                    self.content_length = Some(n);
                }
                _ => self.state = State::Lost,
            }
        }
    }
}

fn starts_with_ignore_case(text: &[u8], prefix: &[u8]) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// A `Content-Length` value: digits between optional spaces or tabs.
fn parse_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` in pieces cut at `cuts`; the steps' heads ended and the last step.
    fn feed_cut(bytes: &[u8], cuts: &[usize]) -> (FrameTracker, u32, Step) {
        let mut tracker = FrameTracker::default();
        let mut ended = 0;
        let mut last = Step::default();
        let mut from = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            last = tracker.feed(&bytes[from..cut]);
            ended += last.heads_ended;
            from = cut;
        }
        (tracker, ended, last)
    }

    const GET: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    const POST: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 19\r\n\r\n\
                          {\"x\": \"\r\n\r\n\r\n\r\n12\"}";

    #[test]
    fn a_complete_request_leaves_no_open_head_wherever_it_is_cut() {
        for request in [GET, POST] {
            for cut in 0..=request.len() {
                let (tracker, ended, last) = feed_cut(request, &[cut]);
                assert_eq!(ended, 1, "cut at {cut}");
                assert!(!last.head_open, "cut at {cut}");
                assert!(!tracker.is_lost());
            }
        }
    }

    #[test]
    fn a_partial_next_head_is_open_wherever_the_reads_are_cut() {
        let mut stream = POST.to_vec();
        stream.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: aaaa");
        for a in 0..=stream.len() {
            for b in (a..=stream.len()).step_by(7) {
                let (_, ended, last) = feed_cut(&stream, &[a, b]);
                assert_eq!(ended, 1, "cuts {a}, {b}");
                assert!(last.head_open, "cuts {a}, {b}");
            }
        }
        // In one read: the head opened in these bytes.
        let (_, _, last) = feed_cut(&stream, &[]);
        assert!(last.head_opened && last.request_bytes);
        // A read that continues it does not open it again.
        let (_, _, last) = feed_cut(&stream, &[stream.len() - 2]);
        assert!(last.head_open && !last.head_opened);
    }

    #[test]
    fn body_bytes_that_look_like_a_blank_line_are_not_a_head() {
        // The body of POST holds CRLFCRLF; only a following head opens one.
        let (_, ended, last) = feed_cut(POST, &[]);
        assert_eq!((ended, last.head_open), (1, false));
        let mut two = POST.to_vec();
        two.extend_from_slice(b"G");
        let (_, ended, last) = feed_cut(&two, &[POST.len() - 3]);
        assert_eq!(ended, 1);
        assert!(last.head_opened);
    }

    #[test]
    fn pipelined_requests_are_counted() {
        let mut stream = Vec::new();
        for _ in 0..3 {
            stream.extend_from_slice(GET);
            stream.extend_from_slice(POST);
        }
        for cut in 0..=stream.len() {
            let (_, ended, last) = feed_cut(&stream, &[cut]);
            assert_eq!(ended, 6, "cut at {cut}");
            assert!(!last.head_open);
        }
    }

    #[test]
    fn blank_lines_between_requests_open_no_head() {
        let mut tracker = FrameTracker::default();
        tracker.feed(GET);
        let step = tracker.feed(b"\r\n\r\n");
        assert_eq!(step, Step::default());
        let step = tracker.feed(b"\nGET / HTTP/1.1\n\n");
        assert_eq!((step.heads_ended, step.head_open), (1, false));
    }

    #[test]
    fn content_length_is_read_in_any_case_and_with_spaces() {
        let mut tracker = FrameTracker::default();
        let step = tracker.feed(b"POST / HTTP/1.1\r\ncontent-LENGTH: \t3 \r\n\r\nabcG");
        assert!(step.head_opened, "3 body bytes, then a head");
        let mut tracker = FrameTracker::default();
        let step =
            tracker.feed(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc");
        assert!(!step.head_open && !tracker.is_lost());
    }

    #[test]
    fn chunked_bodies_and_unreadable_lengths_are_given_up() {
        for head in [
            &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"CONNECT x:443 HTTP/1.1\r\n\r\n",
        ] {
            let mut tracker = FrameTracker::default();
            let step = tracker.feed(head);
            assert!(tracker.is_lost(), "{}", String::from_utf8_lossy(head));
            assert!(!step.head_open);
            assert_eq!(tracker.feed(b"GET / HTTP/1.1\r\n"), Step::default());
        }
        // A long Content-Length line is not read; a long other line is fine.
        let mut tracker = FrameTracker::default();
        let pad = "x".repeat(100);
        tracker.feed(format!("GET / HTTP/1.1\r\nX-Pad: {pad}\r\n\r\n").as_bytes());
        assert!(!tracker.is_lost());
        tracker.feed(format!("POST / HTTP/1.1\r\nContent-Length: {pad}\r\n\r\n").as_bytes());
        assert!(tracker.is_lost());
    }
}
