//! The whole path: publish → RabbitMQ → worker → webhook.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use alertpost_event::{EVENT_SCHEMA, Event, Status, delivery_id};
use alertpost_seam::Outgoing;
use alertpost_tests::{Backend, Receiver, Reply, RunningWorker, TestPrefix};
use rstest::rstest;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn config(receiver: &Receiver, integrations: &[(&str, &str)]) -> String {
    let mut toml = String::from("[policy]\nallow_networks = [\"127.0.0.0/8\"]\n");
    for (id, path) in integrations {
        toml.push_str(&format!(
            "[[integration]]\nid = \"{id}\"\nurl = \"{}\"\ntimeout = \"5s\"\n",
            receiver.url(path)
        ));
    }
    toml
}

fn event(n: usize) -> Event {
    let mut e = Event::new("test", Status::Firing, format!("event {n}"));
    e.labels.insert("n".into(), n.to_string());
    e
}

#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test]
async fn n_events_published_make_n_requests_one_per_event(#[case] backend: Backend) {
    let prefix = TestPrefix::new("n-events");
    let receiver = Receiver::start().await;
    let mut worker =
        RunningWorker::start_on(backend, &prefix, &config(&receiver, &[("hook", "/hook")])).await;

    let n = 60;
    let published = worker.publish_all((0..n).map(event).collect()).await;
    let requests = receiver.wait_for(n, WAIT).await;
    receiver.assert_no_more(n, Duration::from_millis(500)).await;

    let by_event: BTreeMap<String, _> = requests
        .iter()
        .map(|r| (r.header("alertpost-event-id").unwrap().to_owned(), r))
        .collect();
    assert_eq!(by_event.len(), n, "one request per event");
    for event in &published {
        let r = by_event[&event.id];
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.header("webhook-id"),
            Some(delivery_id(&event.id, "hook").as_str())
        );
        assert_eq!(r.header("alertpost-attempt"), Some("1"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.header("user-agent").unwrap().starts_with("alertpost/"));
        let body: Event = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(&body, event);
    }
    worker.stop().await.unwrap();
    assert_eq!(worker.waiting(&prefix).await, 0);
}

