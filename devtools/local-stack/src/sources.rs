//! Every event source mapping of the template: the SQS ones (`esm`) and the
//! DynamoDB stream ones (`stream_esm`), validated together as Lambda (so
//! CloudFormation) would.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::esm::{Sqs, SqsSources};
use crate::lambda::Lambda;
use crate::spec::Stack;
use crate::stream_esm::StreamMapping;

pub struct EventSources {
    sqs: SqsSources,
    streams: Vec<Arc<StreamMapping>>,
}

impl EventSources {
    /// The template's mappings. Like CreateEventSourceMapping (so
    /// CloudFormation), refuses an invalid configuration: every problem of
    /// every mapping in one error.
    pub fn new(stack: &Stack) -> anyhow::Result<Self> {
        let problems: Vec<String> = stack
            .event_sources
            .iter()
            .flat_map(|spec| {
                spec.invalid()
                    .into_iter()
                    .map(move |p| format!("{}: {p}", spec.logical_id))
            })
            .collect();
        if !problems.is_empty() {
            anyhow::bail!(
                "invalid event source mapping(s), as Lambda would refuse them:\n  {}",
                problems.join("\n  ")
            );
        }
        let streams = stack
            .event_sources
            .iter()
            .filter(|spec| spec.is_dynamodb_stream())
            .map(|spec| Arc::new(StreamMapping::new(spec, stack)))
            .collect();
        Ok(EventSources {
            sqs: SqsSources::new(stack),
            streams,
        })
    }

    pub fn status(&self) -> Value {
        let mut all = self.sqs.statuses();
        all.extend(self.streams.iter().map(|m| m.status()));
        json!({"event_sources": all})
    }

    /// Starts every enabled, runnable mapping's pollers; they stop when
    /// `stop` turns true. Returns their handles.
    pub fn start(
        &self,
        lambda: Arc<Lambda>,
        sqs: Sqs,
        stop: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut handles = Vec::new();
        for m in &self.streams {
            handles.extend(m.start(
                lambda.clone(),
                &sqs.endpoint,
                &sqs.region,
                sqs.calls.clone(),
                &sqs,
                stop.clone(),
            ));
        }
        handles.extend(self.sqs.start(lambda, sqs, stop));
        handles
    }
}
