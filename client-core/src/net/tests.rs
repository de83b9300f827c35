use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::fetch::FetchError;

/// What the fake server does with one request.
#[derive(Clone, Copy, Debug)]
enum Act {
    /// Answers the range asked for (or the whole object), cut after this many body bytes, with the
    /// length of the full answer announced.
    Cut(usize),
    /// Answers in full, honouring `Range`.
    Serve,
    /// Answers `200` with the whole object, ignoring `Range`.
    IgnoreRange,
    /// Answers `416`.
    Unsatisfiable,
    /// Answers in full with extra bytes beyond the announced length.
    Longer,
    /// No answer: a transport failure.
    Drop,
    /// Answers `503` with `Retry-After` (a pack still being built).
    NotReady,
}

#[derive(Debug)]
struct Fake {
    object: Vec<u8>,
    script: Mutex<VecDeque<Act>>,
    ranges: Mutex<Vec<Option<String>>>,
}

impl Fake {
    fn new(object: &[u8], script: &[Act]) -> Arc<Fake> {
        Arc::new(Fake {
            object: object.to_vec(),
            script: Mutex::new(script.iter().copied().collect()),
            ranges: Mutex::new(Vec::new()),
        })
    }

    fn ranges(&self) -> Vec<Option<String>> {
        self.ranges.lock().unwrap().clone()
    }
}

impl Fetcher for Fake {
    fn fetch(&self, request: &FetchRequest) -> Result<FetchResponse, FetchError> {
        let range = request
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("range"))
            .map(|(_, v)| v.clone());
        self.ranges.lock().unwrap().push(range.clone());
        let act = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Act::Serve);
        let total = self.object.len();
        let start = range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .map(|s| s.parse::<usize>().unwrap());
        let ok = |status: u16, body: &[u8], announced: usize, extra: Vec<(String, String)>| {
            let mut headers = vec![("Content-Length".to_owned(), announced.to_string())];
            headers.extend(extra);
            Ok(FetchResponse {
                status,
                headers,
                body: body.to_vec(),
            })
        };
        let partial = |s: usize, body: &[u8], announced: usize| {
            let range = format!("bytes {s}-{}/{total}", total - 1);
            ok(206, body, announced, vec![("Content-Range".into(), range)])
        };
        match (act, start) {
            (Act::Drop, _) => Err(FetchError {
                message: "connection reset".into(),
            }),
            (Act::Unsatisfiable, _) => ok(416, b"", 0, Vec::new()),
            (Act::NotReady, _) => ok(503, b"", 0, vec![("Retry-After".into(), "5".into())]),
            (Act::IgnoreRange, _) | (Act::Serve, None) => ok(200, &self.object, total, Vec::new()),
            (Act::Serve, Some(s)) => partial(s, &self.object[s..], total - s),
            (Act::Cut(n), None) => ok(200, &self.object[..n], total, Vec::new()),
            (Act::Cut(n), Some(s)) => partial(s, &self.object[s..s + n], total - s),
            (Act::Longer, _) => {
                let mut body = self.object.clone();
                body.extend_from_slice(b"trailing");
                ok(200, &body, total, Vec::new())
            }
        }
    }
}

fn net(fetcher: Arc<Fake>, retries: u32) -> Net {
    Net {
        base: "http://server".into(),
        fetcher,
        retries,
        backoff: Duration::from_millis(1),
    }
}

fn object() -> Vec<u8> {
    (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn a_cut_download_resumes_with_a_range_and_does_not_start_over() {
    let dir = tempfile::tempdir().unwrap();
    let data = object();
    let fake = Fake::new(&data, &[Act::Cut(4_000), Act::Cut(1_000), Act::Serve]);
    let got = net(fake.clone(), 0)
        .get_resumable("/v1/blobs/x", 1 << 20, dir.path())
        .unwrap();
    assert_eq!(got, data);
    // Attempts that brought bytes did not use up the (zero) retries.
    assert_eq!(
        fake.ranges(),
        [None, Some("bytes=4000-".into()), Some("bytes=5000-".into())]
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no partial left"
    );
}

#[test]
fn bytes_of_a_failed_call_are_kept_for_the_next_one_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = object();
    let first = Fake::new(&data, &[Act::Cut(3_000), Act::Drop, Act::Drop]);
    let err = net(first, 1)
        .get_resumable("/v1/packs/a/1.0.0.zip", 1 << 20, dir.path())
        .unwrap_err();
    assert!(matches!(err, Error::Network(_)), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "partial kept"
    );

    // A new process: a new `Net` over the same directory.
    let second = Fake::new(&data, &[Act::Serve]);
    let got = net(second.clone(), 1)
        .get_resumable("/v1/packs/a/1.0.0.zip", 1 << 20, dir.path())
        .unwrap();
    assert_eq!(got, data);
    assert_eq!(second.ranges(), [Some("bytes=3000-".into())]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_server_that_ignores_the_range_or_refuses_it_still_yields_the_object() {
    let data = object();
    for script in [
        &[Act::Cut(2_000), Act::IgnoreRange][..],
        &[Act::Cut(2_000), Act::Unsatisfiable, Act::Serve][..],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::new(&data, script);
        let got = net(fake, 1)
            .get_resumable("/v1/blobs/y", 1 << 20, dir.path())
            .unwrap();
        assert_eq!(got, data, "{script:?}");
    }
}

#[test]
fn a_body_longer_than_announced_or_than_allowed_is_refused_and_nothing_is_kept() {
    let data = object();
    let dir = tempfile::tempdir().unwrap();
    let err = net(Fake::new(&data, &[Act::Longer]), 2)
        .get_resumable("/v1/blobs/z", 1 << 20, dir.path())
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("longer than the 10000 bytes announced"),
        "{err}"
    );

    let err = net(Fake::new(&data, &[Act::Serve]), 2)
        .get_resumable("/v1/blobs/z", 9_999, dir.path())
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn retries_without_progress_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new(&object(), &[Act::Drop; 10]);
    let err = net(fake.clone(), 2)
        .get_resumable("/v1/blobs/w", 1 << 20, dir.path())
        .unwrap_err();
    assert!(err.to_string().contains("connection reset"), "{err}");
    assert_eq!(fake.ranges().len(), 3, "one try and two retries");
}

#[test]
fn content_ranges_are_parsed_strictly() {
    assert_eq!(content_range("bytes 5-9/10"), Some((5, 10)));
    assert_eq!(content_range("bytes 5-10/10"), None);
    assert_eq!(content_range("bytes */10"), None);
    assert_eq!(content_range("items 0-1/2"), None);
}

#[test]
fn a_pack_not_ready_gives_way_to_the_next_source_at_once_and_a_blob_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let data = object();

    // A pack: one request, no backoff, a network error the install falls back from.
    let pack = Fake::new(&data, &[Act::NotReady, Act::Serve]);
    let err = net(pack.clone(), 3)
        .get_pack("/v1/packs/a/1.0.0.zip", 1 << 20, dir.path())
        .unwrap_err();
    assert!(
        matches!(&err, Error::Network(m) if m.contains("503")),
        "{err}"
    );
    assert_eq!(pack.ranges().len(), 1, "asked once");

    // A blob has no other source: a 503 is retried as before.
    let blob = Fake::new(&data, &[Act::NotReady, Act::Serve]);
    let got = net(blob.clone(), 3)
        .get_resumable("/v1/blobs/x", 1 << 20, dir.path())
        .unwrap();
    assert_eq!(got, data);
    assert_eq!(blob.ranges().len(), 2);
}
