//! Any bytes off the queue, as the worker and `dlq` read them: an event, a
//! delivery job, a lane's batch, a dead letter.
#![no_main]

use alertpost_event::Event;
use alertpost_event::job::{DeadLetter, DeliveryJob};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut e) = Event::from_json(data)
        && e.prepare_received(data, time::OffsetDateTime::UNIX_EPOCH)
            .is_ok()
    {
        Event::from_json(&e.to_json()).expect("a prepared event encodes and decodes");
    }
    if let Ok(job) = serde_json::from_slice::<DeliveryJob>(data) {
        let _ = serde_json::from_slice::<DeliveryJob>(&job.to_json());
    }
    let _ = serde_json::from_slice::<Vec<DeliveryJob>>(data);
    let _ = serde_json::from_slice::<DeadLetter>(data);
});
