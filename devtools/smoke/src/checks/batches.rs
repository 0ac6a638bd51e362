//! Batches: inline isolated and atomic ones with deletes (batches-api,
//! batch-worker), their failures, and a file upload (batch-splitter).

use super::items::{secs, urlencode};
use crate::api::{Answer, send};
use crate::suite::Suite;
use anyhow::{Context, bail, ensure};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const TERMINAL: [&str; 3] = ["completed", "completed_with_errors", "failed"];
const POLL: Duration = Duration::from_millis(500);

impl Suite {
    /// Creates an item through the API (registered for cleanup first).
    async fn seed(&mut self, suffix: &str, quantity: i64) -> anyhow::Result<String> {
        let sku = self.new_sku(suffix);
        self.api
            .post(
                "/v1/items",
                &json!({"sku": sku, "name": "Smoke batch item", "quantity": quantity}),
            )
            .await?
            .expect(201)?;
        Ok(sku)
    }

    async fn submit(&self, body: &Value) -> anyhow::Result<String> {
        let a = self.api.post("/v1/batches", body).await?;
        a.expect(202)?;
        let id = a.str("batch_id")?;
        let location = a.header("location").unwrap_or_default();
        ensure!(
            location.ends_with(&format!("/v1/batches/{id}")),
            "POST /v1/batches: Location {location:?}"
        );
        Ok(id)
    }

    /// Polls `GET /v1/batches/{id}` until the batch is terminal (the check's
    /// bound stops it otherwise); counts must never go backwards.
    async fn wait_terminal(&self, id: &str) -> anyhow::Result<Value> {
        let (mut succeeded, mut failed) = (0, 0);
        loop {
            let a = self.api.get(&format!("/v1/batches/{id}")).await?;
            a.expect(200)?;
            let (s, f) = (
                a.body["succeeded"].as_u64().unwrap_or(0),
                a.body["failed"].as_u64().unwrap_or(0),
            );
            ensure!(
                s >= succeeded && f >= failed,
                "batch {id}: counts went backwards: {}",
                a.short()
            );
            (succeeded, failed) = (s, f);
            if TERMINAL.contains(&a.body["status"].as_str().unwrap_or_default()) {
                return Ok(a.body);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Every failure of a batch: record id -> code.
    async fn failures(&self, id: &str) -> anyhow::Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                None => format!("/v1/batches/{id}/failures?limit=100"),
                Some(c) => format!(
                    "/v1/batches/{id}/failures?limit=100&cursor={}",
                    urlencode(c)
                ),
            };
            let a = self.api.get(&path).await?;
            a.expect(200)?;
            for f in a.body["failures"].as_array().into_iter().flatten() {
                out.insert(
                    f["record_id"].as_str().unwrap_or_default().to_owned(),
                    f["code"].as_str().unwrap_or_default().to_owned(),
                );
            }
            cursor = a.body["next_cursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                return Ok(out);
            }
        }
    }

    async fn quantity(&self, sku: &str) -> anyhow::Result<Option<i64>> {
        let a = self.api.get(&format!("/v1/items/{sku}")).await?;
        match a.status {
            200 => Ok(Some(a.body["quantity"].as_i64().with_context(|| {
                format!("{sku}: no quantity in {}", a.short())
            })?)),
            404 if a.code() == "item_not_found" => Ok(None),
            _ => bail!("GET /v1/items/{sku}: {}", a.summary()),
        }
    }

    async fn expect_quantities(&self, want: &[(&str, Option<i64>)]) -> anyhow::Result<()> {
        for (sku, q) in want {
            let got = self.quantity(sku).await?;
            ensure!(
                got == *q,
                "{sku}: quantity {got:?} after the batch, want {q:?} (None: deleted)"
            );
        }
        Ok(())
    }

    /// Isolated: an upsert, an adjust, a delete, and two bad records (one
    /// refused at submission, one at apply time); then its failures page.
    pub async fn batch_isolated(&mut self) -> anyhow::Result<String> {
        let started = Instant::now();
        let gone = self.seed("ISO-DEL", 5).await?;
        let upserted = self.new_sku("ISO-UP");
        let missing = self.sku("ISO-MISSING");
        let id = self
            .submit(&json!({"mode": "isolated", "records": [
                {"id": "up", "op": "upsert", "sku": upserted, "name": "Smoke batch item", "quantity": 7},
                {"id": "adj", "op": "adjust", "sku": upserted, "delta": -2, "reason": "sale"},
                {"id": "del", "op": "delete", "sku": gone},
                {"id": "bad-missing", "op": "adjust", "sku": missing, "delta": -1, "reason": "sale"},
                {"id": "bad-zero", "op": "adjust", "sku": upserted, "delta": 0, "reason": "sale"},
            ]}))
            .await?;
        let batch = self.wait_terminal(&id).await?;
        ensure!(
            batch["status"] == "completed_with_errors"
                && batch["total"] == 5
                && batch["succeeded"] == 3
                && batch["failed"] == 2,
            "batch {id}: {batch}, want completed_with_errors 3 succeeded 2 failed"
        );
        self.expect_quantities(&[(upserted.as_str(), Some(5)), (gone.as_str(), None)])
            .await?;
        let failures = self.failures(&id).await?;
        let want = BTreeMap::from([
            ("bad-missing".to_owned(), "item_not_found".to_owned()),
            ("bad-zero".to_owned(), "invalid_record".to_owned()),
        ]);
        ensure!(
            failures == want,
            "GET /v1/batches/{id}/failures lists {failures:?}, want {want:?}"
        );
        Ok(format!(
            "{id} completed_with_errors 3/2 in {}; delete applied; failures: item_not_found, invalid_record",
            secs(started)
        ))
    }

