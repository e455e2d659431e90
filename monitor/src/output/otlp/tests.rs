use std::sync::Mutex;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};

use super::*;

#[test]
fn retry_after_is_seconds_or_an_http_date() {
    let now = chrono::DateTime::parse_from_rfc3339("2026-12-04T10:00:00Z")
        .expect("time")
        .with_timezone(&chrono::Utc);
    assert_eq!(retry_after("3", now), Some(Duration::from_secs(3)));
    assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
    assert_eq!(
        retry_after("Fri, 04 Dec 2026 10:00:07 GMT", now),
        Some(Duration::from_secs(7))
    );
    // A date already past: at once.
    assert_eq!(
        retry_after("Fri, 04 Dec 2026 09:00:00 GMT", now),
        Some(Duration::ZERO)
    );
    assert_eq!(retry_after("soon", now), None);
    assert_eq!(retry_after("-1", now), None);
}

#[test]
fn answers_decide_retry_refusal_or_partial_success() {
    let ok = answer(StatusCode::OK, None, b"");
    assert_eq!(
        ok,
        Answer::Accepted {
            rejected: 0,
            message: String::new()
        }
    );
    let partial = ExportLogsServiceResponse {
        partial_success: Some(ExportLogsPartialSuccess {
            rejected_log_records: 2,
            error_message: "too old".into(),
        }),
    }
    .encode_to_vec();
    assert_eq!(
        answer(StatusCode::OK, None, &partial),
        Answer::Accepted {
            rejected: 2,
            message: "too old".into()
        }
    );
    for code in [429, 502, 503, 504] {
        let status = StatusCode::from_u16(code).expect("status");
        assert!(
            matches!(
                answer(status, Some(Duration::from_secs(2)), b"busy"),
                Answer::Retry { after: Some(d), ref why } if d == Duration::from_secs(2) && why.contains("busy")
            ),
            "{code}"
        );
    }
    for code in [400, 401, 404, 413, 500] {
        let status = StatusCode::from_u16(code).expect("status");
        assert!(
            matches!(answer(status, None, b"\x00\x01"), Answer::Refused { ref why } if why == &format!("answered {status}")),
            "{code}"
        );
    }
}

/// What the test receiver got, and how it answers.
#[derive(Default)]
struct Received {
    requests: Vec<ExportLogsServiceRequest>,
    /// Answers to give first (status, Retry-After), then 200.
    script: Vec<(u16, Option<&'static str>)>,
}

/// An OTLP/HTTP receiver on loopback, answering as `script` says.
fn receiver(script: Vec<(u16, Option<&'static str>)>) -> (u16, Arc<Mutex<Received>>) {
    let state = Arc::new(Mutex::new(Received {
        script,
        ..Received::default()
    }));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let shared = state.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let shared = shared.clone();
                        async move {
                            let body = read_body(req.into_body()).await.unwrap_or_default();
                            let mut s = shared.lock().expect("lock");
                            let (status, after) = if s.script.is_empty() {
                                s.requests.push(
                                    ExportLogsServiceRequest::decode(body.as_slice())
                                        .expect("a valid request"),
                                );
                                (200, None)
                            } else {
                                s.script.remove(0)
                            };
                            let mut resp = hyper::Response::builder().status(status);
                            if let Some(a) = after {
                                resp = resp.header("retry-after", a);
                            }
                            resp.body(Body(Some(Bytes::new())))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    (port, state)
}

fn settings(port: u16) -> Settings {
    Settings {
        host: "127.0.0.1".into(),
        port,
        path: "/v1/logs".into(),
        queue: 16,
        batch: 2,
        timeout: Duration::from_secs(5),
    }
}

fn line(seq: u64) -> Bytes {
    Bytes::from(format!(
        r#"{{"v":1,"seq":{seq},"kind":"exit","ts":"2026-12-04T10:00:00.000000000Z","pid":{seq},"comm":"x","ppid":1,"uid":0,"exit_code":0,"cause":"exited"}}"#
    ))
}

fn seqs(r: &Received) -> Vec<i64> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    r.requests
        .iter()
        .flat_map(|q| &q.resource_logs)
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| &sl.log_records)
        .filter_map(|lr| {
            lr.attributes
                .iter()
                .find(|a| a.key == "claude_monitor.seq")
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    Any::IntValue(i) => Some(*i),
                    _ => None,
                })
        })
        .collect()
}

/// A 503 with `Retry-After: 1`, then a 429 without: each batch still arrives, once, in
/// order, in batches of at most `batch`.
#[test]
fn busy_answers_are_retried_and_nothing_is_lost() {
    let (port, state) = receiver(vec![(503, Some("1")), (429, None)]);
    let exporter = Exporter::start(&settings(port), Arc::default()).expect("start");
    for seq in 1..=5 {
        exporter.offer(line(seq));
    }
    let started = Instant::now();
    let stats = exporter.finish(Duration::from_secs(20));
    let r = state.lock().expect("lock");
    assert_eq!(seqs(&r), [1, 2, 3, 4, 5]);
    assert!(r.requests.iter().all(|q| {
        seqs(&Received {
            requests: vec![q.clone()],
            ..Received::default()
        })
        .len()
            <= 2
    }));
    assert_eq!(stats.sent.load(Ordering::Relaxed), 5);
    assert_eq!(stats.retries.load(Ordering::Relaxed), 2);
    assert_eq!(stats.lost(), 0);
    assert_eq!(stats.pending.load(Ordering::Relaxed), 0);
    // Retry-After 1 s, then the first backoff of 1 s.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// A 400 is not retried: that batch is counted refused, the next ones go on.
#[test]
fn a_refusal_is_counted_and_the_rest_goes_on() {
    let (port, state) = receiver(vec![(400, None)]);
    let mut s = settings(port);
    s.batch = 1;
    let exporter = Exporter::start(&s, Arc::default()).expect("start");
    for seq in 1..=3 {
        exporter.offer(line(seq));
    }
    let stats = exporter.finish(Duration::from_secs(10));
    assert_eq!(seqs(&state.lock().expect("lock")), [2, 3]);
    assert_eq!(stats.lost_refused.load(Ordering::Relaxed), 1);
    assert_eq!(stats.sent.load(Ordering::Relaxed), 2);
    assert_eq!(stats.retries.load(Ordering::Relaxed), 0);
}

/// Nobody listening: the stop waits its grace, no longer, and every event is counted, lost
/// because it could not be sent or because the queue was full.
#[test]
fn an_absent_receiver_costs_counted_losses_and_a_bounded_stop() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let exporter = Exporter::start(&settings(port), Arc::default()).expect("start");
    for seq in 1..=40 {
        exporter.offer(line(seq));
    }
    let started = Instant::now();
    let stats = exporter.finish(Duration::from_millis(1500));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stats.sent.load(Ordering::Relaxed), 0);
    // 16 fit in the queue (plus what the thread took out of it meanwhile).
    assert!(stats.lost_queue.load(Ordering::Relaxed) >= 40 - 16 - 2);
    assert_eq!(stats.lost(), 40);
    assert!(stats.retries.load(Ordering::Relaxed) >= 1);
}

#[test]
fn an_ipv6_host_keeps_its_brackets_in_the_url_only() {
    let s = Settings {
        host: "[::1]".into(),
        ..settings(4318)
    };
    assert_eq!(s.connect_host(), "::1");
    assert_eq!(s.authority(), "[::1]:4318");
    assert_eq!(s.url(), "http://[::1]:4318/v1/logs");
}
