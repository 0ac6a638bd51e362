//! Delivery semantics of the batch pipeline, driven at the queue and store
//! level against the local stack: redelivered chunks, concurrent deliveries,
//! poison messages.

use aws_sdk_sqs::types::MessageAttributeValue;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use stockroom_app::ports::{BatchHeaders, BatchSubmissions, ChunkDisposition};
use stockroom_aws::dynamodb::{DynamoBatchStore, WriteLayout};
use stockroom_domain::TenantId;
use stockroom_domain::batch::{Batch, BatchMode, BatchStatus, ChunkMessage, parse_batch};
use stockroom_tests::{Tenant, all_failures, function_env, unique_sku, wait_for_batch};

async fn sqs() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&stockroom_aws::sdk::aws_sdk_config().await)
}

/// The use cases a batch's counts, transfers and holds run, on the table.
async fn levels() -> anyhow::Result<stockroom_app::batch_levels::LevelRecords> {
    let table = std::env::var("STOCK_TABLE")?;
    Ok(stockroom_app::batch_levels::LevelRecords::on(Arc::new(
        stockroom_aws::dynamodb::DynamoItemStore::from_sdk_config(
            &stockroom_aws::sdk::aws_sdk_config().await,
            table,
        )
        .with_write_layout(WriteLayout::Sharded),
    )))
}

/// The batch store as the test stack's functions write (the sharded layout).
async fn store() -> anyhow::Result<Arc<DynamoBatchStore>> {
    store_in(WriteLayout::Sharded).await
}

async fn store_in(layout: WriteLayout) -> anyhow::Result<Arc<DynamoBatchStore>> {
    let table = std::env::var("STOCK_TABLE")?;
    Ok(Arc::new(
        DynamoBatchStore::from_sdk_config(&stockroom_aws::sdk::aws_sdk_config().await, table)
            .with_write_layout(layout),
    ))
}

fn attr(v: &str, number: bool) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type(if number { "Number" } else { "String" })
        .string_value(v)
        .build()
        .expect("attribute")
}

async fn send(body: &str, tenant: &str, batch_id: &str, records: usize) -> anyhow::Result<()> {
    sqs()
        .await
        .send_message()
        .queue_url(function_env("BatchesApiFunction", "BATCH_QUEUE_URL")?)
        .message_body(body)
        .message_attributes("tenant_id", attr(tenant, false))
        .message_attributes("batch_id", attr(batch_id, false))
        .message_attributes("request_id", attr("test-redelivery", false))
        .message_attributes("chunk", attr("0", true))
        .message_attributes("record_count", attr(&records.to_string(), true))
        .send()
        .await?;
    Ok(())
}

/// A header like the API writes, for a batch whose chunks the test delivers itself.
fn header(batch_id: &str, total: u64) -> Batch {
    let now = stockroom_app::clock::now_rfc3339();
    Batch {
        batch_id: batch_id.to_owned(),
        mode: BatchMode::Isolated,
        status: BatchStatus::Accepted,
        total,
        succeeded: 0,
        failed: 0,
        created_at: now.clone(),
        updated_at: now,
        completed_at: None,
        request_id: "test".into(),
        records_read: total,
        records_enqueued: total,
        upload: None,
        error: None,
        chunks_total: 1,
        chunks_done: 0,
    }
}

/// Chunk 0 of an isolated batch holding every record of `body`.
fn isolated_chunk(
    tenant: &str,
    batch_id: &str,
    request_id: &str,
    body: &Value,
) -> anyhow::Result<ChunkMessage> {
    Ok(ChunkMessage {
        v: 1,
        tenant_id: tenant.to_owned(),
        batch_id: batch_id.to_owned(),
        mode: BatchMode::Isolated,
        chunk: 0,
        request_id: request_id.into(),
        records: parse_batch(body)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
            .valid,
    })
}

fn new_batch_id() -> String {
    format!("b_{}", ulid_like())
}

fn ulid_like() -> String {
    let s = uuid::Uuid::new_v4().simple().to_string();
    s[..26].to_owned()
}

async fn quantity(t: &Tenant, sku: &str) -> anyhow::Result<i64> {
    Ok(t.get(&format!("/v1/items/{sku}"))
        .send()
        .await?
        .json::<Value>()
        .await?["quantity"]
        .as_i64()
        .unwrap_or(-1))
}

