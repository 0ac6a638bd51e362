//! A 10,000-record batch through the whole local pipeline, alone in its test
//! binary so nothing else competes for the emulator while it runs.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use stockroom_tests::{Tenant, all_failures, wait_for_batch};

const WAIT: Duration = Duration::from_secs(120);

async fn submit(t: &Tenant, body: &Value) -> anyhow::Result<String> {
    let resp = t.post_json("/v1/batches", body).send().await?;
    assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
    Ok(resp.json::<Value>().await?["batch_id"]
        .as_str()
        .expect("batch_id")
        .to_owned())
}

async fn quantity(t: &Tenant, sku: &str) -> anyhow::Result<Option<i64>> {
    let resp = t.get(&format!("/v1/items/{sku}")).send().await?;
    anyhow::ensure!(resp.status() == 200, "GET {sku}: {}", resp.status());
    Ok(resp.json::<Value>().await?["quantity"].as_i64())
}

#[tokio::test]
async fn ten_thousand_records_with_a_known_mix_of_bad_ones() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let skus: Vec<String> = (0..200).map(|i| format!("bulk-{i:03}")).collect();
    let seed: Vec<Value> = skus
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"id": format!("seed-{i}"), "op": "upsert", "sku": s, "name": "Bulk", "quantity": 50}))
        .collect();
    let seed_id = submit(&t, &json!({"mode": "isolated", "records": seed})).await?;
    assert_eq!(
        wait_for_batch(&t, &seed_id, WAIT).await?["status"],
        "completed"
    );

    let mut expected: HashMap<String, i64> = skus.iter().map(|s| (s.clone(), 50)).collect();
    let mut records = Vec::new();
    let mut bad = Vec::new();
    for i in 0..10_000usize {
        let sku = &skus[i % skus.len()];
        let id = format!("rec-{i}");
        if i % 101 == 0 {
            records.push(json!({"id": id, "op": "adjust", "sku": sku, "delta": 0, "reason": "x"}));
            bad.push((id, "invalid_record".to_owned()));
        } else if i % 97 == 0 {
            records.push(json!({"id": id, "op": "adjust", "sku": sku, "delta": -1_000_000, "reason": "theft"}));
            bad.push((id, "insufficient_stock".to_owned()));
        } else {
            let delta = if i % 3 == 0 { -1 } else { 2 };
            records.push(
                json!({"id": id, "op": "adjust", "sku": sku, "delta": delta, "reason": "sync"}),
            );
            *expected.get_mut(sku).expect("sku") += delta;
        }
    }
    let started = std::time::Instant::now();
    let resp = t
        .post_json(
            "/v1/batches",
            &json!({"mode": "isolated", "records": records}),
        )
        .send()
        .await?;
    assert_eq!(resp.status(), 202);
    eprintln!("10,000-record POST answered in {:?}", started.elapsed());
    let id = resp.json::<Value>().await?["batch_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let batch = wait_for_batch(&t, &id, Duration::from_secs(600)).await?;
    eprintln!("10,000-record batch applied in {:?}", started.elapsed());
    assert_eq!(
        batch["succeeded"].as_u64(),
        Some(10_000 - bad.len() as u64),
        "{batch}"
    );
    assert_eq!(batch["failed"].as_u64(), Some(bad.len() as u64));
    assert_eq!(batch["status"], "completed_with_errors");
    let mut failures = all_failures(&t, &id).await?;
    failures.sort();
    bad.sort();
    assert_eq!(failures, bad);
    for sku in &skus {
        assert_eq!(quantity(&t, sku).await?, Some(expected[sku]), "{sku}");
    }
    Ok(())
}
