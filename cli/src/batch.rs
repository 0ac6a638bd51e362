//! A batch as the API shows it, read leniently: fields the CLI does not
//! know are ignored, missing counters are zero.

use serde::Deserialize;

/// `GET /v1/batches/{id}`.
#[derive(Clone, Debug, Deserialize)]
pub struct Batch {
    pub batch_id: String,
    pub status: String,
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub succeeded: u64,
    #[serde(default)]
    pub failed: u64,
    #[serde(default)]
    pub records_read: u64,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub completed_at: Option<String>,
    #[serde(default)]
    pub error: Option<BatchError>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct BatchError {
    pub code: String,
    pub message: String,
}

impl Batch {
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.status.as_str(),
            "completed" | "completed_with_errors" | "failed"
        )
    }
}