    /// Atomic: an upsert, an adjust and a delete applied together.
    pub async fn batch_atomic(&mut self) -> anyhow::Result<String> {
        let started = Instant::now();
        let adjusted = self.seed("ATOM-ADJ", 10).await?;
        let gone = self.seed("ATOM-DEL", 1).await?;
        let upserted = self.new_sku("ATOM-UP");
        let id = self
            .submit(&json!({"mode": "atomic", "records": [
                {"id": "up", "op": "upsert", "sku": upserted, "name": "Smoke batch item", "quantity": 3},
                {"id": "adj", "op": "adjust", "sku": adjusted, "delta": -4, "reason": "sale"},
                {"id": "del", "op": "delete", "sku": gone},
            ]}))
            .await?;
        let batch = self.wait_terminal(&id).await?;
        ensure!(
            batch["status"] == "completed" && batch["succeeded"] == 3 && batch["failed"] == 0,
            "batch {id}: {batch}, want completed with 3 succeeded"
        );
        self.expect_quantities(&[
            (upserted.as_str(), Some(3)),
            (adjusted.as_str(), Some(6)),
            (gone.as_str(), None),
        ])
        .await?;
        Ok(format!(
            "{id} completed 3/0 in {}; delete applied",
            secs(started)
        ))
    }

    /// Upload: a presigned PUT of an NDJSON file, split by batch-splitter.
    pub async fn batch_upload(&mut self) -> anyhow::Result<String> {
        let started = Instant::now();
        let kept = self.new_sku("UP-KEEP");
        let gone = self.new_sku("UP-DEL");
        let file: String = [
            json!({"op": "upsert", "sku": kept, "name": "Smoke upload item", "quantity": 4}),
            json!({"op": "upsert", "sku": gone, "name": "Smoke upload item", "quantity": 2}),
            json!({"op": "adjust", "sku": kept, "delta": -1, "reason": "sale"}),
            json!({"op": "delete", "sku": gone}),
        ]
        .iter()
        .map(|r| format!("{r}\n"))
        .collect();
        let a = self
            .api
            .post(
                "/v1/batches",
                &json!({"mode": "isolated", "format": "ndjson", "upload": true, "size_bytes": file.len()}),
            )
            .await?;
        a.expect(202)?;
        ensure!(a.body["status"] == "awaiting_upload", "POST: {}", a.short());
        let id = a.str("batch_id")?;
        let put = self.put_upload(&a, file.into_bytes()).await?;
        ensure!(
            (200..300).contains(&put.status),
            "PUT to the upload URL: {}",
            put.summary()
        );
        let batch = self.wait_terminal(&id).await?;
        ensure!(
            batch["status"] == "completed" && batch["succeeded"] == 4 && batch["failed"] == 0,
            "batch {id}: {batch}, want completed with 4 succeeded"
        );
        self.expect_quantities(&[(kept.as_str(), Some(3)), (gone.as_str(), None)])
            .await?;
        Ok(format!(
            "{id}: PUT {}, completed 4/0 in {}; delete applied",
            put.status,
            secs(started)
        ))
    }

    /// PUTs the file exactly as the answer's `upload` says (its headers are
    /// signed; reqwest sets content-length from the body).
    async fn put_upload(&self, accepted: &Answer, file: Vec<u8>) -> anyhow::Result<Answer> {
        let target = &accepted.body["upload"];
        ensure!(target["method"] == "PUT", "upload target: {target}");
        let url = target["url"]
            .as_str()
            .context("upload target without url")?;
        let mut req = self.api.absolute(Method::PUT, url);
        for (name, value) in target["headers"].as_object().into_iter().flatten() {
            if !name.eq_ignore_ascii_case("content-length") {
                req = req.header(name, value.as_str().unwrap_or_default());
            }
        }
        send(req.body(file)).await
    }
}
