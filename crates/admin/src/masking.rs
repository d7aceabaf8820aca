//! Secrets out of what operators see. A receiver can echo what it was
//! sent (a token, the URL), and what it answered is kept: in attempt
//! records, dead letters' details and histories, the last error. Every
//! answer of the admin API and every page masks them with the secrets of
//! the integration they belong to, or, for a message of no integration
//! known now, with every integration's.

use alertpost_config::{Config, mask};
use alertpost_event::job::{DeadLetter, DeliveryJob};
use alertpost_store::AttemptRecord;

use crate::deadletters::{DeadInFull, DlqRow};

/// The secrets to mask in what belongs to `integration`.
pub fn secrets_for(config: &Config, integration: Option<&str>) -> Vec<String> {
    match integration.and_then(|id| config.integration(id)) {
        Some(i) => i.secret_values(),
        None => {
            let mut all: Vec<String> = config
                .integrations
                .iter()
                .flat_map(|i| i.secret_values())
                .collect();
            all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
            all.dedup();
            all
        }
    }
}

fn text(t: &mut String, secrets: &[String]) {
    if !secrets.is_empty() {
        *t = mask(t, secrets);
    }
}

pub fn record(config: &Config, r: &mut AttemptRecord) {
    let secrets = secrets_for(config, Some(&r.integration));
    for t in [&mut r.response_body, &mut r.error].into_iter().flatten() {
        text(t, &secrets);
    }
    for (_, value) in &mut r.response_headers {
        text(value, &secrets);
    }
    if let Some(sent) = &mut r.request {
        text(&mut sent.body, &secrets);
    }
}

pub fn job(config: &Config, j: &mut DeliveryJob) {
    let secrets = secrets_for(config, Some(&j.integration));
    for a in &mut j.history {
        if let Some(e) = &mut a.error {
            text(e, &secrets);
        }
    }
}

pub fn letter(config: &Config, l: &mut DeadLetter) {
    let secrets = secrets_for(config, l.job.as_ref().map(|j| j.integration.as_str()));
    text(&mut l.detail, &secrets);
    if let Some(raw) = &mut l.raw {
        text(raw, &secrets);
    }
    if let Some(j) = &mut l.job {
        job(config, j);
    }
}

pub fn row(config: &Config, r: &mut DlqRow) {
    let secrets = secrets_for(config, r.integration.as_deref());
    text(&mut r.detail, &secrets);
}

pub fn full(config: &Config, f: &mut DeadInFull) {
    match f {
        DeadInFull::Letter(l) => letter(config, l),
        DeadInFull::Event { .. } => {}
        DeadInFull::Job { job: j, .. } => job(config, j),
        DeadInFull::Jobs { jobs, .. } => jobs.iter_mut().for_each(|j| job(config, j)),
        DeadInFull::Unreadable { error, raw, .. } => {
            let secrets = secrets_for(config, None);
            text(error, &secrets);
            text(raw, &secrets);
        }
    }
}