#[tokio::test]
async fn a_chunk_delivered_again_after_completion_changes_nothing() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("redeliver");
    t.create_item(&sku, 10).await?;
    let body = json!({"mode": "isolated", "records": [
        {"id": "r1", "op": "adjust", "sku": sku, "delta": -1, "reason": "sale"},
        {"id": "r2", "op": "adjust", "sku": sku, "delta": 5, "reason": "receipt"},
    ]});
    let resp = t.post_json("/v1/batches", &body).send().await?;
    let batch_id = resp.json::<Value>().await?["batch_id"]
        .as_str()
        .expect("id")
        .to_owned();
    wait_for_batch(&t, &batch_id, Duration::from_secs(60)).await?;
    assert_eq!(quantity(&t, &sku).await?, 14);

    // The very chunk the API sent, delivered twice more.
    let message = isolated_chunk(&t.tenant_id, &batch_id, "replayed", &body)?;
    let text = serde_json::to_string(&message)?;
    send(&text, &t.tenant_id, &batch_id, 2).await?;
    send(&text, &t.tenant_id, &batch_id, 2).await?;
    // Wait until the worker has consumed both.
    let queue = function_env("BatchesApiFunction", "BATCH_QUEUE_URL")?;
    for _ in 0..120 {
        let attrs = sqs()
            .await
            .get_queue_attributes()
            .queue_url(&queue)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send()
            .await?;
        let a = attrs.attributes().cloned().unwrap_or_default();
        let n = |k: aws_sdk_sqs::types::QueueAttributeName| {
            a.get(&k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        };
        if n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            + n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            == 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(quantity(&t, &sku).await?, 14);
    let batch: Value = t
        .get(&format!("/v1/batches/{batch_id}"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        (batch["succeeded"].as_u64(), batch["failed"].as_u64()),
        (Some(2), Some(0)),
        "{batch}"
    );
    let ledger: Value = t
        .get(&format!("/v1/items/{sku}/movements"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(ledger["movements"].as_array().map(Vec::len), Some(3));
    Ok(())
}

/// The outcome markers of a batch, by partition key, read from the table.
async fn markers_by_partition(
    tenant: &str,
    batch_id: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, usize>> {
    let ddb = aws_sdk_dynamodb::Client::new(&stockroom_aws::sdk::aws_sdk_config().await);
    let table = std::env::var("STOCK_TABLE")?;
    let mut found = std::collections::BTreeMap::new();
    let mut start = None;
    loop {
        let out = ddb
            .scan()
            .table_name(&table)
            .filter_expression("begins_with(pk, :batch) AND begins_with(sk, :r)")
            .expression_attribute_values(
                ":batch",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("T#{tenant}#B#{batch_id}")),
            )
            .expression_attribute_values(
                ":r",
                aws_sdk_dynamodb::types::AttributeValue::S("R#".into()),
            )
            .set_exclusive_start_key(start.take())
            .send()
            .await?;
        for item in out.items() {
            if let Some(aws_sdk_dynamodb::types::AttributeValue::S(pk)) = item.get("pk") {
                *found.entry(pk.clone()).or_default() += 1;
            }
        }
        match out.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return Ok(found),
        }
    }
}

/// A batch submitted in the sharded layout spreads its outcome markers over
/// 32 partitions by record index (one partition key would cap an import at
/// ~500 records/s on AWS: docs/scaling.md); one submitted in the compatible
/// layout, or before, keeps them under its own key, where functions of the
/// release before look. Whatever the worker's own layout, every record is
/// applied once however often its chunk comes, because every marker is found.
#[tokio::test]
async fn outcome_markers_are_sharded_and_a_batch_from_before_keeps_its_key() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let tenant = TenantId::parse(&t.tenant_id).map_err(anyhow::Error::msg)?;
    let skus: Vec<String> = (0..10).map(|i| unique_sku(&format!("shard{i}"))).collect();
    for s in &skus {
        t.create_item(s, 100).await?;
    }
    let levels = levels().await?;
    let ddb = aws_sdk_dynamodb::Client::new(&stockroom_aws::sdk::aws_sdk_config().await);
    let cases = [
        ("sharded", WriteLayout::Sharded, false),
        ("compatible", WriteLayout::Compatible, false),
        ("from before", WriteLayout::Sharded, true),
    ];
    for (case, layout, from_before) in cases {
        let legacy = layout == WriteLayout::Compatible || from_before;
        let records: Vec<Value> = (0..70)
            .map(|i| json!({"id": format!("r{i}"), "op": "adjust", "sku": skus[i % 10], "delta": -1, "reason": "sale"}))
            .collect();
        let body = json!({"mode": "isolated", "records": records});
        let batch_id = new_batch_id();
        store_in(layout)
            .await?
            .create_batch(&tenant, &header(&batch_id, 70), None)
            .await?;
        if from_before {
            // As a header written before markers were sharded.
            ddb.update_item()
                .table_name(std::env::var("STOCK_TABLE")?)
                .key(
                    "pk",
                    aws_sdk_dynamodb::types::AttributeValue::S(format!(
                        "T#{}#B#{batch_id}",
                        t.tenant_id
                    )),
                )
                .key(
                    "sk",
                    aws_sdk_dynamodb::types::AttributeValue::S("BATCH".into()),
                )
                .update_expression("REMOVE markers_sharded")
                .send()
                .await?;
        }
        // A fresh store: no layout remembered from the header's creation;
        // it follows the header's, whatever it would write for a new batch.
        let store = self::store().await?;
        let message = isolated_chunk(&t.tenant_id, &batch_id, "shards", &body)?;
        let (a, b) = tokio::join!(
            stockroom_app::chunks::apply_chunk(&*store, &levels, &message, ChunkDisposition::Apply),
            stockroom_app::chunks::apply_chunk(&*store, &levels, &message, ChunkDisposition::Apply),
        );
        a?;
        b?;
        stockroom_app::chunks::apply_chunk(&*store, &levels, &message, ChunkDisposition::Apply)
            .await?;
        let batch = store
            .get_batch(&tenant, &batch_id, None)
            .await?
            .expect("batch");
        assert_eq!((batch.succeeded, batch.failed), (70, 0), "{case}");
        let markers = markers_by_partition(&t.tenant_id, &batch_id).await?;
        assert_eq!(markers.values().sum::<usize>(), 70, "{case}: {markers:?}");
        if legacy {
            assert_eq!(
                markers.keys().collect::<Vec<_>>(),
                [&format!("T#{}#B#{batch_id}", t.tenant_id)],
                "{case}"
            );
        } else {
            assert_eq!(markers.len(), 32, "{markers:?}");
            assert!(markers.values().all(|n| (2..=3).contains(n)), "{markers:?}");
        }
    }
    // Each of the 210 records applied once.
    for s in &skus {
        assert_eq!(quantity(&t, s).await?, 100 - 21, "{s}");
    }
    Ok(())
}

/// Every failure of a batch, through the API, `limit` a page.
async fn listed_failures(t: &Tenant, batch_id: &str, limit: u32) -> anyhow::Result<Vec<Value>> {
    let path = format!("/v1/batches/{batch_id}/failures?limit={limit}");
    stockroom_tests::all_pages(t, &path, "failures").await
}

/// A batch of `records` submitted by `submitter` and applied by `worker`
/// (each store in its own write layout); its id.
async fn applied_batch(
    t: &Tenant,
    submitter: &DynamoBatchStore,
    worker: &DynamoBatchStore,
    records: &[Value],
) -> anyhow::Result<String> {
    let tenant = TenantId::parse(&t.tenant_id).map_err(anyhow::Error::msg)?;
    let batch_id = new_batch_id();
    submitter
        .create_batch(&tenant, &header(&batch_id, records.len() as u64), None)
        .await?;
    let body = json!({"mode": "isolated", "records": records});
    let message = isolated_chunk(&t.tenant_id, &batch_id, "failure-shards", &body)?;
    stockroom_app::chunks::apply_chunk(worker, &levels().await?, &message, ChunkDisposition::Apply)
        .await?;
    Ok(batch_id)
}

/// A batch's failure entries are spread over 32 partitions by record index,
/// as its markers are (every record of an import may fail); a chunk that ran
/// before the change left its entries under the batch's one failures key.
/// The listing merges both, whole and in record order, page by page, and a
/// cursor given before the change (the entry's own key) still resumes.
#[tokio::test]
async fn failure_entries_are_sharded_and_list_whole_and_in_order() -> anyhow::Result<()> {
    use aws_sdk_dynamodb::types::AttributeValue::S;
    let t = Tenant::new().await?;
    let tenant = TenantId::parse(&t.tenant_id).map_err(anyhow::Error::msg)?;
    let known = unique_sku("known");
    t.create_item(&known, 1_000).await?;
    // Two records in three adjust a sku that does not exist: 46 failures,
    // in every one of the 32 partitions.
    let records: Vec<Value> = (0..70)
        .map(|i| {
            let sku = if i % 3 != 0 { format!("{known}-missing") } else { known.clone() };
            json!({"id": format!("r{i}"), "op": "adjust", "sku": sku, "delta": -1, "reason": "sale"})
        })
        .collect();
    let store = store().await?;
    let batch_id = applied_batch(&t, &store, &store, &records).await?;

    // The entries as written: one partition per index mod 32.
    let ddb = aws_sdk_dynamodb::Client::new(&stockroom_aws::sdk::aws_sdk_config().await);
    let table = std::env::var("STOCK_TABLE")?;
    let legacy_pk = format!("T#{}#B#{batch_id}#F", t.tenant_id);
    let mut written = Vec::new();
    for shard in 0..32 {
        let out = ddb
            .query()
            .table_name(&table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", S(format!("{legacy_pk}#{shard}")))
            .send()
            .await?;
        written.extend(out.items.unwrap_or_default());
    }
    assert_eq!(written.len(), 46);
    let partitions: std::collections::BTreeSet<String> = written
        .iter()
        .filter_map(|e| e.get("pk").and_then(|v| v.as_s().ok()).cloned())
        .collect();
    assert_eq!(partitions.len(), 32, "{partitions:?}");
    // Those of records 0..20 as a chunk before the change wrote them.
    for entry in &written {
        let sk = entry
            .get("sk")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        if sk.as_str() >= "F#0000020" {
            continue;
        }
        let mut moved = entry.clone();
        moved.insert("pk".into(), S(legacy_pk.clone()));
        ddb.put_item()
            .table_name(&table)
            .set_item(Some(moved))
            .send()
            .await?;
        ddb.delete_item()
            .table_name(&table)
            .key("pk", entry["pk"].clone())
            .key("sk", S(sk))
            .send()
            .await?;
    }

    let expected: Vec<String> = (0..70)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("r{i}"))
        .collect();
    for limit in [1, 4, 46, 100] {
        let listed = listed_failures(&t, &batch_id, limit).await?;
        let ids: Vec<&str> = listed
            .iter()
            .filter_map(|f| f["record_id"].as_str())
            .collect();
        assert_eq!(ids, expected, "limit {limit}");
        assert!(
            listed.iter().all(|f| f["code"] == "item_not_found"),
            "{listed:?}"
        );
    }
    // A cursor from before: the key of the entry it stopped at.
    let old_cursor = stockroom_app::ports::PageKey::from([
        ("pk".to_owned(), legacy_pk.clone()),
        ("sk".to_owned(), "F#0000010".to_owned()),
    ]);
    let page = store
        .list_failures(&tenant, &batch_id, 3, Some(old_cursor), None)
        .await?;
    let indexes: Vec<u32> = page.items.iter().map(|f| f.index).collect();
    assert_eq!(indexes, [11, 13, 14]);
    assert!(page.next.is_some());
    // The cursor keeps the shape the release before reads: its key under
    // the batch's one failures key.
    assert_eq!(
        page.next.as_ref().and_then(|k| k.get("pk")),
        Some(&legacy_pk)
    );

    // A batch submitted in the compatible layout writes every failure under
    // that one key, where functions of the release before look.
    let compatible = store_in(WriteLayout::Compatible).await?;
    let batch_id = applied_batch(&t, &compatible, &store, &records).await?;
    let one_key = ddb
        .query()
        .table_name(&table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", S(format!("T#{}#B#{batch_id}#F", t.tenant_id)))
        .send()
        .await?;
    assert_eq!(one_key.count, 46);
    let listed = listed_failures(&t, &batch_id, 10).await?;
    let ids: Vec<&str> = listed
        .iter()
        .filter_map(|f| f["record_id"].as_str())
        .collect();
    assert_eq!(ids, expected);
    Ok(())
}

#[tokio::test]
async fn concurrent_deliveries_of_one_chunk_apply_each_record_once() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let tenant = TenantId::parse(&t.tenant_id).map_err(anyhow::Error::msg)?;
    let skus: Vec<String> = (0..5).map(|i| unique_sku(&format!("conc{i}"))).collect();
    for s in &skus {
        t.create_item(s, 100).await?;
    }
    let mut records = Vec::new();
    for i in 0..60 {
        records.push(json!({"id": format!("r{i}"), "op": "adjust", "sku": skus[i % 5], "delta": -1, "reason": "sale"}));
    }
    let body = json!({"mode": "isolated", "records": records});
    let batch_id = new_batch_id();
    let store = store().await?;
    store
        .create_batch(&tenant, &header(&batch_id, 60), None)
        .await?;
    let message = isolated_chunk(&t.tenant_id, &batch_id, "concurrent", &body)?;
    let levels = levels().await?;
    let (a, b, c) = tokio::join!(
        stockroom_app::chunks::apply_chunk(&*store, &levels, &message, ChunkDisposition::Apply),
        stockroom_app::chunks::apply_chunk(&*store, &levels, &message, ChunkDisposition::Apply),
        stockroom_app::chunks::apply_chunk(&*store, &levels, &message, ChunkDisposition::Apply),
    );
    a?;
    b?;
    c?;
    stockroom_app::chunks::apply_chunk(&*store, &levels, &message, ChunkDisposition::Apply).await?;
    let finished = store.finalize(&tenant, &batch_id).await?;
    assert_eq!(finished.map(|b| b.status), Some(BatchStatus::Completed));
    // Until its event is marked published, the terminal batch is offered
    // again (to whoever can publish it); afterwards never.
    assert!(store.finalize(&tenant, &batch_id).await?.is_some());
    store.mark_notified(&tenant, &batch_id).await?;
    assert_eq!(
        store.finalize(&tenant, &batch_id).await?,
        None,
        "the terminal event is offered until published, then never"
    );
    let batch = store
        .get_batch(&tenant, &batch_id, None)
        .await?
        .expect("batch");
    assert_eq!(
        (batch.succeeded, batch.failed, batch.chunks_done),
        (60, 0, 1)
    );
    for s in &skus {
        assert_eq!(quantity(&t, s).await?, 88, "{s}");
    }
    Ok(())
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_and_the_batch_still_ends() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let tenant = TenantId::parse(&t.tenant_id).map_err(anyhow::Error::msg)?;
    let batch_id = new_batch_id();
    store()
        .await?
        .create_batch(&tenant, &header(&batch_id, 3), None)
        .await?;
    send(
        "{\"v\":1,\"this is\":\"not a chunk",
        &t.tenant_id,
        &batch_id,
        3,
    )
    .await?;
    let batch = wait_for_batch(&t, &batch_id, Duration::from_secs(150)).await?;
    assert_eq!(batch["status"], "failed", "{batch}");
    assert_eq!(
        (batch["succeeded"].as_u64(), batch["failed"].as_u64()),
        (Some(0), Some(3))
    );
    assert_eq!(
        all_failures(&t, &batch_id).await?,
        vec![("chunk:0".to_owned(), "chunk_dead_lettered".to_owned())]
    );
    Ok(())
}

/// A chunk with a record of an unknown `op` (well-formed JSON otherwise): the
/// worker refuses it on every delivery, each retry delayed (no hot loop),
/// until SQS moves it to the dead-letter queue after the redrive count; the
/// batch then ends with its records reported.
#[tokio::test]
async fn a_chunk_with_an_unknown_op_is_retried_with_backoff_then_dead_lettered()
-> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let tenant = TenantId::parse(&t.tenant_id).map_err(anyhow::Error::msg)?;
    let batch_id = new_batch_id();
    store()
        .await?
        .create_batch(&tenant, &header(&batch_id, 2), None)
        .await?;
    let body = json!({"v": 1, "tenant_id": t.tenant_id, "batch_id": batch_id, "mode": "isolated",
        "chunk": 0, "request_id": "poison-op", "records": [
            {"id": "r1", "op": "explode", "sku": "SKU-1"},
            {"id": "r2", "op": "adjust", "sku": "SKU-1", "delta": 1, "reason": "receipt"}]});
    send(&body.to_string(), &t.tenant_id, &batch_id, 2).await?;
    let batch = wait_for_batch(&t, &batch_id, Duration::from_secs(150)).await?;
    assert_eq!(batch["status"], "failed", "{batch}");
    assert_eq!(batch["failed"].as_u64(), Some(2), "{batch}");
    assert_eq!(
        all_failures(&t, &batch_id).await?,
        vec![("chunk:0".to_owned(), "chunk_dead_lettered".to_owned())]
    );

    // The worker's log: one refusal per delivery, exactly the redrive count
    // (maxReceiveCount 5 on BatchChunksQueue), each later than the last.
    let log = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.local/logs/batch-worker.log"),
    )?;
    let attempts: Vec<Value> = log
        .lines()
        .filter(|l| l.contains(&batch_id) && l.contains("chunk failed; it will be retried"))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let counts: Vec<u64> = attempts
        .iter()
        .filter_map(|a| a["span"]["receive_count"].as_u64())
        .collect();
    assert_eq!(counts, vec![1, 2, 3, 4, 5], "{attempts:?}");
    let times: Vec<time::OffsetDateTime> = attempts
        .iter()
        .filter_map(|a| stockroom_app::clock::parse(a["timestamp"].as_str()?))
        .collect();
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= time::Duration::milliseconds(900),
            "retries are delayed, not immediate: {times:?}"
        );
    }
    Ok(())
}