#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test]
async fn one_event_fans_out_to_every_enabled_integration(#[case] backend: Backend) {
    let prefix = TestPrefix::new("fan-out");
    let receiver = Receiver::start().await;
    let mut toml = config(&receiver, &[("a", "/a"), ("b", "/b")]);
    toml.push_str(&format!(
        "[[integration]]\nid = \"off\"\nenabled = false\nurl = \"{}\"\n",
        receiver.url("/off")
    ));
    let mut worker = RunningWorker::start_on(backend, &prefix, &toml).await;

    let published = worker.publish_all((0..10).map(event).collect()).await;
    let requests = receiver.wait_for(20, WAIT).await;
    receiver
        .assert_no_more(20, Duration::from_millis(500))
        .await;
    let pairs: BTreeSet<(String, String)> = requests
        .iter()
        .map(|r| {
            (
                r.path.clone(),
                r.header("alertpost-event-id").unwrap().to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = published
        .iter()
        .flat_map(|e| {
            [
                ("/a".to_owned(), e.id.clone()),
                ("/b".to_owned(), e.id.clone()),
            ]
        })
        .collect();
    assert_eq!(pairs, expected);
    worker.stop().await.unwrap();
}

#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test]
async fn a_4xx_is_dead_lettered_at_once_and_the_message_acked(#[case] backend: Backend) {
    let prefix = TestPrefix::new("dead-4xx");
    let receiver = Receiver::start().await;
    receiver.script(
        "/hook",
        [Reply::status(400).body("{\"error\":\"no such team\"}")],
    );
    let mut worker =
        RunningWorker::start_on(backend, &prefix, &config(&receiver, &[("hook", "/hook")])).await;

    let e = worker.publish(event(1)).await;
    receiver.wait_for(1, WAIT).await;
    receiver.assert_no_more(1, Duration::from_millis(800)).await;
    worker.stop().await.unwrap();

    let dead = worker.take_dead(&prefix).await;
    assert_eq!(dead.len(), 1);
    let letter: serde_json::Value = serde_json::from_slice(&dead[0].body).unwrap();
    assert_eq!(letter["reason"], "status");
    assert_eq!(letter["detail"], "HTTP 400: {\"error\":\"no such team\"}");
    assert_eq!(letter["job"]["integration"], "hook");
    assert_eq!(letter["job"]["event"]["id"], e.id.as_str());
    assert_eq!(letter["job"]["history"][0]["status"], 400);
    assert_eq!(letter["job"]["delivery_id"], delivery_id(&e.id, "hook"));
    assert_eq!(worker.waiting(&prefix).await, 0);
}

#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test]
async fn an_undecodable_message_is_dead_lettered_and_the_worker_goes_on(#[case] backend: Backend) {
    let prefix = TestPrefix::new("undecodable");
    let receiver = Receiver::start().await;
    let mut worker =
        RunningWorker::start_on(backend, &prefix, &config(&receiver, &[("hook", "/hook")])).await;

    for (body, id) in [
        (&b"{not json"[..], "garbage-1"),
        (&b"{\"source\":\"s\"}"[..], "garbage-2"),
    ] {
        let msg = Outgoing {
            body,
            kind: EVENT_SCHEMA,
            message_id: id,
        };
        worker.publish_raw(&prefix, &msg).await;
    }
    let ok = worker.publish(event(7)).await;
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("alertpost-event-id"), Some(ok.id.as_str()));
    worker.stop().await.unwrap();

    let mut reasons = BTreeMap::new();
    for msg in worker.take_dead(&prefix).await {
        let letter: serde_json::Value = serde_json::from_slice(&msg.body).unwrap();
        assert_eq!(letter["reason"], "undecodable");
        reasons.insert(letter["id"].as_str().unwrap().to_owned(), letter);
    }
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons["garbage-1"]["raw"], "{not json");
    assert!(
        reasons["garbage-1"]["detail"]
            .as_str()
            .unwrap()
            .contains("key must be a string")
    );
    assert!(
        reasons["garbage-2"]["detail"]
            .as_str()
            .unwrap()
            .contains("missing field `status`")
    );
    assert_eq!(worker.waiting(&prefix).await, 0);
}

#[tokio::test]
async fn graceful_stop_drains_in_flight_deliveries() {
    let prefix = TestPrefix::new("drain");
    let receiver = Receiver::start().await;
    receiver.script(
        "/slow",
        (0..5).map(|_| Reply::ok().delay(Duration::from_millis(700))),
    );
    let mut worker = RunningWorker::start(&prefix, &config(&receiver, &[("slow", "/slow")])).await;

    prefix
        .producer()
        .await
        .publish_all((0..5).map(event).collect())
        .await
        .unwrap();
    // All five are in flight (the receiver records on arrival)...
    receiver.wait_for(5, WAIT).await;
    // ...and a stop now waits for their answers and acks before returning.
    worker.stop().await.unwrap();
    assert_eq!(prefix.ready(&prefix.topology.events_queue()).await, 0);
    let broker = prefix.broker().await;
    let stats = broker
        .queue_stats(&prefix.topology.events_queue())
        .await
        .unwrap();
    assert_eq!(stats.consumers, 0);
    broker.close().await;
}

#[tokio::test]
async fn events_wait_in_the_queue_while_no_worker_runs() {
    let prefix = TestPrefix::new("queued");
    let receiver = Receiver::start().await;
    let published = prefix
        .producer()
        .await
        .publish_all((0..5).map(event).collect())
        .await
        .unwrap();
    assert_eq!(prefix.ready(&prefix.topology.events_queue()).await, 5);
    let mut worker = RunningWorker::start(&prefix, &config(&receiver, &[("hook", "/hook")])).await;
    let requests = receiver.wait_for(5, WAIT).await;
    let ids: BTreeSet<&str> = requests
        .iter()
        .map(|r| r.header("alertpost-event-id").unwrap())
        .collect();
    assert_eq!(ids, published.iter().map(|e| e.id.as_str()).collect());
    worker.stop().await.unwrap();
}

#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test]
async fn the_json_body_is_the_event_as_published(#[case] backend: Backend) {
    let prefix = TestPrefix::new("body");
    let receiver = Receiver::start().await;
    let mut worker =
        RunningWorker::start_on(backend, &prefix, &config(&receiver, &[("hook", "/hook")])).await;
    let mut e = Event::from_value(json!({
        "source": "grafana", "status": "resolved", "severity": "critical",
        "title": "Quote \" backslash \\ newline \n unicode ✓",
        "labels": {"team": "db"}, "data": {"nested": {"a": [1, 2, null]}}
    }))
    .unwrap();
    e.dedup_key = Some("k1".into());
    let published = worker.publish(e).await;
    let got = receiver.wait_for(1, WAIT).await;
    let body = got[0].json();
    assert_eq!(body["title"], "Quote \" backslash \\ newline unicode ✓");
    assert_eq!(body["data"]["nested"]["a"], json!([1, 2, null]));
    assert_eq!(body["id"], published.id.as_str());
    assert_eq!(
        body["received_at"],
        json!(
            published
                .received_at
                .unwrap()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        )
    );
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn a_lost_broker_connection_is_survived() {
    use alertpost_tests::proxy::Proxy;

    let prefix = TestPrefix::new("reconnect");
    let receiver = Receiver::start().await;
    let upstream = prefix
        .url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("127.0.0.1:5672")
        .parse()
        .expect("a host:port in the AMQP URL");
    let proxy = Proxy::start(upstream).await;
    let mut worker = RunningWorker::spawn(
        &prefix,
        &proxy.amqp_url(),
        &config(&receiver, &[("hook", "/hook")]),
    )
    .await;
    worker.wait_ready(WAIT).await;
    let producer = prefix.producer().await;
    producer
        .publish_all((0..3).map(event).collect())
        .await
        .unwrap();
    receiver.wait_for(3, WAIT).await;

    // The broker goes away: the worker says so on /readyz...
    proxy.down();
    worker.wait_readyz(503, WAIT).await;
    // ...events published meanwhile wait in the queue...
    let later = producer
        .publish_all((3..6).map(event).collect())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), 3);
    // ...and once it is back, the worker reconnects and delivers them.
    proxy.up();
    worker.wait_ready(WAIT).await;
    // At-least-once: deliveries whose ack was cut with the connection come
    // again, so wait for every id rather than for a count.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ids: BTreeSet<String> = receiver
            .requests()
            .iter()
            .map(|r| r.header("alertpost-event-id").unwrap().to_owned())
            .collect();
        if later.iter().all(|e| ids.contains(&e.id)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not delivered after the reconnect: {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.stop().await.unwrap();
}
