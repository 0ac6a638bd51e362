//! The stock table's change stream, read as committed changes: which record
//! a stream record is (by its sort key) and what it was and is now. The
//! events publisher derives every event from these (`domain::change`).

use super::levels::{ACTIVE_HOLD_PREFIX, lapsed_hold};
use super::records::{
    BATCH_SK, BatchStored, DELETION_PREFIX, DeletionStored, ITEM_SK, ItemRecord, MOVEMENT_PREFIX,
    MovementRecord,
};
use super::webhooks::{WEBHOOK_PREFIX, WebhookStored};
use aws_lambda_events::event::dynamodb::EventRecord;
use serde::de::DeserializeOwned;
use stockroom_domain::change::CommittedChange;

/// Why a stream record could not be read (a bug or a foreign writer: the
/// publisher reports it and goes on, it never blocks the shard).
#[derive(Debug, thiserror::Error)]
#[error("stream record {sequence} ({key}): {reason}")]
pub struct UnreadableRecord {
    pub sequence: String,
    /// The record's sort key (never its attributes: they are tenant data).
    pub key: String,
    pub reason: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Insert,
    Modify,
    Remove,
}

fn image<T: DeserializeOwned>(item: &serde_dynamo::Item) -> Result<Option<T>, String> {
    if item.is_empty() {
        return Ok(None);
    }
    serde_dynamo::from_item(item.clone())
        .map(Some)
        .map_err(|e| e.to_string())
}

/// A removal made by DynamoDB's TTL (the service's identity on the record).
fn removed_by_ttl(record: &EventRecord) -> bool {
    record
        .user_identity
        .as_ref()
        .is_some_and(|u| u.principal_id == "dynamodb.amazonaws.com" && u.type_ == "Service")
}

fn required<T>(image: Option<T>, which: &str) -> Result<T, String> {
    image.ok_or_else(|| format!("no {which} image (the stream must be NEW_AND_OLD_IMAGES)"))
}

/// The change a stream record reports, or None when it causes no event (an
/// idempotency record, an outcome marker, a TTL removal, ...).
pub fn committed_change(record: &EventRecord) -> Result<Option<CommittedChange>, UnreadableRecord> {
    let sequence = record.change.sequence_number.clone().unwrap_or_default();
    let sort_key = match record.change.keys.get("sk") {
        Some(serde_dynamo::AttributeValue::S(sk)) => sk.clone(),
        _ => String::new(),
    };
    let unreadable = |reason: String| UnreadableRecord {
        sequence: sequence.clone(),
        key: sort_key.clone(),
        reason,
    };
    let kind = match record.event_name.as_str() {
        "INSERT" => Kind::Insert,
        "MODIFY" => Kind::Modify,
        "REMOVE" => Kind::Remove,
        other => return Err(unreadable(format!("unknown event name {other:?}"))),
    };
    decode(kind, &sort_key, record).map_err(unreadable)
}

fn decode(
    kind: Kind,
    sort_key: &str,
    record: &EventRecord,
) -> Result<Option<CommittedChange>, String> {
    let new = &record.change.new_image;
    let old = &record.change.old_image;
    if kind == Kind::Remove {
        // A hold's record removed by TTL: the hold expired and no write of
        // its level swept it; it is ended for good from here.
        if sort_key.starts_with(ACTIVE_HOLD_PREFIX) && removed_by_ttl(record) {
            let (tenant, reservation_id) = lapsed_hold(old)?;
            return Ok(Some(CommittedChange::HoldLapsed {
                tenant,
                reservation_id,
            }));
        }
        // Deletions are announced by their marker; other removals are TTL
        // or the deletion's own item delete.
        return Ok(None);
    }
    if sort_key == ITEM_SK {
        let after: ItemRecord = required(image(new)?, "new")?;
        let before: Option<ItemRecord> = match kind {
            Kind::Modify => image(old)?,
            _ => None,
        };
        return Ok(Some(CommittedChange::ItemWritten {
            tenant: after.tenant_id.clone(),
            cause: after.cause(),
            before: before.map(Into::into),
            after: after.into(),
        }));
    }
    if sort_key.starts_with(MOVEMENT_PREFIX) {
        // A ledger entry is written once; a rewrite (same content) adds nothing.
        if kind != Kind::Insert {
            return Ok(None);
        }
        let m: MovementRecord = required(image(new)?, "new")?;
        return Ok(Some(CommittedChange::MovementAdded {
            tenant: m.tenant_id.clone(),
            movement: m.into(),
        }));
    }
    if sort_key.starts_with(DELETION_PREFIX) {
        if kind != Kind::Insert {
            return Ok(None);
        }
        let d: DeletionStored = required(image(new)?, "new")?;
        return Ok(Some(CommittedChange::ItemDeleted {
            tenant: d.tenant_id.clone(),
            deletion: d.into(),
        }));
    }
    if sort_key == BATCH_SK {
        let after: BatchStored = required(image(new)?, "new")?;
        let before: Option<BatchStored> = match kind {
            Kind::Modify => image(old)?,
            _ => None,
        };
        return Ok(Some(CommittedChange::BatchWritten {
            tenant: after.tenant_id.clone(),
            before: before.map(|b| b.status),
            after: after.into(),
        }));
    }
    if sort_key.starts_with(WEBHOOK_PREFIX) {
        let after: WebhookStored = required(image(new)?, "new")?;
        let before: Option<WebhookStored> = match kind {
            Kind::Modify => image(old)?,
            _ => None,
        };
        let (tenant, request_id, after) = after.into_change();
        return Ok(Some(CommittedChange::WebhookWritten {
            tenant,
            before: before.map(|b| b.status()),
            after,
            request_id,
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn removal(by_ttl: bool) -> EventRecord {
        let mut record = json!({
            "eventID": "1",
            "eventName": "REMOVE",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x",
            "dynamodb": {
                "ApproximateCreationDateTime": 1764840000,
                "Keys": {"pk": {"S": "T#acme#I#MUG-1"}, "sk": {"S": "H#01M90W17R0WTT9JK1A28PBFMVX"}},
                "OldImage": {
                    "pk": {"S": "T#acme#I#MUG-1"}, "sk": {"S": "H#01M90W17R0WTT9JK1A28PBFMVX"},
                    "tenant_id": {"S": "acme"},
                    "id": {"S": "rsv_01M90W17R0WTT9JK1A28PBFMVX_MUG-1"},
                    "location": {"S": "default"}, "quantity": {"N": "2"},
                    "expires_at_ms": {"N": "1764840000000"}, "expires_at": {"N": "1764840000"}
                },
                "SequenceNumber": "100",
                "SizeBytes": 10,
                "StreamViewType": "NEW_AND_OLD_IMAGES"
            }
        });
        if by_ttl {
            record["userIdentity"] =
                json!({"principalId": "dynamodb.amazonaws.com", "type": "Service"});
        }
        serde_json::from_value(record).unwrap()
    }

    #[test]
    fn a_hold_record_removed_by_ttl_is_a_lapsed_hold_and_any_other_removal_nothing() {
        assert_eq!(
            committed_change(&removal(true)).unwrap(),
            Some(CommittedChange::HoldLapsed {
                tenant: "acme".into(),
                reservation_id: "rsv_01M90W17R0WTT9JK1A28PBFMVX_MUG-1".into(),
            })
        );
        // Ended by a write (its transaction deletes it): nothing to do.
        assert_eq!(committed_change(&removal(false)).unwrap(), None);
    }
}
